"""Benchmarks of the reference coordinator (run as `python -m benchmarks.<name>`)."""
