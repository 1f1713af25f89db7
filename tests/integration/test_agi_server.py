"""The FastAGI server driven by a fake Asterisk over TCP on 127.0.0.1.

The fake plays Asterisk's side of the protocol: it sends the ``agi_*`` header block, then
answers each command line the way Asterisk 22 does (the lines used here were recorded from
the sandbox, see tests/e2e/test_agi_sandbox.py). Every wait is bounded; nothing sleeps.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, ClassVar

import pytest
import structlog

from engine.asterisk.links.agi_protocol import AgiCommandError, AgiHangup, parse_request
from engine.asterisk.links.agi_server import (
    AgiChannel,
    AgiConnection,
    AgiServer,
    AgiTimeout,
    Collected,
    Playback,
)
from engine.errors import AgiError, ClosedResourceError
from engine.event_loop import run_daemon_loop
from engine.health import HealthReport
from tests.support.net import backlog_burst, connected_at_once
from tests.support.waiting import eventually

WITHIN = 5.0


def request_block(uniqueid: str = "1700000000.1", script: str = "ivr/main?x=1") -> bytes:
    lines = [
        "agi_network: yes",
        f"agi_network_script: {script}",
        f"agi_request: agi://127.0.0.1/{script}",
        f"agi_channel: PJSIP/caller-{uniqueid}",
        "agi_language: en",
        f"agi_uniqueid: {uniqueid}",
        "agi_callerid: 5551234",
        "agi_calleridname: unknown",
        "agi_context: ctc-inbound-agi",
        "agi_extension: 1000",
        "agi_priority: 2",
        "agi_accountcode: ",
        "agi_arg_1: first",
    ]
    return ("\n".join(lines) + "\n\n").encode()


class FakeAsterisk:
    """Asterisk's end of one FastAGI connection (all are closed after each test)."""

    opened: ClassVar[list[FakeAsterisk]] = []

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        FakeAsterisk.opened.append(self)

    @classmethod
    async def connect(cls, port: int, block: bytes | None = None) -> FakeAsterisk:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        fake = cls(reader, writer)
        if block is not None:
            writer.write(block)
            await writer.drain()
        return fake

    async def expect(self, command: str, *replies: str) -> None:
        """Read one command line, check it, send ``replies`` (each a line)."""
        async with asyncio.timeout(WITHIN):
            line = await self.reader.readline()
        assert line.decode() == command + "\n"
        if replies:
            self.writer.write("".join(f"{r}\n" for r in replies).encode())
            await self.writer.drain()

    async def eof(self) -> bytes:
        """Everything the server sends until it closes the connection."""
        async with asyncio.timeout(WITHIN):
            return await self.reader.read()

    def close(self) -> None:
        self.writer.close()


Handler = Callable[[AgiChannel], Awaitable[None]]


class Recorder:
    """A handler wrapper: keeps what the handler returned or raised, per call."""

    def __init__(self, body: Handler) -> None:
        self.body = body
        self.outcomes: dict[str, Any] = {}
        self.finished = asyncio.Event()
        self.count = 0
        self.expected = 1

    async def __call__(self, channel: AgiChannel) -> None:
        try:
            await self.body(channel)
            self.outcomes[channel.request.uniqueid] = "ok"
        except BaseException as exc:
            self.outcomes[channel.request.uniqueid] = exc
            raise
        finally:
            self.count += 1
            if self.count >= self.expected:
                self.finished.set()

    async def wait(self, expected: int = 1) -> None:
        self.expected = expected
        if self.count >= expected:
            self.finished.set()
        async with asyncio.timeout(WITHIN):
            await self.finished.wait()


@pytest.fixture(autouse=True)
async def _close_fakes() -> AsyncIterator[None]:
    yield
    fakes, FakeAsterisk.opened[:] = list(FakeAsterisk.opened), []
    for fake in fakes:
        fake.close()
    for fake in fakes:
        with contextlib.suppress(OSError):
            await fake.writer.wait_closed()


@pytest.fixture
async def serve() -> AsyncIterator[Callable[..., Awaitable[tuple[AgiServer, Recorder]]]]:
    servers: list[AgiServer] = []

    async def start(body: Handler, **kwargs: Any) -> tuple[AgiServer, Recorder]:
        recorder = Recorder(body)
        server = AgiServer("127.0.0.1", 0, recorder, **kwargs)
        await server.start()
        servers.append(server)
        return server, recorder

    yield start
    for server in servers:
        await server.close()


