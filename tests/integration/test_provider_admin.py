"""Providers as data: the API's CRUD of ``/api/v1/voip-providers`` (PATCH priority, weight,
default, active, config and credential references; DELETE deletes an unused provider and
disables one calls name) and ``ctc provider add|list|disable``; credentials never returned,
bad input named by field; an initiate over the API placed through the carrier."""

from __future__ import annotations

import uuid

from engine.daemon import Engine
from tests.integration.conftest import SECRET_KEY
from tests.support.calls import initiate_body
from tests.support.carriers import Carrier
from tests.support.cli import run_ctc
from tests.support.http import Api
from tests.support.tenants import new_tenant, tenant_headers

API = "/api/v1/voip-providers"


async def test_patch_and_delete_over_the_api(api_engine: Engine, unix_api: Api) -> None:
    t = (await new_tenant(api_engine.store)).slug
    headers = tenant_headers(t)
    made = []
    for name in ("a", "b"):
        status, p, _ = await unix_api.call(
            "POST",
            API,
            json={"name": name, "provider_type": "twilio", "credentials": {"x": "env:X"}},
            headers=headers,
        )
        assert status == 201, p
        assert p["weight"] == 1
        made.append(p)
    a, b = made
    status, p, _ = await unix_api.call(
        "PATCH",
        f"{API}/{a['id']}",
        json={
            "priority": 5,
            "weight": 3,
            "is_default": True,
            "max_concurrent_calls": 4,
            "config": {"account_sid": "AC1"},
            "credentials": {"auth_token": "file:/run/secrets/twilio"},
        },
        headers=headers,
    )
    assert status == 200, p
    assert (p["priority"], p["weight"], p["is_default"], p["max_concurrent_calls"]) == (
        5,
        3,
        True,
        4,
    )
    assert p["config"] == {"account_sid": "AC1"}
    assert "/run/secrets" not in str(p)  # credentials, even references, are never returned
    # a new default takes the old one's place
    status, p, _ = await unix_api.call(
        "PATCH", f"{API}/{b['id']}", json={"is_default": True}, headers=headers
    )
    assert p["is_default"] is True
    _, got, _ = await unix_api.call("GET", f"{API}/{a['id']}", headers=headers)
    assert got["is_default"] is False
    # bad input, named by field
    status, err, _ = await unix_api.call(
        "PATCH", f"{API}/{a['id']}", json={"weight": -1}, headers=headers
    )
    assert status == 422
    assert err["error"]["details"][0]["field"] == "weight"
    status, err, _ = await unix_api.call(
        "PATCH",
        f"{API}/{a['id']}",
        json={"credentials": {"auth_token": "env:not a name"}},
        headers=headers,
    )
    assert status == 422, err
    assert "credentials.auth_token" in str(err)
    assert "not a name" not in str(err)
    # another tenant's provider is not found
    other = (await new_tenant(api_engine.store)).slug
    status, _, _ = await unix_api.call(
        "PATCH", f"{API}/{a['id']}", json={"weight": 2}, headers=tenant_headers(other)
    )
    assert status == 404
    # DELETE: a provider a session names is disabled; an unused one deleted
    status, session, _ = await unix_api.call(
        "POST",
        "/api/v1/click-to-call/initiate",
        json={**initiate_body(), "provider_id": a["id"]},
        headers=headers,
    )
    assert status in (200, 201, 202), session
    await api_engine.dialer.drain()  # its placement fails: the row has no usable config
    status, removed, _ = await unix_api.call("DELETE", f"{API}/{a['id']}", headers=headers)
    assert (status, removed["outcome"]) == (200, "disabled")
    _, got, _ = await unix_api.call("GET", f"{API}/{a['id']}", headers=headers)
    assert (got["is_active"], got["is_default"]) == (False, False)
    status, removed, _ = await unix_api.call("DELETE", f"{API}/{b['id']}", headers=headers)
    assert (status, removed["outcome"]) == (200, "deleted")
    status, _, _ = await unix_api.call("GET", f"{API}/{b['id']}", headers=headers)
    assert status == 404
    status, _, _ = await unix_api.call("DELETE", f"{API}/{uuid.uuid4()}", headers=headers)
    assert status == 404


async def test_initiate_over_the_api_is_placed_through_the_carrier(
    twilio: Carrier, unix_api: Api
) -> None:
    headers = tenant_headers(twilio.tenant.slug)
    status, body, _ = await unix_api.call(
        "POST",
        "/api/v1/click-to-call/initiate",
        json={**initiate_body(), "provider_id": str(twilio.provider.id)},
        headers=headers,
    )
    assert status in (200, 201, 202), body
    await twilio.engine.dialer.drain()
    [call] = twilio.fake.calls.values()
    session = await twilio.engine.store.sessions.get(twilio.tenant.id, uuid.UUID(body["id"]))
    assert session.provider_call_id == call.call_id
    # ended over the API: hung up at the carrier
    status, ended, _ = await unix_api.call(
        "POST", f"/api/v1/click-to-call/sessions/{body['id']}/end", json={}, headers=headers
    )
    assert status == 200, ended
    assert ended["status"] == "canceled"
    assert call.status == "completed"


async def test_cli_add_list_disable(api_engine: Engine, cli_env: dict[str, str]) -> None:
    tenant = await new_tenant(api_engine.store)
    env = {**cli_env, "CTC_SECRET_KEY": SECRET_KEY}
    code, out, err = await run_ctc(
        "provider",
        "add",
        "tw",
        "--type",
        "twilio",
        "--tenant",
        tenant.slug,
        "--priority",
        "10",
        "--weight",
        "2",
        "--default",
        "--config",
        "account_sid=AC123",
        "--config",
        "timeout_s=5",
        "--credential",
        "auth_token=env:TWILIO_TOKEN",
        env=env,
    )
    assert code == 0, err
    assert out.startswith("provider tw ")
    [stored] = await api_engine.store.providers.all(tenant.id)
    assert stored.config == {"account_sid": "AC123", "timeout_s": 5}
    secrets = await api_engine.store.providers.secrets(tenant.id, stored.id)
    assert secrets.credentials == {"auth_token": "env:TWILIO_TOKEN"}  # the reference
    # a secret typed on the command line is refused, naming the option
    code, out, err = await run_ctc(
        "provider",
        "add",
        "x",
        "--type",
        "twilio",
        "--tenant",
        tenant.slug,
        "--credential",
        "auth_token=s3cret-value",
        env=env,
    )
    assert code == 2
    assert "--credential" in err
    assert "s3cret-value" not in err
    code, out, err = await run_ctc("provider", "list", "--tenant", tenant.slug, env=env)
    assert code == 0, err
    assert out.splitlines()[1].split("\t") == [
        "tw",
        "twilio",
        "yes",
        "yes",
        "10",
        "2",
        "-",
        "set",
    ]
    code, out, err = await run_ctc("provider", "disable", "tw", "--tenant", tenant.slug, env=env)
    assert (code, out.strip()) == (0, "provider tw disabled"), err
    [stored] = await api_engine.store.providers.all(tenant.id)
    assert (stored.is_active, stored.is_default) == (False, False)
