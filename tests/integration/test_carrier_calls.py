"""Click-to-calls placed through HTTP carriers by ``CallService.initiate``, against the fake
carriers (engine/devtools/fake_carriers.py): each carrier's happy path, busy, no answer,
forged and replayed callbacks; failover that never places two live calls (a create that
times out is reconciled first, a 5xx fails over, a carrier without hangup keeps the call it
made); the circuit breaker opening and recovering (its state in the health report); the
concurrency limit; end and transfer through the carrier; the webhook's dedupe key and fact
in one transaction (a fault between them keeps neither).
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest

from engine.app.calls import InitiateCall
from engine.daemon import Engine
from engine.devtools.fake_carriers import (
    FakeCall,
    FakeExotel,
    FakeMcube,
    FakeTwilio,
    FakeVonage,
)
from engine.domain.call import CallStatus
from engine.domain.click_to_call import Leg
from engine.domain.event_types import CallEventType
from engine.domain.providers import ProviderType
from engine.domain.transfer import TransferType
from engine.errors import CarrierUnsupported
from engine.providers.base import PlaceCall
from engine.store.records import (
    CallEvent,
    NewSession,
    ProviderChanges,
    StoredProvider,
    StoredSession,
)
from engine.store.write_through import SessionBatch
from tests.support.carriers import AGENT, CUSTOMER, Carrier, provider_row, start_carrier

SHOWN = "+14155550199"  # the caller ID the customer sees


async def _initiate(
    carrier: Carrier, *, provider: StoredProvider | None = None, caller_id: str | None = SHOWN
) -> StoredSession:
    """Initiate through the use case, wait for the placement, the session as stored."""
    engine = carrier.engine
    session, created = await engine.use_cases.calls.initiate(
        carrier.tenant,
        InitiateCall(
            agent_number=AGENT,
            customer_number=CUSTOMER,
            caller_id=caller_id,
            provider_id=(provider or carrier.provider).id,
        ),
    )
    assert created
    await engine.dialer.drain()
    return await engine.store.sessions.get(carrier.tenant.id, session.id)


async def _placed(carrier: Carrier, *others: Any, **kwargs: Any) -> tuple[StoredSession, FakeCall]:
    """A session placed through the carrier (or one of the ``others`` fakes failed over
    to) and the carrier's call."""
    session = await _initiate(carrier, **kwargs)
    assert session.provider_call_id is not None, await _events(carrier, session)
    for fake in (carrier.fake, *others):
        if session.provider_call_id in fake.calls:
            return session, fake.calls[session.provider_call_id]
    raise AssertionError(f"no fake has call {session.provider_call_id}")


async def _events(carrier: Carrier, session: StoredSession) -> list[CallEvent]:
    return await carrier.engine.store.sessions.events(carrier.tenant.id, session.id)


async def _attempts(carrier: Carrier, session: StoredSession) -> list[dict[str, Any]]:
    return [
        e.payload
        for e in await _events(carrier, session)
        if e.event_type == CallEventType.PROVIDER_ATTEMPT
    ]


def _creates(fake: Any) -> int:
    """The creates the fake received (what never happens twice for one session)."""
    return len(
        [
            r
            for r in fake.requests
            if r in (("POST", "/v1/calls"), ("GET", "/api/outboundcall"))
            or (r[0] == "POST" and r[1].endswith(("/Calls.json", "/Calls/connect.json")))
        ]
    )


async def _second_twilio(carrier: Carrier, **config: Any) -> tuple[StoredProvider, FakeTwilio]:
    """Another Twilio account as a second provider of the same tenant."""
    fake = FakeTwilio("AC" + uuid.uuid4().hex, "tok-" + uuid.uuid4().hex)
    await fake.start()
    provider = await provider_row(
        carrier.engine,
        carrier.tenant,
        ProviderType.TWILIO,
        {"account_sid": fake.account_sid, "base_url": fake.url, "ring_timeout_s": 1, **config},
        {"auth_token": fake.auth_token},
    )
    return provider, fake


@pytest.fixture
async def backup(twilio: Carrier) -> AsyncIterator[tuple[StoredProvider, FakeTwilio]]:
    provider, fake = await _second_twilio(twilio)
    yield provider, fake
    await fake.stop()


