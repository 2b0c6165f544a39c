"""Scenario files: schema, loader with file:line errors, and the timeline runner."""
