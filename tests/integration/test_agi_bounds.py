"""The FastAGI IVR door against peers that misbehave: silent, too many, or asking for a
menu that does not exist. A raw asyncio TCP client plays the peer against the real
AgiServer and AgiIvr over a real database; every wait is bounded, nothing sleeps.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import structlog

from engine.app.ivr_admission import ANSWER_WINDOW, IvrAdmission
from engine.asterisk.flows.ivr_agi import AgiIvr
from engine.asterisk.links.agi_server import AgiServer
from engine.config.settings import IvrSettings
from engine.daemon import Engine
from engine.domain.ivr import IvrAction, IvrMenu, IvrOption, MenuBook
from engine.errors import NotFound
from tests.integration.test_agi_server import request_block
from tests.support.tenants import new_tenant

WITHIN = 5.0


class Peer:
    """The Asterisk end of one connection, as a client that may simply stop talking."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def command(self) -> str:
        async with asyncio.timeout(WITHIN):
            return (await self.reader.readline()).decode().rstrip("\n")

    def reply(self, line: str) -> None:
        self.writer.write(f"{line}\n".encode())

    async def eof(self) -> bytes:
        """What the server sends until it closes the connection."""
        async with asyncio.timeout(WITHIN):
            return await self.reader.read()


@pytest.fixture
async def peers() -> AsyncIterator[Callable[..., Awaitable[Peer]]]:
    opened: list[Peer] = []

    async def connect(port: int, block: bytes | None = None) -> Peer:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        if block is not None:
            writer.write(block)
            await writer.drain()
        peer = Peer(reader, writer)
        opened.append(peer)
        return peer

    yield connect
    for peer in opened:
        peer.writer.close()
        with contextlib.suppress(OSError):
            await peer.writer.wait_closed()


@pytest.fixture
async def serve(api_engine: Engine) -> AsyncIterator[Callable[..., Awaitable[AgiServer]]]:
    servers: list[AgiServer] = []

    async def start(handler: AgiIvr | None = None, **limits: Any) -> AgiServer:
        door = api_engine.agi_ivr if handler is None else handler
        server = AgiServer("127.0.0.1", 0, door.run_call, metrics=api_engine.metrics, **limits)
        await server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        await server.close()


async def _tenant_with_menu(engine: Engine) -> tuple[str, uuid.UUID]:
    tenant = await new_tenant(engine.store)
    await engine.store.ivr.save(
        tenant.id, {"main": IvrMenu("main", options={"1": IvrOption(IvrAction.HANGUP)})}
    )
    return tenant.slug, tenant.id


def _refused(engine: Engine, reason: str) -> float:
    value = engine.metrics.registry.get_sample_value("ctc_agi_refused_total", {"reason": reason})
    return value or 0.0


async def _sessions(engine: Engine, tenant_id: uuid.UUID) -> list[Any]:
    await engine.store.journal.flush()
    return list(
        await engine.store.db.fetch(
            "SELECT id, status, end_reason FROM click_to_call_session WHERE tenant_id = $1",
            tenant_id,
        )
    )


async def test_asterisk_silent_mid_call_ends_the_session_failed_with_the_reason(
    api_engine: Engine, serve: Any, peers: Any
) -> None:
    slug, tenant_id = await _tenant_with_menu(api_engine)
    server = await serve(reply_timeout=0.3)
    peer = await peers(server.port, request_block(script=f"ivr/main?tenant={slug}"))
    assert await peer.command() == "EXEC Answer ,i"
    # ...and no answer ever comes: the server gives up and closes the connection
    assert await peer.eof() == b""
    [row] = await _sessions(api_engine, tenant_id)
    assert row["status"] == "failed"
    assert row["end_reason"] == "AGI EXEC Answer: no reply from Asterisk within 0.3 s"
    events = await api_engine.store.db.fetch(
        "SELECT event_type, payload FROM call_event WHERE session_id = $1 ORDER BY id", row["id"]
    )
    assert events[-1]["event_type"] == "ivr.ended"
    assert "no reply from Asterisk" in events[-1]["payload"]["reason"]


