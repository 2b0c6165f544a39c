"""A broadcast writes straight to a socket only when that keeps the order and the bound: nothing
queued, nothing held by the writer, and a transport that takes the frame at once."""

from __future__ import annotations

from coordinator.service.session import RateLimiter, Session


def _session(taken: list[str], accept: list[bool]) -> Session:
    session = Session("c", "test", max_messages=2, max_bytes=1 << 20, limiter=RateLimiter(1, 1))

    def direct(frame: str) -> bool:
        if accept[0]:
            taken.append(frame)
        return accept[0]

    session.direct = direct
    return session


def test_direct_only_with_nothing_before_it() -> None:
    taken: list[str] = []
    accept = [True]
    s = _session(taken, accept)
    assert s.offer("a") and taken == ["a"] and not s.queue  # written at once
    accept[0] = False  # paused by flow control: queued
    assert s.offer("b") and list(s.queue) == ["b"]
    accept[0] = True
    assert s.offer("c") and list(s.queue) == ["b", "c"] and taken == ["a"]  # behind "b", in order
    assert not s.offer("d")  # the bound still holds: the caller drops the slow session
    s.queue.clear()
    s.writing = True  # the writer holds frames it took from the queue
    assert s.offer("e") and list(s.queue) == ["e"] and taken == ["a"]
    s.queue.clear()
    s.writing = False
    s.close(1000)
    assert s.offer("f") and taken == ["a"]  # nothing goes to a session that is closing
