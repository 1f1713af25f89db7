"""What the asterisk-docker stack's images are built from, made on this host: no registry.

``asterisk-docker/`` (a compose stack: Asterisk 22, PostgreSQL, the engine) builds every
image ``FROM`` a Debian base named by the ``BASE_IMAGE`` build argument. Asterisk 22 is
only in Debian *sid*, and the machines this project runs on reach Debian's archive but
no image registry, so :func:`build_base_image` makes that base locally: ``mmdebstrap
--variant=minbase`` of sid from the host's own apt mirror (the sandbox's knowledge:
:mod:`engine.devtools.apt_sources`), then ``docker import``. The tarball is cached under a
key derived from its inputs (suite, variant, apt options), so a second run imports or
reuses it instead of building again. A real deployment may set ``BASE_IMAGE`` to an
official Debian sid image instead.

The engine image installs its Python libraries from Debian's ``python3-*`` packages (the
same archive, nothing compiled for another Python) and the engine itself from a wheel
built from this checkout. :func:`build_wheelhouse` puts that wheel, and a pure-Python
wheel of every dependency that has one, into ``asterisk-docker/engine/wheels/``; pip in
the image uses a wheel from there only where Debian's package is too old (today:
phonenumbers).

``python3 -m engine.devtools.docker_stack`` (what ``asterisk-docker/prepare`` runs) does
both and prints the ``BASE_IMAGE`` to put in the stack's env file. Only the standard
library is needed, so the host's own ``python3`` can run it from a checkout.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import hashlib
import json
import os
import sys
import time
import tomllib
from collections.abc import Sequence
from pathlib import Path

from engine.devtools.apt_sources import SID_APT_OPTIONS, apt_mirror
from engine.devtools.docker_daemon import docker_answers, docker_cli
from engine.devtools.host import LOCK_FILE, LOCK_TIMEOUT, locked, require_root, run
from engine.errors import SandboxError

__all__ = [
    "BASE_REPOSITORY",
    "BASE_SUITE",
    "BASE_VARIANT",
    "base_image_key",
    "build_base_image",
    "build_wheelhouse",
    "main",
]

#: Debian suite of the base image: the one that carries Asterisk 22.
BASE_SUITE = "sid"
#: mmdebstrap variant: essential packages and apt, nothing else (~100 MB).
BASE_VARIANT = "minbase"
#: Local image repository of the base; tags are ``sid`` (the latest) and ``sid-<key>``.
BASE_REPOSITORY = "ctc-base"

#: Bound on one mmdebstrap run (measured: 20-80 s, depending on the mirror).
BUILD_TIMEOUT = 900.0
#: Bound on ``docker import`` of the tarball and on one pip command.
IMPORT_TIMEOUT = 300.0

_WHEEL_DEPS_MARKER = ".dependencies.json"
_PURE_WHEEL = (
    "--only-binary=:all:",
    "--implementation", "py",
    "--python-version", "3",
    "--abi", "none",
    "--platform", "any",
    "--ignore-requires-python",
)  # fmt: skip


def base_image_key(suite: str = BASE_SUITE, variant: str = BASE_VARIANT) -> str:
    """Short sha256 of the base image's inputs: its cache key and tag suffix."""
    text = "\n".join([suite, variant, *SID_APT_OPTIONS])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def build_base_image(cache_dir: Path, mirror: str | None = None) -> str:
    """The local base image's tag (``ctc-base:sid-<key>``), imported (and built) if missing.

    ``mirror``: default ``CTC_SANDBOX_MIRROR``, else the host's apt sources. The image is
    also tagged ``ctc-base:sid``, the env file's default ``BASE_IMAGE``.
    """
    key = base_image_key()
    tag = f"{BASE_REPOSITORY}:{BASE_SUITE}-{key}"
    if not _image_exists(tag):
        tarball = _base_tarball(cache_dir, key, mirror)
        run(
            [docker_cli(), "import", "--message", f"mmdebstrap {BASE_VARIANT} {BASE_SUITE}",
             str(tarball), tag],
            timeout=IMPORT_TIMEOUT,
            what="importing the base image",
        )  # fmt: skip
    run(
        [docker_cli(), "tag", tag, f"{BASE_REPOSITORY}:{BASE_SUITE}"],
        timeout=IMPORT_TIMEOUT,
        what="tagging the base image",
    )
    return tag


def _image_exists(tag: str) -> bool:
    try:
        run([docker_cli(), "image", "inspect", tag], timeout=30, what="docker image inspect")
    except SandboxError:
        return False
    return True


