from __future__ import annotations

from pathlib import Path

import pytest

from harness.checks import CHECKS, Observations, load_all, run_check
from harness.history import History

DOCS = Path(__file__).resolve().parents[3] / "docs" / "checks.md"


def test_every_check_is_registered_with_a_description_and_documented_bounds() -> None:
    specs = load_all()
    assert len(specs) >= 20
    text = DOCS.read_text()
    for name, spec in specs.items():
        assert spec.description and spec.family
        assert f"`{name}`" in text, f"docs/checks.md lacks {name}"
        for param in spec.params:
            assert f"`{param}`" in text, f"docs/checks.md lacks {name}.{param}"


def test_unknown_parameter_is_refused_with_the_known_ones() -> None:
    with pytest.raises(ValueError, match="delivery_bound_s"):
        run_check("broadcast-delivery", History(), Observations(), {"bound": 3})


def test_unknown_check_is_refused() -> None:
    with pytest.raises(KeyError):
        run_check("no-such-check", History(), Observations())


def test_every_check_on_an_empty_run_says_unknown() -> None:
    for name in load_all():
        result = run_check(name, History(), Observations())
        assert result.status == "unknown", (name, result.summary)
        assert result.bounds == CHECKS[name].defaults()


def test_observations_serialise_for_the_journal() -> None:
    import json

    from harness.checks.observations import S3Object, Sample

    obs = Observations(s3_owned=True, s3_objects=[S3Object("k", b"\x1f\x8bbinary")])
    obs.add_metrics_text(1.0, '# HELP x\nx_total{a="b"} 3\nbad line\ny 2.5\n')
    obs.status.append(Sample(0.5, {"ok": True}))
    data = json.loads(json.dumps(obs.to_json()))
    assert data["s3_objects"] == [{"key": "k", "size": 8}]
    assert data["metrics"][0]["data"] == {'x_total{a="b"}': 3.0, "y": 2.5}


def test_docs_list_every_checks_excuse_policies() -> None:
    from harness.checks.registry import excuse_table

    docs = DOCS.read_text()
    assert excuse_table() in docs, "docs/checks.md: paste harness.checks.registry.excuse_table()"
