"""The FastAGI server: dialplan's ``AGI(agi://host:port/script?args)`` answered by the engine.

Why our own: FastAGI is a tiny line protocol, and what matters here (a bad connection never
touches the server, hang-ups are reported precisely, shutdown is bounded, nothing blocks the
loop; pyst2, for one, is synchronous) is easier to own than to verify in a library. One
asyncio listener, every connection its own task:

- Asterisk connects and sends a header block, read with a timeout and a size bound and
  parsed by :func:`~engine.asterisk.links.agi_protocol.parse_request` (the wire format is
  :mod:`engine.asterisk.links.agi_protocol`, apart from the sockets); a request
  that is malformed, oversized or too slow is logged and the connection closed without a
  byte sent back (nothing we could send is safe to a peer that is not Asterisk), and the
  server goes on serving.
- The handler gets an :class:`AgiChannel`: typed async commands over that one connection
  (``answer``, ``stream_file``, ``get_data``, ``wait_for_digit``, ``say_digits``,
  ``say_number``, ``set_variable``, ``get_variable``, ``exec``, ``hangup``, ``verbose``),
  one at a time (a lock keeps concurrent callers from interleaving responses).
- The bytes go through an :class:`AgiConnection` (an ``asyncio.Protocol``, not asyncio's
  streams: measured cheaper per command, see its docstring); the time limits below are
  deadlines it checks with one timer per connection.
- Commands are encoded and their responses parsed by the protocol module; ``510``
  (unknown command) and ``520`` (bad syntax) raise :class:`AgiCommandError`.
- A hang-up raises :class:`AgiHangup`, and what Asterisk 22 sends for one is measured, not
  guessed: a media command in progress (``STREAM FILE``, ``GET DATA``, ``WAIT FOR DIGIT``)
  answers ``200 result=-1`` first, and the ``HANGUP`` notice follows ~40 ms later. So a
  ``result=-1`` waits up to :attr:`AgiChannel.hangup_grace` for that notice: with it the
  command raises :class:`AgiHangup`, without it :class:`AgiCommandError` (a missing sound
  file also answers ``-1``). A ``HANGUP`` seen while waiting for an answer is only noted:
  the answer still comes. After it, media commands get ``511`` (AgiHangup), while
  ``get_variable``/``set_variable`` keep working on the dead channel, and Asterisk keeps the
  connection open until we close it. EOF, a reset connection and a socket timeout raise
  AgiHangup too (only the reply limit below raises AgiTimeout). The server catches
  AgiHangup quietly: a caller hanging up mid-menu is normal.
- Bounded in time and number: the request block must arrive within ``request_timeout``
  of connecting, and every command's answer within ``reply_timeout`` plus what the command
  itself waits (a key timeout, a recording's length; ``EXEC Dial`` is not limited, it
  lasts as long as the transferred call). A silent peer gets :class:`AgiTimeout`, which
  the handler sees like any failed command (the IVR ends its session with the reason),
  and the connection is closed. Past ``max_connections`` open connections a new one is
  closed at once, logged and counted (``ctc_agi_refused_total{reason="capacity"}``).
- Any other handler exception is logged with the call id (the Asterisk ``uniqueid``) and
  the connection is closed; Asterisk then continues the dialplan after ``AGI()``.
- :class:`AgiServer` has the engine's lifecycle (:mod:`engine.lifecycle`); closing it is
  bounded (``close_grace``) and cancellation-safe: the listener and every open connection
  are closed (and their handler tasks cancelled) before its first ``await``.
- Its state goes to the health report as component ``agi`` (not required for readiness).

Usage::

    async def ivr(channel: AgiChannel) -> None:
        await channel.answer()
        digit = (await channel.stream_file("welcome", "12")).digit

    async with AgiServer("127.0.0.1", 4573, ivr, health=health) as server:
        ...
"""

from __future__ import annotations

import asyncio
import contextlib
import resource
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Self, TypeAlias, cast

import structlog

from engine.asterisk.links.agi_protocol import (
    AgiCommandError,
    AgiHangup,
    AgiProtocolError,
    AgiRequest,
    AgiResponse,
    encode_command,
    parse_request,
    parse_response,
)
from engine.config.settings import AgiSettings
from engine.errors import AgiError
from engine.health import HealthReport, State
from engine.lifecycle import Lifecycle
from engine.listening import LISTEN_BACKLOG
from engine.metrics import Metrics, count_agi_refused

