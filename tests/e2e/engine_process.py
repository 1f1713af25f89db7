"""``ctc run`` as a process of its own, so a test can kill -9 it mid-call and start another.

The in-process engine of :mod:`tests.e2e.engine_fixtures` can only stop gracefully; a
crash loses what a real daemon loses (tasks in flight, the event socket, rows not yet
written). ``EngineProcess`` writes an engine YAML for the sandbox, runs the real CLI,
reads its JSON log to know when a resync has finished (no sleeping: it waits for the log
line, bounded), and places calls over the control socket like an ERP. It follows its
sandbox's address (ARI and AMI of a named instance), so two of them with two node names
are two PBX nodes over one database.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path
from typing import Any

from engine.api.client import ControlClient
from engine.devtools.sandbox import ARI_PASSWORD, Sandbox
from tests.e2e.helpers import AMI_PASSWORD
from tests.support.cli import CTC
from tests.support.waiting import eventually

__all__ = ["EngineProcess"]


class EngineProcess:
    """One engine daemon at a time for a test: ``start``, ``kill`` (-9), ``start`` again."""

    def __init__(
        self,
        db_url: str,
        sandbox: Sandbox,
        workdir: Path,
        *,
        app: str,
        node: dict[str, Any] | None = None,
        **calls: Any,
    ) -> None:
        self.workdir = workdir
        self.socket = workdir / "engine.sock"
        self.log_file = workdir / "engine.log"
        self.config = workdir / "engine.yaml"
        settings = {
            "database": {"url": db_url},
            "api": {"socket": str(self.socket), "socket_mode": "0600"},
            "log": {"level": "info", "format": "json"},
            "ari": {
                "url": sandbox.ari_url.removesuffix("/ari"),
                "username": "ctc",
                "password": ARI_PASSWORD,
                "app": app,
                "recording_dir": str(sandbox.root / "var/spool/asterisk/recording"),
            },
            "ami": {"host": sandbox.address, "password": AMI_PASSWORD},
            "agi": {"enabled": False},
            "calls": calls,
        }
        if node is not None:
            settings["node"] = node  # settings ``node:`` (name, capacity, failover)
        workdir.mkdir(parents=True, exist_ok=True)
        self.config.write_text(json.dumps(settings))  # JSON is YAML
        self._proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    async def start(self, within: float = 30.0) -> None:
        """Start ``ctc run``; return once its first resync against Asterisk is done."""
        if self._proc is not None and self._proc.poll() is None:
            raise RuntimeError("the engine is already running")
        seen = self.count("stasis.resynced")
        self._spawn()
        await self.wait_log("stasis.resynced", count=seen + 1, within=within)

    def _spawn(self) -> None:
        with self.log_file.open("ab") as log:
            self._proc = subprocess.Popen(
                [str(CTC), "--config", str(self.config), "run"],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        self.starts += 1

    def kill(self) -> None:
        """kill -9: no graceful stop, nothing flushed, the event socket just drops."""
        proc = self._proc
        if proc is None:
            return
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)

    def stop(self) -> None:
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)

    def lines(self, event: str | None = None) -> list[dict[str, Any]]:
        if not self.log_file.exists():
            return []
        out = []
        for raw in self.log_file.read_text(errors="replace").splitlines():
            try:
                line = json.loads(raw)
            except ValueError:
                continue
            if isinstance(line, dict) and (event is None or line.get("event") == event):
                out.append(line)
        return out

    def count(self, event: str) -> int:
        return len(self.lines(event))

    async def wait_log(self, event: str, *, count: int = 1, within: float = 30.0) -> dict[str, Any]:
        """Wait until the log holds ``count`` lines of ``event``; the last one."""

        def logged() -> list[dict[str, Any]]:
            if self._proc is not None and self._proc.poll() is not None:
                raise AssertionError(f"engine exited {self._proc.returncode}: {self.tail()}")
            found = self.lines(event)
            return found if len(found) >= count else []

        found = await eventually(logged, within=within, interval=0.05, what=f"{count} x {event}")
        return found[count - 1]

    def tail(self, n: int = 30) -> str:
        if not self.log_file.exists():
            return ""
        return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-n:])

    async def api(
        self, method: str, path: str, body: dict[str, Any] | None = None
    ) -> tuple[int, Any]:
        async with ControlClient(self.socket) as client:
            return await client.request(method, path, body=body)
