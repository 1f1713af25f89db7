"""A Docker engine for the asterisk-docker stack's test: the one running, or one we start.

The development and CI machines run no Docker engine until a test needs one. Docker works
there with host networking only: Debian bookworm's ``docker.io`` (dockerd 20.10) starts in
about a second once ``/etc/docker/daemon.json`` turns off the default bridge, iptables and
IP forwarding. Those settings must be in the file **before** dockerd starts, and never
also given as flags (dockerd refuses a setting given both ways). No bridge network is ever
created: every service and every build of the stack uses ``network_mode: host``.

:class:`Dockerd` uses a dockerd that already answers (and leaves it running); otherwise
it writes those settings into ``daemon.json`` (keeping any other setting there), starts
``dockerd`` detached and, at :meth:`Dockerd.stop`, stops that process by its PID (SIGTERM,
then SIGKILL): nothing is killed by name. Blocking on purpose: it backs a test fixture
and the stack's ``prepare`` tool, never the daemon.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from engine.devtools.host import require_root, tail_file
from engine.errors import SandboxError

__all__ = ["DAEMON_SETTINGS", "Dockerd", "docker_answers", "docker_cli", "write_daemon_settings"]

#: What ``daemon.json`` must say for dockerd to run on a host-networking-only machine.
DAEMON_SETTINGS: dict[str, Any] = {
    "bridge": "none",
    "iptables": False,
    "ip6tables": False,
    "ip-forward": False,
    "ip-masq": False,
}

#: Bound on dockerd answering after it started (measured: about 1 s).
START_TIMEOUT = 60.0
#: Bound on dockerd exiting after SIGTERM (it stops its containers and containerd first).
STOP_TIMEOUT = 30.0


def docker_cli() -> str:
    """The ``docker`` client: Debian's (docker.io) when installed, else the one on PATH."""
    for candidate in ("/usr/bin/docker", shutil.which("docker")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise SandboxError("no docker client: install Debian's docker.io (scripts/bootstrap does)")


def docker_answers(timeout: float = 10.0) -> bool:
    """True when a Docker engine answers ``docker info`` on the default socket."""
    try:
        done = subprocess.run(
            [docker_cli(), "info", "--format", "{{.ServerVersion}}"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=timeout,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired, SandboxError):
        return False
    return done.returncode == 0 and bool(done.stdout.strip())


class Dockerd:
    """The Docker engine the stack runs on: :meth:`start` it, :meth:`stop` what we started.

    :param config_path: dockerd's configuration file; :data:`DAEMON_SETTINGS` are merged
        into it before dockerd starts.
    :param log_path: where a dockerd started here writes its output.
    """

    def __init__(
        self,
        config_path: Path = Path("/etc/docker/daemon.json"),
        log_path: Path = Path("/run/ctc-docker/dockerd.log"),
    ) -> None:
        self.config_path = config_path
        self.log_path = log_path
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def started_here(self) -> bool:
        """True when :meth:`start` launched dockerd (so :meth:`stop` will stop it)."""
        return self._proc is not None

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    def start(self) -> Dockerd:
        """Use the running Docker engine, or configure and start one; wait until it answers."""
        if self._proc is not None or docker_answers():
            return self
        require_root()
        if not shutil.which("dockerd"):
            raise SandboxError(
                "dockerd is not installed: `apt-get install docker.io docker-compose` "
                "(scripts/bootstrap does)"
            )
        write_daemon_settings(self.config_path)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                ["dockerd"],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + START_TIMEOUT
        while not docker_answers(timeout=5.0):
            if self._proc.poll() is not None:
                code = self._proc.returncode
                self._proc = None
                raise SandboxError(
                    f"dockerd exited {code} at start; its log ({self.log_path}) ends:\n"
                    + tail_file(self.log_path)
                )
            if time.monotonic() >= deadline:
                self.stop()
                raise SandboxError(
                    f"dockerd did not answer within {START_TIMEOUT:g} s; its log "
                    f"({self.log_path}) ends:\n" + tail_file(self.log_path)
                )
            time.sleep(0.2)
        return self

    def stop(self) -> None:
        """Stop the dockerd :meth:`start` launched (by its PID); a no-op otherwise."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        for sig, grace in ((signal.SIGTERM, STOP_TIMEOUT), (signal.SIGKILL, 10.0)):
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(grace)
                return


def write_daemon_settings(config_path: Path) -> None:
    """Merge :data:`DAEMON_SETTINGS` into dockerd's ``config_path`` (other keys are kept).

    Raises :class:`~engine.errors.SandboxError` naming the file when it is not a JSON
    object: dockerd would refuse it too, and overwriting it would lose the admin's settings.
    """
    current: dict[str, Any] = {}
    if config_path.exists():
        try:
            loaded = json.loads(config_path.read_text() or "{}")
        except (OSError, ValueError) as exc:
            raise SandboxError(f"{config_path}: not readable JSON: {exc}") from exc
        if not isinstance(loaded, dict):
            raise SandboxError(f"{config_path}: expected a JSON object")
        current = loaded
    wanted = {**current, **DAEMON_SETTINGS}
    if wanted != current or not config_path.exists():
        config_path.parent.mkdir(parents=True, exist_ok=True)
        config_path.write_text(json.dumps(wanted, indent=2) + "\n")
