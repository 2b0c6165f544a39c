"""YAML loaded into plain Python values, with the file and line of every value kept aside, so
that a mistake found later (in validation) is reported at the line where it was written."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

Path_ = tuple[str | int, ...]


@dataclass
class Located:
    """A document's data and where each part of it came from."""

    data: Any
    lines: dict[Path_, tuple[str, int]] = field(default_factory=dict)

    def where(self, path: Path_) -> tuple[str, int] | None:
        """The location of `path`, or of its nearest ancestor that has one."""
        while True:
            if path in self.lines:
                return self.lines[path]
            if not path:
                return None
            path = path[:-1]


class YamlSyntaxError(Exception):
    def __init__(self, file: str, line: int, message: str) -> None:
        super().__init__(f"{file}:{line}: {message}")
        self.file, self.line, self.message = file, line, message


def load_located(path: Path) -> Located:
    text = path.read_text()
    name = str(path)
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        raise YamlSyntaxError(name, line, f"YAML syntax: {exc.problem or exc}") from None
    located = Located(None)
    if root is None:
        located.data = {}
        located.lines[()] = (name, 1)
        return located
    located.data = _build(root, (), name, located.lines)
    return located


def _build(node: yaml.Node, path: Path_, name: str, lines: dict[Path_, tuple[str, int]]) -> Any:
    lines[path] = (name, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = (
                yaml.SafeLoader(b"").construct_object(key_node)
                if not isinstance(key_node, yaml.ScalarNode)
                else _scalar(key_node)
            )
            if not isinstance(key, str):
                key = str(key)
            if key in out:
                raise YamlSyntaxError(name, key_node.start_mark.line + 1, f"duplicate key {key!r}")
            out[key] = _build(value_node, (*path, key), name, lines)
            lines[(*path, key)] = (name, key_node.start_mark.line + 1)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_build(item, (*path, i), name, lines) for i, item in enumerate(node.value)]
    return _scalar(node)


def _scalar(node: yaml.Node) -> Any:
    loader = yaml.SafeLoader("")
    try:
        return loader.construct_object(node, deep=True)
    finally:
        loader.dispose()
