"""Command targets: a server the harness did not write, started from a command line, gets the
same supervision and process faults as the bundled coordinator (real processes, Toxiproxy in
front, no mocks). The server here is Python's own `http.server`, serving its data dir."""

from __future__ import annotations

import sys
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from harness.env import resources
from harness.env.command_target import CommandSpec, CommandTarget, CommandTargetError
from harness.env.coordinator_process import S3Settings
from harness.env.environment import COMMAND, Environment, EnvironmentConfig, EnvironmentSetupError
from harness.faults.registry import create_fault
from harness.seed import Seeds

pytestmark = pytest.mark.usefixtures("harness_no_leftovers")

HTTP_SERVER = (sys.executable, "-m", "http.server", "{port}", "--bind", "{host}", "--directory", "{data_dir}")


def http_server(**overrides: object) -> CommandSpec:
    fields: dict[str, object] = {"argv": HTTP_SERVER, "ready": ("http", "/"), "base_path": ""}
    fields.update(overrides)
    return CommandSpec(**fields)  # type: ignore[arg-type]


def environment(spec: CommandSpec, with_s3: bool = False) -> Environment:
    return Environment(EnvironmentConfig(target=COMMAND, command=spec, with_s3=with_s3), seeds=Seeds(3))


async def fetch(url: str) -> httpx.Response | None:
    try:
        async with httpx.AsyncClient(timeout=2.0, trust_env=False) as http:
            return await http.get(url)
    except httpx.HTTPError:
        return None


