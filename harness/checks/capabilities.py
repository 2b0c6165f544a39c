"""Which [ext] parts of PROTOCOL.md the target has: declared by the scenario (the bundled
coordinator declares all of them), or detected from what the target actually sent or answered.

A declared capability turns absence into a failure (the target should have sent it); a
capability neither declared nor seen makes the dependent check `unknown`, "not supported by
target". Declaring `False` says the target is known to lack it.
"""

from __future__ import annotations

from harness.checks.observations import Observations
from harness.history import History

SEQ = "seq"
HEARTBEAT = "heartbeat"
NOTICE = "notice"
PRESENCE = "presence"
DEBUG_RESOURCES = "debug_resources"
HEALTH = "health"
READY = "ready"
INVALID_PAYLOAD = "invalid_payload"
NOT_AUTHORIZED = "not_authorized"
METRICS = "metrics"
ALL = (
    SEQ,
    HEARTBEAT,
    NOTICE,
    PRESENCE,
    DEBUG_RESOURCES,
    HEALTH,
    READY,
    INVALID_PAYLOAD,
    NOT_AUTHORIZED,
    METRICS,
)

# What the bundled reference coordinator implements: every extension of PROTOCOL.md.
REFERENCE_COORDINATOR: dict[str, bool] = dict.fromkeys(ALL, True)


def _seen_error(history: History, code: str) -> bool:
    return any(m.payload.get("code") == code for m in history.received("error"))


def detected(history: History, obs: Observations, name: str) -> bool:
    """True when the run shows the target has it."""
    if name == SEQ:
        return any("seq" in m.payload for m in history.received("push_changes"))
    if name == HEARTBEAT:
        return bool(history.received("heartbeat"))
    if name == NOTICE:
        return bool(history.received("notice"))
    if name == PRESENCE:
        return bool(history.received("presence") or history.received("presence_delta"))
    if name == DEBUG_RESOURCES:
        return any(s.http_status == 200 and isinstance(s.data, dict) for s in obs.resources)
    if name == HEALTH:
        return any(s.http_status == 200 for s in obs.health)
    if name == READY:
        return any(s.http_status in (200, 503) for s in obs.ready)
    if name == INVALID_PAYLOAD:
        return _seen_error(history, "INVALID_PAYLOAD")
    if name == NOT_AUTHORIZED:
        return _seen_error(history, "NOT_AUTHORIZED")
    if name == METRICS:
        return any(isinstance(s.data, dict) and s.data for s in obs.metrics)
    raise KeyError(name)


def has(history: History, obs: Observations, name: str) -> bool:
    """Declared, or else detected."""
    declared = obs.capabilities.get(name)
    if declared is not None:
        return declared
    return detected(history, obs, name)


def missing(history: History, obs: Observations, *names: str) -> list[str]:
    return [n for n in names if not has(history, obs, n)]
