"""The checks judge a history without the network stack: every `harness.checks` module imports,
and the checks' own tests pass, in a process where the network libraries cannot be imported.

import-linter (`make lint`) enforces the same rule on the import graph; this proves it at run
time, where a lazy import inside a function or an import through a third package would show.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BLOCKED = ("websockets", "aiohttp", "httpx", "boto3", "botocore", "toxiproxy", "moto")

# Runs in the child: a meta_path finder first in line makes every BLOCKED package unimportable.
PRELUDE = textwrap.dedent(
    f"""
    import importlib, pkgutil, sys

    BLOCKED = {BLOCKED!r}

    class Blocker:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ModuleNotFoundError(f"{{name}} is blocked in this test", name=name)
            return None

    sys.meta_path.insert(0, Blocker())
    """
)


def _child(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", PRELUDE + textwrap.dedent(code)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )


def test_the_blocker_really_blocks_the_client() -> None:
    """Without this, the tests below could pass because the blocker does nothing."""
    done = _child(
        """
        try:
            import harness.client
        except ModuleNotFoundError as exc:
            print("blocked:", exc.name)
        else:
            sys.exit("harness.client imported although its network libraries are blocked")
        """
    )
    assert done.returncode == 0, done.stderr + done.stdout
    assert "blocked: websockets" in done.stdout or "blocked: httpx" in done.stdout


def test_every_check_module_imports_without_network_libraries() -> None:
    done = _child(
        """
        import harness.checks
        names = [m.name for m in pkgutil.walk_packages(harness.checks.__path__, "harness.checks.")]
        for name in names:
            importlib.import_module(name)
        from harness.checks.registry import load_all
        assert load_all(), "no check registered"
        banned = ("harness.client", "harness.env", "harness.faults", "harness.scenario")
        leaked = sorted(m for m in sys.modules if m.startswith(banned))
        assert not leaked, leaked
        print(len(names), "modules")
        """
    )
    assert done.returncode == 0, done.stderr + done.stdout
    assert int(done.stdout.split()[0]) >= 20


def test_the_checks_tests_pass_without_network_libraries() -> None:
    """The checks' test modules (and their history builder, tests/harness/checks/script.py)
    need none of the client's code; the pytest plugin (which starts environments) is left out."""
    done = _child(
        """
        import pytest
        code = pytest.main(
            ["-q", "-p", "no:sync_chaos_harness", "-p", "no:cacheprovider", "tests/harness/checks"]
        )
        leaked = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
        assert not leaked, leaked
        sys.exit(int(code))
        """
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert " passed" in done.stdout and "error" not in done.stdout.splitlines()[-1]
