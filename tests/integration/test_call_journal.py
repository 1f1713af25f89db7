"""The write-behind journal of live calls (engine/store/journal.py) against a real
PostgreSQL, and through a fault-injecting TCP proxy for "PostgreSQL away"."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import AsyncIterator
from urllib.parse import urlsplit, urlunsplit

import pytest

from engine.domain.call import CallStatus, Direction
from engine.domain.event_types import CallEventType
from engine.domain.ivr import MenuBook
from engine.errors import ClosedResourceError, DatabaseUnavailable, IllegalTransition, NotFound
from engine.events import EventBus
from engine.health import HealthReport, State
from engine.ivr_yaml import load_menus
from engine.secrets import Keyring
from engine.store import journal as journal_module
from engine.store.database import Database
from engine.store.ivr import IvrMenuRepository
from engine.store.journal import CallJournal
from engine.store.records import CallEvent, NewSession, StoredSession
from engine.store.repositories import Store
from engine.store.tenants import TenantRepository
from tests.support.tcp_proxy import TcpProxy
from tests.support.waiting import eventually

MENUS = """\
menus:
  journal_main:
    greeting: sound:beep
    options:
      1: {action: hangup}
"""


class _WatchedHealth(HealthReport):
    """The health report, telling the test when the journal says it cannot write."""

    def __init__(self) -> None:
        super().__init__()
        self.journal_down = asyncio.Event()

    def set(self, name: str, state: State, detail: str = "", *, required: bool = True) -> None:
        super().set(name, state, detail, required=required)
        if name == "journal" and state == "down":
            self.journal_down.set()


@dataclasses.dataclass
class _ProxiedDb:
    """A database reached through a TcpProxy the test can turn away."""

    db: Database
    proxy: TcpProxy

    def go_away(self) -> None:
        self.proxy.refusing = True
        self.proxy.cut()

    def come_back(self) -> None:
        self.proxy.refusing = False


@pytest.fixture
async def proxied(migrated_db: str) -> AsyncIterator[_ProxiedDb]:
    url = urlsplit(migrated_db)
    proxy = await TcpProxy(url.port or 5432).start()
    address = urlunsplit(url._replace(netloc=f"{url.username}@127.0.0.1:{proxy.port}"))
    try:
        async with Database(address, max_size=2, command_timeout=5) as db:
            yield _ProxiedDb(db, proxy)
    finally:
        await proxy.close()


@pytest.fixture
async def db(migrated_db: str) -> AsyncIterator[Database]:
    async with Database(migrated_db, max_size=4) as database:
        yield database


def _new(tenant_id: uuid.UUID) -> NewSession:
    return NewSession(
        tenant_id=tenant_id,
        direction=Direction.INBOUND,
        agent_number=None,
        customer_number=None,
        caller_number="5551234",
        dialed_number="100",
        ivr_menu="journal_main",
    )


async def _events(db: Database, session_id: uuid.UUID) -> list[tuple[int, str]]:
    rows = await db.fetch(
        "SELECT seq, event_type FROM call_event WHERE session_id = $1 ORDER BY seq", session_id
    )
    return [(r["seq"], r["event_type"]) for r in rows]


async def _ivr_call(store: Store, tenant_id: uuid.UUID, book: MenuBook) -> StoredSession:
    """An IVR call's usual facts: created, answered, one key, ended."""
    menu_id, version = book.menu_ids["journal_main"]
    session = store.sessions.open_live(_new(tenant_id), tenant_callback_url="http://erp/cb")
    await store.sessions.transition(tenant_id, session.id, CallStatus.CONNECTED)
    await store.dtmf.record(
        tenant_id,
        session.id,
        menu_id=menu_id,
        menu_version=version,
        option_id=book.option_ids[("journal_main", "1")],
        digit="1",
        input_value=None,
        outcome="option",
        attempt=1,
        ms_since_prompt=120,
        channel_id="chan-1",
    )
    await store.sessions.append_event(
        tenant_id, session.id, CallEventType.IVR_DTMF, payload={"digit": "1"}
    )
    ended, _ = await store.sessions.transition(
        tenant_id, session.id, CallStatus.COMPLETED, changes={"end_reason": "ivr hung up"}
    )
    return ended


