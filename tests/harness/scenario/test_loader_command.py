"""`target: {command: ...}` sections: a valid one loads into a CommandSpec, every mistake is
reported at the file and line that wrote it (also through `extends`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.scenario.loader import ScenarioError, load_scenario

REST = """\
clients:
  - name: w
    behaviour: writer
    params: {count: 5}
checks: [convergence]
"""


def _scenario(tmp_path: Path, target: str) -> Path:
    path = tmp_path / "s.yaml"
    path.write_text("duration_s: 5\ntarget:\n" + target + REST)
    return path


def test_a_command_target_loads_with_its_defaults_and_its_values(tmp_path: Path) -> None:
    (tmp_path / "srv").mkdir()
    path = _scenario(
        tmp_path,
        "  command: [./server, --port, '{port}', --data, '{data_dir}', --store, '{s3_endpoint}']\n"
        "  env: {SERVER_BUCKET: '{s3_bucket}', WORKERS: 2}\n"
        "  cwd: srv\n"
        "  ready: {http: /sync/health}\n"
        "  port: auto\n"
        "  s3: true\n"
        "  s3_env: {AWS_ENDPOINT_URL: '{s3_endpoint}'}\n",
    )
    target = load_scenario(path).target
    spec = target.command
    assert spec is not None and not target.bundled and target.s3
    assert spec.argv == ("./server", "--port", "{port}", "--data", "{data_dir}", "--store", "{s3_endpoint}")
    assert spec.env == {"SERVER_BUCKET": "{s3_bucket}", "WORKERS": "2"}
    assert spec.cwd == str(tmp_path / "srv") and spec.ready == ("http", "/sync/health")
    assert spec.port is None and spec.base_path == "/sync" and spec.needs_s3
    one_string = load_scenario(
        _scenario(tmp_path, "  command: \"my-server --port '{port}'\"\n  port: 8123\n")
    )
    assert one_string.target.command is not None
    assert one_string.target.command.argv == ("my-server", "--port", "{port}")
    assert one_string.target.command.port == 8123 and one_string.target.command.ready == ("tcp", "")


@pytest.mark.parametrize(
    ("target", "line", "message"),
    [
        (
            "  command: [srv, '{prot}']\n",
            3,
            r"target\.command\.1: unknown placeholder \{prot\}; known: \{port\}",
        ),
        ("  command: []\n", 3, "target.command: must be a non-empty list"),
        ("  command: [srv, {a: 1}]\n", 3, "target.command.1: must be a string"),
        (
            "  command: [srv]\n  ready: {http: health}\n",
            4,
            "target.ready.http: must be a path starting with '/'",
        ),
        ("  command: [srv]\n  ready: {grpc: true}\n", 4, r"target\.ready: must be \{http: PATH\}"),
        ("  command: [srv]\n  port: 70000\n", 4, "target.port: must be `auto` or a port number"),
        ("  command: [srv]\n  env: {A: '{oops}'}\n", 4, r"target\.env\.A: unknown placeholder \{oops\}"),
        ("  command: [srv]\n  env: [A]\n", 4, "target.env: must be a mapping"),
        ("  command: [srv]\n  cwd: nowhere\n", 4, "target.cwd: no such directory"),
        (
            "  ready: {tcp: true}\n",
            3,
            r"target\.ready: belongs to a command target: add `command: \[\.\.\.\]`",
        ),
        (
            "  url: http://127.0.0.1:1/sync\n  command: [srv]\n",
            3,
            "target.url: a command target has no `url`",
        ),
        ("  command: [srv]\n  comand_env: {}\n", 4, "target.comand_env: unknown key"),
    ],
)
def test_bad_command_sections_are_located(tmp_path: Path, target: str, line: int, message: str) -> None:
    path = _scenario(tmp_path, target)
    with pytest.raises(ScenarioError, match=message) as caught:
        load_scenario(path)
    assert (caught.value.file, caught.value.line) == (str(path), line)


def test_a_bad_command_in_a_base_file_is_reported_there(tmp_path: Path) -> None:
    base = tmp_path / "base.yaml"
    base.write_text("target:\n  command: [srv, --port, '{port}']\n  s3_env: {X: '{bucket}'}\n")
    child = tmp_path / "child.yaml"
    child.write_text("extends: base.yaml\nduration_s: 5\n" + REST)
    with pytest.raises(ScenarioError, match=r"target\.s3_env\.X: unknown placeholder \{bucket\}") as caught:
        load_scenario(child)
    assert (caught.value.file, caught.value.line) == (str(base), 3)
