"""Find or build the `toxiproxy-server` binary the harness runs.

Order: $TOXIPROXY_SERVER, `toxiproxy-server` on PATH, the cached build in
~/.cache/sync-chaos-harness/bin, else `go install` of the pinned version into that cache.
When all fail, the error says what was tried and how to get the binary by hand.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

TOXIPROXY_MODULE = "github.com/Shopify/toxiproxy/v2"
TOXIPROXY_VERSION = "v2.5.0"
CACHE_DIR = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "sync-chaos-harness" / "bin"
CACHED_BINARY = CACHE_DIR / f"toxiproxy-server-{TOXIPROXY_VERSION}"


class ToxiproxyUnavailable(RuntimeError):
    """No toxiproxy-server could be found or built; the message says what was tried."""


def find_toxiproxy_server() -> Path | None:
    """Return an existing binary without building anything."""
    explicit = os.environ.get("TOXIPROXY_SERVER")
    if explicit:
        path = Path(explicit)
        if path.is_file() and os.access(path, os.X_OK):
            return path
        raise ToxiproxyUnavailable(f"TOXIPROXY_SERVER={explicit} is not an executable file")
    on_path = shutil.which("toxiproxy-server")
    if on_path:
        return Path(on_path)
    if CACHED_BINARY.is_file() and os.access(CACHED_BINARY, os.X_OK):
        return CACHED_BINARY
    return None


def build_toxiproxy_server(timeout_s: float = 600.0, attempts: int = 3) -> Path:
    """Build the pinned version with `go install` into the cache directory."""
    go = shutil.which("go")
    if go is None:
        raise ToxiproxyUnavailable(_how_to_get("Go is not on PATH, so it cannot be built"))
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="toxiproxy-build-") as gobin:
        env = dict(os.environ, GOBIN=gobin, GOFLAGS="-mod=mod")
        cmd = [go, "install", f"{TOXIPROXY_MODULE}/cmd/server@{TOXIPROXY_VERSION}"]
        for attempt in range(1, attempts + 1):  # a module-proxy hiccup on a fresh machine is common
            try:
                proc = subprocess.run(
                    cmd, env=env, cwd=gobin, capture_output=True, text=True, timeout=timeout_s, check=False
                )
            except subprocess.TimeoutExpired as exc:
                raise ToxiproxyUnavailable(_how_to_get(f"`{' '.join(cmd)}` timed out")) from exc
            if proc.returncode == 0:
                break
            print(f"`{' '.join(cmd)}` failed (attempt {attempt} of {attempts})", file=sys.stderr)
        if proc.returncode != 0:
            raise ToxiproxyUnavailable(_how_to_get(f"`{' '.join(cmd)}` failed: {proc.stderr.strip()[-800:]}"))
        built = Path(gobin) / "server"
        tmp_target = CACHED_BINARY.with_suffix(".tmp")
        shutil.copy2(built, tmp_target)
        tmp_target.replace(CACHED_BINARY)
    return CACHED_BINARY


def ensure_toxiproxy_server() -> Path:
    """Find the binary, building the pinned version when none is found."""
    return find_toxiproxy_server() or build_toxiproxy_server()


def _how_to_get(reason: str) -> str:
    return (
        f"toxiproxy-server not found: {reason}. Tried $TOXIPROXY_SERVER, `toxiproxy-server` on PATH, "
        f"{CACHED_BINARY}. Get it with `go install {TOXIPROXY_MODULE}/cmd/server@{TOXIPROXY_VERSION}` "
        "(then put it on PATH as toxiproxy-server, or set TOXIPROXY_SERVER), a release binary from "
        "the Shopify/toxiproxy releases, or the ghcr.io/shopify/toxiproxy Docker image."
    )


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    try:
        if args[:1] == ["ensure"]:
            path = ensure_toxiproxy_server()
        else:
            found = find_toxiproxy_server()
            if found is None:
                print("toxiproxy-server: not found (run with `ensure` to build it)", file=sys.stderr)
                return 1
            path = found
    except ToxiproxyUnavailable as exc:
        print(str(exc), file=sys.stderr)
        return 1
    print(f"toxiproxy-server: {path} (pinned {TOXIPROXY_VERSION})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
