"""The carrier adapters against fake carriers that follow each carrier's contract
(engine/devtools/fake_carriers.py), and their webhooks through the engine's route.

Each test here places the call with the adapter itself, then stores a session with the
carrier's call id recorded on it, and drives it with the carrier's callbacks (calls placed
by ``initiate``, with failover, are tests/integration/test_carrier_calls.py): happy path,
agent busy, customer no-answer, forged signature (401, nothing changed), replay (no-op),
out of order, and a create that times out (the carrier's list finds the call: the
reconcile primitive).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from engine.daemon import Engine
from engine.devtools.fake_carriers import FakeExotel, FakeMcube, FakeTwilio, FakeVonage
from engine.domain.call import CallStatus
from engine.domain.providers import ProviderType
from engine.errors import (
    CarrierAuthFailed,
    CarrierRateLimited,
    CarrierRefused,
    CarrierUnavailable,
    CarrierUnsupported,
)
from engine.providers.base import CallRef, PlaceCall
from tests.integration.conftest import SECRET_KEY
from tests.support.carriers import AGENT, CUSTOMER, Carrier, provider_row
from tests.support.cli import run_ctc
from tests.support.http import Api
from tests.support.tenants import bearer_headers, new_tenant

# -- Twilio -----------------------------------------------------------------------------------


async def test_twilio_happy_path_to_completed(twilio: Carrier) -> None:
    session, call = await twilio.place()
    fake: FakeTwilio = twilio.fake
    for leg, status in [
        ("agent", "initiated"),
        ("agent", "ringing"),
        ("agent", "in-progress"),
        ("customer", "initiated"),
        ("customer", "ringing"),
        ("customer", "in-progress"),
        ("customer", "completed"),
        ("agent", "completed"),
    ]:
        sent = await fake.callback(call, leg, status)
        assert sent.status == 202, sent.body
    assert await twilio.status(session) is CallStatus.COMPLETED
    events = await twilio.events(session)
    assert [e for e in events if e != "provider.status"][-5:] == [
        "agent.dialing",
        "agent.answered",
        "customer.dialing",
        "customer.answered",
        "customer.hangup",
    ]
    # a callback that changes nothing (the second ringing, the parent's completed after
    # the end) is recorded as it came
    assert events.count("provider.status") == 1 + 3  # the create's, then three
    stored = await twilio.engine.store.sessions.events(twilio.tenant.id, session.id)
    answered = next(e for e in stored if e.event_type == "customer.answered")
    assert answered.payload["provider_status"] == "in-progress"  # the raw status kept
    assert answered.payload["leg"] == "customer"
    assert answered.payload["provider_call_id"] == call.legs["customer"]


async def test_twilio_agent_busy(twilio: Carrier) -> None:
    session, call = await twilio.place()
    await twilio.fake.callback(call, "agent", "ringing")
    await twilio.fake.callback(call, "agent", "busy")
    assert await twilio.status(session) is CallStatus.BUSY
    assert (await twilio.events(session))[-1] == "agent.unanswered"


async def test_twilio_customer_no_answer(twilio: Carrier) -> None:
    session, call = await twilio.place()
    for leg, status in [("agent", "in-progress"), ("customer", "ringing")]:
        await twilio.fake.callback(call, leg, status)
    # the parent completes first (only the agent talked): the customer's outcome decides
    await twilio.fake.callback(call, "agent", "completed")
    assert await twilio.status(session) is CallStatus.DIALING_CUSTOMER
    await twilio.fake.callback(call, "customer", "no-answer")
    assert await twilio.status(session) is CallStatus.NO_ANSWER
    assert (await twilio.events(session))[-1] == "customer.unanswered"


async def test_twilio_forged_signature_is_401_logged_unverified_and_changes_nothing(
    twilio: Carrier,
) -> None:
    session, call = await twilio.place()
    before = await twilio.events(session)
    sent = await twilio.fake.callback(call, "agent", "in-progress", forge=True)
    assert sent.status == 401, sent.body
    assert sent.body["error"]["details"] == {"reason": "bad_signature"}
    assert await twilio.status(session) is CallStatus.QUEUED
    assert await twilio.events(session) == before
    rows = await twilio.log_rows()
    assert rows[-1]["signature_valid"] is False
    assert rows[-1]["processing_status"] == "rejected"
    assert rows[-1]["dedupe_key"] is None
    # a body changed after signing is refused the same way
    form = twilio.fake.callback_form(call, "agent", "ringing")
    signed = await twilio.fake.send_form(call, "agent", form)
    assert signed.status == 202
    tampered = dict(form, CallStatus="completed", SequenceNumber="9")
    sent = await twilio.fake._send(  # the first request's signature on another body
        call.callback_urls["agent"],
        headers={"X-Twilio-Signature": signed.headers["X-Twilio-Signature"]},
        data="&".join(f"{k}={v}" for k, v in tampered.items()).replace("+", "%2B").encode(),
        content_type="application/x-www-form-urlencoded",
    )
    assert sent.status == 401
    # and a request without a signature at all
    sent = await twilio.fake._send(
        call.callback_urls["agent"],
        headers={},
        data=b"CallSid=x&CallStatus=completed",
        content_type="application/x-www-form-urlencoded",
    )
    assert sent.status == 401
    assert sent.body["error"]["details"] == {"reason": "missing_signature"}
    assert await twilio.status(session) is CallStatus.DIALING_AGENT


async def test_twilio_replay_is_a_logged_no_op(twilio: Carrier) -> None:
    session, call = await twilio.place()
    form = twilio.fake.callback_form(call, "agent", "ringing")
    first = await twilio.fake.send_form(call, "agent", form)
    events = await twilio.events(session)
    again = await twilio.fake.send_form(call, "agent", form)
    assert (first.status, again.status) == (202, 202)
    assert first.body["processing_status"] == "processed"
    assert again.body["processing_status"] == "ignored"
    assert await twilio.events(session) == events
    rows = await twilio.log_rows()
    assert [r["error"] for r in rows[-2:]] == [None, "replay"]


async def test_twilio_out_of_order_callbacks_never_move_back(twilio: Carrier) -> None:
    session, call = await twilio.place()
    fake: FakeTwilio = twilio.fake
    ringing = fake.callback_form(call, "customer", "ringing", sequence=1)
    answered = fake.callback_form(call, "customer", "in-progress", sequence=2)
    # the customer's answer arrives first: the session catches up through the agent's steps
    assert (await fake.send_form(call, "customer", answered)).status == 202
    assert await twilio.status(session) is CallStatus.CONNECTED
    late = await fake.send_form(call, "customer", ringing)
    assert late.body["processing_status"] == "ignored"
    assert await twilio.status(session) is CallStatus.CONNECTED
    await fake.callback(call, "agent", "ringing")  # the agent's leg, late too
    assert await twilio.status(session) is CallStatus.CONNECTED
    await fake.callback(call, "customer", "completed")
    assert await twilio.status(session) is CallStatus.COMPLETED


async def test_twilio_create_timeout_then_the_list_finds_the_call(twilio: Carrier) -> None:
    fake: FakeTwilio = twilio.fake
    fake.create_delay_s = 3.0  # the adapter gives up after 2 s; the call exists
    adapter = await twilio.adapter()
    since = datetime.now(UTC) - timedelta(minutes=1)
    request = PlaceCall(uuid.uuid4(), AGENT, CUSTOMER)
    with pytest.raises(CarrierUnavailable) as caught:
        await adapter.place(request)
    assert caught.value.call_may_exist
    creates = [
        r
        for r in fake.requests
        if r == ("POST", f"/2010-04-01/Accounts/{fake.account_sid}/Calls.json")
    ]
    assert len(creates) == 1  # never retried after sending
    found = await adapter.find(request, since)
    assert found == list(fake.calls)
    # reconcile: hang up what was found
    await adapter.end(CallRef(found[0], AGENT, CUSTOMER))
    assert fake.calls[found[0]].status == "completed"


async def test_twilio_errors_map_to_ours_and_429_is_retried_on_create(twilio: Carrier) -> None:
    fake: FakeTwilio = twilio.fake
    adapter = await twilio.adapter()
    fake.fail_creates = [429]
    placed = await adapter.place(PlaceCall(uuid.uuid4(), AGENT, CUSTOMER))  # 429 is safe
    assert placed.call_id in fake.calls
    fake.fail_creates = [429, 429]
    with pytest.raises(CarrierRateLimited):
        await adapter.place(PlaceCall(uuid.uuid4(), AGENT, CUSTOMER))
    fake.fail_creates = [400]
    with pytest.raises(CarrierRefused, match="refused by the fake") as refused:
        await adapter.place(PlaceCall(uuid.uuid4(), AGENT, CUSTOMER))
    assert not refused.value.call_may_exist
    fake.fail_creates = [503]
    with pytest.raises(CarrierUnavailable) as unavailable:
        await adapter.place(PlaceCall(uuid.uuid4(), AGENT, CUSTOMER))
    assert unavailable.value.call_may_exist
    await adapter.check_credentials()
    fake.auth_token = "rotated"
    with pytest.raises(CarrierAuthFailed) as auth:
        await adapter.check_credentials()
    assert "rotated" not in str(auth.value)
    assert "tok-" not in str(auth.value)


async def test_a_provider_never_touches_another_tenants_session(
    api_engine: Engine, twilio: Carrier
) -> None:
    session, call = await twilio.place()
    # another tenant's provider on the same Twilio account (same token: it verifies)
    other_tenant = await new_tenant(api_engine.store)
    other = await provider_row(
        api_engine,
        other_tenant,
        ProviderType.TWILIO,
        {"account_sid": twilio.fake.account_sid, "base_url": twilio.fake.url},
        {"auth_token": twilio.fake.auth_token},
    )
    url = call.callback_urls["agent"].replace(str(twilio.provider.id), str(other.id))
    call.callback_urls["agent"] = url
    sent = await twilio.fake.callback(call, "agent", "in-progress")
    assert sent.status == 202
    assert sent.body["session_id"] is None
    assert sent.body["processing_status"] == "ignored"
    assert await twilio.status(session) is CallStatus.QUEUED


async def test_the_seed_path_verifies_against_the_tenants_providers(
    twilio: Carrier,
) -> None:
    session, call = await twilio.place()
    token = (await twilio.engine.store.tenants.issue_token(twilio.tenant.slug, "c")).token
    base = f"http://127.0.0.1:{twilio.engine.api.tcp_port}/api/v1/webhooks/voip/twilio"
    form = twilio.fake.callback_form(call, "agent", "ringing")
    from engine.providers.signatures import twilio_signature

    headers = {
        "Authorization": f"Bearer {token}",
        "X-Twilio-Signature": twilio_signature(twilio.fake.auth_token, base, form),
    }
    import urllib.parse

    sent = await twilio.fake._send(
        base,
        headers=headers,
        data=urllib.parse.urlencode(form).encode(),
        content_type="application/x-www-form-urlencoded",
    )
    assert sent.status == 202, sent.body
    assert sent.body["session_id"] == str(session.id)
    assert await twilio.status(session) is CallStatus.DIALING_AGENT
    headers["X-Twilio-Signature"] = "forged"
    sent = await twilio.fake._send(
        base,
        headers=headers,
        data=urllib.parse.urlencode(form).encode(),
        content_type="application/x-www-form-urlencoded",
    )
    assert sent.status == 401


# -- Vonage -----------------------------------------------------------------------------------


async def test_vonage_happy_path_to_completed(vonage: Carrier) -> None:
    session, call = await vonage.place()
    fake: FakeVonage = vonage.fake
    for leg, status in [
        ("agent", "started"),
        ("agent", "ringing"),
        ("agent", "answered"),
        ("customer", "started"),
        ("customer", "ringing"),
        ("customer", "answered"),
        ("customer", "completed"),
        ("agent", "completed"),
    ]:
        sent = await fake.callback(call, leg, status)
        assert sent.status == 202, sent.body
    assert await vonage.status(session) is CallStatus.COMPLETED
    assert "customer.answered" in await vonage.events(session)


async def test_vonage_agent_busy_and_completed_before_the_failure(vonage: Carrier) -> None:
    session, call = await vonage.place()
    await vonage.fake.callback(call, "agent", "ringing")
    # Vonage documents completed arriving before the failure: it waits for the failure
    await vonage.fake.callback(call, "agent", "completed")
    assert await vonage.status(session) is CallStatus.DIALING_AGENT
    await vonage.fake.callback(call, "agent", "busy")
    assert await vonage.status(session) is CallStatus.BUSY


async def test_vonage_customer_no_answer(vonage: Carrier) -> None:
    session, call = await vonage.place()
    for leg, status in [("agent", "answered"), ("customer", "ringing"), ("customer", "timeout")]:
        await vonage.fake.callback(call, leg, status)
    assert await vonage.status(session) is CallStatus.NO_ANSWER


async def test_vonage_forged_jwt_and_changed_body_are_401(vonage: Carrier) -> None:
    session, call = await vonage.place()
    fake: FakeVonage = vonage.fake
    sent = await fake.callback(call, "agent", "answered", forge=True)
    assert sent.status == 401
    assert sent.body["error"]["details"] == {"reason": "bad_signature"}
    body = fake.event_body(call, "agent", "answered")
    token = fake.jwt_for(body)
    sent = await fake._send(
        call.callback_urls["agent"],
        headers={"Authorization": f"Bearer {token}"},
        data=body.replace(b"answered", b"completed"),
        content_type="application/json",
    )
    assert sent.status == 401  # payload_hash no longer matches
    assert await vonage.status(session) is CallStatus.QUEUED
    assert (await vonage.log_rows())[-1]["signature_valid"] is False


async def test_vonage_replay_and_started_ringing_swap(vonage: Carrier) -> None:
    session, call = await vonage.place()
    fake: FakeVonage = vonage.fake
    ringing = fake.event_body(call, "agent", "ringing")
    started = fake.event_body(call, "agent", "started")
    assert (await fake.send_body(call, "agent", ringing)).status == 202
    late = await fake.send_body(call, "agent", started)  # started after ringing: no change
    assert late.body["processing_status"] == "ignored"
    again = await fake.send_body(call, "agent", ringing)
    assert again.body["processing_status"] == "ignored"
    rows = await vonage.log_rows()
    assert rows[-1]["error"] == "replay"
    assert await vonage.status(session) is CallStatus.DIALING_AGENT


async def test_vonage_create_timeout_then_the_list_finds_the_call(vonage: Carrier) -> None:
    vonage.fake.create_delay_s = 3.0
    adapter = await vonage.adapter()
    since = datetime.now(UTC) - timedelta(minutes=1)
    request = PlaceCall(uuid.uuid4(), AGENT, CUSTOMER)
    with pytest.raises(CarrierUnavailable):
        await adapter.place(request)
    found = await adapter.find(request, since)
    assert found == list(vonage.fake.calls)
    await adapter.end(CallRef(found[0], AGENT, CUSTOMER))
    legs = vonage.fake.calls[found[0]].leg_status
    assert legs.get("agent", "completed") == "completed"


# -- Exotel -----------------------------------------------------------------------------------


async def test_exotel_happy_path_terminal_confirmed_by_a_status_query(exotel: Carrier) -> None:
    session, call = await exotel.place()
    fake: FakeExotel = exotel.fake
    sent = await fake.callback(call, "in-progress", event="answered")
    assert sent.status == 202, sent.body
    assert await exotel.status(session) is CallStatus.CONNECTED
    queries_before = len([r for r in fake.requests if r[0] == "GET"])
    sent = await fake.callback(call, "completed")
    assert sent.body["processing_status"] == "processed"
    assert await exotel.status(session) is CallStatus.COMPLETED
    assert len([r for r in fake.requests if r[0] == "GET"]) == queries_before + 1
    # the answered event arriving late changes nothing
    late = await fake.send_event(call, "answered", "in-progress")
    assert late.body["processing_status"] == "ignored"


async def test_exotel_terminal_the_status_query_denies_is_ignored(exotel: Carrier) -> None:
    session, call = await exotel.place()
    # a terminal 'busy' while Exotel says the call is still in progress: not applied
    sent = await exotel.fake.send_event(call, "terminal", "busy")
    assert sent.status == 202
    assert sent.body["processing_status"] == "ignored"
    assert await exotel.status(session) is CallStatus.QUEUED
    # Exotel's own busy (its status query agrees) applies
    await exotel.fake.callback(call, "busy")
    assert await exotel.status(session) is CallStatus.BUSY


async def test_exotel_no_answer_wrong_token_and_replay(exotel: Carrier) -> None:
    session, call = await exotel.place()
    sent = await exotel.fake.callback(call, "no-answer", token="guessed")
    assert sent.status == 401
    assert sent.body["error"]["details"] == {"reason": "bad_token"}
    assert await exotel.status(session) is CallStatus.QUEUED
    assert (await exotel.fake.callback(call, "no-answer")).status == 202
    assert await exotel.status(session) is CallStatus.NO_ANSWER
    again = await exotel.fake.send_event(call, "terminal", "no-answer")
    assert again.body["processing_status"] == "ignored"


async def test_exotel_has_no_end_or_transfer_and_reconciles_by_list(exotel: Carrier) -> None:
    adapter = await exotel.adapter()
    with pytest.raises(CarrierUnsupported, match="not supported by this carrier"):
        await adapter.transfer(CallRef("x", AGENT, CUSTOMER), "+14155550111")
    with pytest.raises(CarrierUnsupported):
        await adapter.end(CallRef("x", AGENT, CUSTOMER))
    exotel.fake.create_delay_s = 3.0
    request = PlaceCall(uuid.uuid4(), AGENT, CUSTOMER)
    with pytest.raises(CarrierUnavailable):
        await adapter.place(request)
    assert await adapter.find(request, datetime.now(UTC) - timedelta(minutes=1)) == list(
        exotel.fake.calls
    )


# -- mCube ------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", ["json", "form", "data"])
async def test_mcube_answer_in_every_callback_shape(mcube: Carrier, shape: str) -> None:
    session, call = await mcube.place()
    sent = await mcube.fake.callback(call, "ANSWER", shape=shape)
    assert sent.status == 202, sent.body
    assert await mcube.status(session) is CallStatus.COMPLETED
    events = await mcube.engine.store.sessions.events(mcube.tenant.id, session.id)
    assert events[-1].payload["confirmed"] is False  # no status API to confirm with


async def test_mcube_busy_no_answer_token_and_replay(mcube: Carrier) -> None:
    busy, call = await mcube.place()
    assert (await mcube.fake.callback(call, "Executive Busy", token="nope")).status == 401
    assert (await mcube.fake.callback(call, "Executive Busy")).status == 202
    assert await mcube.status(busy) is CallStatus.BUSY
    again = await mcube.fake.callback(call, "Executive Busy")
    assert again.body["processing_status"] == "ignored"
    unanswered, call2 = await mcube.place()
    await mcube.fake.callback(call2, "NoAnswer")
    assert await mcube.status(unanswered) is CallStatus.NO_ANSWER
    adapter = await mcube.adapter()
    with pytest.raises(CarrierUnsupported):
        await adapter.find(PlaceCall(uuid.uuid4(), AGENT, CUSTOMER), datetime.now(UTC))


async def test_mcube_source_outside_the_allowlist_is_401(api_engine: Engine) -> None:
    fake = FakeMcube("k")
    await fake.start()
    try:
        tenant = await new_tenant(api_engine.store)
        provider = await provider_row(
            api_engine,
            tenant,
            ProviderType.MCUBE,
            {"base_url": fake.url, "webhook_allow_cidrs": ["203.0.113.0/24"]},
            {"apikey": "k"},
            webhook_secret="tok",
        )
        carrier = Carrier(api_engine, tenant, provider, fake)
        session, call = await carrier.place()
        sent = await fake.callback(call, "ANSWER")
        assert sent.status == 401
        assert sent.body["error"]["details"] == {"reason": "source_refused"}
        assert await carrier.status(session) is CallStatus.QUEUED
    finally:
        await fake.stop()


async def test_an_unknown_provider_in_the_url_is_404(twilio: Carrier) -> None:
    session, call = await twilio.place()
    real = call.callback_urls["agent"]
    call.callback_urls["agent"] = real.replace(str(twilio.provider.id), str(uuid.uuid4()))
    sent = await twilio.fake.callback(call, "agent", "ringing")
    assert sent.status == 404
    # the provider exists, but is not of the type the URL names
    call.callback_urls["agent"] = real.replace("/twilio/", "/vonage/")
    sent = await twilio.fake.callback(call, "agent", "ringing")
    assert sent.status == 404
    assert await twilio.status(session) is CallStatus.QUEUED


# -- provider test: credentials checked without placing a call ----------------------------------


async def test_provider_test_over_the_api_and_the_cli(
    twilio: Carrier, vonage: Carrier, mcube: Carrier, tcp_api: Api, cli_env: dict[str, str]
) -> None:
    for carrier in (twilio, vonage):
        token = (await carrier.engine.store.tenants.issue_token(carrier.tenant.slug, "t")).token
        status, body, _ = await tcp_api.call(
            "POST",
            f"/api/v1/voip-providers/{carrier.provider.id}/test",
            headers=bearer_headers(token),
        )
        assert (status, body["outcome"]) == (200, "ok"), body
        assert not [r for r in carrier.fake.requests if r[0] == "POST"]  # no call placed
    twilio.fake.auth_token = "rotated-at-twilio"
    token = (await twilio.engine.store.tenants.issue_token(twilio.tenant.slug, "t")).token
    status, body, _ = await tcp_api.call(
        "POST", f"/api/v1/voip-providers/{twilio.provider.id}/test", headers=bearer_headers(token)
    )
    assert body["outcome"] == "refused"
    assert twilio.fake.auth_token not in body["detail"]
    # the CLI, in its own process: mCube offers no check without placing a call
    env = {**cli_env, "CTC_SECRET_KEY": SECRET_KEY}
    code, out, err = await run_ctc(
        "provider", "test", mcube.provider.name, "--tenant", mcube.tenant.slug, env=env
    )
    assert (code, out.split(":")[0]) == (1, "unsupported"), (out, err)
    code, out, err = await run_ctc(
        "provider", "test", vonage.provider.name, "--tenant", vonage.tenant.slug, env=env
    )
    assert (code, out.strip()) == (0, "ok: vonage: accepted"), err
    code, out, err = await run_ctc(
        "provider", "test", "nobody", "--tenant", vonage.tenant.slug, env=env
    )
    assert code == 1
    assert "provider nobody not found" in err


async def test_a_misconfigured_provider_answers_503_not_500(twilio: Carrier) -> None:
    _, call = await twilio.place()
    other = await new_tenant(twilio.engine.store)
    # a Twilio provider with no account_sid: its webhooks cannot be verified
    broken = await provider_row(twilio.engine, other, ProviderType.TWILIO, {}, {"auth_token": "x"})
    call.callback_urls["agent"] = call.callback_urls["agent"].replace(
        str(twilio.provider.id), str(broken.id)
    )
    sent = await twilio.fake.callback(call, "agent", "ringing")
    assert sent.status == 503, sent.body
    assert "config.account_sid" in sent.body["error"]["message"]


async def test_twilio_json_body_signed_through_body_sha256(twilio: Carrier) -> None:
    import json as jsonlib

    from engine.providers.signatures import body_sha256, twilio_signature

    session, call = await twilio.place()
    body = jsonlib.dumps({"CallSid": call.call_id, "CallStatus": "ringing"}).encode()
    url = f"{call.callback_urls['agent']}&bodySHA256={body_sha256(body)}"
    signature = twilio_signature(twilio.fake.auth_token, url)
    sent = await twilio.fake._send(
        url, headers={"X-Twilio-Signature": signature}, data=body, content_type="application/json"
    )
    assert sent.status == 202, sent.body
    assert await twilio.status(session) is CallStatus.DIALING_AGENT
    changed = body.replace(b"ringing", b"in-progress")
    sent = await twilio.fake._send(
        url,
        headers={"X-Twilio-Signature": signature},
        data=changed,
        content_type="application/json",
    )
    assert sent.status == 401
    assert await twilio.status(session) is CallStatus.DIALING_AGENT


async def test_the_same_callback_twice_at_once_is_applied_once(twilio: Carrier) -> None:
    import asyncio

    session, call = await twilio.place()
    form = twilio.fake.callback_form(call, "agent", "ringing")
    first, second = await asyncio.gather(
        twilio.fake.send_form(call, "agent", form), twilio.fake.send_form(call, "agent", form)
    )
    assert sorted([first.body["processing_status"], second.body["processing_status"]]) == [
        "ignored",
        "processed",
    ]
    events = await twilio.events(session)
    assert events.count("agent.dialing") == 1
