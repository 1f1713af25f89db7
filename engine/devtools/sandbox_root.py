"""The sandbox's Debian root: built once with ``mmdebstrap``, cached by its package list.

Bookworm has no Asterisk package and the development machines run no Docker engine, so the
sandbox runs Asterisk 22 from a small Debian *sid* root. Building it takes a while (~25 s
on a near mirror), so a root is kept under the cache directory in a folder named by a key
derived from the suite, variant and package list: change the list and a new root is built
beside the old one. A build goes into a temporary folder renamed into place only once
``mmdebstrap`` succeeded, so an interrupted build is never reused. At every ``up`` the
root gets its run directories, ``/etc/hosts`` and the engine's ``dialplan/*.conf`` as its
``/etc/asterisk``. The configuration binds ARI, AMI and SIP to 127.0.0.1; a sandbox
instance on another loopback address (two PBX nodes on one machine, each on its standard
ports) gets the same files with those binds, and the phones' RTP, moved to its address.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import socket
import time
from collections.abc import Sequence
from pathlib import Path

from engine.devtools.apt_sources import SID_APT_OPTIONS, apt_mirror
from engine.devtools.host import LOCK_FILE, LOCK_TIMEOUT, locked, remove_tree, require_root, run
from engine.errors import SandboxError

__all__ = [
    "BUILD_TIMEOUT",
    "DEFAULT_ADDRESS",
    "HOST_PACKAGES",
    "INSTALL_TIMEOUT",
    "ROOT_PACKAGES",
    "SUITE",
    "build_root",
    "ensure_host_tools",
    "install_configuration",
    "rebind",
    "root_key",
]

#: Debian packages installed into the sandbox root (the cache key is derived from these).
ROOT_PACKAGES: tuple[str, ...] = (
    "asterisk",
    "asterisk-modules",
    "asterisk-core-sounds-en-gsm",
    "asterisk-moh-opsound-gsm",
)
#: Debian suite the root is built from: the one that carries Asterisk 22.
SUITE = "sid"
#: Host tools the sandbox needs, as ``{executable: Debian package}``.
HOST_PACKAGES: dict[str, str] = {"mmdebstrap": "mmdebstrap", "sipp": "sip-tester"}

#: Bound on ``apt-get`` installing the host tools.
INSTALL_TIMEOUT = 600.0
#: Bound on one ``mmdebstrap`` run.
BUILD_TIMEOUT = 900.0

#: The address ``dialplan/*.conf`` binds ARI, AMI and SIP to: the default sandbox's.
DEFAULT_ADDRESS = "127.0.0.1"

#: What moves to another address, per file: (a line that must be there, its replacement).
#: ``{address}`` is the instance's address. The phone template's RTP follows the address
#: too, so two instances never answer on each other's media ports.
_REBIND: dict[str, tuple[tuple[str, str], ...]] = {
    "http.conf": ((r"^bindaddr\s*=\s*127\.0\.0\.1\b", "bindaddr = {address}"),),
    "manager.conf": ((r"^bindaddr\s*=\s*127\.0\.0\.1\b", "bindaddr = {address}"),),
    "pjsip.conf": (
        (r"^bind\s*=\s*127\.0\.0\.1:5060\b", "bind = {address}:5060"),
        (
            r"^\[ctc-phone\]\(!\)",
            "[ctc-phone](!)\nmedia_address = {address}\nbind_rtp_to_media_address = yes",
        ),
    ),
}

_VARIANT = "apt"
_KEY_MARKER = ".ctc-sandbox.json"


def root_key(suite: str, packages: Sequence[str]) -> str:
    """Short sha256 of the suite, variant and package list: a root's cache key."""
    text = "\n".join([suite, _VARIANT, *sorted(packages)])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def ensure_host_tools() -> None:
    """``apt-get install`` the host tools (mmdebstrap, sip-tester) that are missing."""
    missing = sorted({pkg for exe, pkg in HOST_PACKAGES.items() if not shutil.which(exe)})
    if not missing:
        return
    require_root()
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "--no-install-recommends", *missing]
    try:
        run(install, timeout=INSTALL_TIMEOUT, what="installing host tools", env=env)
    except SandboxError:
        # A fresh machine may have no package lists yet: update once and retry.
        run(["apt-get", "update"], timeout=INSTALL_TIMEOUT, what="apt-get update", env=env)
        run(install, timeout=INSTALL_TIMEOUT, what="installing host tools", env=env)


