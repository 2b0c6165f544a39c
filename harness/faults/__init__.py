"""Faults: one class per kind (network toxics, S3, process, failpoint), a registry by name."""