# ----------------------------------------------------------------------------- the happy path


async def test_a_whole_call(serve: Any) -> None:
    seen: dict[str, Any] = {}

    async def ivr(channel: AgiChannel) -> None:
        seen["request"] = channel.request
        await channel.answer()
        seen["stream"] = await channel.stream_file("welcome", "12#")
        seen["resume"] = await channel.stream_file("welcome", "", offset=1234)
        seen["data"] = await channel.get_data("enter-number", 5000, 4)
        seen["no_data"] = await channel.get_data("enter-number", 3000)
        seen["ended"] = await channel.get_data("", 3000, 6)  # no prompt; # ends it
        seen["digit"] = await channel.wait_for_digit(2000)
        seen["timeout"] = await channel.wait_for_digit(2000)
        seen["say"] = await channel.say_digits("123")
        seen["num"] = await channel.say_number(42, "#")
        await channel.set_variable("CTC_CHOICE", "sales team")
        seen["var"] = await channel.get_variable("CTC_CHOICE")
        seen["unset"] = await channel.get_variable("NOPE")
        seen["exec"] = await channel.exec("Playback", "tt-monkeys", "noanswer")
        await channel.verbose('said "hi"', 3)
        await channel.hangup()

    server, recorder = await serve(ivr)
    fake = await FakeAsterisk.connect(server.port, request_block())
    await fake.expect("EXEC Answer ,i", "200 result=0")
    await fake.expect("STREAM FILE welcome 12#", "200 result=49 endpos=4000")
    await fake.expect('STREAM FILE welcome "" 1234', "200 result=0 endpos=16000")
    await fake.expect("GET DATA enter-number 5000 4", "200 result=12 (timeout)")
    await fake.expect("GET DATA enter-number 3000", "200 result= (timeout)")
    await fake.expect('GET DATA "" 3000 6', "200 result=123")
    await fake.expect("WAIT FOR DIGIT 2000", "200 result=35")
    await fake.expect("WAIT FOR DIGIT 2000", "200 result=0")
    await fake.expect('SAY DIGITS 123 ""', "200 result=0")
    await fake.expect("SAY NUMBER 42 #", "200 result=50")
    await fake.expect('SET VARIABLE CTC_CHOICE "sales team"', "200 result=1")
    await fake.expect("GET VARIABLE CTC_CHOICE", "200 result=1 (sales team)")
    await fake.expect("GET VARIABLE NOPE", "200 result=0")
    await fake.expect("EXEC Playback tt-monkeys,noanswer", "200 result=0")
    await fake.expect('VERBOSE "said \\"hi\\"" 3', "200 result=1")
    await fake.expect("HANGUP", "200 result=1", "HANGUP")
    assert await fake.eof() == b""  # the server closes when the handler returns
    await recorder.wait()

    assert recorder.outcomes == {"1700000000.1": "ok"}
    request = seen["request"]
    assert (request.script, dict(request.query), request.args) == (
        "ivr/main",
        {"x": "1"},
        ("first",),
    )
    assert request.channel == "PJSIP/caller-1700000000.1"
    assert request.calleridname is None
    assert seen["stream"] == Playback("1", 4000)
    assert seen["resume"] == Playback(None, 16000)
    assert seen["data"] == Collected("12", timed_out=True)
    assert seen["no_data"] == Collected("", timed_out=True)
    assert seen["ended"] == Collected("123", timed_out=False)
    assert seen["digit"] == "#"
    assert seen["timeout"] is None
    assert seen["say"] is None
    assert seen["num"] == "2"
    assert seen["var"] == "sales team"
    assert seen["unset"] is None
    assert seen["exec"] == 0
    assert server.served == 1
    assert server.rejected == 0


