"""The sandbox: a real Asterisk 22 in a chroot, for development and end-to-end tests.

Bookworm has no Asterisk package and the development machines run no Docker engine, so the
sandbox builds a small Debian *sid* root with ``mmdebstrap`` (once, cached by a key derived
from the package list and suite), bind-mounts ``/proc`` and ``/dev`` into it, installs the
repository's ``dialplan/*.conf`` as its ``/etc/asterisk`` configuration and runs
``chroot ROOT asterisk -f -U asterisk -G asterisk`` detached. Asterisk shares the host's
network namespace, so ARI (127.0.0.1:8088), AMI (127.0.0.1:5038) and SIP (127.0.0.1:5060)
are reachable exactly as on a PBX host. SIPp phones (Debian ``sip-tester``) play agents,
customers and callers.

Everything here is synchronous and blocking on purpose: it backs the ``ctc sandbox`` CLI
and the e2e test fixtures, never the daemon. Every external command runs with a timeout,
and every failure is a :class:`~engine.errors.SandboxError` naming the command and the tail
of its output.

Typical use::

    sandbox = Sandbox()
    status = sandbox.up()          # build once (~25 s), then start (~1 s)
    print(sandbox.asterisk_cli("pjsip show endpoints"))
    sandbox.down()                 # stop Asterisk, unmount everything we mounted

The package mirror is never hard-coded: it is read at run time from the host's own apt
sources (``/etc/apt/sources.list`` and ``/etc/apt/sources.list.d/*.list|*.sources``), or
taken from the ``mirror`` argument / ``CTC_SANDBOX_MIRROR`` environment variable.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.errors import SandboxError

__all__ = [
    "ARI_PASSWORD",
    "ARI_URL",
    "ARI_USER",
    "DIALPLAN_DIR",
    "HOST_PACKAGES",
    "ROOT_PACKAGES",
    "SUITE",
    "Sandbox",
    "SandboxStatus",
    "apt_mirror",
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

#: Where the sandbox Asterisk serves ARI, and the (public, sandbox-only) credentials that
#: ``dialplan/ari.conf`` defines.
ARI_URL = "http://127.0.0.1:8088/ari"
ARI_USER = "ctc"
ARI_PASSWORD = "ctc-sandbox"  # sandbox only: published in dialplan/ari.conf

#: The repository's Asterisk configuration, installed into the sandbox at every up().
DIALPLAN_DIR = Path(__file__).resolve().parents[2] / "dialplan"

_VARIANT = "apt"
_APT_OPTIONS = ('Acquire::Check-Valid-Until "false"',)  # sid's Release may be past Valid-Until
_KEY_MARKER = ".ctc-sandbox.json"
_STATE_FILE = "state.json"
_LOG_FILE = "asterisk.log"
_LOCK_FILE = ".lock"
_ASTERISK_CMD = ("asterisk", "-f", "-U", "asterisk", "-G", "asterisk")

_INSTALL_TIMEOUT = 600.0
_BUILD_TIMEOUT = 900.0
_COMMAND_TIMEOUT = 30.0
_CLI_TIMEOUT = 15.0
_LOCK_TIMEOUT = 60.0
_STOP_GRACE = 10.0  # "core stop now", then SIGTERM, then SIGKILL, each waited this long
_TAIL_CHARS = 1500


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
    :param dialplan_dir: the repository's ``dialplan/``; its ``*.conf`` files replace the
        package defaults in the root's ``/etc/asterisk`` at every :meth:`up`.
    :param state_dir: run-time state: the pid and mounts of the running sandbox, and
        Asterisk's console log (``asterisk.log``).
    :param mirror: Debian mirror URL; default: ``CTC_SANDBOX_MIRROR`` or the host's apt
        sources (see :func:`apt_mirror`).
    """

    def __init__(
        self,
        cache_dir: Path = Path("/var/cache/ctc/sandbox"),
        dialplan_dir: Path = DIALPLAN_DIR,
        state_dir: Path = Path("/run/ctc-sandbox"),
        *,
        packages: Sequence[str] = ROOT_PACKAGES,
        suite: str = SUITE,
        mirror: str | None = None,
    ) -> None:
        self.cache_dir = Path(cache_dir).absolute()
        self.dialplan_dir = Path(dialplan_dir)
        self.state_dir = Path(state_dir).absolute()
        self.packages = tuple(packages)
        self.suite = suite
        self._mirror = mirror

    # ------------------------------------------------------------------ public API

    @property
    def key(self) -> str:
        """Short sha256 of the suite, variant and package list: the root's cache key."""
        text = "\n".join([self.suite, _VARIANT, *sorted(self.packages)])
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    @property
    def root(self) -> Path:
        """The built root for the current package list (may not exist yet)."""
        return self.cache_dir / self.key

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
        _require_root()
        with _locked(self.state_dir / _LOCK_FILE, timeout=_BUILD_TIMEOUT + _INSTALL_TIMEOUT):
            current = self.status()
            if current.running and current.ari_ok:
                return current
            if current.running:
                return self._wait_ready(current.pid, timeout)
            if self._read_state():
                self._down()  # an earlier sandbox died without down(): clear its mounts first

            self.ensure_host_tools()
            root = self.build().resolve()
            _refuse_busy_port(8088, "ARI (http.conf)")
            mounts = self._mount(root)
            state: dict[str, Any] = {"root": str(root), "mounts": [str(m) for m in mounts]}
            self._write_state({**state, "pid": None})
            try:
                self._prepare_root(root)
                pid = self._start(root)
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
        _require_root()
        with _locked(self.state_dir / _LOCK_FILE, timeout=_LOCK_TIMEOUT):
            self._down()

    def _leftovers(self) -> bool:
        state = self._read_state()
        root = Path(state["root"]) if state.get("root") else self.root
        return bool(
            self._asterisk_pids(root, state.get("pid"))
            or state.get("mounts")
            or _mounts_under(root)
        )

    def _down(self) -> None:
        state = self._read_state()
        root = Path(state["root"]) if state.get("root") else self.root
        pids = self._asterisk_pids(root, state.get("pid"))
        if pids:
            self._stop(root, pids)
        mounts = [Path(m) for m in state.get("mounts", [])]
        for mount in [*reversed(mounts), *_mounts_under(root)]:
            _unmount(mount)
        remaining = _mounts_under(root)
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
        pids = self._asterisk_pids(root, state.get("pid"))
        pid = pids[0] if pids else None
        info = _ari_info(timeout=2.0) if pid is not None else None
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
        _require_root()
        root = Path(self._read_state().get("root") or self.root)
        if not (root / "usr/sbin/asterisk").exists():
            raise SandboxError(f"sandbox root {root} is not built: run `ctc sandbox up` first")
        result = _run(
            ["chroot", str(root), "asterisk", "-rx", command],
            timeout=_CLI_TIMEOUT,
            what=f"asterisk CLI {command!r}",
        )
        return result.stdout

    def ensure_host_tools(self) -> None:
        """``apt-get install`` the host tools (mmdebstrap, sip-tester) that are missing."""
        missing = sorted({pkg for exe, pkg in HOST_PACKAGES.items() if not shutil.which(exe)})
        if not missing:
            return
        _require_root()
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        install = ["apt-get", "install", "-y", "--no-install-recommends", *missing]
        try:
            _run(install, timeout=_INSTALL_TIMEOUT, what="installing host tools", env=env)
        except SandboxError:
            # A fresh machine may have no package lists yet: update once and retry.
            _run(["apt-get", "update"], timeout=_INSTALL_TIMEOUT, what="apt-get update", env=env)
            _run(install, timeout=_INSTALL_TIMEOUT, what="installing host tools", env=env)

    def build(self) -> Path:
        """Return the cached root, building it with mmdebstrap first if it is missing.

        The build goes into a temporary directory that is renamed into place only when
        mmdebstrap succeeded, so an interrupted build is never reused.
        """
        root = self.root
        if (root / _KEY_MARKER).is_file():
            return root
        _require_root()
        if not shutil.which("mmdebstrap"):
            self.ensure_host_tools()
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        # One build at a time per cache: a concurrent builder's temp dir is not "stale".
        with _locked(self.cache_dir / _LOCK_FILE, timeout=_BUILD_TIMEOUT + _LOCK_TIMEOUT):
            if (root / _KEY_MARKER).is_file():
                return root  # built by whoever held the lock before us
            self._build(root)
        return root

    def _build(self, root: Path) -> None:
        for stale in self.cache_dir.glob(f".build-{self.key}-*"):
            _remove_tree(stale)
        if root.exists():  # a root without its marker: not ours to trust
            _remove_tree(root)
        mirror = self._mirror or os.environ.get("CTC_SANDBOX_MIRROR") or apt_mirror()
        tmp = self.cache_dir / f".build-{self.key}-{os.getpid()}"
        command = [
            "mmdebstrap",
            f"--variant={_VARIANT}",
            *(f"--aptopt={opt}" for opt in _APT_OPTIONS),
            f"--include={','.join(self.packages)}",
            self.suite,
            str(tmp),
            mirror,
        ]
        started = time.monotonic()
        try:
            _run(command, timeout=_BUILD_TIMEOUT, what="building the sandbox root")
            marker = {
                "key": self.key,
                "suite": self.suite,
                "packages": list(self.packages),
                "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "build_seconds": round(time.monotonic() - started, 1),
            }
            (tmp / _KEY_MARKER).write_text(json.dumps(marker, indent=2) + "\n")
            tmp.rename(root)
        finally:
            if tmp.exists():
                _remove_tree(tmp)

    # ------------------------------------------------------------------ steps of up()

    def _mount(self, root: Path) -> list[Path]:
        """Mount proc and bind /dev into ``root``; return what was mounted (in order)."""
        mounted: list[Path] = []
        already = set(_mounts_under(root))
        for target, command in (
            (root / "proc", ["mount", "-t", "proc", "proc", str(root / "proc")]),
            (root / "dev", ["mount", "--bind", "/dev", str(root / "dev")]),
        ):
            if target in already:
                mounted.append(target)  # left by an earlier up() whose down() never ran
                continue
            target.mkdir(parents=True, exist_ok=True)
            try:
                _run(command, timeout=_COMMAND_TIMEOUT, what=f"mounting {target}")
            except SandboxError:
                for done in reversed(mounted):
                    _unmount(done)
                raise
            mounted.append(target)
        return mounted

    def _prepare_root(self, root: Path) -> None:
        """Run dirs, recording spool, /etc/hosts and our Asterisk configuration."""
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
        confs = sorted(self.dialplan_dir.glob("*.conf"))
        if not confs:
            raise SandboxError(f"no Asterisk configuration (*.conf) in {self.dialplan_dir}")
        etc = root / "etc/asterisk"
        for conf in confs:
            target = etc / conf.name
            shutil.copyfile(conf, target)
            os.chown(target, uid, gid)
            target.chmod(0o640)

    def _start(self, root: Path) -> int:
        """Start Asterisk detached (own session, not our child); return its pid."""
        log = self.log_path
        with log.open("a") as fh:
            fh.write(f"\n==== ctc sandbox: starting Asterisk in {root} at {time.ctime()} ====\n")
        # sh starts Asterisk in the background, prints its pid and exits: Asterisk is then
        # re-parented away from us, so it outlives the CLI and is never our zombie.
        argv = " ".join(_sh_quote(a) for a in ["chroot", str(root), *_ASTERISK_CMD])
        script = f'{argv} >>{_sh_quote(str(log))} 2>&1 </dev/null & echo "$!"'
        result = _run(
            ["sh", "-c", script],
            timeout=_COMMAND_TIMEOUT,
            what="starting Asterisk",
        )
        try:
            return int(result.stdout.strip())
        except ValueError:
            raise SandboxError(f"starting Asterisk: no pid from {script!r}") from None

    def _wait_ready(self, pid: int | None, timeout: float) -> SandboxStatus:
        """Poll ARI until it answers 200; fail early if Asterisk exits."""
        deadline = time.monotonic() + timeout
        while True:
            if pid is None or not _alive(pid):
                raise SandboxError(
                    f"Asterisk exited during start-up; its log ({self.log_path}) ends:\n"
                    + _tail_file(self.log_path)
                )
            if _ari_info(timeout=2.0) is not None:
                return self.status()
            if time.monotonic() >= deadline:
                raise SandboxError(
                    f"ARI did not answer 200 on {ARI_URL}/asterisk/info within {timeout:g} s; "
                    f"Asterisk log ({self.log_path}) ends:\n" + _tail_file(self.log_path)
                )
            time.sleep(0.2)

    # ------------------------------------------------------------------ steps of down()

    def _stop(self, root: Path, pids: list[int]) -> None:
        """Ask Asterisk to stop, then SIGTERM, then SIGKILL; wait for every pid to go."""
        with contextlib.suppress(SandboxError):
            _run(
                ["chroot", str(root), "asterisk", "-rx", "core stop now"],
                timeout=_CLI_TIMEOUT,
                what="asterisk CLI 'core stop now'",
            )
        if _wait_gone(pids, _STOP_GRACE):
            return
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
            if _wait_gone(pids, _STOP_GRACE):
                return
        raise SandboxError(f"Asterisk (pids {pids}) survived SIGKILL")

    # ------------------------------------------------------------------ state

    def _asterisk_pids(self, root: Path, recorded: Any) -> list[int]:
        """Living Asterisk processes of this sandbox: the recorded pid first, then any
        other ``asterisk`` whose root directory is ``root`` (in case the state was lost)."""
        pids: list[int] = []
        if isinstance(recorded, int) and _alive(recorded) and _comm(recorded) == "asterisk":
            pids.append(recorded)
        for pid in _processes_rooted_at(root):
            if pid not in pids and _comm(pid) == "asterisk" and _alive(pid):
                pids.append(pid)
        return pids

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


