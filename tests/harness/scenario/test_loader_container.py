"""`target: {image: ...}` sections: a valid one loads into a ContainerSpec (the run then aims at
a container target), every mistake is reported at the file and line that wrote it."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.env.container_target import ContainerSpec
from harness.env.environment import CONTAINER
from harness.scenario.loader import ScenarioError, load_scenario
from harness.scenario.runner import RunOptions, target_kind

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


def test_an_image_target_loads_with_its_values_and_defaults(tmp_path: Path) -> None:
    path = _scenario(
        tmp_path,
        "  image: reference\n"
        "  command: serve --host {host} --port {port} --data-dir {data_dir}\n"
        "  env: {COORDINATOR_ADMIN_TOKEN: admin}\n"
        "  s3: true\n"
        "  s3_env: {COORDINATOR_S3_ENDPOINT: '{s3_endpoint}'}\n"
        "  volumes: {'{run_dir}': /extra}\n",
    )
    scenario = load_scenario(path)
    spec = scenario.target.container
    assert spec == ContainerSpec(
        image="reference",
        command=("serve", "--host", "{host}", "--port", "{port}", "--data-dir", "{data_dir}"),
        env={"COORDINATOR_ADMIN_TOKEN": "admin"},
        s3_env={"COORDINATOR_S3_ENDPOINT": "{s3_endpoint}"},
        volumes={"{run_dir}": "/extra"},
        ready=("http", "/sync/ready"),
    )
    assert scenario.target.s3 is True and not scenario.target.bundled
    assert scenario.target.command is None
    assert target_kind(scenario, RunOptions()) == CONTAINER


@pytest.mark.parametrize(
    ("target", "line", "message"),
    [
        ("  image: x\n  cwd: here\n", 4, "target.cwd: a container target has no `cwd`"),
        ("  image: x\n  port: web\n", 4, "target.port: must be the server's port inside the container"),
        ("  image: x\n  command: [serve, '{nope}']\n", 4, "unknown placeholder {nope}"),
        ("  command: [./srv]\n  volumes: {a: /b}\n", 4, "target.volumes: belongs to a container target"),
        ("  image: x\n  volumes: {a: relative}\n", 4, "must map a host path to an absolute container path"),
    ],
)
def test_mistakes_are_reported_at_their_line(tmp_path: Path, target: str, line: int, message: str) -> None:
    path = _scenario(tmp_path, target)
    with pytest.raises(ScenarioError) as caught:
        load_scenario(path)
    assert message in str(caught.value)
    assert f"s.yaml:{line}:" in str(caught.value)


def test_the_container_scenarios_load() -> None:
    paths = sorted(Path("scenarios/containers").glob("*.yaml"))
    assert paths
    for path in paths:
        scenario = load_scenario(path)
        assert scenario.target.container is not None, path
        assert target_kind(scenario, RunOptions()) == CONTAINER