@pytest.fixture(params=["twilio", "vonage", "exotel", "mcube"])
async def carrier(api_engine: Engine, request: pytest.FixtureRequest) -> AsyncIterator[Carrier]:
    """Each HTTP carrier in turn."""
    started = await start_carrier(api_engine, ProviderType(request.param))
    yield started
    await started.fake.stop()


# -- each carrier through initiate ------------------------------------------------------------


async def test_twilio_through_initiate_to_completed(twilio: Carrier) -> None:
    session, call = await _placed(twilio)
    fake: FakeTwilio = twilio.fake
    assert call.caller_id == SHOWN  # the chosen caller ID is the carrier's From
    assert session.status is CallStatus.QUEUED
    [attempt] = await _attempts(twilio, session)
    assert attempt["outcome"] == "created"
    assert attempt["decision"] == "stop"
    assert attempt["provider_status"] == "queued"  # the carrier's raw status kept
    for leg, status in [
        ("agent", "ringing"),
        ("agent", "in-progress"),
        ("customer", "ringing"),
        ("customer", "in-progress"),
        ("customer", "completed"),
        ("agent", "completed"),
    ]:
        sent = await fake.callback(call, leg, status)
        assert sent.status == 202, sent.body
    assert await twilio.status(session) is CallStatus.COMPLETED
    types = [e.event_type for e in await _events(twilio, session)]
    assert [t for t in types if t not in ("provider.status", "provider.attempt")] == [
        "session.created",
        "agent.dialing",
        "agent.answered",
        "customer.dialing",
        "customer.answered",
        "customer.hangup",
    ]
    assert _creates(fake) == 1
    # written through: another engine's webhook would find the same row
    assert not twilio.engine.store.journal.owns(session.id)


async def test_the_asterisk_resync_never_takes_a_carrier_call(twilio: Carrier) -> None:
    session, _ = await _placed(twilio)
    local, _ = await twilio.engine.use_cases.calls.initiate(
        twilio.tenant, InitiateCall(agent_number=AGENT, customer_number=CUSTOMER)
    )
    live = {s.id for s in await twilio.engine.store.sessions.live()}
    assert session.id not in live  # not adopted, started or ended by the ARI resync
    assert local.id in live  # a call of the local Asterisk is


async def test_vonage_through_initiate_to_completed(vonage: Carrier) -> None:
    session, call = await _placed(vonage)
    assert call.caller_id == SHOWN.lstrip("+")
    for leg, status in [
        ("agent", "started"),
        ("agent", "answered"),
        ("customer", "ringing"),
        ("customer", "answered"),
        ("customer", "completed"),
    ]:
        assert (await vonage.fake.callback(call, leg, status)).status == 202
    assert await vonage.status(session) is CallStatus.COMPLETED


async def test_exotel_through_initiate_to_completed(exotel: Carrier) -> None:
    session, call = await _placed(exotel)
    assert call.caller_id == SHOWN
    assert (await exotel.fake.callback(call, "in-progress", event="answered")).status == 202
    assert await exotel.status(session) is CallStatus.CONNECTED
    assert (await exotel.fake.callback(call, "completed")).status == 202
    assert await exotel.status(session) is CallStatus.COMPLETED


async def test_mcube_through_initiate_to_completed(mcube: Carrier) -> None:
    session, call = await _placed(mcube)
    assert call.caller_id == SHOWN  # sent as the DID
    assert (await mcube.fake.callback(call, "ANSWER")).status == 202
    assert await mcube.status(session) is CallStatus.COMPLETED


async def test_agent_busy_through_initiate(carrier: Carrier) -> None:
    session, call = await _placed(carrier)
    match carrier.fake:
        case FakeTwilio() as fake:
            await fake.callback(call, "agent", "busy")
        case FakeVonage() as fake:
            await fake.callback(call, "agent", "busy")
        case FakeExotel() as fake:
            await fake.callback(call, "busy")
        case FakeMcube() as fake:
            await fake.callback(call, "Executive Busy")
    assert await carrier.status(session) is CallStatus.BUSY


async def test_customer_no_answer_through_initiate(
    carrier: Carrier,
) -> None:
    session, call = await _placed(carrier)
    match carrier.fake:
        case FakeTwilio() as fake:
            await fake.callback(call, "agent", "in-progress")
            await fake.callback(call, "customer", "no-answer")
        case FakeVonage() as fake:
            await fake.callback(call, "agent", "answered")
            await fake.callback(call, "customer", "timeout")
        case FakeExotel() as fake:
            await fake.callback(call, "no-answer")
        case FakeMcube() as fake:
            await fake.callback(call, "NoAnswer")
    assert await carrier.status(session) is CallStatus.NO_ANSWER


