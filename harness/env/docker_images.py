"""Build, cache and load the images a container target runs, with no registry at all.

No registry is reachable from the machines this runs on, so nothing is pulled: the base image is
a Debian rootfs made by `debootstrap --variant=minbase --include=python3 bookworm` from Debian's
mirror and `docker import`ed (about 3 minutes once); the reference coordinator's image is built
FROM it with dockerfiles/coordinator/Dockerfile, its wheels (pinned by constraints.txt, for the base's
CPython 3.11) downloaded on the host and installed offline, and a copy of coordinator/. Both are
saved as `docker save` tarballs in ~/.cache/sync-chaos-harness/images, so a fresh engine (CI
starts one per run) only needs `docker load`. The coordinator's tag carries a digest of what
went into it, so an edited coordinator is rebuilt rather than served stale.

    python -m harness.env.docker_images ensure   # build or load what is missing; prints the tags
    python -m harness.env.docker_images status   # what is there, what is cached
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

CACHE_DIR = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "sync-chaos-harness" / "images"
REPO_ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO_ROOT / "dockerfiles" / "coordinator" / "Dockerfile"
CONSTRAINTS = REPO_ROOT / "constraints.txt"
COORDINATOR_SOURCES = REPO_ROOT / "coordinator"
BASE_REPOSITORY = "sync-chaos-harness/base"
BASE_TAG = "bookworm-python3"
BASE_IMAGE = f"{BASE_REPOSITORY}:{BASE_TAG}"
COORDINATOR_REPOSITORY = "sync-chaos-harness/coordinator"
REFERENCE = "reference"  # what a scenario or --target-image says for the reference coordinator's image
DEBIAN_MIRROR = os.environ.get("SYNC_HARNESS_DEBIAN_MIRROR", "http://deb.debian.org/debian")
# what the reference coordinator imports at run time (its transports, storage and config)
COORDINATOR_REQUIREMENTS = (
    "websockets",
    "uvicorn",
    "httptools",
    "uvloop",
    "starlette",
    "orjson",
    "PyYAML",
    "boto3",
)
BASE_PYTHON = "311"  # bookworm's python3 is CPython 3.11: the wheels are fetched for it, not for the host
IMAGE_LABEL = "sync-chaos-harness.image"


class ImageError(RuntimeError):
    """An image could not be built or loaded; the message says which step and why."""


def docker_client(timeout_s: float = 10.0) -> Any:
    """A client of the local engine, answering a ping; ImageError says why when there is none."""
    try:
        import docker
    except ImportError as exc:
        raise ImageError(
            "the docker SDK is not installed (pip install 'sync-chaos-harness[docker]')"
        ) from exc
    try:
        client = docker.from_env(timeout=int(timeout_s))
        client.ping()
    except Exception as exc:
        raise ImageError(f"no docker engine is reachable ({type(exc).__name__}: {exc})") from exc
    return client


def coordinator_digest() -> str:
    """A digest of everything the coordinator image is made of (sources, Dockerfile, pins)."""
    digest = hashlib.sha256()
    files = [DOCKERFILE, CONSTRAINTS, *sorted(COORDINATOR_SOURCES.rglob("*.py"))]
    for path in files:
        digest.update(str(path.relative_to(REPO_ROOT)).encode())
        digest.update(path.read_bytes())
    digest.update(" ".join(COORDINATOR_REQUIREMENTS).encode())
    return digest.hexdigest()[:12]


def coordinator_image() -> str:
    """The tag of the reference coordinator's image for the sources of this checkout."""
    return f"{COORDINATOR_REPOSITORY}:{coordinator_digest()}"


def _cache_file(image: str) -> Path:
    return CACHE_DIR / (image.replace("/", "_").replace(":", "__") + ".tar")


def _has_image(client: Any, image: str) -> bool:
    import docker.errors

    try:
        client.images.get(image)
    except docker.errors.ImageNotFound:
        return False
    return True


def _load(client: Any, image: str) -> bool:
    """`docker load` the cached tarball of `image`, if there is one; whether the image is there."""
    path = _cache_file(image)
    if not path.is_file():
        return False
    with path.open("rb") as data:
        client.images.load(data)
    return _has_image(client, image)


def _save(client: Any, image: str) -> None:
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    path = _cache_file(image)
    partial = path.with_suffix(".partial")
    with partial.open("wb") as out:
        for chunk in client.images.get(image).save(named=True):
            out.write(chunk)
    partial.replace(path)  # a crash mid-save never leaves a truncated tarball to load
    if image.startswith(f"{COORDINATOR_REPOSITORY}:"):  # older coordinators are never loaded again
        for stale in CACHE_DIR.glob(_cache_file(COORDINATOR_REPOSITORY).stem + "__*.tar"):
            if stale != path:
                stale.unlink()


def _log(message: str) -> None:
    print(f"docker-images: {message}", file=sys.stderr, flush=True)


