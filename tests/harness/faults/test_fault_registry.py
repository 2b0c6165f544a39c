"""The registry validates scenario entries with clear errors and lists every kind."""

from __future__ import annotations

import pytest

from harness.faults.base import Fault, FaultSpecError
from harness.faults.registry import (
    FAULT_KINDS,
    FaultSpec,
    fault_catalog,
    format_fault_catalog,
    validate_fault_spec,
)
from harness.history import FAULT_FAMILIES, observable_effect

EVERY_KIND = {
    "latency", "jitter", "bandwidth", "slow_close", "timeout", "reset_peer", "slicer", "limit_data",
    "proxy_down", "s3_outage", "s3_error", "s3_slowdown", "s3_latency", "s3_drop",
    "kill", "pause", "terminate", "restart", "disk_loss", "network_disconnect", "failpoint",
}  # fmt: skip


def test_every_kind_is_registered_with_described_parameters() -> None:
    assert set(FAULT_KINDS) == EVERY_KIND
    for entry in fault_catalog():
        assert entry["summary"] and entry["family"] in {"network", "s3", "process", "failpoint"}
        assert all(p["description"] for p in entry["params"])
    text = format_fault_catalog()
    assert "latency_ms (integer; 0 <= latency_ms; required)" in text
    assert all(f"{kind} [" in text for kind in EVERY_KIND)


def test_a_valid_entry_gets_its_defaults() -> None:
    spec = validate_fault_spec(
        {"kind": "latency", "target": "client", "latency_ms": 200, "direction": "downstream", "at": 3},
        ignore={"at"},
    )
    assert spec == FaultSpec(
        "latency", "client", {"latency_ms": 200, "jitter_ms": 0, "direction": "downstream", "toxicity": 1.0}
    )
    assert spec.to_json()["kind"] == "latency"
    assert validate_fault_spec({"kind": "s3_error", "rate": 1}).params["rate"] == 1.0
    assert validate_fault_spec({"kind": "s3_error", "operations": "PutObject"}).params["operations"] == [
        "PutObject"
    ]


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"kind": "latncy"}, "unknown fault kind 'latncy' (did you mean 'latency'?)"),
        ({"target": "client"}, "a fault needs a 'kind'"),
        ({"kind": "latency"}, "missing required parameter 'latency_ms'"),
        ({"kind": "latency", "latency_ms": 5, "latency": 5}, "unknown parameter 'latency' (did you mean"),
        ({"kind": "latency", "latency_ms": "200"}, "latency_ms must be a integer, got str '200'"),
        ({"kind": "latency", "latency_ms": True}, "latency_ms must be a integer"),
        ({"kind": "latency", "latency_ms": -1}, "latency_ms must be >= 0"),
        ({"kind": "latency", "latency_ms": 1, "direction": "sideways"}, "'sideways' is not one of"),
        ({"kind": "latency", "latency_ms": 1, "target": "database"}, "target 'database' is not valid"),
        ({"kind": "latency", "latency_ms": 1, "toxicity": 1.5}, "toxicity must be <= 1"),
        ({"kind": "slicer", "average_size": 10, "size_variation": 10}, "must be smaller than average_size"),
        ({"kind": "s3_outage", "mode": "refuse", "key_pattern": "a/*"}, "mode refuse affects every request"),
        ({"kind": "kill", "target": "moto"}, "'moto' is not one of coordinator"),
        ({"kind": "failpoint"}, "missing required parameter 'target'"),
    ],
)
def test_mistakes_get_clear_errors(entry: dict[str, object], message: str) -> None:
    with pytest.raises(FaultSpecError) as err:
        validate_fault_spec(entry)
    assert any(message in e for e in err.value.errors), err.value.errors


def test_all_problems_are_reported_at_once() -> None:
    with pytest.raises(FaultSpecError) as err:
        validate_fault_spec({"kind": "latency", "latency_ms": -5, "direction": "x", "bogus": 1})
    assert len(err.value.errors) == 3


def test_docs_list_every_fault_and_parameter() -> None:
    from pathlib import Path

    docs = (Path(__file__).resolve().parents[3] / "docs" / "faults.md").read_text()
    for entry in fault_catalog():
        assert f"### `{entry['kind']}`" in docs, entry["kind"]
        section = docs.split(f"### `{entry['kind']}`", 1)[1].split("###", 1)[0]
        for param in entry["params"]:
            assert f"| `{param['name']}` |" in section, (entry["kind"], param["name"])


EXAMPLES: dict[str, dict[str, object]] = {
    "failpoint": {"target": "storage.write"},
}


def test_the_historys_family_table_and_effect_rule_agree_with_the_fault_classes() -> None:
    """Windows of old journals get their family and effect from harness/history.py, which may
    not import the faults: the table must say what each class records."""
    assert FAULT_FAMILIES == {kind: cls.family for kind, cls in FAULT_KINDS.items()}
    for kind, cls in FAULT_KINDS.items():
        for extra in ({}, {"mode": "delay"}) if kind == "failpoint" else ({},):
            required = {p.name: 1 for p in cls.params if p.required}
            spec = validate_fault_spec({"kind": kind, **required, **EXAMPLES.get(kind, {}), **extra})
            fault: Fault = cls.__new__(cls)  # the effect depends on the values only
            fault.values = dict(spec.params)
            assert fault.observable == observable_effect(kind, spec.params), (kind, extra)
