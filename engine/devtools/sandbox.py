"""The sandbox: a real Asterisk 22 in a chroot, for development and end-to-end tests.

``ctc sandbox up`` makes sure a Debian *sid* root with Asterisk is built (once, cached:
:mod:`engine.devtools.sandbox_root`, from the host's own apt mirror:
:mod:`engine.devtools.apt_sources`), bind-mounts ``/proc`` and ``/dev`` into it, installs
the engine's ``dialplan/*.conf`` as its ``/etc/asterisk`` configuration and starts
Asterisk in it, detached (:mod:`engine.devtools.asterisk_process`). Asterisk shares the
host's network namespace, so ARI (127.0.0.1:8088), AMI (127.0.0.1:5038) and SIP
(127.0.0.1:5060) are reachable exactly as on a PBX host. SIPp phones (Debian
``sip-tester``) play agents, customers and callers. This module holds what ties the steps
together: the state file (pid and mounts of the running sandbox), the lock, the mounts.

**Instances.** Two PBX nodes on one machine are two sandboxes: the default one (the cached
root itself, on 127.0.0.1, exactly as above) and named instances, each on its own loopback
address (``Sandbox(instance="b", address="127.0.0.3")``; the whole 127.0.0.0/8 is
loopback, so every instance keeps the standard ports 5060, 8088 and 5038). An instance
runs in an overlay of the cached root: the root is shared read-only, and the instance's
own configuration (binds on its address), run directory, spool, recordings and logs live
in its upper layer under its state directory, fresh at every ``up``. The SIPp phones stay
on 127.0.0.1 and are reached by every instance (an instance's packets to them come from
its own address, theirs to it from 127.0.0.1, which the endpoints' ``identify`` matches).

Everything here is synchronous and blocking on purpose: it backs the ``ctc sandbox`` CLI
and the e2e test fixtures, never the daemon. Every external command runs with a timeout,
and every failure is a :class:`~engine.errors.SandboxError` naming the command and the tail
of its output.

Typical use::

    sandbox = Sandbox()
    status = sandbox.up()          # build once (~25 s), then start (~1 s)
    print(sandbox.asterisk_cli("pjsip show endpoints"))
    sandbox.down()                 # stop Asterisk, unmount everything we mounted
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import re
import signal
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.devtools.asterisk_process import (
    CLI_TIMEOUT,
    alive,
    ari_info,
    asterisk_pids,
    refuse_busy_port,
    start_asterisk,
    stop_asterisk,
)
from engine.devtools.host import (
    COMMAND_TIMEOUT,
    LOCK_FILE,
    LOCK_TIMEOUT,
    locked,
    mounts_under,
    remove_tree,
    require_root,
    run,
    tail_file,
    unmount,
)
from engine.devtools.sandbox_root import (
    BUILD_TIMEOUT,
    DEFAULT_ADDRESS,
    INSTALL_TIMEOUT,
    ROOT_PACKAGES,
    SUITE,
    build_root,
    ensure_host_tools,
    install_configuration,
    root_key,
)
from engine.errors import SandboxError
from engine.shared_data import shared_data_dir

__all__ = [
    "ARI_PASSWORD",
    "ARI_URL",
    "ARI_USER",
    "DEFAULT_ADDRESS",
    "DEFAULT_INSTANCE",
    "DIALPLAN_DIR",
    "Sandbox",
    "SandboxStatus",
    "ari_url",
    "instance_names",
]

#: Where the sandbox Asterisk serves ARI, and the (public, sandbox-only) credentials that
#: ``dialplan/ari.conf`` defines.
ARI_URL = f"http://{DEFAULT_ADDRESS}:8088/ari"
ARI_USER = "ctc"
ARI_PASSWORD = "ctc-sandbox"  # sandbox only: published in dialplan/ari.conf

#: The engine's Asterisk configuration (the checkout's ``dialplan/``, else the wheel's
#: copy), installed into the sandbox at every up().
DIALPLAN_DIR = shared_data_dir("dialplan")

#: The sandbox that ``ctc sandbox up`` starts without ``--instance``: the cached root on
#: 127.0.0.1.
DEFAULT_INSTANCE = "default"

_STATE_FILE = "state.json"
_LOG_FILE = "asterisk.log"
_STATE_DIR = Path("/run/ctc-sandbox")
_INSTANCES = "instances"  # named instances' state directories, under the default's
_INSTANCE_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,30}")


def ari_url(address: str) -> str:
    """The ARI base URL of the sandbox instance on ``address``."""
    return f"http://{address}:8088/ari"


def instance_names(state_dir: Path = _STATE_DIR) -> list[str]:
    """The named instances that have state under ``state_dir`` (running or left over)."""
    base = Path(state_dir) / _INSTANCES
    if not base.is_dir():
        return []
    return sorted(p.name for p in base.iterdir() if p.is_dir() and _INSTANCE_NAME.fullmatch(p.name))


def _instance_address(instance: str, address: str) -> str:
    """``address`` checked for the named ``instance``: an IPv4 loopback address other than
    the default sandbox's (never a private-range address: nothing leaves the machine)."""
    try:
        ip = ipaddress.IPv4Address(address)
    except ValueError:
        raise SandboxError(
            f"sandbox instance {instance!r}: address {address!r} is not an IPv4 address"
        ) from None
    if not ip.is_loopback:
        raise SandboxError(
            f"sandbox instance {instance!r}: address {address} is not in 127.0.0.0/8 "
            "(an instance listens on a loopback address of its own)"
        )
    if address == DEFAULT_ADDRESS:
        raise SandboxError(
            f"sandbox instance {instance!r}: {DEFAULT_ADDRESS} is the default sandbox's "
            "address; give the instance another, e.g. 127.0.0.2"
        )
    return str(ip)