def processes_with(marker: str) -> list[int]:
    """Live processes whose command line carries `marker` (a check independent of the registry)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().decode(errors="replace")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if marker in cmdline and state != "Z":
            found.append(int(entry.name))
    return found


def harness_temp_dirs(root: Path) -> set[Path]:
    return set(root.glob(f"{resources.TEMP_PREFIX}*"))


def _recording(make: Callable[[str], Path], made: list[Path]) -> Callable[[str], Path]:
    def wrapper(purpose: str) -> Path:
        made.append(make(purpose))
        return made[-1]

    return wrapper


def test_placeholders_are_filled_in_the_command_and_its_environment(tmp_path: Path) -> None:
    spec = CommandSpec(
        argv=(
            "server",
            "--listen",
            "{host}:{port}",
            "--data",
            "{data_dir}",
            "--bucket={s3_bucket}",
            "{other}",
        ),
        env={"SERVER_STORE": "{s3_endpoint}/{s3_bucket}", "PLAIN": "x"},
        s3_env={"AWS_ENDPOINT_URL": "{s3_endpoint}", "AWS_REGION": "{s3_region}"},
        port=4321,
    )
    s3 = S3Settings(bucket="b1", endpoint="http://127.0.0.1:9999", region="eu-west-1")
    target = CommandTarget(spec, tmp_path / "run", tmp_path / "data", s3=s3)
    assert target.argv() == [
        "server",
        "--listen",
        "127.0.0.1:4321",
        "--data",
        str(tmp_path / "data"),
        "--bucket=b1",
        "{other}",  # not a placeholder of ours: left as written (the loader refuses it)
    ]
    env = target.environment()
    assert env["SERVER_STORE"] == "http://127.0.0.1:9999/b1" and env["PLAIN"] == "x"
    assert env["AWS_ENDPOINT_URL"] == "http://127.0.0.1:9999" and env["AWS_REGION"] == "eu-west-1"
    assert spec.needs_s3 and spec.takes_s3
    without_s3 = CommandTarget(spec, tmp_path / "run", tmp_path / "data")
    assert "AWS_ENDPOINT_URL" not in without_s3.environment()  # s3_env only when S3 runs
    with pytest.raises(CommandTargetError, match=r"no value for \{s3_bucket\}"):
        without_s3.argv()
    assert not CommandSpec(argv=("server", "{port}")).takes_s3
    optional = CommandSpec(argv=("server", "{port}"), s3_env={"STORE": "{s3_endpoint}"})
    assert optional.takes_s3 and not optional.needs_s3


async def test_a_command_target_serves_through_the_proxy_and_survives_kill_and_restart() -> None:
    async with environment(http_server()) as env:
        target = env.coordinator
        assert isinstance(target, CommandTarget) and env.data_dir is not None
        (env.data_dir / "marker.txt").write_text("same data dir")
        port, first_pid = target.port, target.process.pid
        proxied = f"{env.client_urls().http}/marker.txt"
        assert env.client_urls().http != env.direct_url  # clients go through Toxiproxy
        response = await fetch(proxied)
        assert response is not None and response.text == "same data dir"

        kill = create_fault({"kind": "kill"}, env)
        await kill.apply()
        assert not target.process.running and target.process.returncode == -9
        assert await fetch(f"{env.direct_url}/marker.txt") is None
        await kill.clear()  # starts it again: same port, same data dir
        assert target.process.running and target.port == port and target.process.pid != first_pid
        response = await fetch(proxied)
        assert response is not None and response.text == "same data dir"

        restart = create_fault({"kind": "restart"}, env)
        pid = target.process.pid
        await restart.apply()
        assert target.port == port and target.process.pid != pid
        response = await fetch(proxied)
        assert response is not None and response.status_code == 200

        loss = create_fault({"kind": "disk_loss"}, env)
        await loss.apply()
        assert not (env.data_dir / "marker.txt").exists()
        await loss.clear()
        response = await fetch(proxied)
        assert response is not None and response.status_code == 404  # a fresh disk
        kinds = [e.kind for e in target.events]
        assert kinds.count("start") == 4 and "sigkill" in kinds and "restart" in kinds
        assert "start #4" in target.process.stdout_path.read_text()  # output kept, across starts


async def test_pause_and_terminate_reach_the_server_and_it_comes_back_on_its_port() -> None:
    async with environment(http_server()) as env:
        pause = create_fault({"kind": "pause"}, env)
        await pause.apply()
        assert await fetch(f"{env.direct_url}/") is None  # accepted by the kernel, never answered
        await pause.clear()
        response = await fetch(f"{env.direct_url}/")
        assert response is not None and response.status_code == 200
        assert isinstance(env.coordinator, CommandTarget)
        port = env.coordinator.port
        terminate = create_fault({"kind": "terminate"}, env)
        await terminate.apply()  # SIGTERM and wait: http.server dies of the signal
        assert not env.coordinator.process.running and env.coordinator.process.returncode == -15
        await terminate.clear()
        response = await fetch(f"{env.client_urls().http}/")
        assert response is not None and response.status_code == 200 and env.coordinator.port == port


async def test_readiness_failure_names_the_command_and_its_last_output_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # this test's temp dirs only
    marker = f"never-ready-{uuid.uuid4().hex}"
    script = (
        f"import sys, time  # {marker}\n"
        "print('server booting: config ok', flush=True)\n"
        "sys.stderr.write('cannot bind: no such interface\\n'); sys.stderr.flush()\n"
        "time.sleep(60)\n"
    )
    spec = CommandSpec(argv=(sys.executable, "-c", script, "{port}"), ready=("tcp", ""), ready_timeout_s=1.0)
    started: list[Path] = []
    monkeypatch.setattr(resources, "make_temp_dir", _recording(resources.make_temp_dir, started))
    with pytest.raises(CommandTargetError) as caught:
        async with environment(spec):
            pytest.fail("the environment must not come up")
    message = str(caught.value)
    assert f"server command `{sys.executable} -c" in message and marker in message
    assert "did not become ready" in message and "not ready within 1.0s" in message
    assert "cannot bind: no such interface" in message  # stderr tail
    assert "server booting: config ok" in message  # stdout tail
    assert processes_with(marker) == []
    assert len(started) == 2 and harness_temp_dirs(tmp_path) == set()  # run dir and data dir removed
    assert resources.leftovers() == []


async def test_a_server_that_exits_while_starting_fails_at_once_with_its_exit_code() -> None:
    spec = CommandSpec(
        argv=(sys.executable, "-c", "import sys; print('bad flag --frobnicate'); sys.exit(3)"),
        ready_timeout_s=20.0,
    )
    with pytest.raises(CommandTargetError, match=r"exited with code 3(.|\n)*bad flag --frobnicate"):
        async with environment(spec):
            pass


async def test_a_missing_program_is_named() -> None:
    spec = CommandSpec(argv=("./no-such-server-binary", "--port", "{port}"))
    with pytest.raises(CommandTargetError, match=r"no-such-server-binary.*not an executable"):
        async with environment(spec):
            pass


async def test_s3_runs_for_a_command_only_when_asked_and_the_server_gets_the_s3_proxy() -> None:
    spec = http_server(s3_env={"STORE_URL": "{s3_endpoint}/{s3_bucket}"})
    async with environment(spec, with_s3=True) as env:
        assert isinstance(env.coordinator, CommandTarget) and env.moto is not None
        store = env.coordinator.process.spec.env or {}
        assert store["STORE_URL"] == f"http://{env.proxies['s3'].listen}/sync-harness"
        assert "s3_outage" not in env.unsupported_faults()
    async with environment(spec, with_s3=False) as env:  # the same command, a run without S3
        assert isinstance(env.coordinator, CommandTarget) and env.moto is None
        assert "STORE_URL" not in (env.coordinator.process.spec.env or {})
        assert "s3_outage" in env.unsupported_faults()


async def test_a_scenario_asking_for_s3_needs_a_command_that_takes_it() -> None:
    with pytest.raises(EnvironmentSetupError, match=r"asks for S3.*\{s3_endpoint\}"):
        async with environment(http_server(), with_s3=True):
            pass


def test_a_command_target_is_described_by_its_profile_file_not_by_coordinator_options() -> None:
    from harness.scenario.loader import load_scenario
    from harness.scenario.runner import RunOptions, check_bounds, target_kind, target_profile

    scenario = load_scenario(Path("scenarios/smoke.yaml"))
    options = RunOptions(
        target_command=http_server(), target_profile=Path("scenarios/profiles/reference-command.yaml")
    )
    notes: list[str] = []
    profile = target_profile(scenario, options, notes)
    assert target_kind(scenario, options) == COMMAND and notes == []
    assert profile.source.endswith("reference-command.yaml")
    assert (
        profile.admin_token_env == "COORDINATOR_ADMIN_TOKEN"
        and profile.granted("intruder-token", "db") is False
    )
    assert check_bounds(scenario, profile)["heartbeat-continuity"]["interval_s"] == 0.5
    bare = target_profile(scenario, RunOptions(target_command=http_server()), notes)
    assert bare.heartbeat_interval_ms is None and any("no target profile" in n for n in notes)


def test_the_cli_names_the_command_that_did_not_start(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from harness.cli import main

    code = main(
        [
            "run",
            "scenarios/smoke.yaml",
            "--target-command",
            f"{sys.executable} -c 'import sys; print(\"no config\"); sys.exit(5)' {{port}}",
            "--report-dir",
            str(tmp_path / "reports"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 3 and "internal error" not in err
    assert "server command" in err and "exited with code 5" in err and "no config" in err
    assert main(["run", "scenarios/smoke.yaml", "--target-command", "srv {nope}"]) == 2
    assert "unknown placeholder {nope}" in capsys.readouterr().err


async def test_the_scenarios_server_options_are_written_to_the_options_file() -> None:
    argv = (sys.executable, "-m", "http.server", "{port}", "--bind", "{host}", "--directory", "{run_dir}")
    spec = http_server(argv=argv)
    options = {"max_open_stores": 2, "tokens": ["t1:ns.db"]}
    config = EnvironmentConfig(target=COMMAND, command=spec, with_s3=False, command_options=options)
    async with Environment(config, seeds=Seeds(3)) as env:
        response = await fetch(f"{env.client_urls().http}/server-options.json")
        assert response is not None and response.json() == options


def test_a_bundled_scenario_run_as_a_command_passes_its_options_namespaced_or_says_it_cannot() -> None:
    from harness.scenario.loader import load_scenario
    from harness.scenario.runner import RunOptions, _environment_config
    from harness.targets.namespace import Namespace
    from harness.targets.profile import TargetProfile

    scenario = load_scenario(Path("scenarios/bad-input-and-tenants.yaml"))
    namespace = Namespace(scenario.name, scenario.seed, "abc123")
    reads = CommandSpec(argv=("srv", "--config", "{options_file}", "--port", "{port}"))
    notes: list[str] = []
    config = _environment_config(
        scenario, RunOptions(target_command=reads), namespace, TargetProfile(), notes
    )
    assert config.target == COMMAND and config.command == reads and notes == []
    assert config.command_options["tokens"] == [
        f"writer-token:{namespace.prefix}.db",
        f"intruder-token:{namespace.prefix}.other",
    ]
    assert config.command_options["heartbeat_interval_ms"] == 500
    ignores = CommandSpec(argv=("srv", "--port", "{port}"))
    _environment_config(
        scenario, RunOptions(target_command=ignores, bugs=["x"]), namespace, TargetProfile(), notes
    )
    assert any("not applied" in n and "tokens" in n for n in notes) and any("--bug" in n for n in notes)


async def test_a_port_taken_between_the_pick_and_the_start_is_replaced(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import socket

    from harness.env import command_target, ports

    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        picks = iter([taken])
        monkeypatch.setattr(command_target, "free_port", lambda: next(picks, None) or ports.free_port())
        async with environment(http_server()) as env:
            assert isinstance(env.coordinator, CommandTarget) and env.coordinator.port != taken
            response = await fetch(f"{env.client_urls().http}/")
            assert response is not None and response.status_code == 200