async def test_an_ivr_call_lands_whole_and_its_events_are_published_after_commit(
    db: Database,
) -> None:
    bus = await EventBus().start()
    store = Store.over(db, events=bus)
    await store.journal.start()
    tenant = await store.tenants.by_slug("default")
    await store.ivr.save(tenant.id, load_menus(MENUS))
    seen: list[tuple[CallEvent, bool]] = []
    committed_when_published: list[asyncio.Task[bool]] = []

    async def in_db(event: CallEvent) -> bool:
        found = await db.fetchval("SELECT count(*) FROM call_event WHERE id = $1", event.id)
        return bool(found)

    def listener(event: CallEvent) -> None:
        seen.append((event, event.callback_queued))
        committed_when_published.append(asyncio.ensure_future(in_db(event)))

    bus.add_listener(listener)
    try:
        ended = await _ivr_call(store, tenant.id, await store.ivr.book(tenant.id))
        # nothing needed a round trip so far: the call is in memory and queued
        await store.journal.flush()
        row = await db.fetchrow(
            "SELECT status, version, talk_ms, end_reason, caller_number, ivr_menu "
            "FROM click_to_call_session WHERE id = $1",
            ended.id,
        )
        assert row is not None
        assert dict(row) == {
            "status": "completed",
            "version": 4,
            "talk_ms": ended.talk_ms,
            "end_reason": "ivr hung up",
            "caller_number": "5551234",
            "ivr_menu": "journal_main",
        }
        assert await _events(db, ended.id) == [
            (1, CallEventType.SESSION_CREATED),
            (2, CallEventType.STATUS_CHANGED),
            (3, CallEventType.IVR_DTMF),
            (4, CallEventType.STATUS_CHANGED),
        ]
        dtmf = await db.fetchrow(
            "SELECT digit, outcome, ms_since_prompt, option_id IS NOT NULL AS has_option "
            "FROM call_dtmf_interaction WHERE session_id = $1",
            ended.id,
        )
        assert dtmf is not None
        assert dict(dtmf) == {
            "digit": "1",
            "outcome": "option",
            "ms_since_prompt": 120,
            "has_option": True,
        }
        # a callback per status change (the creation too), carrying the event id
        # PostgreSQL gave the event
        outbox = await db.fetch(
            "SELECT o.event_id, (o.payload->>'event_id')::bigint AS payload_event, "
            "o.payload->>'status' AS status FROM callback_outbox o "
            "WHERE o.session_id = $1 ORDER BY o.id",
            ended.id,
        )
        assert [(r["status"], r["event_id"] == r["payload_event"]) for r in outbox] == [
            ("queued", True),
            ("connected", True),
            ("completed", True),
        ]
        # an inbound call's callbacks say who called which number, without a second request
        bodies = await db.fetch(
            "SELECT payload FROM callback_outbox WHERE session_id = $1 ORDER BY id", ended.id
        )
        for body in bodies:
            payload = body["payload"]
            assert (payload["direction"], payload["caller_number"], payload["dialed_number"]) == (
                "inbound",
                "5551234",
                "100",
            )
        assert bodies[-1]["payload"]["end_reason"] == "ivr hung up"
        assert [(e.seq, e.id > 0, queued) for e, queued in seen] == [
            (1, True, True),
            (2, True, True),
            (3, True, False),
            (4, True, True),
        ]
        assert all(await asyncio.gather(*committed_when_published))
    finally:
        await store.journal.close()
        await bus.close()


async def test_published_events_say_their_sessions_direction_and_agent(db: Database) -> None:
    """So a subscriber (engine/app/agent_calls.py) needs no read to know an IVR call has no
    agent."""
    bus = await EventBus().start()
    store = Store.over(db, events=bus)
    await store.journal.start()
    tenant = await store.tenants.by_slug("default")
    await store.ivr.save(tenant.id, load_menus(MENUS))
    seen: list[CallEvent] = []
    bus.add_listener(seen.append)
    try:
        await _ivr_call(store, tenant.id, await store.ivr.book(tenant.id))
        await store.journal.flush()
        assert [(e.direction, e.agent) for e in seen] == [(Direction.INBOUND, None)] * 4
    finally:
        await store.journal.close()
        await bus.close()