async def test_forged_callback_is_401_and_changes_nothing(
    carrier: Carrier,
) -> None:
    session, call = await _placed(carrier)
    before = await _events(carrier, session)
    match carrier.fake:
        case FakeTwilio() as fake:
            sent = await fake.callback(call, "agent", "in-progress", forge=True)
        case FakeVonage() as fake:
            sent = await fake.callback(call, "agent", "answered", forge=True)
        case FakeExotel() as fake:
            sent = await fake.callback(call, "completed", token="guessed")
        case FakeMcube() as fake:
            sent = await fake.callback(call, "ANSWER", token="guessed")
    assert sent.status == 401, sent.body
    assert await _events(carrier, session) == before
    assert (await carrier.log_rows())[-1]["signature_valid"] is False


async def test_replayed_callback_is_a_no_op(carrier: Carrier) -> None:
    session, call = await _placed(carrier)
    match carrier.fake:
        case FakeTwilio() as fake:
            form = fake.callback_form(call, "agent", "ringing")
            first = await fake.send_form(call, "agent", form)
            events = await _events(carrier, session)
            again = await fake.send_form(call, "agent", form)
        case FakeVonage() as fake:
            body = fake.event_body(call, "agent", "ringing")
            first = await fake.send_body(call, "agent", body)
            events = await _events(carrier, session)
            again = await fake.send_body(call, "agent", body)
        case FakeExotel() as fake:
            first = await fake.callback(call, "busy")
            events = await _events(carrier, session)
            again = await fake.send_event(call, "terminal", "busy")
        case FakeMcube() as fake:
            first = await fake.callback(call, "NoAnswer")
            events = await _events(carrier, session)
            again = await fake.callback(call, "NoAnswer")
    assert first.body["processing_status"] == "processed", first.body
    assert again.body["processing_status"] == "ignored"
    assert await _events(carrier, session) == events


async def test_out_of_order_callbacks_through_initiate(twilio: Carrier, vonage: Carrier) -> None:
    session, call = await _placed(twilio)
    fake: FakeTwilio = twilio.fake
    ringing = fake.callback_form(call, "customer", "ringing", sequence=1)
    answered = fake.callback_form(call, "customer", "in-progress", sequence=2)
    await fake.send_form(call, "customer", answered)
    await fake.send_form(call, "customer", ringing)
    assert await twilio.status(session) is CallStatus.CONNECTED
    v_session, v_call = await _placed(vonage)
    # Vonage: completed before the failure reason; started after ringing
    await vonage.fake.callback(v_call, "agent", "ringing")
    await vonage.fake.callback(v_call, "agent", "started")
    await vonage.fake.callback(v_call, "agent", "completed")
    assert await vonage.status(v_session) is CallStatus.DIALING_AGENT
    await vonage.fake.callback(v_call, "agent", "busy")
    assert await vonage.status(v_session) is CallStatus.BUSY


# -- callbacks that come before the create's answer --------------------------------------------


async def test_a_callback_before_the_create_answer_is_applied(twilio: Carrier) -> None:
    fake: FakeTwilio = twilio.fake
    fake.early = lambda call: fake.callback(call, "agent", "ringing")
    session = await _initiate(twilio)
    [early] = fake.early_sent
    sent = await early  # answered once the call id was recorded
    assert sent.status == 202, sent.body
    assert await twilio.status(session) is CallStatus.DIALING_AGENT
    row = (await twilio.log_rows())[-1]
    assert (row["processing_status"], row["session_id"]) == ("processed", session.id)
    assert _creates(fake) == 1


async def test_a_callback_for_another_call_id_than_the_recorded_one_is_ignored(
    twilio: Carrier,
) -> None:
    session, call = await _placed(twilio)
    fake: FakeTwilio = twilio.fake
    other = dataclasses.replace(
        call, call_id="CA" + "0" * 32, legs={"agent": "CA" + "0" * 32}, sequence={}
    )
    before = await _events(twilio, session)
    sent = await fake.callback(other, "agent", "in-progress")  # its URL names the session
    assert sent.status == 202, sent.body
    assert "session=" in other.callback_urls["agent"]
    assert await _events(twilio, session) == before
    row = (await twilio.log_rows())[-1]
    assert (row["processing_status"], row["session_id"]) == ("ignored", None)


