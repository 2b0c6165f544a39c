"""Load mode: Locust users for sync protocol v1, named profiles, and the `harness load` runner.

Locust (and gevent's monkey patching) lives only in the Locust process: `locustfile.py` and
`users.py` import it; `runner.py`, `profiles.py`, `results.py` and `report.py` never do, so the
asyncio harness that starts the environment and the faults stays untouched by gevent.
"""
