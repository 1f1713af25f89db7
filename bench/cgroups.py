"""Each party of a benchmark in its own CPU cgroup, weighted as systemd runs the services.

Why: on a PBX host, Asterisk, PostgreSQL and the engine are systemd services, and systemd
gives each service its own cgroup with the unit's ``CPUWeight=`` (100 unless the unit says
otherwise; ``config/ctc-engine.service`` says 200 for the engine): under contention the
engine's one event loop gets its service's share, not one thread's share against
Asterisk's hundreds of channel threads. Run as plain processes in one pool (as the bench
does by default), the engine waits behind every runnable Asterisk thread and callers hear
that; and a PostgreSQL left in the root group competes with the services process by
process. The phones (SIPp) are not on a real PBX at all, so they get a group of their own
too, as does the bench process itself (it runs the bare programs, which stand in for the
engine and so get its weight). ``ServiceGroups`` makes ``ctc-bench/<name>`` groups with
the given weights and moves processes into them; leaving it moves every process back to
the group it came from (a process forked inside a group, such as a PostgreSQL backend,
goes where the group's first process came from) and removes the groups.

cgroup v1 (``/sys/fs/cgroup/cpu``, ``cpu.shares`` = weight x 1024 / 100) or v2
(``/sys/fs/cgroup`` with the ``cpu`` controller, ``cpu.weight``); root only.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Self

from bench.procs import children_of

__all__ = ["DEFAULT_WEIGHT", "ServiceGroups", "unit_cpu_weight"]

_V1 = Path("/sys/fs/cgroup/cpu")
_V2 = Path("/sys/fs/cgroup")
DEFAULT_WEIGHT = 100  # systemd's CPUWeight= when a unit sets none
_RELEASE_PASSES = 10


def unit_cpu_weight(unit: Path) -> int:
    """The ``CPUWeight=`` a systemd unit file sets (the last one, as systemd reads it;
    systemd's default when it sets none or a word such as ``idle``)."""
    found = re.findall(r"^\s*CPUWeight\s*=\s*(\S*)\s*$", unit.read_text(), re.MULTILINE)
    return int(found[-1]) if found and found[-1].isdigit() else DEFAULT_WEIGHT


class ServiceGroups:
    """CPU cgroups ``ctc-bench/<name>``, one per entry of ``weights`` (systemd's
    ``CPUWeight=`` scale, 1-10000); a context manager."""

    def __init__(self, weights: Mapping[str, int]) -> None:
        self.weights = dict(weights)
        if (_V1 / "cgroup.procs").exists():
            self._root = _V1
        elif "cpu" in (_V2 / "cgroup.controllers").read_text(errors="replace").split():
            self._root = _V2
        else:
            raise RuntimeError("no CPU cgroup controller (v1 /sys/fs/cgroup/cpu or v2 cpu)")
        self._base = self._root / "ctc-bench"
        self._origins: dict[int, Path] = {}  # pid moved -> the group it came from
        self._group_origins: dict[str, Path] = {}  # group -> its first process's origin

    def __enter__(self) -> Self:
        self._release()  # what a run killed before it could leave left behind
        self._base.mkdir(exist_ok=True)
        if self._root is _V2:
            (self._base / "cgroup.subtree_control").write_text("+cpu")
        for name, weight in self.weights.items():
            group = self._base / name
            group.mkdir(exist_ok=True)
            if self._root is _V2:
                (group / "cpu.weight").write_text(str(weight))
            else:
                (group / "cpu.shares").write_text(str(max(2, weight * 1024 // 100)))
        return self

    def move(self, name: str, pid: int) -> None:
        """Process ``pid`` (all its threads) into group ``name``; it goes back where it
        came from when the groups are left."""
        origin = self._group_of(pid)
        (self._base / name / "cgroup.procs").write_text(str(pid))
        self._origins.setdefault(pid, origin)
        self._group_origins.setdefault(name, origin)

    def move_tree(self, name: str, pid: int) -> None:
        """``pid`` and its children of now into group ``name`` (a server's workers; the
        ones it forks later are born in the group)."""
        self.move(name, pid)
        for child in children_of(pid):
            # a child that exits meanwhile: no /proc entry, or nothing to move
            with contextlib.suppress(FileNotFoundError, ProcessLookupError):
                self.move(name, child)

    def mover(self, name: str) -> Callable[[int], None]:
        """``move`` into group ``name``, as a callable of the pid."""
        return lambda pid: self.move(name, pid)

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._release()

    def _group_of(self, pid: int) -> Path:
        """The group of this hierarchy that ``pid`` is in now."""
        for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
            _, controllers, path = line.split(":", 2)
            names = controllers.split(",")
            if (self._root is _V2 and controllers == "") or (self._root is _V1 and "cpu" in names):
                return self._root / path.lstrip("/")
        return self._root

    def _release(self) -> None:
        """Every process back in the group it came from (one born in a group: where the
        group's first process came from; else the root group); the groups removed."""
        if not self._base.is_dir():
            return
        for group in [g for g in self._base.iterdir() if g.is_dir()]:
            born_here = self._group_origins.get(group.name, self._root)
            # a server still forks while its workers are moved out: the processes moved in
            # by name go first (what they fork then is born back home), and a few passes
            # take what was forked meanwhile
            for _ in range(_RELEASE_PASSES):
                with contextlib.suppress(OSError):
                    pids = [int(pid) for pid in (group / "cgroup.procs").read_text().split()]
                if not pids:
                    break
                for pid in sorted(pids, key=lambda pid: pid not in self._origins):
                    origin = self._origins.get(pid, born_here)
                    if not (origin / "cgroup.procs").exists():
                        origin = self._root
                    with contextlib.suppress(OSError):  # it may have exited meanwhile
                        (origin / "cgroup.procs").write_text(str(pid))
            with contextlib.suppress(OSError):
                os.rmdir(group)
        with contextlib.suppress(OSError):
            os.rmdir(self._base)