async def test_an_early_callback_from_a_provider_failed_over_from_stays_ignored(
    twilio: Carrier, backup: tuple[StoredProvider, FakeTwilio]
) -> None:
    second, second_fake = backup
    fake: FakeTwilio = twilio.fake
    fake.early = lambda call: fake.callback(call, "agent", "ringing")
    fake.create_delay_s = 3.0  # the adapter gives up after 2 s: reconciled, then the backup
    session = await _initiate(twilio)
    assert session.provider_id == second.id
    assert session.provider_call_id in second_fake.calls
    [early] = fake.early_sent
    sent = await early  # it waited for the placement, then found another call id recorded
    assert sent.status == 202, sent.body
    assert await twilio.status(session) is CallStatus.QUEUED
    row = (await twilio.log_rows())[-1]
    assert (row["processing_status"], row["session_id"]) == ("ignored", None)


# -- placements a stopped engine cut off ---------------------------------------------------------


async def _cut_off(carrier: Carrier) -> StoredSession:
    """A session of ``carrier`` as a crash mid-placement leaves it: queued, no call id."""
    session, _ = await carrier.engine.store.sessions.create(
        NewSession(carrier.tenant.id, AGENT, CUSTOMER, provider_id=carrier.provider.id)
    )
    return session


async def _resume(carrier: Carrier) -> list[StoredSession]:
    """What the engine does on start, for this test's tenant only (the database is shared)."""
    found = await carrier.engine.store.sessions.placements_cut_off(timedelta(0))
    mine = [s for s in found if s.tenant_id == carrier.tenant.id]
    return await carrier.engine.carrier_dialer.resume_sessions(mine)


async def test_a_placement_cut_off_after_the_create_adopts_the_carriers_call(
    twilio: Carrier,
) -> None:
    fake: FakeTwilio = twilio.fake
    session = await _cut_off(twilio)
    # the carrier created the call; the engine stopped before recording it
    placed = await (await twilio.adapter()).place(PlaceCall(session.id, AGENT, CUSTOMER))
    [resumed] = await _resume(twilio)
    assert resumed.id == session.id
    assert resumed.provider_call_id == placed.call_id  # adopted, not dialled again
    assert _creates(fake) == 1
    assert fake.calls[placed.call_id].status == "queued"  # not hung up
    [attempt] = await _attempts(twilio, session)
    assert (attempt["outcome"], attempt["decision"]) == ("created", "stop")
    assert "adopted" in attempt["reason"]
    # its callbacks apply from now on
    sent = await fake.callback(fake.calls[placed.call_id], "agent", "ringing")
    assert sent.status == 202, sent.body
    assert await twilio.status(session) is CallStatus.DIALING_AGENT
    assert await _resume(twilio) == []  # nothing left to resume


async def test_a_placement_cut_off_before_the_create_is_placed_once(twilio: Carrier) -> None:
    fake: FakeTwilio = twilio.fake
    session = await _cut_off(twilio)
    elsewhere = await _cut_off(twilio)  # another engine's: never this one's to place
    await twilio.engine.store.db.execute(
        "UPDATE click_to_call_session SET node = 'another-node' WHERE id = $1", elsewhere.id
    )
    [resumed] = await _resume(twilio)
    assert resumed.id == session.id
    assert resumed.provider_call_id in fake.calls
    assert _creates(fake) == 1
    why, attempt = await _attempts(twilio, session)
    assert (why["outcome"], why["decision"]) == ("not_sent", "next")
    assert "no carrier has the call" in why["reason"]
    assert (attempt["outcome"], attempt["provider_id"]) == ("created", str(twilio.provider.id))
    assert await _resume(twilio) == []  # placed: nothing left, the other node's untouched
    assert (await twilio.engine.store.sessions.get(twilio.tenant.id, elsewhere.id)).status is (
        CallStatus.QUEUED
    )


# -- failover -----------------------------------------------------------------------------------