def test_a_whole_call_on_the_daemons_loop() -> None:
    """The daemon runs on uvloop where it is installed (engine.event_loop), whose
    transports are not asyncio.Transport instances: the server must not care."""
    outcome: dict[str, Any] = {}

    async def ivr(channel: AgiChannel) -> None:
        await channel.answer()
        outcome["name"] = await channel.get_variable("CHANNEL")

    async def call() -> None:
        async with AgiServer("127.0.0.1", 0, ivr, reply_timeout=WITHIN) as server:
            fake = await FakeAsterisk.connect(server.port, request_block())
            try:
                await fake.expect("EXEC Answer ,i", "200 result=0")
                await fake.expect("GET VARIABLE CHANNEL", "200 result=1 (PJSIP/caller-1)")
                assert await fake.eof() == b""
            finally:
                fake.close()
            outcome["served"] = server.served

    run_daemon_loop(call())
    assert outcome == {"name": "PJSIP/caller-1", "served": 1}


async def test_health_is_reported() -> None:
    health = HealthReport()

    async def nothing(channel: AgiChannel) -> None:
        pass

    async with AgiServer("127.0.0.1", 0, nothing, health=health) as server:
        status = health.get("agi")
        assert status is not None
        assert status.state == "up"
        assert str(server.port) in status.detail
        assert not status.required
    status = health.get("agi")
    assert status is not None
    assert status.state == "down"


async def test_a_busy_port_is_an_agi_error(serve: Any) -> None:
    async def nothing(channel: AgiChannel) -> None:
        pass

    server, _ = await serve(nothing)
    second = AgiServer("127.0.0.1", server.port, nothing)
    with pytest.raises(AgiError, match="cannot listen"):
        await second.start()
    await second.close()
    with pytest.raises(ClosedResourceError):
        await second.start()


# ----------------------------------------------------------------------------- bad requests


async def _assert_rejected(server: AgiServer, recorder: Recorder, fake: FakeAsterisk) -> None:
    rejected = server.rejected
    try:
        sent = await fake.eof()
    except ConnectionResetError:
        sent = b""  # closed with our bytes unread: the kernel answers with a reset
    assert sent == b""  # closed without a byte sent back
    # counted before the server closed the connection
    assert server.rejected == rejected + 1
    assert server.active == 0
    assert recorder.count == 0


async def _still_serves(server: AgiServer, recorder: Recorder) -> None:
    fake = await FakeAsterisk.connect(server.port, request_block("2.2"))
    await fake.expect("EXEC Answer ,i", "200 result=0")
    assert await fake.eof() == b""
    await recorder.wait()
    assert "2.2" in recorder.outcomes  # the handler ran for the next call


async def _answer(channel: AgiChannel) -> None:
    await channel.answer()


@pytest.mark.parametrize(
    "garbage",
    [
        b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
        b"agi_network_script: ivr/main\n\n",  # no agi_channel
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\n\n",  # a TLS hello
        b"agi_channel: x\nagi_network_script: s\n",  # then EOF before the blank line
    ],
)
async def test_garbage_request_is_refused_and_the_server_goes_on(
    serve: Any, garbage: bytes
) -> None:
    server, recorder = await serve(_answer)
    fake = await FakeAsterisk.connect(server.port, garbage)
    if not garbage.endswith(b"\n\n"):
        fake.writer.write_eof()
    await _assert_rejected(server, recorder, fake)
    assert server.rejected == 1
    await _still_serves(server, recorder)


async def test_oversized_header_is_refused(serve: Any) -> None:
    server, recorder = await serve(_answer, max_request_bytes=4096)
    lines = b"".join(b"agi_x%d: %s\n" % (i, b"v" * 60) for i in range(200))
    fake = await FakeAsterisk.connect(server.port, lines)
    await _assert_rejected(server, recorder, fake)
    await _still_serves(server, recorder)


async def test_one_endless_line_is_refused(serve: Any) -> None:
    server, recorder = await serve(_answer)
    fake = await FakeAsterisk.connect(server.port, b"agi_channel: " + b"x" * 200_000)
    await _assert_rejected(server, recorder, fake)
    await _still_serves(server, recorder)


async def test_too_many_header_lines_are_refused(serve: Any) -> None:
    server, recorder = await serve(_answer, max_request_bytes=1 << 20)
    fake = await FakeAsterisk.connect(server.port, b"agi_a: b\n" * 1000)
    await _assert_rejected(server, recorder, fake)


async def test_a_request_that_never_ends_times_out(serve: Any) -> None:
    server, recorder = await serve(_answer, request_timeout=0.2)
    fake = await FakeAsterisk.connect(server.port, b"agi_channel: x\n")  # and nothing more
    await _assert_rejected(server, recorder, fake)
    await _still_serves(server, recorder)


