"""The AMI link: one logged-in Asterisk Manager Interface connection, kept up.

A thin asyncio client of our own rather than panoramisk's ``Manager``. AMI is a simple
line protocol (``Key: Value`` lines, a blank line ends a message) and what panoramisk 1.4
does around it is what we must not have:

- its parser and response matching run inside ``Protocol.data_received``: one exception
  there (a response it cannot match up, such as an ``Originate`` reply) is fatal to the
  transport, and the connection is gone;
- it pings on a timer but never checks that a pong came back, so a dead link stays
  "connected";
- it reconnects with a fixed delay from ``loop.call_later`` callbacks that nothing can
  cancel or bound, and a failed login is never retried or reported;
- actions that were in flight when the link dropped are silently *re-sent* after the next
  ``FullyBooted``: a replayed ``Originate`` dials the customer twice.

So :class:`AmiLink` owns the socket, like :mod:`engine.asterisk.links.ari` owns ARI's:

- it logs in with the configured credentials, and after a failure or a drop reconnects
  with capped, jittered exponential backoff;
- every ``ping_interval`` it sends ``Ping``; a pong that does not come back within
  ``ping_timeout`` counts the link as dead: it is closed, reported down and reconnected;
- the reader never raises: a block that is not an AMI message (garbage, a stray
  response, a handler bug) is logged and skipped, and the next message is read as usual;
- :meth:`AmiLink.action` sends one action and returns its response as a dict (an event
  list such as ``CoreShowChannels`` is collected under ``"events"``); ``Response: Error``,
  a timeout and a link that is down (or goes down before the answer) all raise
  :class:`~engine.errors.AmiError`. Nothing is ever queued or re-sent after a reconnect;
- :meth:`AmiLink.on_event` registers a handler (plain function or coroutine function)
  for an event name, ``"*"`` for every event. Asterisk sends ``FullyBooted`` after every
  login, so a ``FullyBooted`` handler also runs after every reconnect, including the
  one after an Asterisk restart;
- its state goes to the health report as component ``ami`` (not required for readiness);
- it has the engine's lifecycle (:mod:`engine.lifecycle`); closing it is bounded
  (``close_grace``) and cancellation-safe: everything is released synchronously before its
  first ``await``.

Usage (register handlers before starting: the first FullyBooted comes with the login)::

    ami = AmiLink.from_settings(settings.ami, health=health)
    ami.on_event("FullyBooted", on_booted)
    async with ami:
        await ami.wait_connected(10)
        status = await ami.action("CoreStatus")
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import itertools
import random
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Self, TypeAlias

import structlog

from engine.config.settings import AmiSettings
from engine.errors import AmiError, ClosedResourceError, describe
from engine.health import HealthReport, State
from engine.lifecycle import Lifecycle, cancel_tasks

__all__ = [
    "AmiEvent",
    "AmiLink",
    "AmiLoginError",
    "AmiResponseError",
    "encode_action",
    "parse_message",
]

log = structlog.get_logger(__name__)

AmiEvent: TypeAlias = dict[str, str]
"""An AMI event or response: its headers (a repeated header's values joined by newlines)."""
EventHandler: TypeAlias = Callable[[AmiEvent], Awaitable[None] | None]
FieldValue: TypeAlias = str | int | float | bool | Sequence[str]

_BANNER = b"Asterisk Call Manager/"
_END = b"\r\n\r\n"
_READ_LIMIT = 1 << 20  # a message larger than 1 MiB is garbage: skipped, never buffered forever
_SUCCESS = frozenset({"success", "follows", "goodbye"})
_CANONICAL = {
    name.lower(): name for name in ("Response", "Event", "ActionID", "Message", "EventList")
}


class AmiResponseError(AmiError):
    """Asterisk answered the action with an error (``Response: Error``); ``response`` is
    that answer, e.g. ``{"Response": "Error", "Message": "Module not loaded", ...}``."""

    def __init__(self, message: str, response: AmiEvent) -> None:
        self.response = response
        super().__init__(message)


class AmiLoginError(AmiResponseError):
    """Asterisk refused the login (wrong user or secret, or the user's ACL)."""


# ----------------------------------------------------------------------------- wire format


def parse_message(block: bytes) -> AmiEvent | None:
    """One AMI message (the bytes up to its blank line) as a dict; None if it is not one.

    Lenient on purpose: lines that are not ``Key: Value`` are ignored, a repeated key keeps
    every value (newline-joined), and the well-known keys are matched case-insensitively
    (``actionid`` is returned as ``ActionID``). A block with neither ``Response`` nor
    ``Event`` is not a message.
    """
    text = block.decode("utf-8", errors="replace")
    headers: AmiEvent = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        key = key.strip()
        if not sep or not key or any(c.isspace() for c in key):
            continue
        key = _CANONICAL.get(key.lower(), key)
        value = value.strip()
        headers[key] = f"{headers[key]}\n{value}" if key in headers else value
    if "Response" not in headers and "Event" not in headers:
        return None
    return headers


def encode_action(name: str, action_id: str, fields: Mapping[str, FieldValue]) -> bytes:
    """``Action: name`` with its ``ActionID`` and fields, as bytes ready to send.

    A sequence value becomes a repeated header (``Variable: A=1``, ``Variable: B=2``). A
    key or value with a line break would let it inject headers: :class:`AmiError`.
    """
    lines = [f"Action: {name}", f"ActionID: {action_id}"]
    for key, value in fields.items():
        if not key or not all(c.isalnum() or c in "-_" for c in key):
            raise AmiError(f"AMI {name}: invalid field name {key!r}")
        if key.lower() in ("action", "actionid"):
            raise AmiError(f"AMI {name}: field {key} is set by the link")
        values = value if isinstance(value, list | tuple) else [value]
        for item in values:
            if isinstance(item, bool):
                item = "true" if item else "false"
            text = str(item)
            if "\r" in text or "\n" in text:
                raise AmiError(f"AMI {name}: field {key} contains a line break")
            lines.append(f"{key}: {text}")
    for part in (name, action_id):
        if not part or any(c in part for c in "\r\n:"):
            raise AmiError(f"AMI action name or id {part!r} is invalid")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _succeeded(message: AmiEvent) -> bool:
    return message.get("Response", "").lower() in _SUCCESS


# ----------------------------------------------------------------------------- connection


@dataclass(eq=False)
class _Pending:
    name: str
    future: asyncio.Future[dict[str, Any]]
    response: AmiEvent | None = None  # set when an event list has started
    events: list[AmiEvent] = field(default_factory=list)

    def finish(self, response: AmiEvent) -> None:
        if self.future.done():
            return
        if not _succeeded(response):
            reason = response.get("Message") or response.get("Response") or "error"
            self.future.set_exception(AmiResponseError(f"AMI {self.name}: {reason}", response))
            return
        result: dict[str, Any] = dict(response)
        if self.response is not None:
            result["events"] = self.events
        self.future.set_result(result)

    def fail(self, error: BaseException) -> None:
        if not self.future.done():
            self.future.set_exception(error)


def _consume(future: asyncio.Future[Any]) -> None:
    # An action whose caller was cancelled at the same moment its link failed must not log
    # "Future exception was never retrieved".
    if not future.cancelled():
        future.exception()


async def _stop(task: asyncio.Task[None]) -> BaseException | None:
    """Cancel ``task`` and wait for it; return the exception it ended with, if any."""
    task.cancel()
    await asyncio.wait({task})
    return None if task.cancelled() else task.exception()


class _Connection:
    """One TCP connection and the actions waiting for an answer on it."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.pending: dict[str, _Pending] = {}
        self.reason = "connection closed"
        self.dropped = False  # closed on purpose (drop()): not Asterisk's doing

    def close(self, error: BaseException) -> None:
        pending, self.pending = self.pending, {}
        for p in pending.values():
            p.fail(error)
        self.writer.close()


# ----------------------------------------------------------------------------- the link


class AmiLink(Lifecycle):
    """Keeps one AMI connection logged in; sends actions, dispatches events.

    ``connected`` is set while the link is logged in; ``connections`` counts logins (1 +
    reconnects); ``pongs`` counts keepalive pongs and ``pong`` is set at each one;
    ``unparsable`` counts skipped blocks; ``last_error`` says why the link last went down.
    With ``reconnect=False`` the link makes a single attempt (``ctc doctor``). Closing
    waits at most ``close_grace`` s for the link's tasks and running hooks. ``events`` is
    the login's ``Events:`` mask (which event classes Asterisk sends: ``on``, ``off`` or a
    list such as ``system,call``); action responses, the events of list actions included,
    come whatever the mask.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 5038,
        username: str = "ctc",
        password: str = "",
        *,
        ping_interval: float = 20.0,
        ping_timeout: float | None = None,
        action_timeout: float = 10.0,
        connect_timeout: float = 5.0,
        backoff_initial: float = 0.2,
        backoff_max: float = 10.0,
        events: str = "on",
        reconnect: bool = True,
        health: HealthReport | None = None,
        close_grace: float = 5.0,
    ) -> None:
        self.host = host
        self.port = port
        self.username = username
        self._password = password
        self._ping_interval = ping_interval
        self._ping_timeout = ping_timeout or min(ping_interval, action_timeout)
        self._action_timeout = action_timeout
        self._connect_timeout = connect_timeout
        self._backoff_initial = backoff_initial
        self._backoff_max = max(backoff_max, backoff_initial)
        self.events = events
        self._reconnect = reconnect
        self._health = health
        self._close_grace = close_grace
        self._handlers: dict[str, list[EventHandler]] = {}
        self._hooks: set[asyncio.Task[None]] = set()
        self._task: asyncio.Task[None] | None = None
        self._conn: _Connection | None = None
        self._ids = itertools.count(1)
        self.connected = asyncio.Event()
        self.pong = asyncio.Event()
        self.connections = 0
        self.pongs = 0
        self.unparsable = 0
        self.last_error: str | None = None
        self._last_exc: AmiError | None = None

    @classmethod
    def from_settings(
        cls, settings: AmiSettings, *, health: HealthReport | None = None, **kwargs: Any
    ) -> Self:
        password = settings.password.get_secret_value() if settings.password else ""
        return cls(
            settings.host,
            settings.port,
            settings.username,
            password,
            ping_interval=settings.ping_interval,
            health=health,
            **kwargs,
        )

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}"

    # -- lifecycle ----------------------------------------------------------------------------

    async def _open(self) -> None:
        self._report("starting", f"connecting to {self.where}")
        self._task = asyncio.create_task(self._run(), name="ami-link")

    async def _close(self) -> None:
        """Log off, stop reconnecting, cancel running hooks; wait at most ``close_grace`` s.

        Everything is released before the first ``await``, so cancelling ``close`` itself
        leaves nothing open.
        """
        task, self._task = self._task, None
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                if self.connected.is_set():
                    conn.writer.write(encode_action("Logoff", "ctc-logoff", {}))
            conn.close(ClosedResourceError("AmiLink is closed"))  # flushes the Logoff
        self.connected.clear()
        waiting = {t for t in (task, *self._hooks) if t is not None}
        for t in waiting:
            t.cancel()
        if waiting:
            _, late = await asyncio.wait(waiting, timeout=self._close_grace)
            if late:
                log.warning("ami.close_timeout", tasks=sorted(t.get_name() for t in late))
        if task is not None:
            self._report("down", "closed")

    async def wait_connected(self, within: float) -> None:
        """Wait until logged in; raise AmiError (the last failure) after ``within`` s, or
        at once when a link without ``reconnect`` has given up."""
        if self.connected.is_set():
            return
        if self._task is None:
            raise AmiError("AMI link is not started")
        waiter = asyncio.create_task(self.connected.wait())
        try:
            await asyncio.wait(
                {waiter, self._task}, timeout=within, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            await cancel_tasks(waiter)
        if self.connected.is_set():
            return
        if self._last_exc is not None:
            raise self._last_exc
        raise AmiError(f"AMI {self.where}: not connected within {within:g} s")

    async def drop(self) -> None:
        """Close the current connection (the link reconnects): for tests and operators."""
        if self._conn is not None:
            self._conn.dropped = True
            self._conn.writer.close()

    # -- actions and events -------------------------------------------------------------------

    async def action(
        self, name: str, /, *, response_timeout: float | None = None, **fields: FieldValue
    ) -> dict[str, Any]:
        """Send action ``name`` with ``fields``; return its response.

        Raises :class:`AmiError` on ``Response: Error``, when no answer comes within
        ``response_timeout`` (default ``action_timeout``), and when the link is down or
        goes down before the answer. Nothing is queued for a later connection.
        """
        if self.is_closed:
            raise ClosedResourceError("AmiLink is closed")
        conn = self._conn
        if conn is None or not self.connected.is_set():
            raise AmiError(f"AMI {name}: link to {self.where} is down ({self.last_error})")
        return await self._request(conn, name, fields, response_timeout or self._action_timeout)

    def on_event(self, name: str, handler: EventHandler) -> None:
        """Call ``handler(event)`` for each event ``name`` (case-insensitive; ``"*"``: all).

        A plain function runs on the reader and must be quick; a coroutine function runs as
        its own task (cancelled by :meth:`close`). A handler that raises is logged; the
        link does not care.
        """
        self._handlers.setdefault(name.lower(), []).append(handler)

    # -- internals ----------------------------------------------------------------------------

    def _report(self, state: State, detail: str) -> None:
        if self._health is not None:
            self._health.set("ami", state, detail, required=False)

    async def _request(
        self, conn: _Connection, name: str, fields: Mapping[str, FieldValue], limit: float
    ) -> dict[str, Any]:
        action_id = f"ctc-{next(self._ids)}"
        data = encode_action(name, action_id, fields)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        future.add_done_callback(_consume)
        conn.pending[action_id] = _Pending(name, future)
        try:
            async with asyncio.timeout(limit):
                conn.writer.write(data)
                await conn.writer.drain()
                return await future
        except TimeoutError:
            raise AmiError(f"AMI {name}: no response within {limit:g} s") from None
        except OSError as exc:  # the transport failed under drain()
            raise AmiError(f"AMI {name}: {describe(exc)}") from exc
        finally:
            conn.pending.pop(action_id, None)

    async def _run(self) -> None:
        delay = self._backoff_initial
        while True:
            logins = self.connections
            try:
                reason = await self._serve()
                error = AmiError(f"AMI {self.where}: {reason}")
            except asyncio.CancelledError:
                raise
            except AmiError as exc:
                error = exc
            except (OSError, TimeoutError) as exc:
                error = AmiError(f"AMI {self.where} unreachable: {describe(exc)}")
            except Exception as exc:  # a bug of ours: log it, but keep the link alive
                log.exception("ami.bug")
                error = AmiError(f"AMI {self.where}: internal error {exc!r}")
            self._last_exc = error
            self.last_error = str(error)
            if self.connections > logins:
                delay = self._backoff_initial
            self._report("down", self.last_error)
            if not self._reconnect:
                log.warning("ami.down", error=self.last_error)
                return
            log.warning("ami.down", error=self.last_error, retry_in=round(delay, 2))
            await asyncio.sleep(delay * (0.8 + 0.4 * random.random()))
            delay = min(delay * 2, self._backoff_max)

    async def _serve(self) -> str:
        """Connect, log in, serve until the connection ends; return why it ended."""
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(self.host, self.port, limit=_READ_LIMIT),
            self._connect_timeout,
        )
        conn = _Connection(reader, writer)
        try:
            banner = await asyncio.wait_for(reader.readline(), self._connect_timeout)
            if not banner.startswith(_BANNER):
                raise AmiError(
                    f"{self.where} is not an AMI server (it said {banner[:60]!r}); "
                    "check ami.host and ami.port"
                )
            self._conn = conn
            reader_task = asyncio.create_task(self._read(conn), name="ami-reader")
            try:
                await self._login(conn)
                self.connections += 1
                self.connected.set()
                log.info("ami.connected", where=self.where, connections=self.connections)
                self._report("up", f"{self.where} as {self.username}")
                keepalive = asyncio.create_task(self._keepalive(conn), name="ami-keepalive")
                try:
                    await asyncio.wait(
                        {reader_task, keepalive}, return_when=asyncio.FIRST_COMPLETED
                    )
                finally:
                    missed = await _stop(keepalive)
                if missed is not None:
                    return f"keepalive failed: {missed}"
                return conn.reason
            finally:
                if (bug := await _stop(reader_task)) is not None:
                    log.error("ami.reader_failed", error=repr(bug))
        finally:
            if self._conn is conn:
                self._conn = None
            self.connected.clear()
            conn.close(AmiError(f"AMI link to {self.where} went down"))

    async def _login(self, conn: _Connection) -> None:
        fields = {"Username": self.username, "Secret": self._password, "Events": self.events}
        try:
            await self._request(conn, "Login", fields, self._connect_timeout)
        except AmiResponseError as exc:
            reason = exc.response.get("Message") or "refused"
            raise AmiLoginError(
                f"AMI login as {self.username} on {self.where} failed: {reason}", exc.response
            ) from None

    async def _keepalive(self, conn: _Connection) -> None:
        while True:
            await asyncio.sleep(self._ping_interval)
            await self._request(conn, "Ping", {}, self._ping_timeout)
            self.pongs += 1
            self.pong.set()

    async def _read(self, conn: _Connection) -> None:
        reader = conn.reader
        try:
            while True:
                try:
                    block = await reader.readuntil(_END)
                except asyncio.LimitOverrunError as exc:
                    # no message end within the limit: skip what is buffered, read on
                    await reader.readexactly(exc.consumed)
                    self._skip(b"<oversized block>")
                    continue
                message = parse_message(block)
                if message is None:
                    if block.strip():
                        self._skip(block)
                    continue
                try:
                    self._handle(conn, message)
                except Exception:
                    log.exception("ami.handle_failed", message=message.get("Event", "response"))
        except asyncio.IncompleteReadError:
            conn.reason = "Asterisk closed the connection"
        except OSError as exc:
            conn.reason = f"connection lost: {describe(exc)}"
        finally:
            if conn.dropped:
                conn.reason = "connection dropped on request"
            # fail waiting actions now, not at their timeout
            for p in list(conn.pending.values()):
                p.fail(AmiError(f"AMI {p.name}: link to {self.where} went down"))

    def _skip(self, block: bytes) -> None:
        self.unparsable += 1
        log.warning("ami.unparsable", data=block[:200].decode("utf-8", errors="replace"))

    def _handle(self, conn: _Connection, message: AmiEvent) -> None:
        action_id = message.get("ActionID")
        pending = conn.pending.get(action_id) if action_id else None
        # An event may carry a Response header too (OriginateResponse does): Event decides.
        if "Event" not in message:
            if pending is None:
                log.debug("ami.stray_response", action_id=action_id)
            elif message.get("EventList", "").lower() == "start" and _succeeded(message):
                pending.response = message  # the list's events follow
            else:
                pending.finish(message)
            return
        if pending is not None and pending.response is not None:
            if message.get("EventList", "").lower() == "complete":
                pending.finish(pending.response)
            else:
                pending.events.append(message)
            return
        self._dispatch(message)

    def _dispatch(self, event: AmiEvent) -> None:
        name = event["Event"]
        for handler in (*self._handlers.get(name.lower(), ()), *self._handlers.get("*", ())):
            try:
                result = handler(event)
            except Exception:
                log.exception("ami.handler_failed", ami_event=name)
                continue
            if inspect.isawaitable(result):
                task = asyncio.create_task(self._guard(result, name), name=f"ami-on-{name}")
                self._hooks.add(task)
                task.add_done_callback(self._hooks.discard)

    @staticmethod
    async def _guard(result: Awaitable[None], name: str) -> None:
        try:
            await result
        except Exception:
            log.exception("ami.handler_failed", ami_event=name)
