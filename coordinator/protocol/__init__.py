"""Sync protocol v1 on the wire: encodings, change sets, messages and error codes."""