# ---------------------------------------------------------------------- apt sources


def apt_mirror(
    sources_list: Path = Path("/etc/apt/sources.list"),
    sources_dir: Path = Path("/etc/apt/sources.list.d"),
) -> str:
    """The host's Debian archive mirror URL, read from its apt sources.

    Both the one-line (``*.list``) and deb822 (``*.sources``) formats are read. A source
    qualifies when it is an enabled ``deb`` source over HTTP(S), is not a security archive,
    names only plain suites (``bookworm``, ``bookworm-updates``, not ``…-security``) and,
    if it has a ``Signed-By``, is signed by Debian's archive keyring (which rules out
    third-party repositories such as a vendor's ``bookworm`` suite). A URI ending in
    ``/debian`` is preferred; otherwise the first qualifying source wins.
    """
    files: list[Path] = []
    if sources_list.is_file():
        files.append(sources_list)
    if sources_dir.is_dir():
        files.extend(sorted(p for p in sources_dir.iterdir() if p.suffix in {".list", ".sources"}))
    candidates: list[str] = []
    for path in files:
        try:
            text = path.read_text()
        except OSError:
            continue
        entries = _deb822_entries(text) if path.suffix == ".sources" else _one_line_entries(text)
        candidates.extend(e.uri for e in entries if _is_debian_archive(e))
    for uri in candidates:
        if uri.rstrip("/").endswith("/debian"):
            return uri
    if candidates:
        return candidates[0]
    raise SandboxError(
        "no Debian mirror found in the host's apt sources "
        f"({sources_list}, {sources_dir}/*.list|*.sources); set CTC_SANDBOX_MIRROR"
    )


