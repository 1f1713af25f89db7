"""Write-through changes of a session (engine/store/write_through.py) against PostgreSQL:
what a change returns is what PostgreSQL holds, the row and its event alike."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from engine.domain.call import CallStatus
from engine.domain.event_types import CallEventType
from engine.errors import Conflict, NotFound
from engine.store.database import Database
from engine.store.records import NewSession
from engine.store.repositories import Store


@pytest.fixture
async def db(migrated_db: str) -> AsyncIterator[Database]:
    async with Database(migrated_db, max_size=4) as database:
        yield database


def _click_to_call(tenant_id: uuid.UUID) -> NewSession:
    return NewSession(tenant_id=tenant_id, agent_number="agent1", customer_number="+14155550100")


async def test_a_change_returns_the_row_and_the_event_as_postgresql_stored_them(
    db: Database,
) -> None:
    store = Store.over(db)
    tenant = await store.tenants.by_slug("default")
    session, _ = await store.sessions.create(_click_to_call(tenant.id))
    at = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)

    dialing, dialed = await store.sessions.transition(
        tenant.id,
        session.id,
        CallStatus.DIALING_AGENT,
        payload={"leg": "agent"},
        changes={"agent_channel_id": "ctc-agent-leg"},
        at=at,
    )
    noted, recorded = await store.sessions.append_event(
        tenant.id,
        session.id,
        CallEventType.RECORDING_STARTED,
        payload={"name": "rec"},
        changes={"recording_path": "/spool/rec.wav"},
    )

    assert (dialing.status, dialing.agent_channel_id, dialing.version) == (
        CallStatus.DIALING_AGENT,
        "ctc-agent-leg",
        2,
    )
    assert (dialed.seq, dialed.status_from, dialed.status_to, dialed.occurred_at) == (
        2,
        "queued",
        "dialing_agent",
        at,
    )
    assert noted == await store.sessions.by_id(session.id)
    assert (noted.version, noted.recording_path) == (3, "/spool/rec.wav")
    stored = await store.sessions.events(tenant.id, session.id)
    assert stored[1:] == [dialed, recorded]
    assert (recorded.seq, recorded.status_to, recorded.payload) == (3, None, {"name": "rec"})


async def test_a_change_of_a_session_of_another_tenant_is_not_found(db: Database) -> None:
    store = Store.over(db)
    tenant = await store.tenants.by_slug("default")
    session, _ = await store.sessions.create(_click_to_call(tenant.id))
    with pytest.raises(NotFound):
        await store.sessions.transition(uuid.uuid4(), session.id, CallStatus.DIALING_AGENT)
    with pytest.raises(NotFound):
        await store.sessions.append_event(uuid.uuid4(), session.id, CallEventType.RECORDING_STARTED)


async def test_a_new_session_is_stored_with_its_created_event_and_a_repeated_key_adds_neither(
    db: Database,
) -> None:
    store = Store.over(db)
    tenant = await store.tenants.by_slug("default")
    new = dataclasses.replace(
        _click_to_call(tenant.id), idempotency_key=f"key-{uuid.uuid4()}", request_hash="h1"
    )

    session, created = await store.sessions.create(new)
    again, created_again = await store.sessions.create(new)

    assert (created, created_again) == (True, False)
    assert again == session
    events = await store.sessions.events(tenant.id, session.id)
    assert [(e.seq, e.event_type, e.status_to, e.payload) for e in events] == [
        (1, CallEventType.SESSION_CREATED, "queued", {"direction": "click_to_call"})
    ]
    assert events[0].occurred_at == session.created_at
    with pytest.raises(Conflict):
        await store.sessions.create(dataclasses.replace(new, request_hash="h2"))
