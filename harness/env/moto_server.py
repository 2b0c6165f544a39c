"""moto's S3 server as a supervised child on 127.0.0.1, on a port of its own choosing.

`python -m moto.server -p 0` binds an ephemeral port itself and logs "Running on http://...:N";
readiness waits for that line, then for an HTTP answer, so there is no port race. Buckets are
created with a plain HTTP PUT (moto does not check signatures), keeping boto3 off the loop.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import httpx

from harness.env import resources
from harness.env.ports import LOCALHOST
from harness.env.process import Lifecycle, ManagedProcess, ProcessSpec
from harness.env.readiness import HttpOk, LogLine, wait_until

RUNNING_LINE = r"Running on http://127\.0\.0\.1:(\d+)"
MOTO_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


class MotoError(RuntimeError):
    """moto's server failed to start or to do what was asked."""


class MotoServer(Lifecycle):
    """`async with MotoServer(run_dir) as moto: moto.url`."""

    def __init__(self, run_dir: Path, ready_timeout_s: float = 30.0) -> None:
        self.run_dir = run_dir
        self.port = 0
        self.process = ManagedProcess(
            ProcessSpec(
                name="moto",
                argv=[sys.executable, "-m", "moto.server", "-H", LOCALHOST, "-p", "0"],
                run_dir=run_dir,
                readiness=LogLine(run_dir / "moto.stderr.log", RUNNING_LINE),
                ready_timeout_s=ready_timeout_s,
                stop_timeout_s=5.0,
                extra_env=dict(MOTO_ENV),
            )
        )

    @property
    def url(self) -> str:
        return f"http://{LOCALHOST}:{self.port}"

    async def start(self) -> None:
        match = await self.process.start()
        if not isinstance(match, re.Match):
            raise MotoError("moto started without printing its address")
        self.port = int(match.group(1))
        resources.register_port(self.port, "moto S3 server")

        async def died() -> str | None:
            return None if self.process.running else f"moto exited with {self.process.returncode}"

        await wait_until(HttpOk(f"{self.url}/"), 15.0, died)  # ListBuckets answers

    async def stop(self) -> None:
        await self.process.stop()

    async def create_bucket(self, bucket: str) -> None:
        async with httpx.AsyncClient(timeout=10.0, trust_env=False) as client:
            response = await client.put(f"{self.url}/{bucket}")
        if response.status_code not in (200, 409):
            raise MotoError(
                f"CreateBucket {bucket!r} on moto answered {response.status_code}: {response.text}"
            )