async def test_create_timeout_reconciles_hangs_up_and_never_places_a_second_call_there(
    twilio: Carrier, backup: tuple[StoredProvider, FakeTwilio]
) -> None:
    second, second_fake = backup
    fake: FakeTwilio = twilio.fake
    fake.create_delay_s = 3.0  # the adapter gives up after 2 s; the call exists at Twilio
    session = await _initiate(twilio)
    assert _creates(fake) == 1  # never a second create through the uncertain carrier
    [made] = fake.calls.values()
    assert made.status == "completed"  # found by the list and hung up
    first, then = await _attempts(twilio, session)
    assert (first["outcome"], first["decision"]) == ("uncertain", "reconcile")
    assert first["reconciled"] == [made.call_id]
    assert (then["outcome"], then["provider_id"]) == ("created", str(second.id))
    # the session now belongs to the provider that has the call
    assert session.provider_id == second.id
    assert session.provider_call_id in second_fake.calls


async def test_exotel_call_found_after_a_timeout_is_kept_not_duplicated(exotel: Carrier) -> None:
    _, second_fake = await _second_twilio(exotel)
    try:
        exotel.fake.create_delay_s = 3.0
        session = await _initiate(exotel)
        [made] = exotel.fake.calls.values()
        # Exotel has no hangup: the call it made is the session's, no failover
        assert session.provider_call_id == made.call_id
        assert session.provider_id == exotel.provider.id
        assert second_fake.calls == {}
        assert _creates(exotel.fake) == 1
        [attempt] = await _attempts(exotel, session)
        assert "cannot hang up" in attempt["reason"]
        assert (await exotel.fake.callback(made, "completed")).status == 202
        assert await exotel.status(session) is CallStatus.COMPLETED
    finally:
        await second_fake.stop()


async def test_mcube_without_a_lookup_waits_out_the_ring_then_fails_over(mcube: Carrier) -> None:
    _, second_fake = await _second_twilio(mcube)
    try:
        config = {**mcube.provider.config, "reconcile_wait_s": 0.2}
        mcube.provider = await mcube.engine.store.providers.update(
            mcube.tenant.id, mcube.provider.id, ProviderChanges(config=config)
        )
        mcube.fake.fail_creates = [503]
        session, call = await _placed(mcube, second_fake)
        assert call.call_id in second_fake.calls
        first, then = await _attempts(mcube, session)
        assert (first["outcome"], first["decision"]) == ("uncertain", "reconcile")
        assert "no lookup: waited 0.2 s" in first["reason"]
        assert then["outcome"] == "created"
    finally:
        await second_fake.stop()


async def test_5xx_fails_over_to_the_next_provider(
    twilio: Carrier, backup: tuple[StoredProvider, FakeTwilio]
) -> None:
    _, second_fake = backup
    twilio.fake.fail_creates = [503]
    session, call = await _placed(twilio, second_fake)
    assert call.call_id in second_fake.calls
    first, then = await _attempts(twilio, session)
    assert (first["outcome"], first["decision"]) == ("uncertain", "reconcile")
    assert "reconciled" not in first  # the list found nothing: nothing to hang up
    assert then["outcome"] == "created"
    assert twilio.fake.calls == {}
    # the backup's callbacks drive the session
    await second_fake.callback(call, "agent", "busy")
    assert await twilio.status(session) is CallStatus.BUSY


async def test_4xx_and_429_fail_over_at_once_and_no_provider_left_fails_the_session(
    twilio: Carrier, backup: tuple[StoredProvider, FakeTwilio]
) -> None:
    _, second_fake = backup
    twilio.fake.fail_creates = [400]
    second_fake.fail_creates = [429, 429]  # retried once on 429, then given up
    session = await _initiate(twilio)
    assert session.status is CallStatus.FAILED
    outcomes = [(a["outcome"], a["decision"]) for a in await _attempts(twilio, session)]
    assert outcomes == [("refused", "next"), ("rate_limited", "next")]
    assert session.end_reason is not None
    assert session.end_reason.startswith("no provider placed the call")