def _base_tarball(cache_dir: Path, key: str, mirror: str | None) -> Path:
    """The cached minbase tarball for ``key``, made with mmdebstrap if missing.

    It is written under a temporary name and renamed once mmdebstrap succeeded, so an
    interrupted build is never imported.
    """
    tarball = cache_dir / f"base-{BASE_SUITE}-{key}.tar"
    if tarball.is_file():
        return tarball
    require_root()
    cache_dir.mkdir(parents=True, exist_ok=True)
    with locked(cache_dir / LOCK_FILE, timeout=BUILD_TIMEOUT + LOCK_TIMEOUT):
        if tarball.is_file():
            return tarball  # made by whoever held the lock before us
        for stale in cache_dir.glob(f".base-{key}-*.tar"):
            stale.unlink()
        tmp = cache_dir / f".base-{key}-{os.getpid()}.tar"
        command = [
            "mmdebstrap",
            f"--variant={BASE_VARIANT}",
            *(f"--aptopt={opt}" for opt in SID_APT_OPTIONS),
            BASE_SUITE,
            str(tmp),
            mirror or os.environ.get("CTC_SANDBOX_MIRROR") or apt_mirror(),
        ]
        try:
            run(command, timeout=BUILD_TIMEOUT, what="building the base image's root")
            tmp.rename(tarball)
        finally:
            tmp.unlink(missing_ok=True)
    return tarball


def build_wheelhouse(checkout: Path, dest: Path, python: str = sys.executable) -> list[Path]:
    """Put the engine's wheel (built from ``checkout``) and pure-Python wheels of its
    dependencies into ``dest``; the wheels now there.

    The engine's wheel is rebuilt every time (it is the code under test). The dependency
    wheels are fetched again only when pyproject.toml's dependency list changed; a
    dependency with no pure-Python wheel is left to Debian's package in the image.
    """
    dest.mkdir(parents=True, exist_ok=True)
    for old in dest.glob("ctc_engine-*.whl"):
        old.unlink()
    _pip(python, "wheel", "--no-deps", "--wheel-dir", str(dest), str(checkout))
    dependencies = _dependencies(checkout / "pyproject.toml")
    marker = dest / _WHEEL_DEPS_MARKER
    if not marker.is_file() or json.loads(marker.read_text()) != dependencies:
        with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
            list(pool.map(lambda req: _pure_wheel(python, req, dest), dependencies))
        marker.write_text(json.dumps(dependencies) + "\n")
    return sorted(dest.glob("*.whl"))


def _dependencies(pyproject: Path) -> list[str]:
    try:
        project = tomllib.loads(pyproject.read_text())["project"]
        return sorted(str(req) for req in project["dependencies"])
    except (OSError, KeyError, tomllib.TOMLDecodeError) as exc:
        raise SandboxError(f"{pyproject}: cannot read [project] dependencies: {exc}") from exc


def _pure_wheel(python: str, requirement: str, dest: Path) -> None:
    """Download ``requirement``'s pure-Python wheel into ``dest``; nothing if it has none."""
    try:
        _pip(python, "download", "--no-deps", *_PURE_WHEEL, "--dest", str(dest), requirement)
    except SandboxError as exc:
        if "No matching distribution" not in str(exc):
            raise


def _pip(python: str, *args: str) -> None:
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    run([python, "-m", "pip", "-q", *args], timeout=IMPORT_TIMEOUT, what=f"pip {args[0]}", env=env)


def main(argv: Sequence[str] | None = None) -> int:
    """``asterisk-docker/prepare``: the base image and the engine's wheels, then the
    ``BASE_IMAGE`` line for the env file."""
    parser = argparse.ArgumentParser(
        prog="asterisk-docker/prepare",
        description="Make what the asterisk-docker images are built from, on this host.",
    )
    parser.add_argument(
        "--cache-dir", type=Path, default=Path("/var/cache/ctc/docker"), help="tarball cache"
    )
    parser.add_argument("--mirror", default=None, help="Debian mirror (default: apt sources)")
    parser.add_argument(
        "--no-base", action="store_true", help="only the wheels (BASE_IMAGE is an official image)"
    )
    args = parser.parse_args(argv)
    checkout = Path(__file__).resolve().parents[2]
    started = time.monotonic()
    try:
        wheels = build_wheelhouse(checkout, checkout / "asterisk-docker/engine/wheels")
        print(f"wheels: {', '.join(w.name for w in wheels)}", file=sys.stderr)
        if not args.no_base:
            if not docker_answers():
                raise SandboxError("Docker does not answer: start dockerd first")
            tag = build_base_image(args.cache_dir, args.mirror)
            print(f"BASE_IMAGE={tag}")
    except SandboxError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"ready in {time.monotonic() - started:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