async def test_live_sessions_are_read_from_memory_and_scoped_to_their_tenant(
    db: Database,
) -> None:
    store = Store.over(db)
    await store.journal.start()
    tenant = await store.tenants.by_slug("default")
    try:
        session = store.sessions.open_live(_new(tenant.id))
        connected, event = await store.sessions.transition(
            tenant.id, session.id, CallStatus.CONNECTED
        )
        assert event.id == 0  # assigned by PostgreSQL when the batch commits
        assert (await store.sessions.get(tenant.id, session.id)).status is CallStatus.CONNECTED
        assert await store.sessions.by_id(session.id) == connected
        with pytest.raises(NotFound):
            await store.sessions.get(uuid.uuid4(), session.id)
        with pytest.raises(NotFound):
            await store.sessions.append_event(uuid.uuid4(), session.id, CallEventType.IVR_DTMF)
        with pytest.raises(IllegalTransition):
            await store.sessions.transition(tenant.id, session.id, CallStatus.QUEUED)
        # the refused change queued nothing: the row lands at version 2
        await store.journal.flush()
        assert (
            await db.fetchval("SELECT version FROM click_to_call_session WHERE id = $1", session.id)
            == 2
        )
    finally:
        await store.journal.close()


async def test_the_journal_owns_a_taken_session_until_its_end_is_written(db: Database) -> None:
    store = Store.over(db)
    await store.journal.start()
    ownership = store.ownership
    tenant = await store.tenants.by_slug("default")
    try:
        session = store.sessions.open_live(_new(tenant.id))
        assert ownership.owner(session.id) is store.journal
        await store.sessions.transition(tenant.id, session.id, CallStatus.CONNECTED)
        assert ownership.owner(session.id) is store.journal
        await store.sessions.transition(tenant.id, session.id, CallStatus.COMPLETED)
        # ended: the journal lets it go once its last batch is in PostgreSQL, not before
        assert ownership.owner(session.id) is store.journal
        await store.journal.flush()
        assert ownership.owner(session.id) is ownership.write_through
        ended = await store.sessions.get(tenant.id, session.id)
        assert (ended.status, ended.version) == (CallStatus.COMPLETED, 3)
    finally:
        await store.journal.close()


async def test_postgresql_away_rows_wait_and_land_once_when_it_returns(
    proxied: _ProxiedDb,
) -> None:
    db = proxied.db
    store = Store.over(db)
    await store.journal.start()
    tenant = await store.tenants.by_slug("default")
    await store.ivr.save(tenant.id, load_menus(MENUS))
    book = await store.ivr.book(tenant.id)
    proxied.go_away()
    # calls go on while the database is away: every change is accepted in memory
    ended = await _ivr_call(store, tenant.id, book)
    writer = store.journal
    writer.health = health = _WatchedHealth()
    flushed = asyncio.ensure_future(writer.flush())
    await asyncio.wait_for(health.journal_down.wait(), 30)  # the writer tried
    assert not flushed.done()
    # the batch that failed is back in the queue, as old as its first row
    assert writer.backlog > 0
    assert writer.backlog_age() > 0
    proxied.come_back()
    await asyncio.wait_for(flushed, 30)
    assert writer.backlog_age() == 0
    journal_health = health.get("journal")
    assert journal_health is not None
    assert journal_health.state == "up"  # after it had said "down" while away
    assert writer.failures >= 1
    assert writer.backlog == 0
    assert writer.dropped == 0
    assert [seq for seq, _ in await _events(db, ended.id)] == [1, 2, 3, 4]
    assert (
        await db.fetchval(
            "SELECT count(*) FROM call_dtmf_interaction WHERE session_id = $1", ended.id
        )
        == 1
    )
    await writer.close()


async def test_a_flush_gives_up_after_its_timeout_while_postgresql_is_away_and_the_rows_stay(
    proxied: _ProxiedDb,
) -> None:
    # a transfer or a resync flushes while holding a call's lock: it must not wait forever
    db = proxied.db
    tenant = await TenantRepository(db, keyring=Keyring()).by_slug("default")
    journal = CallJournal(db, flush_timeout=0.2)
    await journal.start()
    try:
        proxied.go_away()
        session, _ = journal.take(_new(tenant.id))
        with pytest.raises(DatabaseUnavailable, match=r"within 0\.2 s"):
            await journal.flush()
        assert journal.backlog > 0  # kept for the writer, which goes on retrying
        proxied.come_back()
        await eventually(lambda: journal.backlog == 0, within=30, what="the backlog landed")
        assert (
            await db.fetchval("SELECT status FROM click_to_call_session WHERE id = $1", session.id)
            == CallStatus.QUEUED.value
        )
    finally:
        await journal.close()


