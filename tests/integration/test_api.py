"""Every endpoint through the real Unix socket (and TCP), against the real PostgreSQL."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import pytest

from engine.daemon import Engine
from engine.providers.signatures import twilio_signature
from tests.support.calls import initiate_body
from tests.support.http import Api
from tests.support.tenants import bearer_headers, new_tenant, tenant_headers

C2C = "/api/v1/click-to-call"
CUSTOMER = "+14155550100"


# -- initiate ---------------------------------------------------------------------------------


async def test_initiate_stores_a_queued_session_with_its_first_event(
    api_engine: Engine, unix_api: Api
) -> None:
    t = (await new_tenant(api_engine.store)).slug
    status, body, headers = await unix_api.call(
        "POST",
        f"{C2C}/initiate",
        json=initiate_body(
            customer_number="+1 (415) 555-0100", external_ref="lead-7", metadata={"crm": "x"}
        ),
        headers=tenant_headers(t),
    )
    assert status == 202, body
    assert body["status"] == "queued"
    assert body["customer_number"] == CUSTOMER  # normalised to E.164
    assert body["external_ref"] == "lead-7"
    assert body["metadata"] == {"crm": "x"}
    assert headers["Location"] == f"{C2C}/sessions/{body['id']}"

    status, detail, _ = await unix_api.call("GET", headers["Location"], headers=tenant_headers(t))
    assert status == 200
    assert [(e["seq"], e["event_type"], e["status_to"]) for e in detail["events"]] == [
        (1, "session.created", "queued")
    ]


@pytest.mark.parametrize(
    ("body", "status", "code", "field"),
    [
        (initiate_body(customer_number="12345"), 422, "validation_error", "customer_number"),
        (initiate_body(customer_number="+1415"), 422, "validation_error", "customer_number"),
        (initiate_body(caller_id="not a number"), 422, "validation_error", "caller_id"),
        ({"agent_number": "1001"}, 422, "validation_error", "customer_number"),
        (initiate_body(agent_number="10 01; rm"), 422, "validation_error", "agent_number"),
        (initiate_body(surprise=1), 422, "validation_error", "surprise"),
        (initiate_body(provider_id=str(uuid.uuid4())), 422, "validation_error", "provider_id"),
        (initiate_body(callback_url="ftp://x"), 422, "validation_error", "callback_url"),
        # not to the engine's neighbours (engine/domain/netpolicy.py)
        (
            initiate_body(callback_url="http://127.0.0.1:9/h"),
            422,
            "validation_error",
            "callback_url",
        ),
        (initiate_body(callback_url="http://[::1]:9/h"), 422, "validation_error", "callback_url"),
        (
            initiate_body(callback_url="http://169.254.169.254/latest"),
            422,
            "validation_error",
            "callback_url",
        ),
        (initiate_body(callback_url="http://10.0.0.1/h"), 422, "validation_error", "callback_url"),
        (initiate_body(default_region="gb"), 422, "validation_error", "default_region"),
    ],
)
async def test_initiate_rejects_bad_input_naming_the_field(
    unix_api: Api, body: dict[str, Any], status: int, code: str, field: str
) -> None:
    got, err, _ = await unix_api.call("POST", f"{C2C}/initiate", json=body)
    assert got == status, err
    assert err["error"]["code"] == code
    fields = [d["field"] for d in err["error"]["details"]]
    assert field in fields, err


async def test_a_refused_callback_url_says_why_and_the_tenant_allowance_admits_it(
    api_engine: Engine, unix_api: Api
) -> None:
    slug = (await new_tenant(api_engine.store)).slug
    body = initiate_body(callback_url="http://10.20.0.5:8080/hook")
    status, err, _ = await unix_api.call(
        "POST", f"{C2C}/initiate", json=body, headers=tenant_headers(slug)
    )
    assert status == 422, err
    assert err["error"]["details"] == [
        {
            "field": "callback_url",
            "message": "10.20.0.5 is a private address "
            "(the tenant's outbound_allow_cidrs does not include it)",
        }
    ]
    await api_engine.store.tenants.update(slug, allow_cidrs=("10.20.0.0/16",))
    status, created, _ = await unix_api.call(
        "POST", f"{C2C}/initiate", json=body, headers=tenant_headers(slug)
    )
    assert status == 202, created


async def test_national_number_with_default_region(unix_api: Api) -> None:
    status, body, _ = await unix_api.call(
        "POST",
        f"{C2C}/initiate",
        json=initiate_body(customer_number="020 7946 0958", default_region="GB"),
    )
    assert status == 202, body
    assert body["customer_number"] == "+442079460958"


async def test_malformed_bodies_are_400_or_422(unix_api: Api) -> None:
    for raw, status, code in [
        ("{not json", 400, "invalid_json"),
        ("", 400, "invalid_json"),
        ("[1, 2]", 422, "validation_error"),
    ]:
        got, err, _ = await unix_api.call(
            "POST", f"{C2C}/initiate", data=raw, headers={"Content-Type": "application/json"}
        )
        assert (got, err["error"]["code"]) == (status, code), raw


async def test_body_too_large_is_413(unix_api: Api) -> None:
    big = initiate_body(metadata={"blob": "x" * 20000})
    status, err, _ = await unix_api.call("POST", f"{C2C}/initiate", json=big)
    assert status == 413
    assert err["error"]["code"] == "body_too_large"


async def test_idempotency_key_replays_the_first_result_and_refuses_a_different_body(
    api_engine: Engine, unix_api: Api
) -> None:
    t = (await new_tenant(api_engine.store)).slug
    key = {"Idempotency-Key": "erp-req-42"}
    s1, first, h1 = await unix_api.call(
        "POST", f"{C2C}/initiate", json=initiate_body(), headers=tenant_headers(t, **key)
    )
    s2, again, h2 = await unix_api.call(
        "POST", f"{C2C}/initiate", json=initiate_body(), headers=tenant_headers(t, **key)
    )
    assert (s1, s2) == (202, 202)
    assert again["id"] == first["id"]
    assert "Idempotent-Replayed" not in h1
    assert h2["Idempotent-Replayed"] == "true"

    s3, err, _ = await unix_api.call(
        "POST",
        f"{C2C}/initiate",
        json=initiate_body(customer_number="+14155550199"),
        headers=tenant_headers(t, **key),
    )
    assert s3 == 409
    assert err["error"]["code"] == "conflict"
    _, page, _ = await unix_api.call("GET", f"{C2C}/sessions", headers=tenant_headers(t))
    assert [s["id"] for s in page["items"]] == [first["id"]]  # dialled once

    # the same key in another tenant is another request
    other = (await new_tenant(api_engine.store)).slug
    s4, theirs, _ = await unix_api.call(
        "POST", f"{C2C}/initiate", json=initiate_body(), headers=tenant_headers(other, **key)
    )
    assert s4 == 202
    assert theirs["id"] != first["id"]


# -- sessions ---------------------------------------------------------------------------------


async def test_list_filters_and_cursor_pagination(api_engine: Engine, unix_api: Api) -> None:
    t = (await new_tenant(api_engine.store)).slug
    ids = []
    for i in range(5):
        if i == 3:  # a1's first call is over: a1 may take the next (else: agent_busy)
            await unix_api.call(
                "PATCH",
                f"{C2C}/sessions/{ids[1]}/status",
                json={"status": "failed"},
                headers=tenant_headers(t),
            )
        _, body, _ = await unix_api.call(
            "POST",
            f"{C2C}/initiate",
            json=initiate_body(agent_id="a1" if i % 2 else f"a{i}"),
            headers=tenant_headers(t),
        )
        ids.append(body["id"])
    seen, cursor, pages = [], None, 0
    while True:
        params = {"limit": "2", **({"cursor": cursor} if cursor else {})}
        status, page, _ = await unix_api.call(
            "GET", f"{C2C}/sessions", params=params, headers=tenant_headers(t)
        )
        assert status == 200, page
        seen += [s["id"] for s in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == 3
    assert seen == list(reversed(ids))  # newest first, nothing twice, nothing lost

    _, page, _ = await unix_api.call(
        "GET", f"{C2C}/sessions", params={"agent_id": "a1"}, headers=tenant_headers(t)
    )
    assert {s["id"] for s in page["items"]} == {ids[1], ids[3]}

    await unix_api.call("POST", f"{C2C}/sessions/{ids[0]}/end", json={}, headers=tenant_headers(t))
    _, page, _ = await unix_api.call(
        "GET",
        f"{C2C}/sessions",
        params=[("status", "canceled"), ("status", "completed")],
        headers=tenant_headers(t),
    )
    assert [s["id"] for s in page["items"]] == [ids[0]]


@pytest.mark.parametrize(
    "params",
    [
        {"limit": "0"},
        {"limit": "abc"},
        {"status": "ringing"},
        {"cursor": "!!"},
        {"bogus": "1"},
        {"customer_number": "12"},
    ],
)
async def test_list_rejects_bad_query(unix_api: Api, params: dict[str, str]) -> None:
    status, err, _ = await unix_api.call("GET", f"{C2C}/sessions", params=params)
    assert status == 422, err
    assert err["error"]["code"] == "validation_error"


async def test_get_unknown_or_malformed_session_is_404(unix_api: Api) -> None:
    for sid in (uuid.uuid4(), "not-a-uuid"):
        status, err, _ = await unix_api.call("GET", f"{C2C}/sessions/{sid}")
        assert status == 404
        assert err["error"]["code"] == "not_found"


async def test_status_patch_follows_the_state_machine(api_engine: Engine, unix_api: Api) -> None:
    t = (await new_tenant(api_engine.store)).slug
    _, s, _ = await unix_api.call(
        "POST", f"{C2C}/initiate", json=initiate_body(), headers=tenant_headers(t)
    )
    url = f"{C2C}/sessions/{s['id']}/status"

    status, err, _ = await unix_api.call(
        "PATCH", url, json={"status": "connected"}, headers=tenant_headers(t)
    )
    assert status == 409
    assert err["error"]["code"] == "illegal_transition"
    assert err["error"]["details"] == {"current": "queued", "requested": "connected"}

    for step in ("dialing_agent", "agent_answered", "dialing_customer", "connected"):
        status, body, _ = await unix_api.call(
            "PATCH", url, json={"status": step}, headers=tenant_headers(t)
        )
        assert status == 200, body
        assert body["status"] == step
    status, body, _ = await unix_api.call(
        "PATCH",
        url,
        json={"status": "completed", "reason": "done", "hangup_cause": 16},
        headers=tenant_headers(t),
    )
    assert status == 200
    assert body["hangup_cause"] == 16
    assert body["end_reason"] == "done"
    assert body["talk_ms"] is not None
    assert body["ring_ms"] is not None

    status, err, _ = await unix_api.call(
        "PATCH", url, json={"status": "ringing"}, headers=tenant_headers(t)
    )
    assert status == 422
    _, detail, _ = await unix_api.call(
        "GET", f"{C2C}/sessions/{s['id']}", headers=tenant_headers(t)
    )
    assert [e["seq"] for e in detail["events"]] == [1, 2, 3, 4, 5, 6]
    assert detail["events"][-1]["status_from"] == "connected"


async def test_end_cancels_a_live_call_and_refuses_an_ended_one(
    api_engine: Engine, unix_api: Api
) -> None:
    t = (await new_tenant(api_engine.store)).slug
    _, s, _ = await unix_api.call(
        "POST", f"{C2C}/initiate", json=initiate_body(), headers=tenant_headers(t)
    )
    url = f"{C2C}/sessions/{s['id']}/end"
    status, body, _ = await unix_api.call(
        "POST", url, json={"reason": "agent left"}, headers=tenant_headers(t)
    )
    assert status == 200
    assert body["status"] == "canceled"
    assert body["end_reason"] == "agent left"
    assert body["ended_at"] is not None
    status, err, _ = await unix_api.call("POST", url, json={}, headers=tenant_headers(t))
    assert status == 409
    assert err["error"]["code"] == "conflict"


async def test_stats(api_engine: Engine, unix_api: Api) -> None:
    t = (await new_tenant(api_engine.store)).slug
    for _ in range(3):
        await unix_api.call(
            "POST", f"{C2C}/initiate", json=initiate_body(), headers=tenant_headers(t)
        )
    _, page, _ = await unix_api.call("GET", f"{C2C}/sessions", headers=tenant_headers(t))
    await unix_api.call(
        "POST", f"{C2C}/sessions/{page['items'][0]['id']}/end", json={}, headers=tenant_headers(t)
    )
    status, stats, _ = await unix_api.call("GET", f"{C2C}/stats", headers=tenant_headers(t))
    assert status == 200, stats
    assert stats["total"] == 3
    assert stats["live"] == 2
    assert stats["by_status"] == {"queued": 2, "canceled": 1}
    assert stats["connect_rate"] == 0.0
    status, _, _ = await unix_api.call("GET", f"{C2C}/stats", params={"created_after": "x"})
    assert status == 422


# -- providers --------------------------------------------------------------------------------


async def test_providers_create_list_get_and_default_selection(
    api_engine: Engine, unix_api: Api
) -> None:
    t = (await new_tenant(api_engine.store)).slug
    status, p, headers = await unix_api.call(
        "POST",
        "/api/v1/voip-providers",
        json={
            "name": "main",
            "provider_type": "sip_trunk",
            "is_default": True,
            "config": {"endpoint": "trunk"},
            "credentials": {"password": "s3cret"},
            "webhook_secret": "whsec-123456",
        },
        headers=tenant_headers(t),
    )
    assert status == 201, p
    assert p["has_credentials"] is True
    assert p["has_webhook_secret"] is True
    assert "credentials" not in p
    assert "s3cret" not in str(p)
    status, got, _ = await unix_api.call("GET", headers["Location"], headers=tenant_headers(t))
    assert status == 200
    assert got == p
    status, listing, _ = await unix_api.call(
        "GET", "/api/v1/voip-providers", headers=tenant_headers(t)
    )
    assert [x["id"] for x in listing["items"]] == [p["id"]]

    status, err, _ = await unix_api.call(
        "POST",
        "/api/v1/voip-providers",
        json={"name": "main", "provider_type": "twilio"},
        headers=tenant_headers(t),
    )
    assert status == 409
    status, err, _ = await unix_api.call(
        "POST",
        "/api/v1/voip-providers",
        json={"name": "x", "provider_type": "skype"},
        headers=tenant_headers(t),
    )
    assert status == 422
    assert err["error"]["details"][0]["field"] == "provider_type"

    _, s, _ = await unix_api.call(
        "POST", f"{C2C}/initiate", json=initiate_body(), headers=tenant_headers(t)
    )
    assert s["provider_id"] == p["id"]  # the tenant's default
    status, err, _ = await unix_api.call(
        "GET", f"/api/v1/voip-providers/{uuid.uuid4()}", headers=tenant_headers(t)
    )
    assert status == 404


# -- webhooks and agent activity ---------------------------------------------------------------


async def test_webhook_form_encoded_is_verified_logged_and_linked_to_its_session(
    api_engine: Engine, unix_api: Api
) -> None:
    """The seed path (the tenant's token): verified against the tenant's providers."""
    t = (await new_tenant(api_engine.store)).slug
    status, provider, _ = await unix_api.call(
        "POST",
        "/api/v1/voip-providers",
        json={
            "name": "tw",
            "provider_type": "twilio",
            "config": {"account_sid": "AC1", "webhook_base_url": "https://ctc.example"},
            "credentials": {"auth_token": "secret-token"},
        },
        headers=tenant_headers(t),
    )
    assert status == 201, provider
    _, s, _ = await unix_api.call(
        "POST",
        f"{C2C}/initiate",
        json={**initiate_body(), "provider_id": provider["id"]},
        headers=tenant_headers(t),
    )
    tenant = await api_engine.store.tenants.by_slug(t)
    await api_engine.store.sessions.append_event(
        tenant.id,
        uuid.UUID(s["id"]),
        "provider.call_created",
        changes={"provider_call_id": "CA1234567890abcdef"},
    )
    form = {"CallSid": "CA1234567890abcdef", "CallStatus": "ringing"}
    # Twilio was given the engine's public URL (the provider's webhook_base_url)
    signature = twilio_signature(
        "secret-token", "https://ctc.example/api/v1/webhooks/voip/twilio", form
    )
    status, body, _ = await unix_api.call(
        "POST",
        "/api/v1/webhooks/voip/twilio",
        data=form,
        headers=tenant_headers(t, **{"X-Twilio-Signature": signature}),
    )
    assert status == 202, body
    assert body["session_id"] == s["id"]
    assert body["provider_call_id"] == "CA1234567890abcdef"
    assert body["processing_status"] == "processed"

    status, err, _ = await unix_api.call(
        "POST",
        "/api/v1/webhooks/voip/twilio",
        data=form,
        headers=tenant_headers(t),
    )
    assert status == 401, err
    assert err["error"]["details"] == {"reason": "missing_signature"}
    status, err, _ = await unix_api.call(
        "POST",
        "/api/v1/webhooks/voip/vonage",
        json={"uuid": "unknown", "status": "answered"},
        headers=tenant_headers(t),
    )
    assert status == 401  # the tenant has no Vonage provider to verify against
    status, err, _ = await unix_api.call("POST", "/api/v1/webhooks/voip/skype", json={})
    assert status == 404
    status, err, _ = await unix_api.call(
        "POST",
        "/api/v1/webhooks/voip/exotel",
        data="{broken",
        headers={"Content-Type": "application/json"},
    )
    assert status == 400
    assert err["error"]["code"] == "invalid_json"


async def test_agent_activity(api_engine: Engine, unix_api: Api) -> None:
    status, body, _ = await unix_api.call(
        "POST", "/api/v1/agent-activity", json={"agent_id": "u-9", "activity": "available"}
    )
    assert status == 201, body
    assert body["activity"] == "available"
    status, err, _ = await unix_api.call(
        "POST", "/api/v1/agent-activity", json={"agent_id": "u-9", "activity": "napping"}
    )
    assert status == 422
    assert err["error"]["details"][0]["field"] == "activity"
    status, err, _ = await unix_api.call(
        "POST",
        "/api/v1/agent-activity",
        json={"agent_id": "u-9", "activity": "on_call", "session_id": str(uuid.uuid4())},
    )
    assert status == 404


# -- tenants and tokens -----------------------------------------------------------------------


async def test_a_tenant_never_sees_another_tenants_rows(api_engine: Engine, unix_api: Api) -> None:
    a, b = (await new_tenant(api_engine.store)).slug, (await new_tenant(api_engine.store)).slug
    _, s, _ = await unix_api.call(
        "POST", f"{C2C}/initiate", json=initiate_body(), headers=tenant_headers(a)
    )
    sid = s["id"]
    for method, path, body in [
        ("GET", f"{C2C}/sessions/{sid}", None),
        ("PATCH", f"{C2C}/sessions/{sid}/status", {"status": "canceled"}),
        ("POST", f"{C2C}/sessions/{sid}/end", {}),
    ]:
        status, _, _ = await unix_api.call(method, path, json=body, headers=tenant_headers(b))
        assert status == 404, (method, path)
    _, page, _ = await unix_api.call("GET", f"{C2C}/sessions", headers=tenant_headers(b))
    assert page["items"] == []
    _, stats, _ = await unix_api.call("GET", f"{C2C}/stats", headers=tenant_headers(b))
    assert stats["total"] == 0
    status, _err, _ = await unix_api.call(
        "GET", f"{C2C}/sessions", headers=tenant_headers("nobody")
    )
    assert status == 401


async def test_tcp_requires_a_valid_token_and_scopes_to_its_tenant(
    api_engine: Engine, tcp_api: Api, unix_api: Api
) -> None:
    a = (await new_tenant(api_engine.store)).slug
    issued = await api_engine.store.tenants.issue_token(a, "erp")
    good = bearer_headers(issued.token)

    for headers in (
        {},
        {"Authorization": "Bearer ctc_wrong"},
        {"Authorization": "Basic eDp5"},
        tenant_headers(a),
    ):
        status, err, _ = await tcp_api.call("GET", f"{C2C}/sessions", headers=headers)
        assert status == 401, headers
        assert err["error"]["code"] == "unauthorized"

    status, s, _ = await tcp_api.call("POST", f"{C2C}/initiate", json=initiate_body(), headers=good)
    assert status == 202
    _, page, _ = await tcp_api.call("GET", f"{C2C}/sessions", headers=good)
    assert [x["id"] for x in page["items"]] == [s["id"]]
    # the token also works on the socket, and decides the tenant there
    _, page, _ = await unix_api.call("GET", f"{C2C}/sessions", headers=good)
    assert [x["id"] for x in page["items"]] == [s["id"]]
    status, _, _ = await tcp_api.call("GET", "/healthz")
    assert status == 200

    conn = await asyncpg.connect(api_engine.settings.database.url)
    try:
        stored = await conn.fetchval("SELECT token_hash FROM api_token WHERE id = $1", issued.id)
    finally:
        await conn.close()
    assert stored != issued.token
    assert len(stored) == 64


# -- operations -------------------------------------------------------------------------------


async def test_health_ready_metrics(unix_api: Api) -> None:
    status, body, _ = await unix_api.call("GET", "/healthz")
    assert status == 200
    assert body["components"]["database"]["state"] == "up"
    status, body, _ = await unix_api.call("GET", "/readyz")
    assert status == 200
    assert body["status"] == "ok"
    status, _, _ = await unix_api.call("GET", "/nope")
    assert status == 404


async def test_metrics_are_prometheus_text(api_engine: Engine) -> None:
    import aiohttp

    connector = aiohttp.UnixConnector(path=str(api_engine.settings.api.socket))
    async with (
        aiohttp.ClientSession(connector=connector) as session,
        session.get("http://ctc/metrics") as resp,
    ):
        text = await resp.text()
        assert resp.status == 200
        assert resp.content_type == "text/plain"
    assert "ctc_http_requests_total" in text


async def test_unknown_route_and_wrong_method_are_json(unix_api: Api) -> None:
    status, err, _ = await unix_api.call("GET", "/api/v1/nothing-here")
    assert status == 404
    assert err["error"]["code"] == "not_found"
    status, err, _ = await unix_api.call("DELETE", f"{C2C}/initiate")
    assert status == 405
    assert err["error"]["code"] == "method_not_allowed"


async def test_openapi_is_valid_and_covers_every_route(api_engine: Engine, unix_api: Api) -> None:
    from openapi_spec_validator import validate

    status, doc, _ = await unix_api.call("GET", "/api/v1/openapi.json")
    assert status == 200
    validate(doc)
    served = {(r.method, r.resource.canonical) for r in _routes(api_engine) if r.method != "HEAD"}
    documented = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
    assert served == documented
    initiate = doc["paths"][f"{C2C}/initiate"]["post"]
    schema = doc["components"]["schemas"][
        initiate["requestBody"]["content"]["application/json"]["schema"]["$ref"].split("/")[-1]
    ]
    assert schema["additionalProperties"] is False
    assert set(schema["required"]) == {"agent_number", "customer_number"}


def _routes(engine: Engine) -> list[Any]:
    from engine.api.server import build_app

    return list(build_app(engine.state, local=True).router.routes())


async def test_call_event_is_append_only(api_engine: Engine, unix_api: Api) -> None:
    await unix_api.call("POST", f"{C2C}/initiate", json=initiate_body())
    conn = await asyncpg.connect(api_engine.settings.database.url)
    try:
        with pytest.raises(asyncpg.RestrictViolationError, match="append-only"):
            await conn.execute("UPDATE call_event SET event_type = 'x'")
        with pytest.raises(asyncpg.RestrictViolationError, match="append-only"):
            await conn.execute("DELETE FROM call_event")
        # deleting a whole tenant still cascades through its history
        slug = f"gone{uuid.uuid4().hex[:8]}"
        await api_engine.store.tenants.create(slug, "gone")
        await unix_api.call(
            "POST", f"{C2C}/initiate", json=initiate_body(), headers=tenant_headers(slug)
        )
        await conn.execute("DELETE FROM tenant WHERE slug = $1", slug)
    finally:
        await conn.close()


async def test_transition_writes_the_callback_outbox_in_the_same_transaction(
    api_engine: Engine, unix_api: Api
) -> None:
    slug = f"cb{uuid.uuid4().hex[:8]}"
    await api_engine.store.tenants.create(
        slug, "cb", "http://127.0.0.1:9/hook", allow_cidrs=("127.0.0.1/32",)
    )
    _, s, _ = await unix_api.call(
        "POST", f"{C2C}/initiate", json=initiate_body(), headers=tenant_headers(slug)
    )
    await unix_api.call(
        "POST", f"{C2C}/sessions/{s['id']}/end", json={}, headers=tenant_headers(slug)
    )
    conn = await asyncpg.connect(api_engine.settings.database.url)
    try:
        rows = await conn.fetch(
            "SELECT o.url, o.payload->>'status' AS status, e.seq FROM callback_outbox o "
            "JOIN call_event e ON e.id = o.event_id WHERE o.session_id = $1 ORDER BY o.id",
            uuid.UUID(s["id"]),
        )
    finally:
        await conn.close()
    assert [(r["url"], r["status"], r["seq"]) for r in rows] == [
        ("http://127.0.0.1:9/hook", "queued", 1),  # the creation, with the row
        ("http://127.0.0.1:9/hook", "canceled", 2),
    ]