@dataclass(frozen=True, slots=True)
class _AptSource:
    uri: str
    suites: tuple[str, ...]
    signed_by: str | None  # None: no Signed-By (the host's trusted keyrings apply)


def _one_line_entries(text: str) -> list[_AptSource]:
    entries: list[_AptSource] = []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line.startswith("deb "):
            continue
        rest = line[4:].strip()
        options = ""
        if rest.startswith("["):  # [arch=amd64 signed-by=/usr/share/keyrings/...]
            options, _, rest = rest[1:].partition("]")
        words = rest.split()
        signed_by = None
        for option in options.split():
            name, _, value = option.partition("=")
            if name.strip().lower() == "signed-by":
                signed_by = value.strip()
        if len(words) >= 2:
            entries.append(_AptSource(words[0], (words[1],), signed_by))
    return entries


def _deb822_entries(text: str) -> list[_AptSource]:
    entries: list[_AptSource] = []
    for stanza in text.split("\n\n"):
        fields: dict[str, str] = {}
        for raw in stanza.splitlines():
            if raw.startswith("#") or ":" not in raw or raw[:1].isspace():
                continue  # comments, and continuation lines (e.g. an inline key block)
            name, value = raw.split(":", 1)
            fields[name.strip().lower()] = value.strip()
        if "deb" not in fields.get("types", "").split():
            continue
        if fields.get("enabled", "yes").lower() == "no":
            continue
        suites = tuple(fields.get("suites", "").split())
        signed_by = fields.get("signed-by")
        entries.extend(_AptSource(uri, suites, signed_by) for uri in fields.get("uris", "").split())
    return entries