async def test_a_session_postgresql_refuses_does_not_block_the_others(db: Database) -> None:
    store = Store.over(db)
    await store.journal.start()
    tenant = await store.tenants.by_slug("default")
    await store.ivr.save(tenant.id, load_menus(MENUS))
    try:
        bad = store.sessions.open_live(_new(tenant.id))
        await store.dtmf.record(  # a menu that does not exist: the foreign key refuses it
            tenant.id,
            bad.id,
            menu_id=uuid.uuid4(),
            menu_version=1,
            option_id=None,
            digit="5",
            input_value=None,
            outcome="invalid",
            attempt=1,
            ms_since_prompt=None,
            channel_id=None,
        )
        good = await _ivr_call(store, tenant.id, await store.ivr.book(tenant.id))
        await store.journal.flush()
        assert store.journal.dropped == 3  # the bad session's row, event and DTMF row
        assert await _events(db, bad.id) == []
        assert len(await _events(db, good.id)) == 4
        assert store.journal.backlog == 0
    finally:
        await store.journal.close()


async def test_the_backlog_is_bounded_new_calls_are_refused(proxied: _ProxiedDb) -> None:
    db = proxied.db
    tenant_id = (await Store.over(db).tenants.by_slug("default")).id
    journal = await CallJournal(db, max_backlog=3).start()
    proxied.go_away()
    first, _ = journal.take(_new(tenant_id))  # row + event: backlog 2, then 3
    journal.change(
        first.id,
        target=CallStatus.CONNECTED,
        event_type=CallEventType.STATUS_CHANGED,
        payload=None,
        changes={},
        at=None,
    )
    with pytest.raises(DatabaseUnavailable, match="refusing new calls"):
        journal.take(_new(tenant_id))
    # the call already owned keeps recording
    journal.change(
        first.id,
        target=CallStatus.COMPLETED,
        event_type=CallEventType.STATUS_CHANGED,
        payload=None,
        changes={},
        at=None,
    )
    proxied.come_back()
    await asyncio.wait_for(journal.flush(), 30)
    assert (
        await db.fetchval("SELECT status FROM click_to_call_session WHERE id = $1", first.id)
        == "completed"
    )
    await journal.close()
    with pytest.raises(ClosedResourceError):
        journal.take(_new(tenant_id))


async def test_close_writes_what_is_queued(db: Database) -> None:
    store = Store.over(db)
    await store.journal.start()
    tenant = await store.tenants.by_slug("default")
    session = store.sessions.open_live(_new(tenant.id))
    await store.sessions.transition(tenant.id, session.id, CallStatus.CONNECTED)
    await store.journal.close()
    assert [seq for seq, _ in await _events(db, session.id)] == [1, 2]
    with pytest.raises(ClosedResourceError):
        await store.sessions.append_event(tenant.id, session.id, CallEventType.IVR_DTMF)


async def test_the_tenant_and_menus_last_read_serve_new_calls_while_postgresql_is_away(
    proxied: _ProxiedDb,
) -> None:
    # caches that always expire: only PostgreSQL being away can explain a hit
    tenants = TenantRepository(proxied.db, keyring=Keyring(), cache_ttl=0)
    menus = IvrMenuRepository(proxied.db, book_ttl=0)
    tenant = await tenants.by_slug("default")
    await menus.save(tenant.id, load_menus(MENUS))
    book = await menus.book(tenant.id)
    proxied.go_away()
    assert await tenants.by_slug("default") == tenant
    assert await menus.book(tenant.id) is book
    with pytest.raises(DatabaseUnavailable):
        await tenants.by_slug("never-read")


# -- click-to-calls: created write-through, then adopted --------------------------------------


def _click_to_call(tenant_id: uuid.UUID, key: str | None = None) -> NewSession:
    return NewSession(
        tenant_id=tenant_id,
        agent_number="1001",
        customer_number="+4930123456",
        idempotency_key=key,
        request_hash="hash" if key else None,
    )


