"""Host commands for the sandbox: run a command bounded, hold a lock, mount and unmount.

The sandbox's root build and its Asterisk process both act on the host as root: every
external command runs with a timeout and its whole process group is killed on expiry,
every failure is a :class:`~engine.errors.SandboxError` naming the command and the tail of
its output, and nothing deletes a tree without first unmounting what is mounted under it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from engine.errors import SandboxError

__all__ = [
    "COMMAND_TIMEOUT",
    "LOCK_FILE",
    "LOCK_TIMEOUT",
    "locked",
    "mounts_under",
    "remove_tree",
    "require_root",
    "run",
    "sh_quote",
    "tail_file",
    "unmount",
]

#: Bound on a quick command (mount, umount, starting Asterisk).
COMMAND_TIMEOUT = 30.0
#: Bound on waiting for another ``ctc sandbox`` to release a lock.
LOCK_TIMEOUT = 60.0
#: The lock file's name, in the state and cache directories.
LOCK_FILE = ".lock"

_TAIL_CHARS = 1500


@contextlib.contextmanager
def locked(path: Path, *, timeout: float) -> Iterator[None]:
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


def require_root() -> None:
    """Refuse, naming why, unless this process runs as root."""
    if os.geteuid() != 0:
        raise SandboxError(
            "ctc sandbox needs root: it installs packages, builds a Debian root with "
            "mmdebstrap, mounts /proc and /dev into it and runs Asterisk with chroot "
            "(run it with sudo)"
        )


def run(
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
    shown = " ".join(sh_quote(a) for a in command)
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


def tail_file(path: Path) -> str:
    """The end of a log file, for an error message (or why it cannot be read)."""
    try:
        data = path.read_bytes()[-_TAIL_CHARS:]
    except OSError as exc:
        return f"(cannot read: {exc})"
    return data.decode(errors="replace")


def sh_quote(arg: str) -> str:
    """``arg`` quoted for ``sh`` (left bare when it is safe)."""
    if arg and all(c.isalnum() or c in "@%+=:,./-_" for c in arg):
        return arg
    return "'" + arg.replace("'", "'\"'\"'") + "'"


def remove_tree(path: Path) -> None:
    """Delete a directory tree, never crossing into a mounted file system (e.g. a stale
    /dev bind mount left by an interrupted build: following it would wipe host devices)."""
    for mount in mounts_under(path):
        unmount(mount)
    if mounts_under(path):
        raise SandboxError(f"refusing to delete {path}: something is still mounted under it")
    run(["rm", "-rf", "--one-file-system", str(path)], timeout=300, what=f"removing {path}")


def mounts_under(root: Path) -> list[Path]:
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


def unmount(target: Path) -> None:
    """Unmount ``target`` if mounted; lazily (``umount -l``) when it is busy."""
    if not _is_mount_point(target):
        return
    try:
        run(["umount", str(target)], timeout=COMMAND_TIMEOUT, what=f"unmounting {target}")
    except SandboxError:
        run(["umount", "-l", str(target)], timeout=COMMAND_TIMEOUT, what=f"unmounting {target}")


def _is_mount_point(target: Path) -> bool:
    return target in mounts_under(target.parent)