def _is_debian_archive(source: _AptSource) -> bool:
    if not source.uri.startswith(("http://", "https://")):
        return False
    if "security" in source.uri.rstrip("/").rsplit("/", 1)[-1]:
        return False
    if source.signed_by is not None and "debian-archive" not in source.signed_by:
        return False
    return bool(source.suites) and all(
        s and "/" not in s and not s.endswith("-security") for s in source.suites
    )


# ---------------------------------------------------------------------- helpers


@contextlib.contextmanager
def _locked(path: Path, *, timeout: float) -> Iterator[None]:
    """Hold an exclusive flock on ``path`` (created if needed), waiting up to ``timeout``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as fh:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise SandboxError(
                        f"{path} is locked by another `ctc sandbox` for over {timeout:g} s"
                    ) from None
                time.sleep(0.2)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _require_root() -> None:
    if os.geteuid() != 0:
        raise SandboxError(
            "ctc sandbox needs root: it installs packages, builds a Debian root with "
            "mmdebstrap, mounts /proc and /dev into it and runs Asterisk with chroot "
            "(run it with sudo)"
        )


def _run(
    command: Sequence[str],
    *,
    timeout: float,
    what: str,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a command to completion; any failure is a SandboxError naming it.

    The command runs in its own session; on timeout its whole process group is killed
    (mmdebstrap's apt and dpkg children too, not just the command itself).
    """
    shown = " ".join(_sh_quote(a) for a in command)
    try:
        proc = subprocess.Popen(
            list(command),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            start_new_session=True,
        )
    except OSError as exc:
        raise SandboxError(f"{what}: cannot run `{shown}`: {exc}") from exc
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
        raise SandboxError(
            f"{what}: `{shown}` timed out after {timeout:g} s{_tail(stderr or stdout)}"
        ) from None
    if proc.returncode != 0:
        out = stderr.strip() or stdout.strip()
        raise SandboxError(f"{what}: `{shown}` exited {proc.returncode}{_tail(out)}")
    return subprocess.CompletedProcess(list(command), proc.returncode, stdout, stderr)


