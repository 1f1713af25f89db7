"""Two engines on one database: each one's event stream shows the calls the other places."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import asyncpg

from engine.config.settings import (
    NodeSettings,
)
from engine.daemon import Engine
from engine.domain.event_types import CallEventType
from engine.events import EventBus, Subscription
from engine.store.database import Database
from engine.store.event_feed import CallEventFeed
from engine.store.migrations import default_migrations_dir, migrate
from engine.store.records import NewSession, NodeBeat, Tenant
from engine.store.repositories import Store
from tests.support.calls import move_call, place_call
from tests.support.http import socket_api
from tests.support.nodes import node_engine
from tests.support.sse import open_stream
from tests.support.tenants import new_tenant
from tests.support.waiting import eventually


def _engine(db_url: str, node: str) -> contextlib.AbstractAsyncContextManager[Engine]:
    """An engine named ``node`` over ``db_url``, without Asterisk, its socket of its own."""
    return node_engine(db_url, NodeSettings(name=node))


async def test_a_call_placed_on_one_node_streams_in_order_from_another(migrated_db: str) -> None:
    async with _engine(migrated_db, "alpha") as alpha, _engine(migrated_db, "beta") as beta:
        tenant = (await new_tenant(alpha.store)).slug
        async with (
            open_stream(beta, tenant) as on_beta,
            socket_api(alpha.settings.api.socket) as alpha_api,
        ):
            sid = await place_call(alpha_api, tenant)
            await move_call(alpha_api, tenant, sid, "dialing_agent", "agent_answered", "canceled")
            got = await on_beta.events(4)

    assert [(e["event"], e["data"]["session_id"], e["data"]["status_to"]) for e in got] == [
        (CallEventType.SESSION_CREATED, sid, "queued"),
        (CallEventType.STATUS_CHANGED, sid, "dialing_agent"),
        (CallEventType.STATUS_CHANGED, sid, "agent_answered"),
        (CallEventType.STATUS_CHANGED, sid, "canceled"),
    ]
    assert [e["id"] for e in got] == sorted(e["id"] for e in got)


async def test_the_feed_publishes_other_nodes_events_once_and_never_its_own(
    migrated_db: str,
) -> None:
    async with (
        Database(migrated_db, min_size=1, max_size=2, node="gamma") as gamma_db,
        Database(migrated_db, min_size=1, max_size=2, node="delta") as delta_db,
        EventBus() as bus,
    ):
        gamma, delta = Store.over(gamma_db), Store.over(delta_db)
        tenant = await new_tenant(gamma)
        subscription = bus.subscribe(tenant_id=tenant.id)
        # poll_interval: an hour, so only the notifications wake it (then read_once by hand)
        async with CallEventFeed(gamma_db, bus, node="gamma", poll_interval=3600) as feed:
            mine, _ = await gamma.sessions.create(NewSession(tenant.id, "1001", "+14155550100"))
            theirs, _ = await delta.sessions.create(NewSession(tenant.id, "1002", "+14155550101"))
            async with asyncio.timeout(20):
                event = await subscription.next()
            assert event is not None
            assert (event.session_id, event.event_type) == (
                theirs.id,
                CallEventType.SESSION_CREATED,
            )
            await feed.read_once()  # read again: nothing new, nothing twice
            assert feed.published == 1
        assert mine.id != theirs.id
        subscription.close()


async def test_a_missed_notification_only_delays_the_timer_reads_the_table(
    migrated_db: str,
) -> None:
    async with (
        Database(migrated_db, min_size=1, max_size=2, node="epsilon") as db,
        EventBus() as bus,
    ):
        store = Store.over(db)
        tenant = await new_tenant(store)
        subscription = bus.subscribe(tenant_id=tenant.id)
        # another node beats: the timer reads the table (a lone node would only skip)
        await store.nodes.beat(
            NodeBeat("zeta", "0.1.0", "host-z", 1, datetime.now(UTC), None, "up")
        )
        async with CallEventFeed(db, bus, node="epsilon", poll_interval=0.2):
            # written by a tool with no node and the trigger disabled: no NOTIFY at all
            conn = await asyncpg.connect(migrated_db)
            try:
                async with conn.transaction():
                    await conn.execute("SET LOCAL session_replication_role = replica")
                    session_id = uuid.uuid4()
                    await conn.execute(
                        "INSERT INTO click_to_call_session (id, tenant_id, agent_number, "
                        "customer_number) VALUES ($1, $2, '1001', '+14155550100')",
                        session_id,
                        tenant.id,
                    )
                    await conn.execute(
                        "INSERT INTO call_event (tenant_id, session_id, seq, event_type, "
                        "status_to) VALUES ($1, $2, 1, 'session.created', 'queued')",
                        tenant.id,
                        session_id,
                    )
            finally:
                await conn.close()
            async with asyncio.timeout(20):
                event = await subscription.next()
            assert event is not None
            assert event.session_id == session_id
        subscription.close()


async def test_a_lone_node_s_timer_moves_its_cursor_without_reading_its_own_rows(
    empty_db: str,
) -> None:
    async with (
        _lone_node(empty_db) as (db, bus, store, tenant),
        CallEventFeed(db, bus, node="solo", poll_interval=0.05) as feed,
    ):
        await store.sessions.create(NewSession(tenant.id, "1001", "+14155550100"))
        newest = await db.fetchval("SELECT max(id) FROM call_event")
        await eventually(
            lambda: feed.position >= newest or None, what="the cursor past this node's rows"
        )
        assert feed.reads == 0
        assert feed.published == 0


async def test_a_tool_s_row_committed_after_a_newer_row_of_this_node_is_still_published(
    empty_db: str,
) -> None:
    # ids are taken at insert, rows seen at commit: the tool's row gets the lower id and
    # becomes visible after this node's newer row has moved the lone node's cursor past it
    async with _lone_node(empty_db) as (db, bus, store, tenant):
        subscription = bus.subscribe(tenant_id=tenant.id)
        async with CallEventFeed(db, bus, node="solo", poll_interval=0.05) as feed:
            tool = await asyncpg.connect(empty_db)
            try:
                async with tool.transaction():
                    session_id = await _tool_call(tool, tenant.id)
                    await store.sessions.create(NewSession(tenant.id, "1002", "+14155550101"))
                    newest = await db.fetchval("SELECT max(id) FROM call_event")
                    await eventually(
                        lambda: feed.position >= newest or None,
                        what="the cursor past this node's newer row",
                    )
            finally:
                await tool.close()
            await _only_published(subscription, feed, session_id)
        subscription.close()


async def test_a_row_inserted_before_the_feed_started_and_committed_after_is_published(
    empty_db: str,
) -> None:
    async with (
        _lone_node(empty_db) as (db, bus, store, tenant),
        contextlib.AsyncExitStack() as stack,
    ):
        subscription = bus.subscribe(tenant_id=tenant.id)
        tool = await asyncpg.connect(empty_db)
        try:
            async with tool.transaction():
                session_id = await _tool_call(tool, tenant.id)
                # a newer row committed: the newest id when the feed starts
                await store.sessions.create(NewSession(tenant.id, "1002", "+14155550101"))
                feed = await stack.enter_async_context(
                    CallEventFeed(db, bus, node="solo", poll_interval=0.05)
                )
        finally:
            await tool.close()
        await _only_published(subscription, feed, session_id)
        subscription.close()


async def _only_published(
    subscription: Subscription, feed: CallEventFeed, session_id: uuid.UUID
) -> None:
    """The feed published one event, and it is the tool's call's."""
    async with asyncio.timeout(20):
        event = await subscription.next()
    assert event is not None
    assert event.session_id == session_id
    assert feed.published == 1


async def _tool_call(conn: asyncpg.Connection, tenant_id: uuid.UUID) -> uuid.UUID:
    """A session and its first event written by a tool (no node), on ``conn``."""
    session_id = uuid.uuid4()
    await conn.execute(
        "INSERT INTO click_to_call_session (id, tenant_id, agent_number, "
        "customer_number) VALUES ($1, $2, '1001', '+14155550100')",
        session_id,
        tenant_id,
    )
    await conn.execute(
        "INSERT INTO call_event (tenant_id, session_id, seq, event_type, "
        "status_to) VALUES ($1, $2, 1, 'session.created', 'queued')",
        tenant_id,
        session_id,
    )
    return session_id


@contextlib.asynccontextmanager
async def _lone_node(url: str) -> AsyncIterator[tuple[Database, EventBus, Store, Tenant]]:
    """``url`` migrated, node "solo" its only engine beating, and a tenant: a database of
    its own (on the run's shared one, other tests' engines beat and write)."""
    await migrate(url, default_migrations_dir())
    async with Database(url, min_size=1, max_size=2, node="solo") as db, EventBus() as bus:
        store = Store.over(db)
        await store.nodes.beat(
            NodeBeat("solo", "0.1.0", "host-s", 1, datetime.now(UTC), None, "up")
        )
        yield db, bus, store, await new_tenant(store)
