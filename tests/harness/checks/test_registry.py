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