async def _bridged_and_ended(store: Store, tenant_id: uuid.UUID, session_id: uuid.UUID) -> None:
    """A click-to-call's usual facts, from dialing the agent to the customer's hangup."""
    for status in (
        CallStatus.DIALING_AGENT,
        CallStatus.AGENT_ANSWERED,
        CallStatus.DIALING_CUSTOMER,
        CallStatus.CONNECTED,
    ):
        await store.sessions.transition(tenant_id, session_id, status)
    await store.sessions.append_event(
        tenant_id,
        session_id,
        CallEventType.RECORDING_STARTED,
        changes={"recording_path": "/rec/x.wav"},
    )
    await store.sessions.transition(
        tenant_id, session_id, CallStatus.COMPLETED, event_type=CallEventType.CUSTOMER_HANGUP
    )


async def test_an_adopted_click_to_call_is_kept_after_its_end_until_released_and_lands_in_order(
    db: Database,
) -> None:
    store = Store.over(db)
    tenant = await store.tenants.by_slug("default")
    async with store.journal:
        session, created = await store.sessions.create(_click_to_call(tenant.id))
        assert created
        store.sessions.adopt(session, tenant_callback_url="http://erp/cb")
        await _bridged_and_ended(store, tenant.id, session.id)
        await store.journal.flush()
        # ended and written, but kept: the recording's end is still to come
        assert store.ownership.owner(session.id) is store.journal
        await store.sessions.append_event(
            tenant.id,
            session.id,
            CallEventType.RECORDING_FINISHED,
            changes={"recording_duration_ms": 9000},
        )
        store.sessions.release(session.id)
        assert store.ownership.owner(session.id) is store.journal  # its last batch is queued
        await store.journal.flush()
        assert store.ownership.owner(session.id) is store.ownership.write_through

        assert await _events(db, session.id) == [
            (1, CallEventType.SESSION_CREATED),
            (2, CallEventType.STATUS_CHANGED),
            (3, CallEventType.STATUS_CHANGED),
            (4, CallEventType.STATUS_CHANGED),
            (5, CallEventType.STATUS_CHANGED),
            (6, CallEventType.RECORDING_STARTED),
            (7, CallEventType.CUSTOMER_HANGUP),
            (8, CallEventType.RECORDING_FINISHED),
        ]
        row = await store.sessions.get(tenant.id, session.id)
        assert (row.status, row.version, row.recording_duration_ms) == (
            CallStatus.COMPLETED,
            8,
            9000,
        )
        outbox = await db.fetch(
            "SELECT payload->>'status' AS status FROM callback_outbox WHERE session_id = $1 "
            "ORDER BY id",
            session.id,
        )
        # the tenant's callback URL given at adoption: one callback per status change
        assert [r["status"] for r in outbox] == [
            "dialing_agent",
            "agent_answered",
            "dialing_customer",
            "connected",
            "completed",
        ]


async def test_a_fact_racing_the_end_of_a_released_call_lands_after_the_end(db: Database) -> None:
    store = Store.over(db)
    tenant = await store.tenants.by_slug("default")
    async with store.journal:
        session, _ = await store.sessions.create(_click_to_call(tenant.id))
        store.sessions.adopt(session)
        await store.sessions.transition(tenant.id, session.id, CallStatus.DIALING_AGENT)
        await store.sessions.transition(tenant.id, session.id, CallStatus.CANCELED)
        store.sessions.release(session.id)
        # an in-call control that read the call before its end records its event now:
        # PostgreSQL's row is still the created one, so it must not be read from there
        await store.sessions.append_event(
            tenant.id, session.id, CallEventType.CONTROL_HOLD, payload={"leg": "agent"}
        )
        await store.journal.flush()
        assert await _events(db, session.id) == [
            (1, CallEventType.SESSION_CREATED),
            (2, CallEventType.STATUS_CHANGED),
            (3, CallEventType.STATUS_CHANGED),
            (4, CallEventType.CONTROL_HOLD),
        ]
        assert store.journal.dropped == 0