__all__ = [
    "AgiChannel",
    "AgiConnection",
    "AgiHandler",
    "AgiServer",
    "AgiTimeout",
    "Collected",
    "Playback",
    "connection_cap",
]

log = structlog.get_logger(__name__)

AgiHandler: TypeAlias = Callable[["AgiChannel"], Awaitable[None]]
"""What the server calls for each connection; the connection closes when it returns."""

_LINE_LIMIT = 1 << 16  # one response line (a GET VARIABLE value) larger than this is garbage
_MAX_HEADER_LINES = 256


class AgiTimeout(AgiError):
    """Asterisk did not answer a command within the reply limit: the connection is unusable."""


# ----------------------------------------------------------------------------- the connection


class _Expired(Exception):
    """A read's deadline passed (the reply limit, the request timeout, the hang-up grace)."""


class AgiConnection(asyncio.Protocol):
    """The bytes of one FastAGI connection: lines buffered as they arrive, read by one task.

    Why a Protocol and not asyncio's streams: an engine's FastAGI door sends a handful of
    commands per call and waits for a one-line answer to each, and every layer between the
    socket and that answer was a measurable share of the engine's CPU at 120 calls/s
    (``StreamReader.readline`` and its waiter, an ``asyncio.timeout`` context per command).
    Here an answer already buffered is taken without waiting at all, a write goes straight
    to the transport (waiting only while the transport has paused us), and the time limits
    are deadlines checked by one timer per connection, re-armed only when a nearer deadline
    comes along (the reply limit is minutes, a call seconds: one timer per call).

    Like a ``StreamReader``: :meth:`readline` returns a line with its ``\\n``, or what was
    left (maybe ``b""``) at EOF; a line over :data:`_LINE_LIMIT` raises ``ValueError``;
    the error a transport ends with (``connection_lost(exc)``) is raised by every read and
    write after it. A deadline (loop time) that passes raises :class:`_Expired`, with
    nothing consumed. Reading pauses while more than twice the line limit is buffered.
    """

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self._loop = asyncio.get_running_loop()
        self._buffer = bytearray()
        self._eof = False
        self._error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None  # a read waiting for data
        self._deadline: float | None = None  # when the waiting read expires
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        self._paused = False  # the transport's write buffer is full
        self._reading_paused = False
        self.on_made: Callable[[AgiConnection], None] | None = None

    # -- asyncio.Protocol ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A TCP transport; not always an asyncio.Transport instance (uvloop's is not).
        self.transport = cast(asyncio.Transport, transport)
        if self.on_made is not None:
            self.on_made(self)

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        if len(self._buffer) > 2 * _LINE_LIMIT and not self._reading_paused:
            self._reading_paused = True
            self.transport.pause_reading()  # type: ignore[union-attr]
        self._wake()

    def eof_received(self) -> bool:
        self._eof = True
        self._wake()
        return False  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self._eof = True
        if exc is not None and self._error is None:
            self._error = exc
        self._paused = False
        self._cancel_timer()
        self._wake()

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        self._wake()

    # -- for the channel and the server -------------------------------------------------------

    @property
    def peer(self) -> Any:
        return None if self.transport is None else self.transport.get_extra_info("peername")

    @property
    def waiting(self) -> bool:
        """A read is waiting for data that has not come."""
        return self._waiter is not None and not self._waiter.done()

    def close(self) -> None:
        self._cancel_timer()
        if self.transport is not None:
            self.transport.close()

    def next_line(self) -> bytes | None:
        """The next whole line if one is buffered (None: wait with :meth:`readline`).

        Raises what :meth:`readline` would (the connection's error, ValueError), so
        ``connection.next_line() or await connection.readline(deadline)`` reads a line
        without a coroutine when it is already here."""
        if self._error is not None:
            raise self._error
        end = self._buffer.find(b"\n")
        if end < 0:
            if len(self._buffer) > _LINE_LIMIT:
                raise ValueError(f"a line over {_LINE_LIMIT} bytes")
            return None
        if end > _LINE_LIMIT:
            raise ValueError(f"a line over {_LINE_LIMIT} bytes")
        line = bytes(self._buffer[: end + 1])
        del self._buffer[: end + 1]
        if self._reading_paused and len(self._buffer) <= _LINE_LIMIT:
            self._reading_paused = False
            if self.transport is not None:
                self.transport.resume_reading()
        return line

    async def readline(self, deadline: float | None = None) -> bytes:
        """The next line (what is left at EOF); see the class docstring."""
        while True:
            line = self.next_line()
            if line is not None:
                return line
            if self._eof:
                rest = bytes(self._buffer)
                self._buffer.clear()
                return rest
            await self._wait(deadline)

    async def write(self, data: bytes, deadline: float | None = None) -> None:
        """Send ``data``; wait only while the transport's buffer is over its high mark."""
        if self._error is not None:
            raise self._error
        if self.transport is None or self.transport.is_closing():
            raise ConnectionResetError("Connection lost")
        self.transport.write(data)
        while self._paused:
            await self._wait(deadline)
            if self._error is not None:
                raise self._error
            if self.transport.is_closing():
                raise ConnectionResetError("Connection lost")

    # -- internals ----------------------------------------------------------------------------

    async def _wait(self, deadline: float | None) -> None:
        if self._waiter is not None:
            raise RuntimeError("FastAGI connection: two reads at once")
        if deadline is not None:
            if deadline <= self._loop.time():
                raise _Expired
            if self._timer is None or self._timer_at > deadline:
                self._arm(deadline)
        self._deadline = deadline
        self._waiter = self._loop.create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None
            self._deadline = None

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _arm(self, when: float) -> None:
        self._cancel_timer()
        self._timer_at = when
        self._timer = self._loop.call_at(when, self._on_timer)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _on_timer(self) -> None:
        # Armed for a deadline that was the nearest when it was set; the read waiting now
        # (if any) may have a later one: then wait on for that.
        self._timer = None
        deadline, waiter = self._deadline, self._waiter
        if deadline is None or waiter is None or waiter.done():
            return
        if deadline <= self._timer_at:
            waiter.set_exception(_Expired())
        else:
            self._arm(deadline)


