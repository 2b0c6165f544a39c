"""Walk every bug table (`BUG_SWAPS`) of the coordinator: each catalogued bug is declared in
exactly one table, replaces one attribute with a variant named after it whose docstring says
`BUG <id>` and whose signature is its twin's, no table lets two bugs replace one attribute, and
no code switches a bug outside the tables. A variant that reported itself would be a detection
the harness did not earn: the variants must not touch metrics or logs their correct twins do
not."""

from __future__ import annotations

import ast
import importlib
import inspect
import itertools
import pkgutil
import re
from pathlib import Path
from typing import ClassVar

import pytest

import coordinator
from coordinator.ops.bugs import CATALOGUE, Bugs, BugSwaps, ConflictingBugs

ROOT = Path(__file__).resolve().parents[2] / "coordinator"


def _tables() -> dict[type, BugSwaps]:
    """Every class of the coordinator that declares a bug table, with its table."""
    found: dict[type, BugSwaps] = {}
    for module in pkgutil.walk_packages(coordinator.__path__, "coordinator."):
        for _, cls in inspect.getmembers(importlib.import_module(module.name), inspect.isclass):
            if cls.__module__ == module.name and "BUG_SWAPS" in vars(cls):
                found[cls] = vars(cls)["BUG_SWAPS"]
    return found


def _swaps() -> list[tuple[str, type, str, str]]:
    """(bug id, class, attribute, variant) for every entry of every table."""
    return [(bug, cls, attr, variant) for cls, t in _tables().items() for bug, (attr, variant) in t.items()]


def _functions() -> dict[str, list[tuple[str, str]]]:
    """Every function of the coordinator by name: [(its docstring, its source)]."""
    out: dict[str, list[tuple[str, str]]] = {}
    for path in sorted(ROOT.rglob("*.py")):
        text = path.read_text()
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                doc, source = ast.get_docstring(node) or "", ast.get_source_segment(text, node) or ""
                out.setdefault(node.name, []).append((doc, source))
    return out


def _variants() -> dict[str, tuple[str, str]]:
    """Every function named `*_with_<bug>`: (its docstring, its source)."""
    return {name: defs[0] for name, defs in _functions().items() if "_with_" in name}


def _twin_source(twin: str, functions: dict[str, list[tuple[str, str]]], depth: int = 3) -> str:
    """The correct twin's source and that of the methods it calls (`self.x(`), `depth` levels down."""
    seen = {twin}
    frontier = {twin}
    out = ""
    for _ in range(depth + 1):
        text = "".join(source for name in frontier for _, source in functions.get(name, []))
        out += text
        frontier = set(re.findall(r"self\.(\w+)\(", text)) - seen
        seen |= frontier
    return out


def test_every_catalogued_bug_has_exactly_one_swap_site() -> None:
    bugs = [bug for bug, *_ in _swaps()]
    assert sorted(bugs) == sorted(CATALOGUE)


def test_no_bug_is_switched_outside_the_tables() -> None:
    """`bugs.on(...)` is for the helper alone: a swap made elsewhere escapes the conflict check."""
    for path in sorted(ROOT.rglob("*.py")):
        if path.name == "bugs.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "on":
                assert not ast.unparse(node.func.value).endswith("bugs"), f"{path}: {ast.unparse(node)}"


def test_every_variant_is_named_after_its_bug_says_so_and_fits_its_twin() -> None:
    for bug, cls, attribute, variant in _swaps():
        assert variant.endswith("_with_" + bug.replace("-", "_")), f"{cls.__name__}.{variant}"
        twin, impl = inspect.getattr_static(cls, attribute), inspect.getattr_static(cls, variant)
        if isinstance(twin, staticmethod) and isinstance(impl, staticmethod):
            twin, impl = twin.__func__, impl.__func__
        if not callable(twin):  # a swap of data (a bound, a flag): same type
            assert type(twin) is type(impl), f"{cls.__name__}.{variant}"
            continue
        assert (inspect.getdoc(impl) or "").startswith(f"BUG {bug}"), f"{cls.__name__}.{variant}: docstring"
        assert inspect.signature(impl) == inspect.signature(twin), f"{cls.__name__}.{variant}: signature"
        assert inspect.iscoroutinefunction(impl) == inspect.iscoroutinefunction(twin), variant


def test_no_table_lets_two_bugs_replace_one_attribute() -> None:
    for cls, table in _tables().items():
        attributes = [attribute for attribute, _ in table.values()]
        assert len(attributes) == len(set(attributes)), cls.__name__
    for a, b in itertools.combinations(sorted(CATALOGUE), 2):
        Bugs([a, b])  # every pair may be on together


def test_the_helper_refuses_two_bugs_on_one_attribute_naming_both() -> None:
    class Target:
        BUG_SWAPS: ClassVar[BugSwaps] = {
            "broadcast-seq-gap": ("step", "_step_with_broadcast_seq_gap"),
            "unbounded-send-queue": ("step", "_step_with_unbounded_send_queue"),
        }

        def step(self) -> str:
            return "correct"

        def _step_with_broadcast_seq_gap(self) -> str:
            return "gap"

        def _step_with_unbounded_send_queue(self) -> str:
            return "unbounded"

    one = Target()
    Bugs(["broadcast-seq-gap"]).apply(one, Target.BUG_SWAPS)
    assert one.step() == "gap" and Target().step() == "correct"
    with pytest.raises(ConflictingBugs, match="broadcast-seq-gap and unbounded-send-queue"):
        Bugs(["broadcast-seq-gap", "unbounded-send-queue"]).apply(Target(), Target.BUG_SWAPS)


def test_no_variant_reports_itself() -> None:
    """No metric or log call in a variant its twin lacks: a detection must come from behaviour."""
    functions = _functions()
    for name, (_, source) in _variants().items():
        twin = name.split("_with_")[0]
        twin_source = _twin_source(twin, functions)
        for metric in set(re.findall(r"metrics\.(\w+)", source)):
            assert metric in twin_source, f"{name} moves metrics.{metric} and its twin {twin} does not"
        for level in set(re.findall(r"_log\.(\w+)\(", source)):
            assert f"_log.{level}(" in twin_source, f"{name} logs at {level} and its twin {twin} does not"
