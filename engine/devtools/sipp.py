"""SIPp phones: one SIPp process playing one phone, for tests, the demo and benchmarks.

The scenarios ship inside this package, in ``scenarios/`` (answer, busy, no answer, answer
then hang up, a DTMF caller; its README explains each); ``dialplan/pjsip.conf`` says which
127.0.0.1 port is which endpoint. SIPp itself is Debian's ``sip-tester``. Blocking on
purpose: it backs tests and CLI tools, not the daemon.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import re
import signal
import subprocess
import time
from pathlib import Path
from types import TracebackType

from engine.errors import SandboxError

__all__ = ["SCENARIOS", "SippPhone", "TracedMessage"]

#: The SIPp scenarios shipped with the dev tools (package data, so a wheel has them too).
SCENARIOS = Path(__file__).resolve().parent / "scenarios"


def _udp_port_bound(port: int) -> bool:
    """True when some process has a UDP socket bound to ``port`` (IPv4)."""
    try:
        lines = Path("/proc/net/udp").read_text().splitlines()[1:]
    except OSError:
        return False
    for line in lines:
        fields = line.split()
        if len(fields) > 1 and int(fields[1].rsplit(":", 1)[1], 16) == port:
            return True
    return False


def _headers(lines: list[str]) -> dict[str, str]:
    """The first value of each header (lower-case name) among a message's lines."""
    found: dict[str, str] = {}
    for line in lines:
        name, sep, value = line.partition(":")
        if sep and " " not in name:
            found.setdefault(name.lower(), value.strip())
    return found


def _via_host(via: str) -> str:
    """``SIP/2.0/UDP 127.0.0.3:5060;rport;branch=…`` -> ``127.0.0.3``."""
    sent_by = via.split(None, 1)[-1].split(";", 1)[0]
    return sent_by.rsplit(":", 1)[0]


@dataclasses.dataclass(frozen=True)
class TracedMessage:
    """One SIP message of SIPp's ``-trace_msg`` log."""

    sent: bool  # False: received
    start: str  # its start line: ``INVITE sip:… SIP/2.0``, ``SIP/2.0 503 Service Unavailable``
    headers: dict[str, str]  # the first value of each header, by lower-case name


def _traced(text: str) -> list[TracedMessage]:
    """The messages of a ``-trace_msg`` log, in its order."""
    messages: list[TracedMessage] = []
    for entry in re.split(r"\n(?=-{10,})", text):
        lines = [line.strip() for line in entry.splitlines()]
        sent = any("message sent" in line for line in lines[:3])
        if not sent and not any("message received" in line for line in lines[:3]):
            continue
        body = [line for line in lines[2:] if line]
        if body:
            messages.append(TracedMessage(sent, body[0], _headers(body[1:])))
    return messages