# ----------------------------------------------------------------------------- the channel


@dataclass(frozen=True, slots=True)
class Playback:
    """What a prompt ended with: the escape ``digit`` pressed (None: it played out) and
    ``endpos``, the sample offset it stopped at (to resume with ``offset=``)."""

    digit: str | None
    endpos: int


@dataclass(frozen=True, slots=True)
class Collected:
    """What ``GET DATA`` collected: ``digits`` (without the ``#`` that may have ended
    them) and whether its timeout ended it (else ``#`` or the digit limit did)."""

    digits: str
    timed_out: bool


def _digit(response: AgiResponse) -> str | None:
    code = response.number or 0
    return chr(code) if code > 0 else None


class AgiChannel:
    """Commands to one channel over its FastAGI connection; ``request`` says which call.

    ``hung_up`` becomes True when Asterisk says the caller is gone (``HANGUP``, ``511``)
    or closes the connection. Commands that work on a dead channel (``get_variable``,
    ``set_variable``, ``verbose``) still do after it; the others raise :class:`AgiHangup`.
    ``log`` is bound with the call id. ``reply_timeout`` (None: none) is how long an
    answer may take beyond the command's own wait before :class:`AgiTimeout`.
    """

    hangup_grace = 0.5
    """How long a ``result=-1`` waits for the ``HANGUP`` that Asterisk sends right after
    it when the caller hung up (measured: ~40 ms); without it the failure is a
    :class:`AgiCommandError` (e.g. a missing sound file)."""

    def __init__(
        self,
        request: AgiRequest,
        connection: AgiConnection,
        *,
        reply_timeout: float | None = None,
    ) -> None:
        self.request = request
        self.reply_timeout = reply_timeout
        self.hung_up = False
        self.log = log.bind(
            call_id=request.uniqueid, channel=request.channel, script=request.script
        )
        self._connection = connection
        self._loop = asyncio.get_running_loop()
        self._lock = asyncio.Lock()
        self._closed = False  # EOF: nothing more can be sent
        self._broken: str | None = None

    async def command(self, verb: str, *args: str | int, wait: float | None = 0.0) -> AgiResponse:
        """Send one command and return its 200 response.

        ``510``/``520`` raise :class:`AgiCommandError`; ``511``, EOF and a lost
        connection raise :class:`AgiHangup`; no answer within ``reply_timeout`` + ``wait``
        seconds (``wait`` None: no limit) raises :class:`AgiTimeout`. ``result`` is not
        interpreted here.
        """
        data = encode_command(verb, *args)
        async with self._lock:
            response = await self._exchange(verb, data, wait)
        return self._checked(verb, response)

    async def _media(
        self, verb: str, what: str, *args: str | int, wait: float = 0.0
    ) -> AgiResponse:
        """A command whose ``result=-1`` means it failed or the caller hung up: which of
        the two is decided by whether ``HANGUP`` follows (AgiHangup) or not. ``what``
        names it in every error (``STREAM FILE hello-world``, ``EXEC Answer``)."""
        data = encode_command(verb, *args)
        async with self._lock:
            response = await self._exchange(what, data, wait)
            failed = response.code == 200 and response.result.startswith("-")
            if failed and not self.hung_up:
                await self._expect_hangup()
        self._checked(what, response)
        if failed:
            if self.hung_up:
                raise AgiHangup(f"AGI {what}: the channel hung up")
            raise AgiCommandError(f"AGI {what}: failed (result={response.result})", response)
        return response

    def _checked(self, verb: str, response: AgiResponse) -> AgiResponse:
        if response.code == 511:
            self.hung_up = True
        response.raise_for_code(verb)
        return response

    async def _exchange(self, verb: str, data: bytes, wait: float | None) -> AgiResponse:
        if self._closed:
            raise AgiHangup(f"AGI {verb}: the connection is closed")
        if self._broken is not None:
            raise AgiError(f"AGI {verb}: connection unusable ({self._broken})")
        limit = None if wait is None or self.reply_timeout is None else self.reply_timeout + wait
        deadline = None if limit is None else self._loop.time() + limit
        try:
            await self._connection.write(data, deadline)
            return await self._read_response(verb, deadline)
        except AgiHangup:
            raise
        except _Expired as exc:
            self._broken = f"no reply to {verb} within {limit:g} s"
            raise AgiTimeout(f"AGI {verb}: no reply from Asterisk within {limit:g} s") from exc
        except OSError as exc:
            # Our reply limit is _Expired: a TimeoutError here is the socket's own
            # (ETIMEDOUT), a lost connection like any other.
            self._lost()
            raise AgiHangup(f"AGI {verb}: connection lost ({exc!r})") from exc
        except BaseException as exc:  # cancelled mid-command: its answer is still in flight
            self._broken = f"{verb} interrupted by {type(exc).__name__}"
            raise

    def _lost(self) -> None:
        self._closed = True
        self.hung_up = True

    async def _read_response(self, verb: str, deadline: float | None) -> AgiResponse:
        connection = self._connection
        lines: list[str] = []
        while True:
            try:
                raw = connection.next_line() or await connection.readline(deadline)
            except ValueError as exc:  # a line over the reader's limit
                raise AgiProtocolError(f"AGI {verb}: response line too long") from exc
            if not raw.endswith(b"\n"):  # EOF (possibly mid-line)
                self._lost()
                raise AgiHangup(f"AGI {verb}: Asterisk closed the connection")
            line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
            if line == "HANGUP" and not lines:
                # A notice, not the answer: that still comes (511, or 200 for commands
                # allowed on a dead channel).
                self.hung_up = True
                continue
            if not line and not lines:
                continue
            lines.append(line)
            # "520-Invalid command syntax.  Proper usage follows:" ... "520 End of proper usage."
            if lines[0][:4] == "520-" and line[:4] != "520 ":
                if len(lines) > _MAX_HEADER_LINES:
                    raise AgiProtocolError(f"AGI {verb}: endless 520 usage block")
                continue
            return parse_response("\n".join(lines))

    async def _expect_hangup(self) -> None:
        try:
            raw = await self._connection.readline(self._loop.time() + self.hangup_grace)
        except _Expired:  # no whole line within the grace: nothing consumed
            return
        except OSError:  # the connection is gone (reset, the socket's timeout): hung up
            self._lost()
            return
        except ValueError as exc:
            self._broken = f"unreadable after a failed command: {exc!r}"
            return
        if not raw.endswith(b"\n"):
            self._lost()
        elif raw.rstrip(b"\r\n") == b"HANGUP":
            self.hung_up = True
        else:
            self._broken = f"unexpected line {raw[:60]!r}"

    # -- typed commands -----------------------------------------------------------------------

    async def answer(self) -> None:
        """Answer the channel without waiting for the caller's media (``Answer``'s ``i``
        option, Asterisk 18+; as ARI's answer). AGI's own ``ANSWER`` replies only once the
        caller's first media frame came or 500 ms passed: a caller who sends no audio
        (silence suppression, or a key pressed at once) waits that long for the first
        prompt, and a first key whose start ended that wait could end before the next
        command ran, between two commands, where Asterisk drops it."""
        await self._media("EXEC", "EXEC Answer", "Answer", ",i")

    async def stream_file(
        self, name: str, escape_digits: str = "", *, offset: int | None = None
    ) -> Playback:
        """Play ``name`` (no extension); stop early at one of ``escape_digits``.

        A missing file is an :class:`AgiCommandError` (Asterisk answers ``result=-1``).
        """
        extra = () if offset is None else (offset,)
        response = await self._media(
            "STREAM FILE", f"STREAM FILE {name}", name, escape_digits, *extra
        )
        return Playback(_digit(response), response.endpos or 0)

    async def get_option(self, name: str, escape_digits: str, timeout_ms: int) -> Playback:
        """Play ``name`` and, if no escape digit stopped it, wait up to ``timeout_ms`` for
        one, in one command: no key can fall between the prompt and the wait (a key
        pressed while no AGI command runs is lost). ``endpos`` is where the prompt
        stopped (its length when it played out)."""
        response = await self._media(
            "GET OPTION",
            f"GET OPTION {name}",
            name,
            escape_digits,
            timeout_ms,
            wait=max(timeout_ms, 0) / 1000,
        )
        return Playback(_digit(response), response.endpos or 0)

    async def get_data(
        self, file: str, timeout_ms: int | None = None, max_digits: int | None = None
    ) -> Collected:
        """Play ``file`` (``""``: nothing) and collect up to ``max_digits`` in one command:
        ``#`` ends the input, and so does ``timeout_ms`` without a key (before the first
        and between digits). Digits typed before the timeout are returned with it.
        """
        args: list[str | int] = [file]
        if timeout_ms is not None or max_digits is not None:
            args.append(timeout_ms or 0)  # 0: Asterisk's default timeout
        if max_digits is not None:
            args.append(max_digits)
        # the timeout runs again after every digit
        wait = (timeout_ms or 0) / 1000 * max(max_digits or 1, 1)
        response = await self._media("GET DATA", f"GET DATA {file}", *args, wait=wait)
        return Collected(response.result, response.data == "timeout")

    async def wait_for_digit(self, timeout_ms: int = -1) -> str | None:
        """The next digit pressed within ``timeout_ms`` (-1: forever); None on timeout.

        Forever is still bounded by the reply limit (a -1 wait has no known length).
        """
        wait = max(timeout_ms, 0) / 1000
        return _digit(await self._media("WAIT FOR DIGIT", "WAIT FOR DIGIT", timeout_ms, wait=wait))

    async def say_digits(self, digits: str, escape_digits: str = "") -> str | None:
        return _digit(await self._media("SAY DIGITS", "SAY DIGITS", digits, escape_digits))

    async def say_number(self, number: int, escape_digits: str = "") -> str | None:
        return _digit(await self._media("SAY NUMBER", "SAY NUMBER", number, escape_digits))

    async def set_variable(self, name: str, value: str) -> None:
        if not name:
            raise AgiCommandError("AGI SET VARIABLE: empty variable name")
        await self.command("SET VARIABLE", name, value)

    async def get_variable(self, name: str) -> str | None:
        """The variable's value (dialplan functions work: ``CALLERID(num)``); None: unset."""
        response = await self.command("GET VARIABLE", name)
        return response.data if response.number == 1 else None

    async def exec(self, app: str, *args: str, wait: float | None = 0.0) -> int:
        """Run dialplan application ``app`` with ``args`` (comma-joined); its result.

        ``wait``: seconds the application may run beyond the reply limit (None: no limit,
        for ``Dial``, which returns when the call it made is over)."""
        response = await self.command("EXEC", app, ",".join(args), wait=wait)
        if response.number == -2:
            raise AgiCommandError(f"AGI EXEC {app}: no such application", response)
        return response.number or 0

    async def hangup(self) -> None:
        """Hang the channel up (only dead-channel commands work after it)."""
        response = await self.command("HANGUP")
        self.hung_up = True
        if response.number != 1:
            raise AgiCommandError("AGI HANGUP: failed", response)

    async def verbose(self, message: str, level: int = 1) -> None:
        await self.command("VERBOSE", message, level)