# ----------------------------------------------------------------------------- failures mid-call


async def test_client_disconnect_mid_command_is_a_hangup(serve: Any) -> None:
    async def ivr(channel: AgiChannel) -> None:
        await channel.answer()
        await channel.stream_file("long-prompt", "")

    server, recorder = await serve(ivr)
    with structlog.testing.capture_logs() as logs:
        fake = await FakeAsterisk.connect(server.port, request_block())
        await fake.expect("EXEC Answer ,i", "200 result=0")
        await fake.expect('STREAM FILE long-prompt ""')  # read the command, then vanish
        fake.close()
        await recorder.wait()
        assert await fake.eof() == b""
    assert server.active == 0
    assert isinstance(recorder.outcomes["1700000000.1"], AgiHangup)
    events = [entry["event"] for entry in logs]
    assert "agi.hangup" in events
    assert "agi.handler_failed" not in events


Connected = tuple[AgiChannel, AgiConnection, FakeAsterisk]
ChannelPair = Callable[[float | None], Awaitable[Connected]]


@pytest.fixture
async def channel_pair() -> AsyncIterator[ChannelPair]:
    """An AgiChannel over a real TCP connection, with its connection at hand: a test can
    hand it the error asyncio's transport would (``connection_lost(exc)``, what a failed
    ``recv()`` ends in), which no loopback peer can provoke."""
    accepted: asyncio.Queue[AgiConnection] = asyncio.Queue()

    def connection() -> AgiConnection:
        made = AgiConnection()
        made.on_made = accepted.put_nowait
        return made

    listener = await asyncio.get_running_loop().create_server(connection, "127.0.0.1", 0)
    connections: list[AgiConnection] = []

    async def pair(reply_timeout: float | None) -> Connected:
        fake = await FakeAsterisk.connect(listener.sockets[0].getsockname()[1])
        async with asyncio.timeout(WITHIN):
            made = await accepted.get()
        connections.append(made)
        request = parse_request(request_block())
        return AgiChannel(request, made, reply_timeout=reply_timeout), made, fake

    yield pair
    for made in connections:
        made.close()
    listener.close()
    await listener.wait_closed()


@pytest.mark.parametrize("reply_timeout", [None, 30.0], ids=["no_reply_limit", "reply_limit"])
@pytest.mark.parametrize("dial", [True, False], ids=["exec_dial", "get_variable"])
async def test_a_socket_timeout_is_a_lost_connection_not_a_reply_timeout(
    channel_pair: ChannelPair, reply_timeout: float | None, dial: bool
) -> None:
    """The kernel giving up on the TCP connection (ETIMEDOUT, a TimeoutError) is the
    connection lost, an AgiHangup, whatever limit the command ran under: neither a bare
    TimeoutError escaping the channel nor an AgiTimeout blaming a silent Asterisk."""
    channel, connection, fake = await channel_pair(reply_timeout)
    if dial:
        command = asyncio.create_task(channel.exec("Dial", "PJSIP/bob", wait=None))
        await fake.expect("EXEC Dial PJSIP/bob")
    else:
        command = asyncio.create_task(channel.get_variable("X"))
        await fake.expect("GET VARIABLE X")
    connection.connection_lost(TimeoutError(errno.ETIMEDOUT, os.strerror(errno.ETIMEDOUT)))
    with pytest.raises(AgiHangup, match="connection lost"):
        async with asyncio.timeout(WITHIN):
            await command
    assert channel.hung_up
    with pytest.raises(AgiHangup, match="closed"):
        await channel.verbose("after")


