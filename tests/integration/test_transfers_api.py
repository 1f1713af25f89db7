"""Transfers through the real API with ARI disabled, and the ``call_transfer`` repository."""

from __future__ import annotations

import dataclasses
import uuid

import pytest

from engine.daemon import Engine
from engine.domain.ivr import TransferTargetType
from engine.domain.transfer import TransferState, TransferType
from engine.errors import Conflict
from engine.store.records import NewTransfer
from tests.support.calls import CONNECT, session_in
from tests.support.http import Api
from tests.support.tenants import tenant_headers
from tests.support.transfers import session_transfers

C2C = "/api/v1/click-to-call"


async def test_transfer_of_a_call_that_is_not_connected_is_409(
    api_engine: Engine, unix_api: Api
) -> None:
    slug, sid = await session_in(api_engine.store, unix_api, "dialing_agent")
    status, err, _ = await unix_api.call(
        "POST",
        f"{C2C}/sessions/{sid}/transfer",
        json={"type": "blind", "target": "agent2"},
        headers=tenant_headers(slug),
    )
    assert status == 409, err


async def test_transfer_without_asterisk_is_503(api_engine: Engine, unix_api: Api) -> None:
    slug, sid = await session_in(api_engine.store, unix_api, *CONNECT)
    status, err, _ = await unix_api.call(
        "POST",
        f"{C2C}/sessions/{sid}/transfer",
        json={"type": "attended", "target": "+14155550111"},
        headers=tenant_headers(slug),
    )
    assert status == 503, err


async def test_transfer_body_is_validated(api_engine: Engine, unix_api: Api) -> None:
    slug, sid = await session_in(api_engine.store, unix_api, *CONNECT)
    for body, field in (
        ({"type": "warm", "target": "agent2"}, "type"),
        ({"type": "blind", "target": ""}, "target"),
        ({"type": "blind", "target": "agent2", "leg": "caller"}, "leg"),
        ({"type": "blind", "target": "agent2", "leg": "target"}, "leg"),
        ({"type": "blind"}, "target"),
    ):
        status, err, _ = await unix_api.call(
            "POST",
            f"{C2C}/sessions/{sid}/transfer",
            json=body,
            headers=tenant_headers(slug),
        )
        assert status == 422, (body, err)
        assert [d["field"] for d in err["error"]["details"]] == [field], (body, err)


async def test_both_legs_are_accepted(api_engine: Engine, unix_api: Api) -> None:
    """``leg`` may name either party: a valid body gets past validation (503: no ARI)."""
    slug, sid = await session_in(api_engine.store, unix_api, *CONNECT)
    for leg in ("agent", "customer"):
        status, err, _ = await unix_api.call(
            "POST",
            f"{C2C}/sessions/{sid}/transfer",
            json={"type": "attended", "target": "+14155550111", "leg": leg},
            headers=tenant_headers(slug),
        )
        assert status == 503, (leg, err)


async def test_transfer_of_an_unknown_session_is_404(api_engine: Engine, unix_api: Api) -> None:
    for path in ("transfer", "transfer/complete", "transfer/cancel"):
        status, err, _ = await unix_api.call(
            "POST",
            f"{C2C}/sessions/{uuid.uuid4()}/{path}",
            json={"type": "blind", "target": "agent2"} if path == "transfer" else None,
        )
        assert status == 404, (path, err)


async def test_openapi_documents_the_transfer_routes(api_engine: Engine, unix_api: Api) -> None:
    status, doc, _ = await unix_api.call("GET", "/api/v1/openapi.json")
    assert status == 200
    for path in ("transfer", "transfer/complete", "transfer/cancel"):
        assert f"{C2C}/sessions/{{session_id}}/{path}" in doc["paths"]


async def test_transfer_rows(api_engine: Engine, unix_api: Api) -> None:
    slug, sid = await session_in(api_engine.store, unix_api, *CONNECT)
    tenant = await api_engine.store.tenants.by_slug(slug)
    session_id = uuid.UUID(sid)
    repo = api_engine.store.transfers
    new = NewTransfer(
        tenant_id=tenant.id,
        session_id=session_id,
        transfer_type=TransferType.ATTENDED,
        from_leg="customer",
        target_type=TransferTargetType.AGENT,
        target="agent2",
        target_channel_id=f"c2c-{sid}-target",
        consult_bridge_id=f"c2c-{sid}-consult",
    )
    first = await repo.create(new)
    assert first.state is TransferState.INITIATED
    assert (first.answered_at, first.completed_at) == (None, None)
    with pytest.raises(Conflict):
        await repo.create(new)
    assert (await repo.live(session_id)) == first
    consulting = await repo.update(first.id, TransferState.CONSULTING)
    assert consulting.answered_at is not None
    assert consulting.completed_at is None
    done = await repo.update(first.id, TransferState.CANCELED, failure_cause="canceled by API")
    assert done.completed_at is not None
    assert done.failure_cause == "canceled by API"
    assert await repo.live(session_id) is None
    # a new transfer may start once the first ended
    second = await repo.create(
        dataclasses.replace(new, transfer_type=TransferType.BLIND, consult_bridge_id=None)
    )
    busy = await repo.update(second.id, TransferState.BUSY, hangup_cause=17)
    assert (busy.state, busy.hangup_cause, busy.answered_at) == (TransferState.BUSY, 17, None)
    rows = await session_transfers(api_engine.store, tenant.id, session_id)
    assert [r.id for r in rows] == [first.id, second.id]
    # the id may be chosen by the caller (channel ids derive from it)
    chosen = uuid.uuid4()
    third = await repo.create(dataclasses.replace(new, id=chosen, from_leg="agent"))
    assert (third.id, third.from_leg) == (chosen, "agent")