async def test_an_idempotent_replay_of_a_live_call_returns_it_as_the_journal_has_it(
    db: Database,
) -> None:
    store = Store.over(db)
    tenant = await store.tenants.by_slug("default")
    async with store.journal:
        first, _ = await store.sessions.create(_click_to_call(tenant.id, key="k-live"))
        store.sessions.adopt(first)
        await store.sessions.transition(tenant.id, first.id, CallStatus.DIALING_AGENT)
        # not written yet: PostgreSQL still says queued
        again, created = await store.sessions.create(_click_to_call(tenant.id, key="k-live"))
        assert not created
        assert (again.id, again.status, again.version) == (
            first.id,
            CallStatus.DIALING_AGENT,
            2,
        )


async def test_take_over_adopts_a_live_call_postgresql_holds_and_leaves_an_ended_one(
    db: Database,
) -> None:
    # as the resync after a restart: the sessions are in PostgreSQL, not in this journal
    before = Store.over(db)
    tenant = await before.tenants.create(
        f"t-{uuid.uuid4().hex[:8]}", "Restarted", "https://erp.example/after-restart"
    )
    live, _ = await before.sessions.create(_click_to_call(tenant.id))
    ended, _ = await before.sessions.create(_click_to_call(tenant.id))
    await before.sessions.transition(tenant.id, ended.id, CallStatus.CANCELED)

    store = Store.over(db)
    async with store.journal:
        taken = await store.sessions.take_over(live.id)
        assert taken is not None
        assert taken.status is CallStatus.QUEUED
        assert store.ownership.owner(live.id) is store.journal
        left = await store.sessions.take_over(ended.id)
        assert left is not None
        assert left.status is CallStatus.CANCELED
        assert store.ownership.owner(ended.id) is store.ownership.write_through
        assert await store.sessions.take_over(uuid.uuid4()) is None
        # the adopted call's status changes carry the tenant's callback URL
        await store.sessions.transition(tenant.id, live.id, CallStatus.DIALING_AGENT)
        await store.journal.flush()
        assert (
            await db.fetchval("SELECT url FROM callback_outbox WHERE session_id = $1", live.id)
            == "https://erp.example/after-restart"
        )


async def test_a_row_referring_to_a_session_born_here_waits_only_for_that_session_s_first_batch(
    db: Database,
) -> None:
    # a writer that never writes on its own: only a flush makes it write
    journal = CallJournal(db, interval=3600)
    store = Store.over(db)
    tenant = await store.tenants.by_slug("default")
    await journal.start()
    try:
        session, _ = journal.take(_new(tenant.id))
        await journal.created([session.id])
        row = await db.fetchrow("SELECT id FROM click_to_call_session WHERE id = $1", session.id)
        assert row is not None
        # born: a later change of it does not make the next row referring to it wait
        journal.change(
            session.id,
            target=CallStatus.CONNECTED,
            event_type=CallEventType.IVR_ANSWERED,
            payload=None,
            changes={},
            at=None,
        )
        batches = journal.batches
        await journal.created([session.id, uuid.uuid4()])
        assert journal.batches == batches
    finally:
        await journal.close()


async def test_the_journal_s_upsert_of_a_session_does_not_block_rows_that_refer_to_it(
    db: Database,
) -> None:
    """Billing lines, quality rows and agent activity refer to live sessions while the
    journal rewrites them: its upsert must not hold the lock their foreign keys take (it
    did, and a batch of quality rows deadlocked with it)."""
    journal = CallJournal(db)
    tenant = await Store.over(db).tenants.by_slug("default")
    async with journal:
        session, _ = journal.take(_new(tenant.id))
        await journal.created([session.id])
    newer = dataclasses.replace(session, version=session.version + 1)
    async with (
        db.connection() as rewriting,
        db.connection() as referring,
        rewriting.transaction(),
    ):
        await rewriting.fetch(
            journal_module._FLUSH_SQL,
            journal_module._dumps([journal_module._row(newer, journal_module._WRITTEN_COLUMNS)]),
            "[]",
            "[]",
            "[]",
        )
        # the journal's batch is still open: an insert referring to the session goes
        # through at once (lock_timeout: a wait fails the test instead of hanging it)
        await referring.execute("SET lock_timeout = '5s'")
        await referring.execute(
            "INSERT INTO call_event (tenant_id, session_id, seq, event_type, payload, "
            "occurred_at) VALUES ($1, $2, 99, 'ivr.dtmf', '{}', now())",
            tenant.id,
            session.id,
        )
