"""The Locust entry point: `locust -f harness/load/locustfile.py --host http://127.0.0.1:8080/sync`.

The profile and its parameters come from HARNESS_LOAD_* environment variables (what
`harness load` sets; see docs/load.md), e.g. HARNESS_LOAD_PROFILE=spike HARNESS_LOAD_USERS=50.
The one shape class below plays the named profile: Locust's -u/-r/-t are replaced by it.
"""

from __future__ import annotations

from typing import Any

import locust.stats
from locust import LoadTestShape

from harness.load.profiles import PROFILES
from harness.load.users import (
    PARAMS,
    USER_CLASSES,
    FanoutWriter,
    HttpReader,
    HttpWriter,
    WsChurner,
    WsReader,
    WsSnapshotter,
    WsSubscriber,
    WsWriter,
)

__all__ = [
    "FanoutWriter",
    "HttpReader",
    "HttpWriter",
    "ProfileShape",
    "WsChurner",
    "WsReader",
    "WsSnapshotter",
    "WsSubscriber",
    "WsWriter",
]

PARAMS.validate()
# Locust's "current" percentiles (its UI, its CSV history, our plots) cover the last N seconds;
# 10 by default hides a fault window of a few seconds behind the seconds before it.
locust.stats.CURRENT_RESPONSE_TIME_PERCENTILE_WINDOW = 2


class ProfileShape(LoadTestShape):
    """The profile HARNESS_LOAD_PROFILE names, tick by tick; it stops the run by itself."""

    def tick(self) -> tuple[int, float, list[Any]] | None:
        step = PROFILES[PARAMS.profile].tick(PARAMS, self.get_run_time())
        if step is None:
            return None
        users, rate, kinds = step
        classes = []
        for kind, weight in kinds.items():
            cls = USER_CLASSES[kind]
            if cls.fixed_count == 0:
                cls.weight = weight
            classes.append(cls)
        return users, rate, classes