async def test_a_peer_that_never_sends_its_request_is_closed_and_counted(
    api_engine: Engine, serve: Any, peers: Any
) -> None:
    server = await serve(request_timeout=0.2)
    before = _refused(api_engine, "bad_request")
    peer = await peers(server.port)  # connects, says nothing
    assert await peer.eof() == b""
    assert server.rejected == 1
    assert _refused(api_engine, "bad_request") == before + 1
    assert server.active == 0


async def test_connections_past_the_cap_are_closed_at_once_and_counted(
    api_engine: Engine, serve: Any, peers: Any
) -> None:
    server = await serve(max_connections=2, request_timeout=30.0)
    before = _refused(api_engine, "capacity")
    held = [await peers(server.port), await peers(server.port)]
    async with asyncio.timeout(WITHIN):
        while server.active < 2:  # noqa: ASYNC110 - the accept has no event to wait on
            await asyncio.sleep(0)
    extra = await peers(server.port)
    assert await extra.eof() == b""
    assert server.refused == 1
    assert _refused(api_engine, "capacity") == before + 1
    # a held connection ending makes room again
    held[0].writer.close()
    async with asyncio.timeout(WITHIN):
        while server.active > 1:  # noqa: ASYNC110
            await asyncio.sleep(0)
    again = await peers(server.port)
    async with asyncio.timeout(WITHIN):
        while server.active < 2:  # noqa: ASYNC110
            await asyncio.sleep(0)
    assert server.refused == 1
    again.writer.close()


async def test_an_unknown_menu_is_refused_without_a_session_row(
    api_engine: Engine, serve: Any, peers: Any
) -> None:
    slug, tenant_id = await _tenant_with_menu(api_engine)
    server = await serve(reply_timeout=5.0)
    before = _refused(api_engine, "unknown_menu")
    peer = await peers(server.port, request_block(script=f"ivr/nosuch?tenant={slug}"))
    assert await peer.command() == 'VERBOSE "ctc: IVR menu nosuch not found" 1'
    peer.reply("200 result=1")
    assert await peer.command() == "HANGUP"
    peer.reply("200 result=1")
    assert await peer.eof() == b""
    assert await _sessions(api_engine, tenant_id) == []
    assert _refused(api_engine, "unknown_menu") == before + 1


async def test_an_unknown_tenant_is_refused_without_a_session_row(
    api_engine: Engine, serve: Any, peers: Any
) -> None:
    server = await serve(reply_timeout=5.0)
    before = _refused(api_engine, "unknown_tenant")
    slug = f"nobody{uuid.uuid4().hex[:6]}"
    peer = await peers(server.port, request_block(script=f"ivr/main?tenant={slug}"))
    assert await peer.command() == f'VERBOSE "ctc: tenant {slug} not found" 1'
    peer.reply("200 result=1")
    assert await peer.command() == "HANGUP"
    peer.reply("200 result=1")
    assert await peer.eof() == b""
    assert _refused(api_engine, "unknown_tenant") == before + 1


async def test_something_else_missing_is_a_failure_not_counted_as_an_unknown_tenant(
    api_engine: Engine, serve: Any, peers: Any
) -> None:
    slug, tenant_id = await _tenant_with_menu(api_engine)

    async def loader(tenant: uuid.UUID) -> MenuBook:
        raise NotFound("routing rule", "r1")  # e.g. what a menu refers to

    door = AgiIvr(
        api_engine.store,
        loader,
        api_engine.settings.calls,
        erp=api_engine.agi_ivr.erp,
        admission=api_engine.ivr_admission,
        metrics=api_engine.metrics,
    )
    server = await serve(door, reply_timeout=5.0)
    before = {r: _refused(api_engine, r) for r in ("unknown_tenant", "unknown_menu")}
    with structlog.testing.capture_logs() as logs:
        peer = await peers(server.port, request_block(script=f"ivr/main?tenant={slug}"))
        assert await peer.command() == ""  # closed: no VERBOSE refusal, no HANGUP
    assert {r: _refused(api_engine, r) for r in before} == before
    [failed] = [entry for entry in logs if entry["event"] == "agi.handler_failed"]
    assert failed["exc_info"] is True
    assert await _sessions(api_engine, tenant_id) == []