@pytest.mark.parametrize(
    "lost",
    [TimeoutError(errno.ETIMEDOUT, os.strerror(errno.ETIMEDOUT)), ConnectionResetError()],
)
async def test_a_connection_lost_while_a_failed_command_waits_for_hangup_is_a_hangup(
    channel_pair: ChannelPair, monkeypatch: pytest.MonkeyPatch, lost: OSError
) -> None:
    """After ``result=-1`` the channel waits for Asterisk's HANGUP notice; the connection
    dying then is the caller gone (AgiHangup), not a failed command on a broken channel."""
    monkeypatch.setattr(AgiChannel, "hangup_grace", WITHIN * 4)
    expecting = asyncio.Event()
    expect_hangup = AgiChannel._expect_hangup

    async def expect_hangup_noted(self: AgiChannel) -> None:
        expecting.set()
        await expect_hangup(self)

    monkeypatch.setattr(AgiChannel, "_expect_hangup", expect_hangup_noted)
    channel, connection, fake = await channel_pair(None)
    command = asyncio.create_task(channel.stream_file("hello-world"))
    await fake.expect('STREAM FILE hello-world ""', "200 result=-1 endpos=0")
    async with asyncio.timeout(WITHIN):
        await expecting.wait()  # the -1 was read: the channel waits for the notice

    async def waiting_for_the_notice() -> bool | None:
        return connection.waiting or None

    await eventually(waiting_for_the_notice, within=WITHIN, what="the grace wait")
    connection.connection_lost(lost)
    with pytest.raises(AgiHangup):
        async with asyncio.timeout(WITHIN):
            await command
    assert channel.hung_up


async def test_the_reply_limit_runs_from_each_command_not_from_an_earlier_one(
    channel_pair: ChannelPair,
) -> None:
    """A command waits its own reply limit, though an earlier, shorter one has passed
    meanwhile (one timer per connection, armed for the nearest deadline: past it, a
    command with a later one goes on waiting)."""
    channel, _, fake = await channel_pair(0.2)
    command = asyncio.create_task(channel.get_variable("X"))
    await fake.expect("GET VARIABLE X", "200 result=1 (y)")
    assert await command == "y"
    option = asyncio.create_task(channel.get_option("menu", "1", 5000))
    await fake.expect("GET OPTION menu 1 5000")
    # The loop runs its timers in order: GET VARIABLE's deadline has passed when this
    # sleep ends, GET OPTION's (5.2 s after it was sent) has not.
    await asyncio.sleep(0.4)
    fake.writer.write(b"200 result=49 endpos=100\n")
    async with asyncio.timeout(WITHIN):
        assert await option == Playback("1", 100)


async def test_a_short_reply_limit_after_a_long_one_still_expires(
    channel_pair: ChannelPair,
) -> None:
    channel, _, fake = await channel_pair(0.2)
    option = asyncio.create_task(channel.get_option("menu", "1", 30000))
    await fake.expect("GET OPTION menu 1 30000", "200 result=0 endpos=8000")
    assert await option == Playback(None, 8000)
    command = asyncio.create_task(channel.get_variable("X"))
    await fake.expect("GET VARIABLE X")  # and no answer
    with pytest.raises(
        AgiTimeout, match=r"^AGI GET VARIABLE: no reply from Asterisk within 0.2 s$"
    ):
        async with asyncio.timeout(WITHIN):
            await command
    with pytest.raises(AgiError, match="unusable"):
        await channel.verbose("after")


async def test_hangup_notice_then_511(serve: Any) -> None:
    after: dict[str, Any] = {}

    async def ivr(channel: AgiChannel) -> None:
        try:
            await channel.stream_file("menu", "1")
        finally:
            after["hung_up"] = channel.hung_up
            after["name"] = await channel.get_variable("CHANNEL")  # allowed on a dead channel

    server, recorder = await serve(ivr)
    fake = await FakeAsterisk.connect(server.port, request_block())
    await fake.expect(
        "STREAM FILE menu 1",
        "HANGUP",
        "511 Command Not Permitted on a dead channel or intercept routine",
    )
    await fake.expect("GET VARIABLE CHANNEL", "200 result=1 (PJSIP/caller-1)")
    assert await fake.eof() == b""
    await recorder.wait()
    assert isinstance(recorder.outcomes["1700000000.1"], AgiHangup)
    assert after == {"hung_up": True, "name": "PJSIP/caller-1"}


async def test_minus_one_then_hangup_is_a_hangup(serve: Any) -> None:
    # what Asterisk 22 sends when the caller hangs up during WAIT FOR DIGIT (measured)
    async def ivr(channel: AgiChannel) -> None:
        await channel.wait_for_digit(20000)

    server, recorder = await serve(ivr)
    fake = await FakeAsterisk.connect(server.port, request_block())
    await fake.expect("WAIT FOR DIGIT 20000", "200 result=-1", "HANGUP")
    assert await fake.eof() == b""
    await recorder.wait()
    assert isinstance(recorder.outcomes["1700000000.1"], AgiHangup)