def _tail(output: str) -> str:
    output = output.strip()
    if not output:
        return ""
    if len(output) > _TAIL_CHARS:
        output = "…" + output[-_TAIL_CHARS:]
    return ":\n" + output


def _tail_file(path: Path) -> str:
    try:
        data = path.read_bytes()[-_TAIL_CHARS:]
    except OSError as exc:
        return f"(cannot read: {exc})"
    return data.decode(errors="replace")


def _sh_quote(arg: str) -> str:
    if arg and all(c.isalnum() or c in "@%+=:,./-_" for c in arg):
        return arg
    return "'" + arg.replace("'", "'\"'\"'") + "'"


def _remove_tree(path: Path) -> None:
    """Delete a directory tree, never crossing into a mounted file system (e.g. a stale
    /dev bind mount left by an interrupted build: following it would wipe host devices)."""
    for mount in _mounts_under(path):
        _unmount(mount)
    if _mounts_under(path):
        raise SandboxError(f"refusing to delete {path}: something is still mounted under it")
    _run(["rm", "-rf", "--one-file-system", str(path)], timeout=300, what=f"removing {path}")


def _mounts_under(root: Path) -> list[Path]:
    """Mount points strictly under ``root``, deepest first (the order to unmount them)."""
    prefix = str(root.resolve()) if root.exists() else str(root)
    found: list[Path] = []
    try:
        lines = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return found
    for line in lines:
        fields = line.split()
        if len(fields) < 2:
            continue
        point = fields[1].replace("\\040", " ").replace("\\011", "\t").replace("\\134", "\\")
        if point.startswith(prefix + "/"):
            found.append(Path(point))
    return sorted(set(found), key=lambda p: len(p.parts), reverse=True)