@dataclass(frozen=True, slots=True)
class SandboxStatus:
    """What :meth:`Sandbox.status` sees.

    ``running`` is true when the sandbox's Asterisk process is alive; ``ari_ok`` when ARI
    answers ``GET /asterisk/info`` with 200 (i.e. Asterisk is fully booted); ``version``
    is Asterisk's version string from that answer.
    """

    running: bool
    pid: int | None
    root: Path | None
    ari_ok: bool
    version: str | None = None


class Sandbox:
    """Build, start, inspect and stop the sandbox Asterisk.

    :param cache_dir: where built roots are kept, one sub-directory per cache key.
    :param dialplan_dir: the engine's ``dialplan/``; its ``*.conf`` files replace the
        package defaults in the root's ``/etc/asterisk`` at every :meth:`up`.
    :param state_dir: run-time state: the pid and mounts of the running sandbox, and
        Asterisk's console log (``asterisk.log``).
    :param mirror: Debian mirror URL; default: ``CTC_SANDBOX_MIRROR`` or the host's apt
        sources (see :func:`engine.devtools.apt_sources.apt_mirror`).
    :param instance: ``default`` (the cached root on 127.0.0.1), or the name of an instance
        whose state lives in ``state_dir/instances/NAME``.
    :param address: a named instance's loopback address; needed by its first :meth:`up`,
        remembered in its state after that.
    """

    def __init__(
        self,
        cache_dir: Path = Path("/var/cache/ctc/sandbox"),
        dialplan_dir: Path = DIALPLAN_DIR,
        state_dir: Path = _STATE_DIR,
        *,
        packages: Sequence[str] = ROOT_PACKAGES,
        suite: str = SUITE,
        mirror: str | None = None,
        instance: str = DEFAULT_INSTANCE,
        address: str | None = None,
    ) -> None:
        if not _INSTANCE_NAME.fullmatch(instance):
            raise SandboxError(
                f"sandbox instance name {instance!r}: use lower-case letters, digits and '-'"
            )
        self.cache_dir = Path(cache_dir).absolute()
        self.dialplan_dir = Path(dialplan_dir)
        self.instance = instance
        self.packages = tuple(packages)
        self.suite = suite
        self._mirror = mirror
        if instance == DEFAULT_INSTANCE:
            if address not in (None, DEFAULT_ADDRESS):
                raise SandboxError(
                    f"the default sandbox listens on {DEFAULT_ADDRESS}, not {address}: "
                    "name an instance to run one on another address"
                )
            self.state_dir = Path(state_dir).absolute()
            self._address: str | None = DEFAULT_ADDRESS
        else:
            self.state_dir = Path(state_dir).absolute() / _INSTANCES / instance
            self._address = None if address is None else _instance_address(instance, address)

    # ------------------------------------------------------------------ public API

    @property
    def key(self) -> str:
        """Short sha256 of the suite, variant and package list: the root's cache key."""
        return root_key(self.suite, self.packages)

    @property
    def default(self) -> bool:
        """True for the default sandbox (the cached root itself on 127.0.0.1)."""
        return self.instance == DEFAULT_INSTANCE

    @property
    def root(self) -> Path:
        """The root Asterisk runs in (may not exist yet): the built root for the current
        package list, or a named instance's overlay of it."""
        if self.default:
            return self.built_root
        return self.state_dir / "root"

    @property
    def built_root(self) -> Path:
        """The cached root built for the current package list (may not exist yet)."""
        return self.cache_dir / self.key

    @property
    def address(self) -> str:
        """The loopback address ARI, AMI and SIP listen on."""
        if self._address is not None:
            return self._address
        recorded = self._read_state().get("address")
        if isinstance(recorded, str):
            return recorded
        raise SandboxError(
            f"sandbox instance {self.instance!r} has no address: start it with one "
            f"(`ctc sandbox up --instance {self.instance} --address 127.0.0.N`)"
        )

    @property
    def ari_url(self) -> str:
        """ARI's base URL on this sandbox (``http://ADDRESS:8088/ari``)."""
        return ari_url(self.address)

    @property
    def log_path(self) -> Path:
        """Asterisk's console output (the sandbox's log file)."""
        return self.state_dir / _LOG_FILE

    def up(self, timeout: float = 120) -> SandboxStatus:
        """Make sure the sandbox Asterisk runs and ARI answers; return its status.

        Installs missing host tools, builds the root if it is not cached, mounts, installs
        the configuration, starts Asterisk and waits up to ``timeout`` seconds for ARI to
        answer 200. Calling it while the sandbox is already up is harmless. Host tool
        installation and the root build have their own (longer) bounds.
        """
        require_root()
        address = self.address
        with locked(self.state_dir / LOCK_FILE, timeout=BUILD_TIMEOUT + INSTALL_TIMEOUT):
            current = self.status()
            if current.running and current.ari_ok:
                return current
            if current.running:
                return self._wait_ready(current.pid, timeout)
            if self._read_state():
                self._down()  # an earlier sandbox died without down(): clear its mounts first

            self.ensure_host_tools()
            built = self.build().resolve()
            refuse_busy_port(address, 8088, "ARI (http.conf)")
            mounts = [] if self.default else [self._overlay(built)]
            root = built if self.default else self.root
            try:
                mounts += self._mount(root)
            except BaseException:
                for done in reversed(mounts):
                    unmount(done)
                raise
            state: dict[str, Any] = {
                "root": str(root),
                "mounts": [str(m) for m in mounts],
                "address": address,
            }
            self._write_state({**state, "pid": None})
            try:
                install_configuration(root, self.dialplan_dir, address)
                pid = start_asterisk(root, self.log_path)
                self._write_state({**state, "pid": pid})
                return self._wait_ready(pid, timeout)
            except BaseException:
                with contextlib.suppress(SandboxError):
                    self._down()  # never leave a half-started sandbox mounted
                raise

    def down(self) -> None:
        """Stop Asterisk and unmount everything the sandbox mounted. Harmless when down."""
        if not self._leftovers():
            self._clear_state()
            return
        require_root()
        with locked(self.state_dir / LOCK_FILE, timeout=LOCK_TIMEOUT):
            self._down()

    def crash(self) -> None:
        """kill -9 this sandbox's Asterisk, as when its machine dies: no channel is hung up,
        nothing is reported. Its mounts stay until :meth:`down` (or the next :meth:`up`)."""
        require_root()
        state = self._read_state()
        root = Path(state["root"]) if state.get("root") else self.root
        pids = asterisk_pids(root, state.get("pid"))
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + LOCK_TIMEOUT
        while any(alive(pid) for pid in pids):
            if time.monotonic() >= deadline:
                raise SandboxError(f"Asterisk (pids {pids}) survived SIGKILL")
            time.sleep(0.05)

    @property
    def _mount_scope(self) -> Path:
        """Where everything this sandbox mounts lives: under the root it runs in, or (a named
        instance) under its state directory, the overlay included."""
        return self.root if self.default else self.state_dir

    def _leftovers(self) -> bool:
        state = self._read_state()
        root = Path(state["root"]) if state.get("root") else self.root
        return bool(
            asterisk_pids(root, state.get("pid"))
            or state.get("mounts")
            or mounts_under(self._mount_scope)
        )

    def _down(self) -> None:
        state = self._read_state()
        root = Path(state["root"]) if state.get("root") else self.root
        pids = asterisk_pids(root, state.get("pid"))
        if pids:
            stop_asterisk(root, pids)
        mounts = [Path(m) for m in state.get("mounts", [])]
        for mount in [*reversed(mounts), *mounts_under(self._mount_scope)]:
            unmount(mount)
        remaining = mounts_under(self._mount_scope)
        if remaining:
            raise SandboxError(
                "sandbox down: still mounted after unmounting: "
                + ", ".join(str(m) for m in remaining)
            )
        self._clear_state()

    def status(self) -> SandboxStatus:
        """Report whether the sandbox Asterisk runs and whether ARI answers."""
        state = self._read_state()
        root = Path(state["root"]) if state.get("root") else self.root
        pids = asterisk_pids(root, state.get("pid"))
        pid = pids[0] if pids else None
        info = self._ari_info() if pid is not None else None
        version = None
        if info is not None:
            system = info.get("system")
            if isinstance(system, dict) and isinstance(system.get("version"), str):
                version = system["version"]
        return SandboxStatus(
            running=pid is not None,
            pid=pid,
            root=root if root.exists() else None,
            ari_ok=info is not None,
            version=version,
        )

    def asterisk_cli(self, command: str) -> str:
        """Run ``asterisk -rx COMMAND`` inside the sandbox root and return its output."""
        require_root()
        root = Path(self._read_state().get("root") or self.root)
        if not (root / "usr/sbin/asterisk").exists():
            raise SandboxError(f"sandbox root {root} is not built: run `ctc sandbox up` first")
        result = run(
            ["chroot", str(root), "asterisk", "-rx", command],
            timeout=CLI_TIMEOUT,
            what=f"asterisk CLI {command!r}",
        )
        return result.stdout

    def ensure_host_tools(self) -> None:
        """``apt-get install`` the host tools (mmdebstrap, sip-tester) that are missing."""
        ensure_host_tools()

    def build(self) -> Path:
        """Return the cached root, building it with mmdebstrap first if it is missing.

        The build goes into a temporary directory that is renamed into place only when
        mmdebstrap succeeded, so an interrupted build is never reused.
        """
        return build_root(self.cache_dir, self.suite, self.packages, self._mirror)

    # ------------------------------------------------------------------ steps of up()

    def _overlay(self, built: Path) -> Path:
        """Mount a fresh overlay of the built root (read-only lower layer) as this
        instance's root; return the mount point."""
        root = self.root
        upper, work = self.state_dir / "upper", self.state_dir / "work"
        for layer in (upper, work):
            remove_tree(layer)  # what an earlier run left: start clean
            layer.mkdir(parents=True)
        root.mkdir(parents=True, exist_ok=True)
        options = f"lowerdir={built},upperdir={upper},workdir={work}"
        run(
            ["mount", "-t", "overlay", "overlay", "-o", options, str(root)],
            timeout=COMMAND_TIMEOUT,
            what=f"mounting the overlay {root}",
        )
        return root

    def _mount(self, root: Path) -> list[Path]:
        """Mount proc and bind /dev into ``root``; return what was mounted (in order)."""
        mounted: list[Path] = []
        already = set(mounts_under(root))
        for target, command in (
            (root / "proc", ["mount", "-t", "proc", "proc", str(root / "proc")]),
            (root / "dev", ["mount", "--bind", "/dev", str(root / "dev")]),
        ):
            if target in already:
                mounted.append(target)  # left by an earlier up() whose down() never ran
                continue
            target.mkdir(parents=True, exist_ok=True)
            try:
                run(command, timeout=COMMAND_TIMEOUT, what=f"mounting {target}")
            except SandboxError:
                for done in reversed(mounted):
                    unmount(done)
                raise
            mounted.append(target)
        return mounted

    def _wait_ready(self, pid: int | None, timeout: float) -> SandboxStatus:
        """Poll ARI until it answers 200; fail early if Asterisk exits."""
        deadline = time.monotonic() + timeout
        while True:
            if pid is None or not alive(pid):
                raise SandboxError(
                    f"Asterisk exited during start-up; its log ({self.log_path}) ends:\n"
                    + tail_file(self.log_path)
                )
            if self._ari_info() is not None:
                return self.status()
            if time.monotonic() >= deadline:
                raise SandboxError(
                    f"ARI did not answer 200 on {self.ari_url}/asterisk/info within {timeout:g} s; "
                    f"Asterisk log ({self.log_path}) ends:\n" + tail_file(self.log_path)
                )
            time.sleep(0.2)

    def _ari_info(self) -> dict[str, Any] | None:
        """This sandbox ARI's ``/asterisk/info`` as its (sandbox-only) user; None unless
        200."""
        return ari_info(self.ari_url, ARI_USER, ARI_PASSWORD, timeout=2.0)

    # ------------------------------------------------------------------ state

    def _read_state(self) -> dict[str, Any]:
        try:
            data = json.loads((self.state_dir / _STATE_FILE).read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _write_state(self, state: dict[str, Any]) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        path = self.state_dir / _STATE_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2) + "\n")
        tmp.replace(path)

    def _clear_state(self) -> None:
        with contextlib.suppress(FileNotFoundError, PermissionError):
            (self.state_dir / _STATE_FILE).unlink()
