"""The environment of a run: processes, Toxiproxy, moto and its S3 fault layer, the coordinator.

Entry point: `harness.env.environment.Environment`. See docs/faults.md.
"""
