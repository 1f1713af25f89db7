"""The asterisk-docker stack under test: its env file, its ports, and docker-compose on it.

The stack runs beside the sandbox Asterisk and the other e2e tests on the same host
network, so every port here differs from theirs (sandbox: SIP 5060, AMI 5038, ARI 8088,
RTP 10000-20000, FastAGI 4573, SIPp phones 5071-5090; PostgreSQL 5432) and the compose
project has a name of its own, which names its containers, images and volumes. Every
command is bounded; a failure raises with the command's output, and :meth:`ComposeStack.logs`
gives the services' logs for an assertion message.
"""

from __future__ import annotations

import base64
import os
import socket
from dataclasses import dataclass
from pathlib import Path

from engine.devtools.docker_daemon import docker_cli
from engine.devtools.host import run

__all__ = ["STACK_DIR", "ComposeStack", "StackPorts"]

#: The stack's folder in this checkout (docker-compose.yml, env.example, the Dockerfiles).
STACK_DIR = Path(__file__).resolve().parents[2] / "asterisk-docker"

#: Bound on building the three images (measured from an empty Docker: about 2 min).
BUILD_TIMEOUT = 1200.0
#: Bound on a quick compose command (up -d, down, exec, ps).
COMMAND_TIMEOUT = 180.0


@dataclass(frozen=True, slots=True)
class StackPorts:
    """The host ports the stack under test uses: none the sandbox or other tests use."""

    api: int
    sip: int = 5160
    ami: int = 5138
    ari_http: int = 8188
    agi: int = 4673
    rtp_start: int = 30000
    rtp_end: int = 30999
    postgres: int = 5442
    agents: tuple[int, int, int, int] = (5171, 5172, 5173, 5174)
    trunk: int = 5180
    caller: int = 5179

    def tcp_in_use(self) -> list[int]:
        """The TCP ports of the stack something on this host already listens on."""
        busy = []
        for port in (self.api, self.ami, self.ari_http, self.agi, self.postgres):
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    busy.append(port)
        return busy


class ComposeStack:
    """docker-compose on ``asterisk-docker/`` as project ``project``, with an env file
    written for ``ports`` and fresh random secrets."""

    def __init__(self, project: str, ports: StackPorts, workdir: Path, base_image: str) -> None:
        self.project = project
        self.ports = ports
        self.env_file = workdir / "stack.env"
        self.postgres_password = _secret()
        self.env_file.write_text(
            "\n".join(f"{name}={value}" for name, value in self._env(base_image).items()) + "\n"
        )

    def _env(self, base_image: str) -> dict[str, str | int]:
        ports = self.ports
        return {
            "ARI_PASSWORD": _secret(),
            "AMI_PASSWORD": _secret(),
            "POSTGRES_PASSWORD": self.postgres_password,
            "CTC_SECRET_KEY": base64.urlsafe_b64encode(os.urandom(32)).decode(),
            "BASE_IMAGE": base_image,
            "SIP_PORT": ports.sip,
            "ARI_HTTP_PORT": ports.ari_http,
            "AMI_PORT": ports.ami,
            "AGI_PORT": ports.agi,
            "RTP_PORT_START": ports.rtp_start,
            "RTP_PORT_END": ports.rtp_end,
            **{f"PHONE_AGENT{n}_PORT": port for n, port in enumerate(ports.agents, 1)},
            "PHONE_TRUNK_PORT": ports.trunk,
            "PHONE_CALLER_PORT": ports.caller,
            "ENGINE_API_PORT": ports.api,
            "POSTGRES_PORT": ports.postgres,
            "ENGINE_HEALTH_INTERVAL": "2s",  # healthy soon after start; the default is 30 s
        }

    @property
    def database_url(self) -> str:
        """The stack's database, as the engine in it reaches it (and a test on this host)."""
        return f"postgresql://ctc:{self.postgres_password}@127.0.0.1:{self.ports.postgres}/ctc"

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.api}"

    def compose(self, *args: str, timeout: float = COMMAND_TIMEOUT) -> str:
        """Run ``docker-compose -p PROJECT --env-file ENV ARGS`` in the stack's folder."""
        command = ["docker-compose", "-p", self.project, "--env-file", str(self.env_file), *args]
        env = {**os.environ, "COMPOSE_FILE": str(STACK_DIR / "docker-compose.yml")}
        return run(command, timeout=timeout, what=f"docker-compose {args[0]}", env=env).stdout

    def build(self) -> None:
        self.compose("build", "--parallel", timeout=BUILD_TIMEOUT)

    def up(self) -> None:
        self.compose("up", "-d", "--no-build")

    def down(self) -> None:
        """Stop and remove the containers and the volumes (the database, the recordings)."""
        self.compose("down", "--volumes", "--remove-orphans")

    def ctc(self, *args: str) -> str:
        """``ctc ARGS`` inside the engine's container; its standard output."""
        return self.compose("exec", "-T", "engine", "ctc", *args)

    def health(self, service: str) -> str:
        """The Docker health status of ``service``'s container ("" when it has none)."""
        container = self.compose("ps", "-q", service).strip()
        if not container:
            return ""
        return _docker("inspect", "--format", "{{.State.Health.Status}}", container).strip()

    def containers(self) -> list[str]:
        """Every container of the project, running or not."""
        label = f"label=com.docker.compose.project={self.project}"
        return _docker("ps", "--all", "--quiet", "--filter", label).split()

    def volume_dir(self, volume: str) -> Path:
        """Where the project's volume ``volume`` keeps its files on this host."""
        name = f"{self.project}_{volume}"
        return Path(_docker("volume", "inspect", "--format", "{{.Mountpoint}}", name).strip())

    def logs(self) -> str:
        """The tail of every service's log, for a failure message."""
        try:
            return self.compose("logs", "--no-color", "--tail=60")
        except Exception as exc:  # a failure message must never fail itself
            return f"(no logs: {exc})"


def _docker(*args: str) -> str:
    return run([docker_cli(), *args], timeout=COMMAND_TIMEOUT, what=f"docker {args[0]}").stdout


def _secret() -> str:
    """A password made of characters the stack's entrypoints accept."""
    return base64.urlsafe_b64encode(os.urandom(18)).decode().rstrip("=")