def build_base(client: Any) -> None:
    """debootstrap a minimal bookworm with python3 and import it as BASE_IMAGE."""
    debootstrap = shutil.which("debootstrap")
    if debootstrap is None:
        raise ImageError(
            f"{BASE_IMAGE} is neither loaded nor cached and debootstrap is missing "
            "(apt-get install debootstrap; it needs root)"
        )
    if os.geteuid() != 0:
        raise ImageError(f"building {BASE_IMAGE} with debootstrap needs root")
    with tempfile.TemporaryDirectory(prefix="sync-harness-rootfs-") as scratch:
        root = Path(scratch) / "rootfs"
        cmd = [debootstrap, "--variant=minbase", "--include=python3", "bookworm", str(root), DEBIAN_MIRROR]
        _log(f"building {BASE_IMAGE}: {' '.join(cmd)} (a few minutes, once)")
        for attempt in (1, 2, 3):  # a mirror hiccup should not sink a fresh machine
            proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if proc.returncode == 0:
                break
            _log(f"debootstrap failed (attempt {attempt} of 3): {proc.stdout[-400:]}{proc.stderr[-400:]}")
            shutil.rmtree(root, ignore_errors=True)
        else:
            raise ImageError(f"debootstrap of {BASE_IMAGE} failed three times; see the lines above")
        import_rootfs(client, root)


def import_rootfs(client: Any, root: Path) -> None:
    """`docker import` a debootstrapped rootfs (apt's caches dropped) as BASE_IMAGE."""
    for cache in ("var/cache/apt/archives", "var/lib/apt/lists"):
        for entry in (root / cache).glob("*"):
            if entry.is_file():
                entry.unlink()
    with tempfile.TemporaryDirectory(prefix="sync-harness-rootfs-tar-") as scratch:
        tarball = Path(scratch) / "rootfs.tar"
        subprocess.run(["tar", "-C", str(root), "-cf", str(tarball), "."], check=True)
        client.api.import_image_from_file(
            str(tarball), repository=BASE_REPOSITORY, tag=BASE_TAG, changes=[f"LABEL {IMAGE_LABEL}=base"]
        )
    if not _has_image(client, BASE_IMAGE):
        raise ImageError(f"docker import did not produce {BASE_IMAGE}")


def _download_wheels(dest: Path) -> None:
    machine = platform.machine()
    platforms = [f"manylinux_2_{minor}_{machine}" for minor in (36, 34, 31, 28, 17)] + [
        f"manylinux2014_{machine}"
    ]
    cmd = [
        sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
        "--only-binary=:all:", "--implementation", "cp", "--python-version", BASE_PYTHON,
        "--abi", f"cp{BASE_PYTHON}", "--abi", "abi3", "--abi", "none",
        *[arg for p in platforms for arg in ("--platform", p)], "--platform", "any",
        "-c", str(CONSTRAINTS), "-d", str(dest), "pip", *COORDINATOR_REQUIREMENTS,
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise ImageError(f"downloading the coordinator's wheels failed: {proc.stderr[-800:]}")
    (dest / "requirements.txt").write_text("\n".join(COORDINATOR_REQUIREMENTS) + "\n")


def build_coordinator(client: Any, image: str) -> None:
    """docker build dockerfiles/coordinator/Dockerfile in a small context of its own (not the repo)."""
    with tempfile.TemporaryDirectory(prefix="sync-harness-image-") as scratch:
        context = Path(scratch)
        shutil.copy(DOCKERFILE, context / "Dockerfile")
        shutil.copytree(
            COORDINATOR_SOURCES,
            context / "coordinator",
            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
        )
        _download_wheels(context / "wheels")
        _log(f"building {image} from {DOCKERFILE.relative_to(REPO_ROOT)}")
        try:
            client.images.build(
                path=str(context),
                tag=image,
                rm=True,
                forcerm=True,
                pull=False,
                buildargs={"BASE_IMAGE": BASE_IMAGE},
                labels={IMAGE_LABEL: "coordinator"},
            )
        except Exception as exc:
            raise ImageError(f"docker build of {image} failed: {exc}") from exc


def ensure(client: Any | None = None) -> dict[str, str]:
    """Make sure the base and the coordinator image are in the engine: present, else loaded from
    the cache, else built (and then cached). Returns {"base": tag, "coordinator": tag}."""
    client = client or docker_client()
    coordinator = coordinator_image()
    for image, build in ((BASE_IMAGE, build_base), (coordinator, None)):
        started = time.monotonic()
        if _has_image(client, image):
            continue
        if _load(client, image):
            _log(f"loaded {image} from {_cache_file(image)} in {time.monotonic() - started:.1f} s")
            continue
        if build is not None:
            build(client)
        else:
            build_coordinator(client, image)
        _save(client, image)
        _log(f"built and cached {image} in {time.monotonic() - started:.1f} s ({_cache_file(image)})")
    return {"base": BASE_IMAGE, "coordinator": coordinator}


def status(client: Any | None = None) -> dict[str, dict[str, Any]]:
    client = client or docker_client()
    out: dict[str, dict[str, Any]] = {}
    for image in (BASE_IMAGE, coordinator_image()):
        out[image] = {"loaded": _has_image(client, image), "cached": str(_cache_file(image))}
        out[image]["cached_exists"] = _cache_file(image).is_file()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.env.docker_images", description=__doc__)
    parser.add_argument("action", choices=("ensure", "status", "tag"))
    args = parser.parse_args(argv)
    try:
        if args.action == "tag":
            print(coordinator_image())
        elif args.action == "ensure":
            for kind, image in ensure().items():
                print(f"{kind}: {image}")
        else:
            for image, facts in status().items():
                print(
                    f"{image}: loaded={facts['loaded']} cached={facts['cached_exists']} ({facts['cached']})"
                )
    except ImageError as exc:
        print(f"docker-images: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