# ----------------------------------------------------------------------------- the server


# Descriptors kept for everything but FastAGI connections: the database pool, ARI and AMI
# links, the API's clients and listeners, log files.
_RESERVED_FDS = 256


def connection_cap() -> int:
    """FastAGI connections served at once when ``agi.max_connections`` is not set: what
    the open-files limit leaves after :data:`_RESERVED_FDS`. Each caller in a FastAGI IVR
    holds one connection for the whole call, so a fixed small cap refuses real callers on a
    busy PBX (200 refused a quarter of the callers at 120 calls/s in bench/ivr.py); past
    the descriptor limit, though, accept() fails for everything, the database included."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return 65536
    return max(64, soft - _RESERVED_FDS)


class AgiServer(Lifecycle):
    """Listens for FastAGI connections; runs ``handler(channel)`` for each, as its own task.

    ``port=0`` picks a free port (``server.port`` tells which once started). ``served``
    counts requests handed to the handler, ``rejected`` the ones refused as malformed,
    ``refused`` the connections closed unread past ``max_connections``. Closing waits at
    most ``close_grace`` s for the handlers it cancels.
    """

    def __init__(
        self,
        host: str,
        port: int,
        handler: AgiHandler,
        *,
        health: HealthReport | None = None,
        metrics: Metrics | None = None,
        request_timeout: float = 5.0,
        reply_timeout: float | None = None,
        max_connections: int | None = None,
        max_request_bytes: int = 16384,
        close_grace: float = 5.0,
    ) -> None:
        self.host = host
        self.port = port
        self._handler = handler
        self._health = health
        self._metrics = metrics
        self._request_timeout = request_timeout
        self._reply_timeout = reply_timeout
        self._max_connections = max_connections
        self._max_request_bytes = max_request_bytes
        self._close_grace = close_grace
        self._server: asyncio.Server | None = None
        self._connections: dict[asyncio.Task[None], AgiConnection] = {}
        self.served = 0
        self.rejected = 0
        self.refused = 0

    @classmethod
    def from_settings(
        cls,
        settings: AgiSettings,
        handler: AgiHandler,
        *,
        health: HealthReport | None = None,
        **kwargs: Any,
    ) -> Self:
        limits: dict[str, Any] = {
            "request_timeout": settings.request_timeout,
            "reply_timeout": settings.reply_timeout,
            "max_connections": settings.max_connections or connection_cap(),
        }
        return cls(settings.host, settings.port, handler, health=health, **(limits | kwargs))

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def active(self) -> int:
        """Connections open right now."""
        return len(self._connections)

    # -- lifecycle ----------------------------------------------------------------------------

    async def _open(self) -> None:
        """Bind and listen; :class:`AgiError` when the address cannot be bound."""
        self._report("starting", f"binding {self.where}")
        try:
            loop = asyncio.get_running_loop()
            self._server = await loop.create_server(
                self._connection, self.host, self.port, backlog=LISTEN_BACKLOG
            )
        except OSError as exc:
            self._report("down", f"cannot listen on {self.where}: {exc}")
            raise AgiError(f"FastAGI cannot listen on {self.where}: {exc}") from exc
        self.port = int(self._server.sockets[0].getsockname()[1])
        log.info("agi.listening", where=self.where)
        self._report("up", f"listening on {self.where}")

    async def _close(self) -> None:
        """Stop listening, close every open connection and cancel its handler; wait at
        most ``close_grace`` s. Everything is released before the first ``await``."""
        grace = self._close_grace
        server, self._server = self._server, None
        if server is not None:
            server.close()
        tasks = list(self._connections)
        for task, connection in self._connections.items():
            connection.close()
            task.cancel()
        if tasks:
            done, late = await asyncio.wait(tasks, timeout=grace)
            for task in done:  # one cancelled before it ran never got to forget itself
                self._connections.pop(task, None)
            if late:
                log.warning("agi.close_timeout", connections=len(late))
        if server is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(server.wait_closed(), grace)
            self._report("down", "closed")

    # -- internals ----------------------------------------------------------------------------

    def _report(self, state: State, detail: str) -> None:
        if self._health is not None:
            self._health.set("agi", state, detail, required=False)

    def _connection(self) -> AgiConnection:
        connection = AgiConnection()
        connection.on_made = self._on_connect
        return connection

    def _on_connect(self, connection: AgiConnection) -> None:
        # runs in the transport's connection_made, as a loop callback: a bug here must
        # still close the connection (nothing else would serve or count it)
        try:
            self._take(connection)
        except Exception:
            log.exception("agi.connection_crashed", peer=connection.peer)
            connection.close()

    def _take(self, connection: AgiConnection) -> None:
        if not self.is_open:
            connection.close()
            return
        if self._max_connections is not None and len(self._connections) >= self._max_connections:
            self.refused += 1
            count_agi_refused(self._metrics, "capacity")
            log.warning(
                "agi.connection_refused",
                peer=connection.peer,
                reason=f"{len(self._connections)} connections open (agi.max_connections)",
            )
            connection.close()
            return
        task = asyncio.get_running_loop().create_task(self._run(connection))
        self._connections[task] = connection

    async def _run(self, connection: AgiConnection) -> None:
        try:
            await self._serve(connection)
        except asyncio.CancelledError:
            # close() (or loop shutdown) cancelled this connection: ending normally is
            # the end of a connection like any other.
            pass
        except Exception:  # a bug of ours: never let it reach the loop's handler
            log.exception("agi.bug")
        finally:
            self._connections.pop(asyncio.current_task(), None)  # type: ignore[arg-type]
            connection.close()

    async def _serve(self, connection: AgiConnection) -> None:
        peer = connection.peer
        try:
            deadline = asyncio.get_running_loop().time() + self._request_timeout
            block = await self._read_request(connection, deadline)
            request = parse_request(block)
        except _Expired:
            self.rejected += 1
            count_agi_refused(self._metrics, "bad_request")
            log.warning("agi.bad_request", peer=peer, error="request not complete in time")
            return
        except AgiProtocolError as exc:
            self.rejected += 1
            count_agi_refused(self._metrics, "bad_request")
            log.warning("agi.bad_request", peer=peer, error=str(exc))
            return
        except OSError as exc:
            log.info("agi.connection_lost", peer=peer, error=repr(exc))
            return
        self.served += 1
        channel = AgiChannel(request, connection, reply_timeout=self._reply_timeout)
        channel.log.debug("agi.request", args=request.args, query=dict(request.query))
        try:
            await self._handler(channel)
        except AgiHangup as exc:
            channel.log.info("agi.hangup", detail=str(exc))
        except AgiError as exc:
            channel.log.warning("agi.command_failed", error=str(exc))
        except Exception:
            channel.log.exception("agi.handler_failed")

    async def _read_request(self, connection: AgiConnection, deadline: float) -> bytes:
        # Asterisk sends the block in one segment: after the first wait every line is
        # buffered, and next_line() takes it without a coroutine.
        block = bytearray()
        for _ in range(_MAX_HEADER_LINES):
            try:
                line = connection.next_line() or await connection.readline(deadline)
            except ValueError as exc:  # one line over the reader's limit
                raise AgiProtocolError("AGI request line too long") from exc
            if not line.endswith(b"\n"):
                raise AgiProtocolError("connection closed before the end of the AGI request")
            if len(block) + len(line) > self._max_request_bytes:
                raise AgiProtocolError(f"AGI request over {self._max_request_bytes} bytes")
            if not line.strip():
                if block:
                    return bytes(block)
                continue  # blank lines before the request: tolerated
            block += line
        raise AgiProtocolError(f"AGI request over {_MAX_HEADER_LINES} lines")
