"""Click-to-calls written behind: the initiate use case hands each call it stores to the
journal when a dialer will follow it (engine/app/calls.py, engine/store/journal.py)."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator

import pytest

from engine.app.calls import CallService, InitiateCall
from engine.domain.call import CallStatus
from engine.domain.click_to_call import Leg
from engine.domain.providers import ProviderType
from engine.domain.transfer import TransferType
from engine.errors import DatabaseUnavailable
from engine.store.database import Database
from engine.store.journal import CallJournal
from engine.store.ownership import SessionOwnership
from engine.store.records import NewProvider, StoredSession, StoredTransfer
from engine.store.repositories import Store
from engine.store.sessions import SessionRepository
from engine.store.write_through import WriteThrough


class StartOnlyDialer:
    """A dialer that only notes the calls it is asked to start (no telephony here)."""

    def __init__(self) -> None:
        self.started: list[StoredSession] = []

    @property
    def ready(self) -> bool:
        return True

    def writes_behind(self, provider_type: str | None) -> bool:
        return True

    def start_call(self, session: StoredSession) -> None:
        self.started.append(session)

    async def end_call(self, session: StoredSession, reason: str) -> StoredSession:
        raise NotImplementedError

    async def transfer(
        self, session: StoredSession, kind: TransferType, target: str, leg: Leg
    ) -> StoredTransfer:
        raise NotImplementedError

    async def complete_transfer(self, session: StoredSession) -> StoredTransfer:
        raise NotImplementedError

    async def cancel_transfer(self, session: StoredSession) -> StoredTransfer:
        raise NotImplementedError


@pytest.fixture
async def db(migrated_db: str) -> AsyncIterator[Database]:
    async with Database(migrated_db, max_size=4) as database:
        yield database


def _with_journal(db: Database, journal: CallJournal) -> Store:
    """The store over ``db`` whose sessions are owned by ``journal``."""
    ownership = SessionOwnership(journal, WriteThrough(db))
    return dataclasses.replace(
        Store.over(db),
        sessions=SessionRepository(db, ownership),
        journal=journal,
        ownership=ownership,
    )


def _request() -> InitiateCall:
    return InitiateCall(
        agent_number="1001", customer_number="+4930123456", external_ref=uuid.uuid4().hex
    )


async def _rows_of(db: Database, request: InitiateCall) -> int:
    count: int = await db.fetchval(
        "SELECT count(*) FROM click_to_call_session WHERE external_ref = $1",
        request.external_ref,
    )
    return count


async def test_a_call_initiated_with_a_dialer_is_stored_then_written_behind(db: Database) -> None:
    store = Store.over(db)
    dialer = StartOnlyDialer()
    calls = CallService(store, dialer)
    tenant = await store.tenants.by_slug("default")
    request = _request()
    async with store.journal:
        session, created = await calls.initiate(tenant, request)
        assert created
        assert dialer.started == [session]
        # PostgreSQL has the row (its idempotency key is exact); its facts go in batches
        assert await _rows_of(db, request) == 1
        assert store.ownership.owner(session.id) is store.journal


async def test_a_call_initiated_without_a_dialer_is_written_through(db: Database) -> None:
    store = Store.over(db)
    calls = CallService(store)
    tenant = await store.tenants.by_slug("default")
    async with store.journal:
        session, _ = await calls.initiate(tenant, _request())
        # nothing would release it: the ERP drives it through PATCH .../status
        assert store.ownership.owner(session.id) is store.ownership.write_through


async def test_a_full_journal_refuses_a_new_call_before_storing_it(db: Database) -> None:
    store = _with_journal(db, CallJournal(db, max_backlog=0))
    dialer = StartOnlyDialer()
    calls = CallService(store, dialer)
    tenant = await store.tenants.by_slug("default")
    request = _request()
    async with store.journal:
        with pytest.raises(DatabaseUnavailable, match="refusing new calls"):
            await calls.initiate(tenant, request)
    assert await _rows_of(db, request) == 0
    assert dialer.started == []


async def test_an_idempotent_replay_of_a_live_call_answers_it_as_it_is_now_and_dials_once(
    db: Database,
) -> None:
    store = Store.over(db)
    dialer = StartOnlyDialer()
    calls = CallService(store, dialer)
    tenant = await store.tenants.by_slug("default")
    request = _request()
    key = f"replay-{uuid.uuid4().hex}"
    async with store.journal:
        first, _ = await calls.initiate(tenant, request, idempotency_key=key)
        await store.sessions.transition(tenant.id, first.id, CallStatus.DIALING_AGENT)
        again, created = await calls.initiate(tenant, request, idempotency_key=key)
        assert not created
        assert (again.id, again.status) == (first.id, CallStatus.DIALING_AGENT)
        assert [s.id for s in dialer.started] == [first.id]


async def test_a_call_ended_through_the_status_api_is_let_go_by_the_journal(db: Database) -> None:
    store = Store.over(db)
    calls = CallService(store, StartOnlyDialer())
    tenant = await store.tenants.by_slug("default")
    async with store.journal:
        session, _ = await calls.initiate(tenant, _request())
        await calls.set_status(tenant, session.id, CallStatus.CANCELED, reason="ERP said so")
        await store.journal.flush()
        assert store.ownership.owner(session.id) is store.ownership.write_through
        assert (await store.sessions.get(tenant.id, session.id)).status is CallStatus.CANCELED


async def test_what_every_call_reads_is_kept_and_a_change_by_this_process_is_seen_at_once(
    db: Database,
) -> None:
    store = Store.over(db)
    tenant = await store.tenants.create(f"t-{uuid.uuid4().hex[:8]}", "Cached")
    assert await store.providers.default(tenant.id) is None
    assert await store.recording.for_call(tenant.id, None, "click_to_call") is None
    # changed elsewhere: this process goes on with what it read (for a few seconds)
    other = Store.over(db)
    await other.recording.set_default(tenant.id, is_enabled=True)
    assert await store.recording.for_call(tenant.id, None, "click_to_call") is None
    # changed here: the next call sees it
    await store.recording.set_default(tenant.id, is_enabled=True, fmt="gsm")
    policy = await store.recording.for_call(tenant.id, None, "click_to_call")
    assert policy is not None
    assert (policy.is_enabled, policy.format) == (True, "gsm")
    made = await store.providers.create(
        NewProvider(
            tenant_id=tenant.id,
            name="carrier",
            provider_type=ProviderType.SIP_TRUNK,
            is_default=True,
        )
    )
    default = await store.providers.default(tenant.id)
    assert default is not None
    assert default.id == made.id
