"""Walk every bug swap in the coordinator's source: each catalogued bug is switched at exactly
one site, replaces one attribute with a variant named after it whose docstring says `BUG <id>`,
and bugs that replace the same attribute of the same class cannot be on together (one would
silently win). A variant that reported itself would be a detection the harness did not earn:
the variants must not touch metrics or logs their correct twins do not."""

from __future__ import annotations

import ast
import itertools
import re
from pathlib import Path

import pytest

from coordinator.ops.bugs import CATALOGUE, SAME_SWAP, Bugs, ConflictingBugs

ROOT = Path(__file__).resolve().parents[2] / "coordinator"


def _swaps() -> list[tuple[str, str, str, str]]:
    """(bug id, file, class, attribute) for every `if bugs.on("id"): self.attr = self._variant`."""
    found = []
    for path in sorted(ROOT.rglob("*.py")):
        tree = ast.parse(path.read_text())
        for cls in [n for n in ast.walk(tree) if isinstance(n, ast.ClassDef)]:
            for node in ast.walk(cls):
                if not isinstance(node, ast.If):
                    continue
                calls = [
                    c
                    for c in ast.walk(node.test)
                    if isinstance(c, ast.Call)
                    and isinstance(c.func, ast.Attribute)
                    and c.func.attr == "on"
                    and c.args
                    and isinstance(c.args[0], ast.Constant)
                ]
                if not calls:
                    continue
                arg = calls[0].args[0]
                assert isinstance(arg, ast.Constant)
                for stmt in node.body:
                    targets = stmt.targets if isinstance(stmt, ast.Assign) else []
                    for target in targets:
                        name = target.attr if isinstance(target, ast.Attribute) else ast.unparse(target)
                        found.append((str(arg.value), str(path.relative_to(ROOT)), cls.name, name))
    return found


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
    sites = {bug for bug, *_ in _swaps()}
    assert sites == set(CATALOGUE)


def test_every_variant_is_named_after_its_bug_and_says_so() -> None:
    variants = _variants()
    for bug in CATALOGUE:
        suffix = "_with_" + bug.replace("-", "_")
        mine = {name: v for name, v in variants.items() if name.endswith(suffix)}
        if not mine:
            continue  # a swap of data (a bound, a table entry), not of a method
        for name, (doc, _) in mine.items():
            assert doc.startswith(f"BUG {bug}"), f"{name}: its docstring must start with 'BUG {bug}'"


def test_bugs_that_replace_the_same_attribute_cannot_be_on_together() -> None:
    by_attribute: dict[tuple[str, str, str], set[str]] = {}
    for bug, file, cls, attribute in _swaps():
        if attribute.startswith("_queue_limits") or attribute.startswith("self._handlers"):
            continue
        by_attribute.setdefault((file, cls, attribute), set()).add(bug)
    shared = {frozenset(b) for b in by_attribute.values() if len(b) > 1}
    assert shared == set(SAME_SWAP)
    for pair in shared:
        with pytest.raises(ConflictingBugs):
            Bugs(sorted(pair))
    for a, b in itertools.combinations(sorted(CATALOGUE), 2):
        if frozenset({a, b}) not in shared:
            Bugs([a, b])


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