class SippPhone:
    """A SIPp process playing one phone; a context manager.

    ``with SippPhone("uas_answer.xml", port=5071, workdir=tmp) as phone:`` starts SIPp,
    returns once it listens on ``port`` (or raises with its log if it died), and on exit
    kills it if it still runs. ``phone.wait(timeout)`` / ``await phone.wait_async(within)``
    wait for it to finish its ``calls`` and return its exit code (0: every call succeeded).
    ``phone.report()`` gives its screen, error trace and output for assertion messages.

    ``hold_ms`` is SIPp's ``-d``: the length of ``<pause/>`` in scenarios that have one
    (how long ``uas_answer_then_hangup`` talks before hanging up).

    ``trace_messages`` logs every SIP message (SIPp's ``-trace_msg``), so
    :meth:`received_invites` can say which calls reached the phone and from which Asterisk:
    with several sandbox instances, how many times a call was dialled and by which node.
    """

    def __init__(
        self,
        scenario: str,
        *,
        port: int,
        workdir: Path,
        calls: int = 1,
        hold_ms: int = 2000,
        timeout_s: int = 60,
        media_port: int | None = None,
        extra_args: tuple[str, ...] = (),
        trace_messages: bool = False,
    ) -> None:
        self.scenario = SCENARIOS / scenario
        self.port = port
        self.workdir = workdir
        self.calls = calls
        self.hold_ms = hold_ms
        self.timeout_s = timeout_s
        # Outside Asterisk's RTP range (rtp.conf 10000-20000) and 10 apart per SIP port,
        # so concurrent phones never collide on RTP/RTCP ports.
        self.media_port = media_port if media_port is not None else 20000 + (port % 1000) * 10
        self.extra_args = extra_args
        stem = f"{self.scenario.stem}_{port}"
        self.screen_file = workdir / f"{stem}_screen.log"
        self.error_file = workdir / f"{stem}_errors.log"
        self.output_file = workdir / f"{stem}_output.log"
        self.message_file = workdir / f"{stem}_messages.log" if trace_messages else None
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def command(self) -> list[str]:
        return [
            "sipp",
            "-sf", str(self.scenario),
            "-i", "127.0.0.1",
            "-p", str(self.port),
            "-mp", str(self.media_port),
            "-m", str(self.calls),
            "-d", str(self.hold_ms),
            "-aa",  # auto-answer UPDATE/INFO/NOTIFY/OPTIONS (connected-line updates)
            "-nostdin",
            "-timeout", f"{self.timeout_s}s",
            "-timeout_error",
            "-trace_err", "-error_file", str(self.error_file),
            "-trace_screen", "-screen_file", str(self.screen_file),
            *(
                ("-trace_msg", "-message_file", str(self.message_file))
                if self.message_file is not None
                else ()
            ),
            *self.extra_args,
        ]  # fmt: skip

    def start(self, ready_timeout: float = 10.0) -> SippPhone:
        if not self.scenario.is_file():
            raise FileNotFoundError(self.scenario)
        if _udp_port_bound(self.port):
            raise RuntimeError(f"UDP port {self.port} is already in use: a phone left running?")
        self.workdir.mkdir(parents=True, exist_ok=True)
        with self.output_file.open("wb") as out:
            self._proc = subprocess.Popen(
                self.command,
                cwd=self.workdir,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + ready_timeout
        while not _udp_port_bound(self.port):
            if self._proc.poll() is not None:
                raise RuntimeError(f"SIPp exited {self._proc.returncode} at start\n{self.report()}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"SIPp did not bind 127.0.0.1:{self.port}\n{self.report()}")
            time.sleep(0.02)
        return self

    def wait(self, timeout: float = 30.0) -> int:
        """Wait for SIPp to exit; its exit code. Raises TimeoutError with its report."""
        if self._proc is None:
            raise SandboxError(f"SIPp phone {self.scenario.name} on {self.port} not started")
        try:
            return self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise TimeoutError(f"SIPp still running after {timeout:g} s\n{self.report()}") from None

    async def wait_async(self, within: float = 30.0) -> int:
        """``wait`` without blocking the event loop (ARI events keep flowing)."""
        return await asyncio.to_thread(self.wait, within)

    @property
    def returncode(self) -> int | None:
        return None if self._proc is None else self._proc.poll()

    @property
    def pid(self) -> int | None:
        """SIPp's process id once started."""
        return None if self._proc is None else self._proc.pid

    def stop(self) -> None:
        """Terminate SIPp if it still runs (SIGTERM, then SIGKILL) and reap it."""
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        for sig, grace in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(grace)
                return

    def received_invites(self) -> dict[str, str]:
        """The calls that reached this phone: each INVITE's Call-ID and the address of the
        Asterisk that sent it (its top ``Via``). A re-INVITE of the same call (bridging
        sends one) is the same Call-ID, so every key is one call dialled once."""
        calls: dict[str, str] = {}
        for message in self.messages():
            if message.sent or not message.start.startswith("INVITE "):
                continue
            call_id, via = message.headers.get("call-id"), message.headers.get("via")
            if call_id is None or via is None:
                continue
            calls.setdefault(call_id, _via_host(via))
        return calls

    def messages(self) -> list[TracedMessage]:
        """Every SIP message this phone sent or received so far (``trace_messages``)."""
        if self.message_file is None:
            raise SandboxError(
                f"SIPp phone {self.scenario.name} on {self.port}: started without "
                "trace_messages, so it kept no messages"
            )
        try:
            text = self.message_file.read_text(errors="replace")
        except FileNotFoundError:
            return []
        return _traced(text)

    def report(self) -> str:
        """SIPp's final screen, unexpected-message trace and output, for failure messages."""
        parts = [f"$ {' '.join(self.command)}  (exit {self.returncode})"]
        for label, path in (
            ("errors", self.error_file),
            ("screen", self.screen_file),
            ("output", self.output_file),
        ):
            with contextlib.suppress(OSError):
                text = path.read_text(errors="replace").strip()
                if text:
                    parts.append(f"--- {label} ({path.name}) ---\n{text[-4000:]}")
        return "\n".join(parts)

    def __enter__(self) -> SippPhone:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
