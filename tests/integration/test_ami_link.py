"""AmiLink against a small fake AMI server on 127.0.0.1: garbage, keepalive, reconnects.

The fake speaks just enough AMI (greeting, Login, Ping, anything else answered Success)
and lets a test inject bytes, stop answering, refuse logins or hang up. Every wait is on a
condition with a timeout; nothing sleeps and hopes.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from engine.asterisk.links.ami import AmiEvent, AmiLink, AmiLoginError, AmiResponseError
from engine.errors import AmiError, ClosedResourceError
from engine.health import HealthReport
from tests.support.waiting import eventually

SECRET = "fake-secret"
WITHIN = 5.0  # seconds any single expected thing may take


def wire(**headers: str) -> bytes:
    return b"".join(f"{k}: {v}\r\n".encode() for k, v in headers.items()) + b"\r\n"


Script = Callable[[AmiEvent, asyncio.StreamWriter], Awaitable[bool]]


class FakeAmi:
    """A scriptable AMI server. ``script[action]`` may answer an action itself (return
    True); otherwise Login checks the secret, Ping pongs and the rest get Success."""

    def __init__(self) -> None:
        self.greeting = b"Asterisk Call Manager/11.0.0\r\n"
        self.refuse_logins = 0  # refuse this many logins first
        self.answer_pings = True
        self.booted_uptime = "42"
        self.script: dict[str, Script] = {}
        self.received: list[AmiEvent] = []
        self.logins = 0
        self.writers: list[asyncio.StreamWriter] = []
        self._changed = asyncio.Condition()
        self._server: asyncio.Server | None = None
        self.port = 0  # once started
        self._clients: set[asyncio.Task[None]] = set()

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self.port

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        self.hang_up()
        for task in list(self._clients):
            task.cancel()
        for task in list(self._clients):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._server is not None:
            await self._server.wait_closed()

    def hang_up(self) -> None:
        for writer in self.writers:
            writer.close()

    def push(self, data: bytes) -> None:
        """Send raw bytes to every connected client."""
        for writer in self.writers:
            if not writer.is_closing():
                writer.write(data)

    async def until(self, predicate: Callable[[], bool], within: float = WITHIN) -> None:
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(predicate), within)

    def actions(self, name: str) -> list[AmiEvent]:
        return [m for m in self.received if m.get("Action", "").lower() == name.lower()]

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._clients.add(task)
        self.writers.append(writer)
        await self._notify()
        try:
            writer.write(self.greeting)
            while True:
                try:
                    block = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    break
                headers: AmiEvent = {}
                for line in block.decode().splitlines():
                    key, sep, value = line.partition(": ")
                    if sep:
                        headers[key] = value
                self.received.append(headers)
                await self._answer(headers, writer)
                await self._notify()
        finally:
            self.writers.remove(writer)
            writer.close()
            self._clients.discard(task)
            await self._notify()

    async def _answer(self, msg: AmiEvent, writer: asyncio.StreamWriter) -> None:
        name = msg.get("Action", "").lower()
        action_id = msg.get("ActionID", "")
        script = self.script.get(name)
        if script is not None and await script(msg, writer):
            return
        if name == "login":
            if self.refuse_logins > 0 or msg.get("Secret") != SECRET:
                self.refuse_logins -= 1
                writer.write(
                    wire(Response="Error", ActionID=action_id, Message="Authentication failed")
                )
                return
            self.logins += 1
            writer.write(
                wire(Response="Success", ActionID=action_id, Message="Authentication accepted")
            )
            writer.write(
                wire(Event="FullyBooted", Privilege="system,all", Uptime=self.booted_uptime)
            )
        elif name == "ping":
            if self.answer_pings:
                writer.write(wire(Response="Success", ActionID=action_id, Ping="Pong"))
        else:
            writer.write(wire(Response="Success", ActionID=action_id))


@pytest.fixture
async def fake() -> AsyncIterator[FakeAmi]:
    server = FakeAmi()
    await server.start()
    try:
        yield server
    finally:
        await server.close()


@contextlib.asynccontextmanager
async def linked(fake: FakeAmi, **kwargs: Any) -> AsyncIterator[AmiLink]:
    options: dict[str, Any] = {
        "ping_interval": 3600.0,
        "backoff_initial": 0.01,
        "backoff_max": 0.05,
        "action_timeout": WITHIN,
        **kwargs,
    }
    link = AmiLink("127.0.0.1", fake.port, "ctc", SECRET, **options)
    try:
        yield link
    finally:
        await asyncio.wait_for(link.close(), WITHIN)


# --------------------------------------------------------------------------- basics


async def test_login_action_and_health(fake: FakeAmi) -> None:
    health = HealthReport()
    async with linked(fake, health=health) as link:
        await link.start()
        await link.wait_connected(WITHIN)
        login = fake.actions("Login")[0]
        assert (login["Username"], login["Secret"], login["Events"]) == ("ctc", SECRET, "on")
        status = health.get("ami")
        assert status is not None
        assert (status.state, status.required) == ("up", False)
        reply = await link.action("CoreStatus")
        assert reply["Response"] == "Success"
        assert fake.actions("CoreStatus")[0]["ActionID"] == reply["ActionID"]
    status = health.get("ami")
    assert status is not None
    assert status.state == "down"


async def test_response_error_raises(fake: FakeAmi) -> None:
    async def refuse(msg: AmiEvent, writer: asyncio.StreamWriter) -> bool:
        writer.write(wire(Response="Error", ActionID=msg["ActionID"], Message="Module not loaded"))
        return True

    fake.script["modulecheck"] = refuse
    async with linked(fake) as link:
        await link.start()
        await link.wait_connected(WITHIN)
        with pytest.raises(AmiResponseError, match="AMI ModuleCheck: Module not loaded") as info:
            await link.action("ModuleCheck", Module="res_nope")
        assert info.value.response["Message"] == "Module not loaded"
        assert (await link.action("Ping"))["Ping"] == "Pong"  # and the link is fine


async def test_unanswered_action_times_out_and_the_link_stays(fake: FakeAmi) -> None:
    async def ignore(msg: AmiEvent, writer: asyncio.StreamWriter) -> bool:
        return True

    fake.script["status"] = ignore
    async with linked(fake) as link:
        await link.start()
        await link.wait_connected(WITHIN)
        with pytest.raises(AmiError, match="no response within"):
            await link.action("Status", response_timeout=0.2)
        assert link.connected.is_set()
        assert (await link.action("Ping"))["Ping"] == "Pong"
        assert link.connections == 1


async def test_event_list_is_collected(fake: FakeAmi) -> None:
    async def listing(msg: AmiEvent, writer: asyncio.StreamWriter) -> bool:
        aid = msg["ActionID"]
        writer.write(wire(Response="Success", ActionID=aid, EventList="start", Message="follow"))
        writer.write(wire(Event="CoreShowChannel", ActionID=aid, Channel="PJSIP/a-1"))
        writer.write(wire(Event="Newchannel", Channel="PJSIP/b-2"))  # not part of the list
        writer.write(wire(Event="CoreShowChannel", ActionID=aid, Channel="PJSIP/a-2"))
        writer.write(wire(Event="CoreShowChannelsComplete", ActionID=aid, EventList="Complete"))
        return True

    fake.script["coreshowchannels"] = listing
    async with linked(fake) as link:
        others: list[AmiEvent] = []
        link.on_event("Newchannel", others.append)
        await link.start()
        await link.wait_connected(WITHIN)
        reply = await link.action("CoreShowChannels")
        assert [e["Channel"] for e in reply["events"]] == ["PJSIP/a-1", "PJSIP/a-2"]
        assert [e["Channel"] for e in others] == ["PJSIP/b-2"]


async def test_fields_with_line_breaks_are_refused_before_sending(fake: FakeAmi) -> None:
    async with linked(fake) as link:
        await link.start()
        await link.wait_connected(WITHIN)
        with pytest.raises(AmiError, match="line break"):
            await link.action("Originate", Channel="Local/x\r\nAction: Hangup")
        assert fake.actions("Originate") == []
        assert fake.actions("Hangup") == []


# --------------------------------------------------------------------------- bad input


GARBAGE = [
    b"\x00\xff\xfe\x01 binary junk\r\n\r\n",
    b"this is not AMI at all\r\n\r\n",
    b"Foo: bar\r\nBaz: no Response or Event\r\n\r\n",
    b"Response: Success\r\nActionID: nobody-asked-for-this\r\n\r\n",  # stray response
    b"Response: Follows\r\nPrivilege: Command\r\n--END COMMAND--\r\n\r\n",  # no ActionID
    b"\r\n\r\n\r\n",
]


async def test_garbage_between_valid_responses_never_kills_the_link(fake: FakeAmi) -> None:
    async def garbage_first(msg: AmiEvent, writer: asyncio.StreamWriter) -> bool:
        for junk in GARBAGE:
            writer.write(junk)
        writer.write(wire(Response="Success", ActionID=msg["ActionID"], Answer="after junk"))
        for junk in GARBAGE:
            writer.write(junk)
        return True

    fake.script["corestatus"] = garbage_first
    async with linked(fake) as link:
        await link.start()
        await link.wait_connected(WITHIN)
        for _ in range(3):
            reply = await link.action("CoreStatus")
            assert reply["Answer"] == "after junk"
        assert (await link.action("Ping"))["Ping"] == "Pong"
        assert link.unparsable >= 3 * 3  # the blocks that are not messages at all
        assert link.connections == 1
        assert link.connected.is_set()


async def test_oversized_block_is_skipped(fake: FakeAmi) -> None:
    async with linked(fake) as link:
        await link.start()
        await link.wait_connected(WITHIN)
        fake.push(b"x" * (3 << 20))  # 3 MiB without a message end
        fake.push(b"\r\n\r\n")
        assert (await link.action("Ping"))["Ping"] == "Pong"
        assert link.unparsable >= 1
        assert link.connections == 1


async def test_originate_response_event_is_an_event_not_a_stray_response(
    fake: FakeAmi,
) -> None:
    # The DESIGN.md pitfall: Originate's async answer is an *event* carrying "Response:".
    async def originate(msg: AmiEvent, writer: asyncio.StreamWriter) -> bool:
        aid = msg["ActionID"]
        writer.write(
            wire(Response="Success", ActionID=aid, Message="Originate successfully queued")
        )
        writer.write(
            wire(Event="OriginateResponse", ActionID=aid, Response="Success", Channel="Local/x")
        )
        return True

    fake.script["originate"] = originate
    async with linked(fake) as link:
        got: list[AmiEvent] = []
        arrived = asyncio.Event()

        def on_response(event: AmiEvent) -> None:
            got.append(event)
            arrived.set()

        link.on_event("OriginateResponse", on_response)
        await link.start()
        await link.wait_connected(WITHIN)
        reply = await link.action("Originate", Channel="Local/x", Application="Wait", Async=True)
        assert reply["Message"] == "Originate successfully queued"
        await asyncio.wait_for(arrived.wait(), WITHIN)
        assert got[0]["ActionID"] == reply["ActionID"]
        assert got[0]["Response"] == "Success"
        assert (await link.action("Ping"))["Ping"] == "Pong"
        assert link.connections == 1


async def test_a_failing_handler_does_not_hurt_the_link(fake: FakeAmi) -> None:
    calls: list[str] = []

    def broken(event: AmiEvent) -> None:
        calls.append("sync")
        raise RuntimeError("handler bug")

    async def broken_async(event: AmiEvent) -> None:
        calls.append("async")
        raise RuntimeError("async handler bug")

    async with linked(fake) as link:
        link.on_event("Hangup", broken)
        link.on_event("*", broken_async)
        await link.start()
        await link.wait_connected(WITHIN)
        fake.push(wire(Event="Hangup", Channel="PJSIP/a-1"))
        assert (await link.action("Ping"))["Ping"] == "Pong"
        assert "sync" in calls
        assert link.connections == 1


# --------------------------------------------------------------------------- events


async def test_fully_booted_hook_runs_after_every_login(fake: FakeAmi) -> None:
    booted: list[AmiEvent] = []

    async def hook(event: AmiEvent) -> None:
        booted.append(event)

    async with linked(fake) as link:
        link.on_event("fullybooted", hook)  # names are case-insensitive
        await link.start()
        await link.wait_connected(WITHIN)
        await eventually(lambda: len(booted) == 1, within=WITHIN, what="first FullyBooted")
        assert booted[0]["Uptime"] == "42"
        fake.booted_uptime = "1"  # "Asterisk restarted"
        fake.hang_up()
        await eventually(lambda: len(booted) == 2, within=WITHIN, what="second FullyBooted")
        assert booted[1]["Uptime"] == "1"
        assert link.connections == 2


# --------------------------------------------------------------------------- failures


async def test_missed_pong_marks_the_link_down_and_reconnects(fake: FakeAmi) -> None:
    health = HealthReport()
    fake.answer_pings = False
    async with linked(fake, ping_interval=0.05, ping_timeout=0.2, health=health) as link:
        await link.start()
        await link.wait_connected(WITHIN)
        await fake.until(lambda: len(fake.actions("Ping")) >= 1)
        await fake.until(lambda: fake.logins >= 2)  # it gave up on the first connection
        assert link.last_error is not None
        assert "keepalive failed" in link.last_error
        assert "Ping" in link.last_error
        fake.answer_pings = True
        await link.wait_connected(WITHIN)
        await eventually(lambda: link.pongs >= 2, within=WITHIN, what="two pongs")
        status = health.get("ami")
        assert status is not None
        assert status.state == "up"


async def test_reconnects_after_the_server_hangs_up(fake: FakeAmi) -> None:
    async with linked(fake) as link:
        await link.start()
        await link.wait_connected(WITHIN)
        fake.hang_up()
        await fake.until(lambda: fake.logins == 2)
        await link.wait_connected(WITHIN)
        assert link.connections == 2
        assert link.last_error is not None
        assert "closed the connection" in link.last_error
        assert (await link.action("Ping"))["Ping"] == "Pong"


async def test_action_in_flight_fails_when_the_link_drops(fake: FakeAmi) -> None:
    async def hang_up(msg: AmiEvent, writer: asyncio.StreamWriter) -> bool:
        writer.close()
        return True

    fake.script["originate"] = hang_up
    async with linked(fake) as link:
        await link.start()
        await link.wait_connected(WITHIN)
        with pytest.raises(AmiError, match="went down"):
            await link.action("Originate", Channel="Local/x", response_timeout=60)
        await fake.until(lambda: fake.logins == 2)
        # never re-sent on the new connection (a replayed Originate would dial twice)
        await link.wait_connected(WITHIN)
        await link.action("Ping")
        assert len(fake.actions("Originate")) == 1


async def test_action_while_down_fails_at_once(fake: FakeAmi) -> None:
    fake.refuse_logins = 10**6
    async with linked(fake) as link:
        with pytest.raises(AmiError, match="down"):
            await link.action("Ping")
        await link.start()
        await fake.until(lambda: len(fake.actions("Login")) >= 2)
        with pytest.raises(AmiError, match="down"):
            await link.action("Ping")


async def test_refused_logins_are_retried_with_backoff(fake: FakeAmi) -> None:
    health = HealthReport()
    fake.refuse_logins = 4
    async with linked(fake, health=health) as link:
        await link.start()
        await link.wait_connected(WITHIN)
        assert len(fake.actions("Login")) == 5
        assert link.connections == 1
        assert link.last_error is not None
        assert "Authentication failed" in link.last_error


async def test_single_attempt_reports_the_login_failure(fake: FakeAmi) -> None:
    fake.refuse_logins = 1
    async with linked(fake, reconnect=False) as link:
        await link.start()
        with pytest.raises(AmiLoginError, match=r"login as ctc on 127\.0\.0\.1:\d+ failed"):
            await link.wait_connected(WITHIN)
        assert len(fake.actions("Login")) == 1


async def test_not_an_ami_server(fake: FakeAmi) -> None:
    fake.greeting = b"HTTP/1.1 400 Bad Request\r\n"
    async with linked(fake, reconnect=False) as link:
        await link.start()
        with pytest.raises(AmiError, match="not an AMI server"):
            await link.wait_connected(WITHIN)


async def test_unreachable() -> None:
    probe = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = int(probe.sockets[0].getsockname()[1])
    probe.close()
    await probe.wait_closed()  # nothing listens there now
    link = AmiLink("127.0.0.1", port, "ctc", SECRET, reconnect=False)
    async with link:
        with pytest.raises(AmiError, match="unreachable"):
            await link.wait_connected(WITHIN)


# --------------------------------------------------------------------------- close


async def test_close_is_bounded_with_a_hanging_hook_and_a_silent_server(fake: FakeAmi) -> None:
    started = asyncio.Event()

    async def hangs(event: AmiEvent) -> None:
        started.set()
        await asyncio.Event().wait()  # forever

    async with linked(fake, close_grace=1.0) as link:
        link.on_event("FullyBooted", hangs)
        await link.start()
        await link.wait_connected(WITHIN)
        await asyncio.wait_for(started.wait(), WITHIN)
        pending = asyncio.create_task(link.action("Ping", response_timeout=60))
        fake.answer_pings = False
        await fake.until(lambda: len(fake.actions("Ping")) == 1)
        await asyncio.wait_for(link.close(), WITHIN)
        with pytest.raises(ClosedResourceError):
            await pending
        with pytest.raises(ClosedResourceError):
            await link.action("Ping")
        await fake.until(lambda: not fake.writers)  # the socket is closed
        assert len(fake.actions("Logoff")) == 1  # and it said goodbye first


async def test_close_while_connecting_and_close_cancelled(fake: FakeAmi) -> None:
    fake.greeting = b""  # accepts, never greets: the link waits for the greeting
    async with linked(fake, connect_timeout=60) as link:
        await link.start()
        await fake.until(lambda: len(fake.writers) == 1)
        closing = asyncio.create_task(link.close())
        await asyncio.sleep(0)  # let close() run up to its first await
        closing.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await closing
        await fake.until(lambda: not fake.writers)  # released even though close was cancelled
        assert not link.connected.is_set()