async def test_minus_one_without_hangup_is_a_command_error(
    serve: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(AgiChannel, "hangup_grace", 0.05)
    results: list[Any] = []

    async def ivr(channel: AgiChannel) -> None:
        with pytest.raises(AgiCommandError, match="STREAM FILE no-such-file") as caught:
            await channel.stream_file("no-such-file")  # a missing file answers -1 too
        results.append(caught.value.response)
        results.append(await channel.get_variable("X"))  # and the channel is still usable

    server, recorder = await serve(ivr)
    fake = await FakeAsterisk.connect(server.port, request_block())
    await fake.expect('STREAM FILE no-such-file ""', "200 result=-1 endpos=0")
    await fake.expect("GET VARIABLE X", "200 result=1 (y)")
    assert await fake.eof() == b""
    await recorder.wait()
    assert recorder.outcomes["1700000000.1"] == "ok"
    assert results[1] == "y"


async def test_510_and_520_raise_and_the_connection_stays_usable(serve: Any) -> None:
    got: list[Any] = []

    async def ivr(channel: AgiChannel) -> None:
        with pytest.raises(AgiCommandError, match="510 unknown command"):
            await channel.command("FOO BAR")
        with pytest.raises(AgiCommandError, match="invalid syntax") as caught:
            await channel.command("SET VARIABLE")
        got.append(caught.value.response)
        got.append(await channel.get_variable("A"))

    server, recorder = await serve(ivr)
    fake = await FakeAsterisk.connect(server.port, request_block())
    await fake.expect("FOO BAR", "510 Invalid or unknown command")
    await fake.expect(
        "SET VARIABLE",
        "520-Invalid command syntax.  Proper usage follows:",
        "Sets a variable to the current channel.",
        "520 End of proper usage.",
    )
    await fake.expect("GET VARIABLE A", "200 result=1 (b c)")
    assert await fake.eof() == b""
    await recorder.wait()
    assert recorder.outcomes["1700000000.1"] == "ok"
    assert "Sets a variable" in got[0].data
    assert got[1] == "b c"


async def test_garbage_response_fails_the_call_only(serve: Any) -> None:
    async def ivr(channel: AgiChannel) -> None:
        await channel.answer()

    server, recorder = await serve(ivr)
    with structlog.testing.capture_logs() as logs:
        fake = await FakeAsterisk.connect(server.port, request_block())
        await fake.expect("EXEC Answer ,i", "this is not AGI")
        assert await fake.eof() == b""
        await recorder.wait()
    assert isinstance(recorder.outcomes["1700000000.1"], AgiError)
    assert any(e["event"] == "agi.command_failed" for e in logs)
    recorder.count = 0
    recorder.finished.clear()
    await _still_serves(server, recorder)


async def test_handler_exception_is_logged_with_the_call_id(serve: Any) -> None:
    async def ivr(channel: AgiChannel) -> None:
        await channel.answer()
        raise RuntimeError("bug in the menu")

    server, recorder = await serve(ivr)
    with structlog.testing.capture_logs() as logs:
        fake = await FakeAsterisk.connect(server.port, request_block("9.9"))
        await fake.expect("EXEC Answer ,i", "200 result=0")
        assert await fake.eof() == b""  # closed cleanly: Asterisk continues the dialplan
        await recorder.wait()
    failed = [e for e in logs if e["event"] == "agi.handler_failed"]
    assert len(failed) == 1
    assert failed[0]["call_id"] == "9.9"
    assert failed[0]["channel"] == "PJSIP/caller-9.9"
    assert failed[0]["script"] == "ivr/main"
    recorder.count = 0
    recorder.finished.clear()
    await _still_serves(server, recorder)


async def test_injection_is_refused_before_sending(serve: Any) -> None:
    async def ivr(channel: AgiChannel) -> None:
        with pytest.raises(AgiCommandError, match="line break"):
            await channel.set_variable("X", "1\nHANGUP")
        await channel.answer()

    server, recorder = await serve(ivr)
    fake = await FakeAsterisk.connect(server.port, request_block())
    await fake.expect("EXEC Answer ,i", "200 result=0")  # the first line it sent is the answer
    assert await fake.eof() == b""
    await recorder.wait()
    assert recorder.outcomes["1700000000.1"] == "ok"


async def test_a_burst_of_callers_waits_in_the_listen_backlog_while_the_loop_is_busy(
    serve: Any,
) -> None:
    # the kernel completes connections while the loop is busy, up to the listen backlog;
    # past it a caller's SYN is dropped and retried after 1 s, and Asterisk gives up a
    # FastAGI connect after 2 s (asyncio's default backlog of 100 lost callers at 160/s)
    async def ivr(channel: AgiChannel) -> None:
        await channel.hangup()

    server, _ = await serve(ivr)
    burst = backlog_burst()
    # synchronous: the loop is busy and accepts nothing meanwhile
    assert connected_at_once(socket.AF_INET, ("127.0.0.1", server.port), burst) == burst


# ----------------------------------------------------------------------------- many and shutdown


async def test_fifty_concurrent_calls(serve: Any) -> None:
    total = 50
    inside = 0
    all_inside = asyncio.Event()

    async def ivr(channel: AgiChannel) -> None:
        nonlocal inside
        await channel.answer()
        inside += 1
        if inside == total:
            all_inside.set()
        async with asyncio.timeout(WITHIN):  # every call is in progress at the same time
            await all_inside.wait()
        value = await channel.get_variable("WHO")
        assert value == channel.request.uniqueid

    server, recorder = await serve(ivr)

    async def call(i: int) -> bytes:
        uid = f"1700000000.{i}"
        fake = await FakeAsterisk.connect(server.port, request_block(uid))
        await fake.expect("EXEC Answer ,i", "200 result=0")
        await fake.expect("GET VARIABLE WHO", f"200 result=1 ({uid})")
        return await fake.eof()

    results = await asyncio.gather(*(call(i) for i in range(total)))
    await recorder.wait(total)
    assert results == [b""] * total
    assert recorder.outcomes == {f"1700000000.{i}": "ok" for i in range(total)}
    assert server.served == total
    assert server.active == 0


async def test_close_with_connections_open() -> None:
    started = 0
    all_started = asyncio.Event()

    async def ivr(channel: AgiChannel) -> None:
        nonlocal started
        started += 1
        if started == 3:
            all_started.set()
        await channel.wait_for_digit(-1)  # the fake never answers

    recorder = Recorder(ivr)
    server = AgiServer("127.0.0.1", 0, recorder, close_grace=WITHIN)
    await server.start()
    fakes = [await FakeAsterisk.connect(server.port, request_block(f"3.{i}")) for i in range(3)]
    for fake in fakes:
        await fake.expect("WAIT FOR DIGIT -1")
    async with asyncio.timeout(WITHIN):
        await all_started.wait()
    idle = await FakeAsterisk.connect(server.port)  # connected, request not sent yet
    # the server's accept has no event to wait on
    await eventually(
        lambda: server.active == 4, within=WITHIN, interval=0, what="four connections active"
    )
    loop = asyncio.get_running_loop()
    loop_errors: list[dict[str, Any]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _, context: loop_errors.append(context))
    try:
        await server.close()
        await asyncio.sleep(0)  # let asyncio's per-connection done callbacks run
    finally:
        loop.set_exception_handler(previous)
    assert loop_errors == []

    assert server.active == 0
    for fake in [*fakes, idle]:
        assert await fake.eof() == b""
    await recorder.wait(3)
    assert all(isinstance(o, asyncio.CancelledError) for o in recorder.outcomes.values())
    with pytest.raises(ConnectionRefusedError):
        await FakeAsterisk.connect(server.port)
    await server.close()  # twice is fine


async def test_cancelled_command_leaves_the_channel_unusable(serve: Any) -> None:
    outcome: list[Any] = []

    async def ivr(channel: AgiChannel) -> None:
        task = asyncio.create_task(channel.wait_for_digit(-1))
        await asyncio.wait({task}, timeout=0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        with pytest.raises(AgiError, match="unusable") as caught:
            await channel.answer()  # its answer would be WAIT FOR DIGIT's: refused
        outcome.append(caught.value)

    server, recorder = await serve(ivr)
    fake = await FakeAsterisk.connect(server.port, request_block())
    await fake.expect("WAIT FOR DIGIT -1")
    assert await fake.eof() == b""
    await recorder.wait()
    assert recorder.outcomes["1700000000.1"] == "ok"