async def test_the_door_answers_without_waiting_for_media_and_counts_the_answer_to_its_reply(
    api_engine: Engine, serve: Any, peers: Any
) -> None:
    # AGI's ANSWER replies only after the caller's first media frame or 500 ms: the door
    # answers with Answer's i option instead (a raw answer, as ARI's), whose reply is the
    # answer done, so the latency the engine reports runs to that reply
    slug, _ = await _tenant_with_menu(api_engine)
    server = await serve()
    registry = api_engine.metrics.registry

    def observed() -> float:
        return registry.get_sample_value("ctc_answer_latency_seconds_sum", {"door": "agi"}) or 0.0

    before = observed()
    peer = await peers(server.port, request_block(script=f"ivr/main?tenant={slug}"))
    assert await peer.command() == "EXEC Answer ,i"
    held = time.monotonic()
    await asyncio.sleep(0.05)  # Asterisk busy before it answers
    held = time.monotonic() - held
    peer.reply("200 result=0")
    await peer.command()  # the menu's next command: the answer was counted before it
    assert observed() - before >= held


async def test_asterisk_answering_slowly_limits_the_callers_in_the_menu(
    api_engine: Engine, serve: Any, peers: Any
) -> None:
    # an Asterisk that takes 20 ms to answer, twice ivr.shed_answer_ms here: once a window
    # of callers was answered so, the calls in progress are limited to half of them, and a
    # new caller is handed back to the dialplan before anything is stored
    slug, tenant_id = await _tenant_with_menu(api_engine)
    admission = IvrAdmission(
        IvrSettings(shed_answer_ms=10), lag=lambda: 0.0, metrics=api_engine.metrics
    )
    door = AgiIvr(
        api_engine.store,
        api_engine.store.ivr.book,
        api_engine.settings.calls,
        erp=api_engine.agi_ivr.erp,
        admission=admission,
        metrics=api_engine.metrics,
    )
    server = await serve(door)
    script = f"ivr/main?tenant={slug}"
    callers = [
        await peers(server.port, request_block(uniqueid=f"1700000000.{i}", script=script))
        for i in range(ANSWER_WINDOW)
    ]
    for peer in callers:
        assert await peer.command() == "EXEC Answer ,i"
    await asyncio.sleep(0.02)  # Asterisk busy before it answers
    for peer in callers:
        peer.reply("200 result=0")
    for peer in callers:
        assert await peer.command() == "WAIT FOR DIGIT 5000"  # answered: in the menu
    assert admission.call_limit is not None
    assert admission.call_limit.limit == ANSWER_WINDOW // 2
    shed_before = api_engine.metrics.registry.get_sample_value(
        "ctc_ivr_shed_total", {"door": "agi", "reason": "slow_answers"}
    )
    late = await peers(server.port, request_block(uniqueid="1700000000.99", script=script))
    assert await late.command() == "SET VARIABLE CTC_IVR_STATUS OVERLOADED"
    late.reply("200 result=1")
    assert await late.eof() == b""
    shed_after = api_engine.metrics.registry.get_sample_value(
        "ctc_ivr_shed_total", {"door": "agi", "reason": "slow_answers"}
    )
    assert (shed_before, shed_after) == (0, 1)
    assert admission.in_progress == ANSWER_WINDOW  # the callers in the menu keep it
    assert len(await _sessions(api_engine, tenant_id)) == ANSWER_WINDOW
