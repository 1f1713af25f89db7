"""Each party of a benchmark in its own CPU cgroup, as systemd runs services.

Why: on a PBX host, Asterisk and the engine are two systemd services, and systemd gives each
service its own cgroup with the same CPU weight: under contention the engine's one event
loop gets a service's share, not one thread's share against Asterisk's hundreds of channel
threads. Run as plain processes in one pool (as the bench does by default), the engine
waits behind every runnable Asterisk thread and callers hear that. The phones (SIPp) are
not on a real PBX at all, so they get a group of their own too, as does the bench process
itself (it runs the bare programs). ``ServiceGroups`` makes ``ctc-bench/<name>`` groups with
equal weight and moves processes into them; leaving it moves everything back to the root
group and removes the groups.

cgroup v1 (``/sys/fs/cgroup/cpu``) or v2 (``/sys/fs/cgroup`` with the ``cpu`` controller);
root only.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Self

__all__ = ["ServiceGroups"]

_V1 = Path("/sys/fs/cgroup/cpu")
_V2 = Path("/sys/fs/cgroup")


class ServiceGroups:
    """CPU cgroups ``ctc-bench/<name>`` for ``names``, equal weight; a context manager."""

    def __init__(self, *names: str) -> None:
        self.names = names
        if (_V1 / "cgroup.procs").exists():
            self._root = _V1
        elif "cpu" in (_V2 / "cgroup.controllers").read_text(errors="replace").split():
            self._root = _V2
        else:
            raise RuntimeError("no CPU cgroup controller (v1 /sys/fs/cgroup/cpu or v2 cpu)")
        self._base = self._root / "ctc-bench"

    def __enter__(self) -> Self:
        self._release()  # what a run killed before it could leave left behind
        self._base.mkdir(exist_ok=True)
        if self._root is _V2:
            (self._base / "cgroup.subtree_control").write_text("+cpu")
        for name in self.names:
            (self._base / name).mkdir(exist_ok=True)
        return self

    def move(self, name: str, pid: int) -> None:
        """Process ``pid`` (all its threads) into group ``name``."""
        (self._base / name / "cgroup.procs").write_text(str(pid))

    def mover(self, name: str) -> Callable[[int], None]:
        """``move`` into group ``name``, as a callable of the pid."""
        return lambda pid: self.move(name, pid)

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._release()

    def _release(self) -> None:
        """Every process back in the root group; the groups removed."""
        if not self._base.is_dir():
            return
        for group in [g for g in self._base.iterdir() if g.is_dir()]:
            with contextlib.suppress(OSError):
                for pid in (group / "cgroup.procs").read_text().split():
                    with contextlib.suppress(OSError):  # it may have exited meanwhile
                        (self._root / "cgroup.procs").write_text(pid)
                os.rmdir(group)
        with contextlib.suppress(OSError):
            os.rmdir(self._base)