async def test_circuit_opens_after_repeated_failures_and_recovers(
    twilio: Carrier, backup: tuple[StoredProvider, FakeTwilio], monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = twilio.engine
    now = [1000.0]
    monkeypatch.setattr(engine.breakers, "clock", lambda: now[0])
    provider = await engine.store.providers.update(
        twilio.tenant.id,
        twilio.provider.id,
        ProviderChanges(
            config={**twilio.provider.config, "breaker_failures": 2, "breaker_reset_s": 60}
        ),
    )
    twilio.provider = provider
    component = f"provider {provider.id}"
    twilio.fake.fail_creates = [400, 401, 401]  # 401: a provider failure; 400 is ours
    _, backup_fake = backup
    for _ in range(3):
        await _placed(twilio, backup_fake)  # each through the backup
    health = engine.health.get(component)
    assert health is not None
    assert health.state == "down"
    assert "circuit open" in health.detail
    # open: skipped without a request
    requests = len(twilio.fake.requests)
    session, _ = await _placed(twilio, backup_fake)
    assert len(twilio.fake.requests) == requests
    skipped = (await _attempts(twilio, session))[0]
    assert (skipped["outcome"], skipped["reason"]) == ("not_sent", "circuit breaker open")
    # after the pause: one trial, which succeeds and closes the breaker
    now[0] += 61
    session, call = await _placed(twilio)
    assert call.call_id in twilio.fake.calls
    health = engine.health.get(component)
    assert health is not None
    assert health.state == "up"


async def test_max_concurrent_calls_sends_the_next_call_elsewhere(
    twilio: Carrier, backup: tuple[StoredProvider, FakeTwilio]
) -> None:
    _, second_fake = backup
    await twilio.engine.store.providers.update(
        twilio.tenant.id, twilio.provider.id, ProviderChanges(max_concurrent_calls=1)
    )
    _, first_call = await _placed(twilio)
    assert first_call.call_id in twilio.fake.calls
    other, other_call = await _placed(twilio, second_fake)
    assert other_call.call_id in second_fake.calls
    skipped = (await _attempts(twilio, other))[0]
    assert skipped["reason"] == "at max_concurrent_calls (1 of 1)"


# -- end and transfer through the carrier -------------------------------------------------------


async def test_end_through_the_carrier_or_409_where_it_has_none(
    twilio: Carrier, exotel: Carrier
) -> None:
    session, call = await _placed(twilio)
    ended = await twilio.engine.use_cases.calls.end(twilio.tenant, session.id)
    assert ended.status is CallStatus.CANCELED
    assert call.status == "completed"  # hung up at Twilio
    x_session, _ = await _placed(exotel)
    with pytest.raises(CarrierUnsupported, match="exotel"):
        await exotel.engine.use_cases.calls.end(exotel.tenant, x_session.id)
    assert await exotel.status(x_session) is CallStatus.QUEUED


async def test_blind_transfer_through_vonage_and_attended_is_not_supported(
    vonage: Carrier,
) -> None:
    session, call = await _placed(vonage)
    for leg, status in [("agent", "answered"), ("customer", "answered")]:
        await vonage.fake.callback(call, leg, status)
    assert await vonage.status(session) is CallStatus.CONNECTED
    calls = vonage.engine.use_cases.calls
    with pytest.raises(CarrierUnsupported, match="not supported by this carrier"):
        await calls.transfer(vonage.tenant, session.id, TransferType.ATTENDED, "+14155550111")
    transfer = await calls.transfer(
        vonage.tenant, session.id, TransferType.BLIND, "+14155550111", Leg.AGENT
    )
    assert transfer.state == "completed"
    assert transfer.target == "+14155550111"
    assert ("PUT", f"/v1/calls/{call.legs['customer']}") in vonage.fake.requests


# -- the webhook's dedupe key and fact in one transaction ---------------------------------------


async def test_a_fault_between_dedupe_and_apply_keeps_neither(
    twilio: Carrier, monkeypatch: pytest.MonkeyPatch
) -> None:
    session, call = await _placed(twilio)
    form = twilio.fake.callback_form(call, "agent", "in-progress")
    real = SessionBatch.transition
    failures = [RuntimeError("the fault")]

    async def faulty(self: SessionBatch, *args: Any, **kwargs: Any) -> CallEvent:
        if failures:
            raise failures.pop()
        return await real(self, *args, **kwargs)

    monkeypatch.setattr(SessionBatch, "transition", faulty)
    sent = await twilio.fake.send_form(call, "agent", form)
    assert sent.status == 500
    assert await twilio.status(session) is CallStatus.QUEUED
    assert [r for r in await twilio.log_rows() if r["dedupe_key"]] == []  # rolled back
    # the carrier's retry of the same callback applies it
    again = await twilio.fake.send_form(call, "agent", form)
    assert again.body["processing_status"] == "processed", again.body
    assert await twilio.status(session) is CallStatus.AGENT_ANSWERED
