"""One seed drives every draw; named streams are independent of each other."""

from __future__ import annotations

import pytest

from harness.seed import SEED_ENV, Seeds


def test_same_seed_same_draws_and_streams_are_independent() -> None:
    a, b = Seeds(42), Seeds(42)
    faults_a = [a.stream("faults").random() for _ in range(5)]
    b.stream("client:7").random()  # another consumer drawing first changes nothing for "faults"
    faults_b = [b.stream("faults").random() for _ in range(5)]
    assert faults_a == faults_b
    assert a.stream("faults") is a.stream("faults")
    assert Seeds(43).stream("faults").random() != Seeds(42).stream("faults").random()
    assert a.fresh("faults").random() == faults_a[0]
    assert a.names() == ["faults"]


def test_seed_from_env_and_a_bad_value(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SEED_ENV, "0x10")
    assert Seeds.from_env().seed == 16
    assert "SYNC_HARNESS_SEED=16" in Seeds.from_env().describe()
    monkeypatch.setenv(SEED_ENV, "abc")
    with pytest.raises(ValueError, match="not an integer"):
        Seeds.from_env()
    monkeypatch.delenv(SEED_ENV)
    assert Seeds.from_env(5).seed == 5