def _unmount(target: Path) -> None:
    """Unmount ``target`` if mounted; lazily (``umount -l``) when it is busy."""
    if not _is_mount_point(target):
        return
    try:
        _run(["umount", str(target)], timeout=_COMMAND_TIMEOUT, what=f"unmounting {target}")
    except SandboxError:
        _run(["umount", "-l", str(target)], timeout=_COMMAND_TIMEOUT, what=f"unmounting {target}")


def _is_mount_point(target: Path) -> bool:
    return target in _mounts_under(target.parent)


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


def _alive(pid: int) -> bool:
    """True while any thread of ``pid`` still runs.

    A zombie thread-group leader is not enough to call a process gone: while Asterisk shuts
    down its main thread can be a zombie whose other threads still hold the ARI socket.
    """
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return False
    for task in tasks:
        try:
            state = (task / "stat").read_text().rsplit(")", 1)[-1].split()[:1]
        except OSError:
            continue
        if state not in (["Z"], ["X"]):
            return True
    return False


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def _processes_rooted_at(root: Path) -> list[int]:
    """Pids whose root directory (``/proc/PID/root``) is ``root``."""
    if not root.exists():
        return []
    target = os.path.realpath(root)
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if os.readlink(entry / "root") == target:
                pids.append(int(entry.name))
        except OSError:
            continue
    return sorted(pids)


def _wait_gone(pids: Iterable[int], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    pids = list(pids)
    while any(_alive(p) for p in pids):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)
    return True


def _refuse_busy_port(port: int, what: str) -> None:
    """Fail clearly if something (another Asterisk?) already listens where ours must."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(1.0)
        if sock.connect_ex(("127.0.0.1", port)) == 0:
            raise SandboxError(
                f"127.0.0.1:{port} ({what}) is already in use by another process: "
                "stop it (another Asterisk?) before `ctc sandbox up`"
            )


def _ari_info(timeout: float) -> dict[str, Any] | None:
    """``GET /ari/asterisk/info`` as the sandbox ARI user; None unless it answers 200."""
    token = base64.b64encode(f"{ARI_USER}:{ARI_PASSWORD}".encode()).decode()
    request = urllib.request.Request(
        f"{ARI_URL}/asterisk/info", headers={"Authorization": f"Basic {token}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            if response.status != 200:
                return None
            body = json.loads(response.read() or b"{}")
    except (OSError, ValueError, urllib.error.URLError):
        return None
    return body if isinstance(body, dict) else {}
