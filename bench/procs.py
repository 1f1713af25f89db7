"""What /proc says about the processes a bench measures: CPU time, parents and children.

A server's CPU is its own, its live workers' and that of the workers it has reaped
(``cutime``/``cstime``): :func:`tree_cpu` counts all three, so the difference of two
readings is exact even when a worker ends (or is born) between them.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

__all__ = [
    "ServerCpu",
    "children_of",
    "command_of",
    "cpu_seconds",
    "cpu_times",
    "parent_of",
    "rss_mb",
    "tree_cpu",
]


def _stat(pid: int) -> list[str]:
    # the command may hold spaces and parentheses: the fields follow the last ")"
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def cpu_times(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of process ``pid`` so far."""
    fields = _stat(pid)
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def cpu_seconds(pid: int) -> float:
    return sum(cpu_times(pid))


def parent_of(pid: int) -> int:
    """The parent process of ``pid``."""
    return int(_stat(pid)[1])


def command_of(pid: int) -> str:
    """The command name of ``pid`` (``/proc/PID/comm``)."""
    return Path(f"/proc/{pid}/comm").read_text().strip()


def children_of(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` now."""
    out = []
    for proc in Path("/proc").glob("[0-9]*"):
        with contextlib.suppress(OSError, ValueError):  # it may have exited meanwhile
            if parent_of(int(proc.name)) == pid:
                out.append(int(proc.name))
    return out


def tree_cpu(pid: int) -> float:
    """CPU seconds so far of server ``pid``: its own, its workers' that have ended (and
    that it reaped), its live workers'."""
    fields = _stat(pid)
    tick = os.sysconf("SC_CLK_TCK")
    total = sum(int(fields[i]) for i in (11, 12, 13, 14)) / tick
    for child in children_of(pid):
        with contextlib.suppress(OSError):  # it ended meanwhile: counted in cutime next
            total += cpu_seconds(child)
    return total


class ServerCpu:
    """The CPU seconds server ``pid`` (:func:`tree_cpu`) spends from now on; ``pid`` None
    (no local server to read) spends None."""

    def __init__(self, pid: int | None) -> None:
        self._pid = pid
        self._start = 0.0 if pid is None else tree_cpu(pid)

    def spent(self) -> float | None:
        return None if self._pid is None else tree_cpu(self._pid) - self._start


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0