def build_root(
    cache_dir: Path, suite: str, packages: Sequence[str], mirror: str | None = None
) -> Path:
    """The cached root for ``suite`` and ``packages``, built with mmdebstrap first if it is
    missing. ``mirror``: default ``CTC_SANDBOX_MIRROR``, else the host's apt sources."""
    key = root_key(suite, packages)
    root = cache_dir / key
    if (root / _KEY_MARKER).is_file():
        return root
    require_root()
    if not shutil.which("mmdebstrap"):
        ensure_host_tools()
    cache_dir.mkdir(parents=True, exist_ok=True)
    # One build at a time per cache: a concurrent builder's temp dir is not "stale".
    with locked(cache_dir / LOCK_FILE, timeout=BUILD_TIMEOUT + LOCK_TIMEOUT):
        if (root / _KEY_MARKER).is_file():
            return root  # built by whoever held the lock before us
        _build(cache_dir, key, suite, packages, mirror)
    return root


def _build(
    cache_dir: Path, key: str, suite: str, packages: Sequence[str], mirror: str | None
) -> None:
    root = cache_dir / key
    for stale in cache_dir.glob(f".build-{key}-*"):
        remove_tree(stale)
    if root.exists():  # a root without its marker: not ours to trust
        remove_tree(root)
    mirror = mirror or os.environ.get("CTC_SANDBOX_MIRROR") or apt_mirror()
    tmp = cache_dir / f".build-{key}-{os.getpid()}"
    command = [
        "mmdebstrap",
        f"--variant={_VARIANT}",
        *(f"--aptopt={opt}" for opt in SID_APT_OPTIONS),
        f"--include={','.join(packages)}",
        suite,
        str(tmp),
        mirror,
    ]
    started = time.monotonic()
    try:
        run(command, timeout=BUILD_TIMEOUT, what="building the sandbox root")
        marker = {
            "key": key,
            "suite": suite,
            "packages": list(packages),
            "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "build_seconds": round(time.monotonic() - started, 1),
        }
        (tmp / _KEY_MARKER).write_text(json.dumps(marker, indent=2) + "\n")
        tmp.rename(root)
    finally:
        if tmp.exists():
            remove_tree(tmp)


def install_configuration(root: Path, dialplan_dir: Path, address: str = DEFAULT_ADDRESS) -> None:
    """Run dirs, recording spool, /etc/hosts and the Asterisk configuration in ``root``,
    ARI, AMI, SIP and the phones' RTP bound to ``address``."""
    uid, gid = _chroot_user(root, "asterisk")
    for rel in ("run/asterisk", "var/spool/asterisk/recording", "var/log/asterisk"):
        path = root / rel
        path.mkdir(parents=True, exist_ok=True)
        os.chown(path, uid, gid)
    hostname = socket.gethostname()
    (root / "etc/hosts").write_text(
        "# written by the CTC sandbox: Asterisk must resolve its own host name\n"
        "127.0.0.1\tlocalhost\n"
        f"127.0.1.1\t{hostname}\n"
        "::1\tlocalhost ip6-localhost ip6-loopback\n"
    )
    confs = sorted(dialplan_dir.glob("*.conf"))
    if not confs:
        raise SandboxError(f"no Asterisk configuration (*.conf) in {dialplan_dir}")
    etc = root / "etc/asterisk"
    for conf in confs:
        target = etc / conf.name
        text = conf.read_text()
        if address != DEFAULT_ADDRESS:
            text = rebind(conf.name, text, address)
        target.write_text(text)
        os.chown(target, uid, gid)
        target.chmod(0o640)


def rebind(name: str, text: str, address: str) -> str:
    """``text`` of the configuration file ``name`` with its 127.0.0.1 binds on ``address``.

    A line that must move and is not there raises: an instance still bound to 127.0.0.1
    would collide with the default sandbox instead of failing clearly.
    """
    for pattern, replacement in _REBIND.get(name, ()):
        text, count = re.subn(
            pattern, replacement.format(address=address), text, count=1, flags=re.MULTILINE
        )
        if count != 1:
            raise SandboxError(
                f"{name}: no line matching {pattern!r} to bind to {address}: "
                "the sandbox instance cannot move off 127.0.0.1"
            )
    return text


def _chroot_user(root: Path, name: str) -> tuple[int, int]:
    """uid and gid of ``name`` in the root's /etc/passwd (ids differ from the host's)."""
    try:
        for line in (root / "etc/passwd").read_text().splitlines():
            fields = line.split(":")
            if len(fields) >= 4 and fields[0] == name:
                return int(fields[2]), int(fields[3])
    except (OSError, ValueError) as exc:
        raise SandboxError(f"cannot read {root}/etc/passwd: {exc}") from exc
    raise SandboxError(f"user {name!r} missing from {root}/etc/passwd: the root build is broken")
