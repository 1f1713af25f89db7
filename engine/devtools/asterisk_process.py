"""The sandbox's Asterisk process: start it in its chroot, find it, ask ARI, stop it.

Asterisk runs as ``chroot ROOT asterisk -f -U asterisk -G asterisk``, detached from whoever
started it (``ctc sandbox up`` exits; Asterisk stays), in the host's network namespace. So
it is found again by its root directory (``/proc/PID/root``), not only by a recorded pid,
and it counts as gone only when every thread has exited: while Asterisk shuts down its main
thread can be a zombie whose other threads still hold the ARI socket.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from engine.devtools.host import COMMAND_TIMEOUT, run, sh_quote
from engine.errors import SandboxError

__all__ = [
    "CLI_TIMEOUT",
    "alive",
    "ari_info",
    "asterisk_pids",
    "refuse_busy_port",
    "start_asterisk",
    "stop_asterisk",
]

#: Bound on one ``asterisk -rx`` command.
CLI_TIMEOUT = 15.0

_ASTERISK_CMD = ("asterisk", "-f", "-U", "asterisk", "-G", "asterisk")
_STOP_GRACE = 10.0  # "core stop now", then SIGTERM, then SIGKILL, each waited this long


def start_asterisk(root: Path, log: Path) -> int:
    """Start Asterisk in ``root``, detached (own session, not our child), its console
    appended to ``log``; its pid."""
    with log.open("a") as fh:
        fh.write(f"\n==== ctc sandbox: starting Asterisk in {root} at {time.ctime()} ====\n")
    # sh starts Asterisk in the background, prints its pid and exits: Asterisk is then
    # re-parented away from us, so it outlives the CLI and is never our zombie.
    argv = " ".join(sh_quote(a) for a in ["chroot", str(root), *_ASTERISK_CMD])
    script = f'{argv} >>{sh_quote(str(log))} 2>&1 </dev/null & echo "$!"'
    result = run(["sh", "-c", script], timeout=COMMAND_TIMEOUT, what="starting Asterisk")
    try:
        return int(result.stdout.strip())
    except ValueError:
        raise SandboxError(f"starting Asterisk: no pid from {script!r}") from None


def stop_asterisk(root: Path, pids: list[int]) -> None:
    """Ask Asterisk to stop, then SIGTERM, then SIGKILL; wait for every pid to go."""
    with contextlib.suppress(SandboxError):
        run(
            ["chroot", str(root), "asterisk", "-rx", "core stop now"],
            timeout=CLI_TIMEOUT,
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


def asterisk_pids(root: Path, recorded: Any) -> list[int]:
    """Living Asterisk processes of the sandbox in ``root``: the recorded pid first, then any
    other ``asterisk`` whose root directory is ``root`` (in case the state was lost)."""
    pids: list[int] = []
    if isinstance(recorded, int) and alive(recorded) and _comm(recorded) == "asterisk":
        pids.append(recorded)
    for pid in _processes_rooted_at(root):
        if pid not in pids and _comm(pid) == "asterisk" and alive(pid):
            pids.append(pid)
    return pids


def alive(pid: int) -> bool:
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
    while any(alive(p) for p in pids):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)
    return True


def refuse_busy_port(address: str, port: int, what: str) -> None:
    """Fail clearly if something (another Asterisk?) already listens where ours must."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(1.0)
        if sock.connect_ex((address, port)) == 0:
            raise SandboxError(
                f"{address}:{port} ({what}) is already in use by another process: "
                "stop it (another Asterisk?) before `ctc sandbox up`"
            )


def ari_info(url: str, user: str, password: str, *, timeout: float) -> dict[str, Any] | None:
    """``GET {url}/asterisk/info`` as ``user``; None unless it answers 200."""
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    request = urllib.request.Request(
        f"{url}/asterisk/info", headers={"Authorization": f"Basic {token}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            if response.status != 200:
                return None
            body = json.loads(response.read() or b"{}")
    except (OSError, ValueError, urllib.error.URLError):
        return None
    return body if isinstance(body, dict) else {}
