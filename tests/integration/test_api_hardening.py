"""Inputs an outside probe sent to the control API (over TCP, with a real token): each is a
4xx in the error shape naming what was wrong, never a 500; the document lists every status.

The body rules live in one decoding step (engine/api/endpoints.py): media type and charset,
strict UTF-8, bounded JSON nesting, then text and numbers PostgreSQL can store.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from engine.api import sse
from engine.api.sse import StreamLimits
from engine.daemon import Engine
from tests.support.calls import initiate_body
from tests.support.http import Api
from tests.support.net import backlog_burst, connected_at_once
from tests.support.tenants import bearer_headers, new_token

C2C = "/api/v1/click-to-call"
INITIATE = f"{C2C}/initiate"
EVENTS = "/api/v1/events"
JSON = {"Content-Type": "application/json"}
WAIT = 20.0


@pytest.fixture
async def auth(api_engine: Engine) -> dict[str, str]:
    return bearer_headers(await new_token(api_engine.store))


async def _raw(
    tcp_api: Api, method: str, path: str, body: bytes | str, headers: dict[str, str]
) -> tuple[int, Any, dict[str, str]]:
    return await tcp_api.call(method, path, data=body, headers=headers)


def _error(body: Any, code: str) -> list[dict[str, str]]:
    """The error's details, after checking its shape and code."""
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "message", "details"}, body
    assert body["error"]["code"] == code, body
    details: list[dict[str, str]] = body["error"]["details"] or []
    return details


def _fields(body: Any) -> set[str]:
    return {d["field"] for d in _error(body, "validation_error")}


# -- the body: media type, charset, encoding, nesting -----------------------------------------


async def test_a_body_that_is_not_utf8_is_400_invalid_encoding(
    tcp_api: Api, auth: dict[str, str]
) -> None:
    body = b'{"agent_number": "1001", "customer_number": "+1415555\xff0100"}'
    status, err, _ = await _raw(tcp_api, "POST", INITIATE, body, {**auth, **JSON})
    assert status == 400, err
    assert _error(err, "invalid_encoding") == [{"field": "body", "message": "must be UTF-8"}]
    offset = body.index(b"\xff")
    assert f"invalid byte at offset {offset}" in err["error"]["message"]


async def test_a_form_webhook_that_is_not_utf8_is_400_invalid_encoding(
    tcp_api: Api, auth: dict[str, str]
) -> None:
    form = {**auth, "Content-Type": "application/x-www-form-urlencoded"}
    for body in (b"CallSid=CA1&CallStatus=\xe9", b"CallSid=CA1&CallStatus=%E9"):
        status, err, _ = await _raw(tcp_api, "POST", "/api/v1/webhooks/voip/twilio", body, form)
        assert status == 400, (body, err)
        _error(err, "invalid_encoding")


async def test_a_charset_other_than_utf8_is_415_naming_content_type(
    tcp_api: Api, auth: dict[str, str]
) -> None:
    body = json.dumps(initiate_body())
    for charset in ("bogus-charset-x", "latin-1", "utf-16"):
        headers = {**auth, "Content-Type": f"application/json; charset={charset}"}
        status, err, _ = await _raw(tcp_api, "POST", INITIATE, body, headers)
        assert status == 415, (charset, err)
        assert _error(err, "unsupported_media_type")[0]["field"] == "Content-Type"
        assert charset in err["error"]["message"]
    headers = {**auth, "Content-Type": "application/x-www-form-urlencoded; charset=nope"}
    status, err, _ = await _raw(tcp_api, "POST", "/api/v1/webhooks/voip/twilio", "a=b", headers)
    assert status == 415, err
    # UTF-8 named in any spelling is fine
    headers = {**auth, "Content-Type": "application/json; charset=UTF-8"}
    status, err, _ = await _raw(tcp_api, "POST", INITIATE, body, headers)
    assert status == 202, err


async def test_json_sent_as_text_plain_is_415_and_no_content_type_is_read_as_json(
    api_engine: Engine, tcp_api: Api, auth: dict[str, str]
) -> None:
    body = json.dumps(initiate_body())
    for path, method in ((INITIATE, "POST"), ("/api/v1/ivr-menus/m1", "PUT")):
        headers = {**auth, "Content-Type": "text/plain"}
        status, err, _ = await _raw(tcp_api, method, path, body, headers)
        assert status == 415, (path, err)
        details = _error(err, "unsupported_media_type")
        assert details == [{"field": "Content-Type", "message": "expected application/json"}]
    status, err, _ = await _raw(
        tcp_api, "POST", "/api/v1/webhooks/voip/twilio", "{}", {**auth, "Content-Type": "text/xml"}
    )
    assert status == 415, err
    # a hand-written client that sends no Content-Type at all still gets its JSON read
    async with (
        aiohttp.ClientSession(skip_auto_headers=["Content-Type"]) as session,
        session.post(
            f"http://127.0.0.1:{api_engine.api.tcp_port}{INITIATE}",
            data=body.encode(),
            headers=auth,
        ) as resp,
    ):
        assert resp.status == 202, await resp.text()


async def test_json_nested_deeper_than_32_levels_is_400_naming_where(
    tcp_api: Api, auth: dict[str, str]
) -> None:
    # ~6,000 levels: past Python's recursion limit, still under the body limit
    deep = '{"agent_number": "1001", "customer_number": "+14155550100", "metadata": {"a": '
    deep += "[" * 6000 + "]" * 6000 + "}}"
    status, err, _ = await _raw(tcp_api, "POST", INITIATE, deep, {**auth, **JSON})
    assert status == 400, err
    assert _error(err, "invalid_json")[0]["field"] == "body"
    assert "32 levels" in err["error"]["message"]
    # past the limit but not past Python's: the field where it went too deep
    nested: Any = 1
    for _ in range(40):
        nested = [nested]
    status, err, _ = await tcp_api.call(
        "POST", INITIATE, json=initiate_body(metadata={"a": nested}), headers=auth
    )
    assert status == 400, err
    field = _error(err, "invalid_json")[0]["field"]
    assert field.startswith("metadata.a.0.0."), field
    # 30 levels is fine
    nested = 1
    for _ in range(28):
        nested = [nested]
    status, err, _ = await tcp_api.call(
        "POST", INITIATE, json=initiate_body(metadata={"a": nested}), headers=auth
    )
    assert status == 202, err


# -- text PostgreSQL cannot store -------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "body", "field"),
    [
        ("POST", INITIATE, initiate_body(external_ref="lead\u00007"), "external_ref"),
        ("POST", INITIATE, initiate_body(agent_id="a\u0000"), "agent_id"),
        ("POST", INITIATE, initiate_body(metadata={"note": "x\u0000y"}), "metadata.note"),
        ("POST", INITIATE, initiate_body(metadata={"k\u0000": 1}), "metadata.k\\u0000"),
        ("POST", INITIATE, initiate_body(metadata={"l": ["ok", "\u0000"]}), "metadata.l.1"),
        (
            "POST",
            "/api/v1/voip-providers",
            {"name": "carrier\u0000", "provider_type": "twilio"},
            "name",
        ),
        (
            "POST",
            "/api/v1/voip-providers",
            {"name": "c", "provider_type": "twilio", "config": {"a": "\u0000"}},
            "config.a",
        ),
        (
            "POST",
            "/api/v1/agent-activity",
            {"agent_id": "ag\u0000", "activity": "login"},
            "agent_id",
        ),
        ("PUT", "/api/v1/ivr-menus/m0", {"greeting": "hi\u0000"}, "greeting"),
        ("POST", "/api/v1/webhooks/voip/twilio", {"CallSid": "\u0000"}, "CallSid"),
        (
            "PATCH",
            f"{C2C}/sessions/{uuid.uuid4()}/status",
            {"status": "x", "reason": "\u0000"},
            "reason",
        ),
    ],
)
async def test_nul_in_any_stored_text_is_422_naming_the_field(
    tcp_api: Api, auth: dict[str, str], method: str, path: str, body: Any, field: str
) -> None:
    status, err, _ = await tcp_api.call(method, path, json=body, headers=auth)
    assert status == 422, err
    assert field in _fields(err), err
    assert "NUL" in json.dumps(err)


async def test_nul_in_a_form_webhook_is_422_naming_the_field(
    tcp_api: Api, auth: dict[str, str]
) -> None:
    status, err, _ = await tcp_api.call(
        "POST", "/api/v1/webhooks/voip/twilio", data={"CallSid": "CA\x001"}, headers=auth
    )
    assert status == 422, err
    assert _fields(err) == {"CallSid"}


@pytest.mark.parametrize(
    ("path", "params"),
    [
        (f"{C2C}/sessions", {"external_ref": "a\x00b"}),
        (f"{C2C}/sessions", {"agent_id": "\x00"}),
        (f"{C2C}/sessions", {"cursor": "\x00"}),
        (f"{C2C}/stats", {"agent_id": "x\x00"}),
    ],
)
async def test_nul_in_a_list_filter_is_422_naming_the_parameter(
    tcp_api: Api, auth: dict[str, str], path: str, params: dict[str, str]
) -> None:
    status, err, _ = await tcp_api.call("GET", path, params=params, headers=auth)
    assert status == 422, err
    assert _fields(err) == set(params)


async def test_nul_in_a_path_name_is_404(tcp_api: Api, auth: dict[str, str]) -> None:
    status, err, _ = await tcp_api.call("GET", "/api/v1/ivr-menus/a%00b", headers=auth)
    assert status == 404, err
    _error(err, "not_found")


async def test_a_lone_surrogate_is_422_naming_the_field(tcp_api: Api, auth: dict[str, str]) -> None:
    # as JSON escapes (valid JSON text, but not Unicode that UTF-8 can carry)
    cases = [
        (
            '{"agent_number": "1001", "customer_number": "+14155550100", '
            '"external_ref": "\\ud800"}',
            "external_ref",
        ),
        (
            '{"agent_number": "1001", "customer_number": "+14155550100", '
            '"metadata": {"x": "a\\udfff"}}',
            "metadata.x",
        ),
        ('{"agent_id": "a", "activity": "login", "details": {"\\ud800": 1}}', "details.\\ud800"),
    ]
    for body, field in cases:
        path = INITIATE if "customer_number" in body else "/api/v1/agent-activity"
        status, err, _ = await _raw(tcp_api, "POST", path, body, {**auth, **JSON})
        assert status == 422, (body, err)
        assert field in _fields(err), err
        assert "surrogate" in json.dumps(err)


async def test_characters_beyond_the_bmp_escaped_in_a_menu_are_stored_as_sent(
    tcp_api: Api, auth: dict[str, str]
) -> None:
    """The menu body is read by the YAML loader, which decodes a JSON surrogate pair escape
    half by half: the pair must reach PostgreSQL as the one character it stands for."""
    body = (
        '{"greeting": "hello-world", "description": "ok \\ud83d\\ude00 \\\\ud83d '
        '\u00e9\U0001f600", "options": {"1": {"action": "hangup"}}}'
    )
    status, menu, _ = await _raw(tcp_api, "PUT", "/api/v1/ivr-menus/emoji", body, {**auth, **JSON})
    assert status == 201, menu
    assert menu["menu"]["description"] == "ok \U0001f600 \\ud83d \u00e9\U0001f600"
    status, again, _ = await _raw(tcp_api, "GET", "/api/v1/ivr-menus/emoji", "", auth)
    assert (status, again["menu"]) == (200, menu["menu"])


async def _raw_http(
    engine: Engine, head: bytes, body: bytes = b"", *, unix: bool = False
) -> tuple[int, Any]:
    """One request written byte for byte (clients refuse to send headers that are not
    UTF-8), over TCP or the Unix socket; the status and the JSON body."""
    if unix:
        reader, writer = await asyncio.open_unix_connection(str(engine.settings.api.socket))
    else:
        reader, writer = await asyncio.open_connection("127.0.0.1", engine.api.tcp_port)
    try:
        writer.write(head + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode())
        writer.write(body)
        async with asyncio.timeout(WAIT):
            answer = await reader.read()
    finally:
        writer.close()
    status_line, _, rest = answer.partition(b"\r\n")
    return int(status_line.split()[1]), json.loads(rest.partition(b"\r\n\r\n")[2])


async def test_a_token_or_tenant_header_that_is_not_utf8_is_401(api_engine: Engine) -> None:
    get = b"GET /api/v1/voip-providers HTTP/1.1\r\nHost: x\r\n"
    status, err = await _raw_http(api_engine, get + b"Authorization: Bearer ctc_\xff\xfe\r\n")
    assert status == 401, err
    _error(err, "unauthorized")
    status, err = await _raw_http(api_engine, get + b"X-CTC-Tenant: de\xfffault\r\n", unix=True)
    assert status == 401, err
    _error(err, "unauthorized")


async def test_a_header_that_is_not_utf8_is_422_or_stored_readably(
    api_engine: Engine, auth: dict[str, str]
) -> None:
    token = auth["Authorization"].encode()
    body = json.dumps(initiate_body()).encode()
    status, err = await _raw_http(
        api_engine,
        b"POST "
        + INITIATE.encode()
        + b" HTTP/1.1\r\nHost: x\r\nAuthorization: "
        + token
        + b"\r\nContent-Type: application/json\r\nIdempotency-Key: k\xff\r\n",
        body,
    )
    assert status == 422, err
    assert _fields(err) == {"Idempotency-Key"}
    status, ok = await _raw_http(
        api_engine,
        b"POST /api/v1/webhooks/voip/twilio HTTP/1.1\r\nHost: x\r\nAuthorization: "
        + token
        + b"\r\nContent-Type: application/json\r\nUser-Agent: carrier\xff\r\n",
        b'{"CallSid": "CA9"}',
    )
    # unsigned, so refused; but logged, with the header stored readably (not a 500)
    assert status == 401, ok
    row = await api_engine.store.db.fetchrow(
        "SELECT headers FROM click_to_call_webhook_log WHERE payload->>'CallSid' = 'CA9' "
        "ORDER BY id DESC LIMIT 1"
    )
    assert row is not None
    assert row["headers"]["User-Agent"] == "carrier\\udcff"


# -- numbers ----------------------------------------------------------------------------------


def _with_metadata_n(literal: str) -> str:
    """A call whose ``metadata.n`` is ``literal`` as written (json.dumps would refuse some)."""
    return json.dumps(initiate_body())[:-1] + f', "metadata": {{"n": {literal}}}}}'


@pytest.mark.parametrize(
    ("number", "field"),
    [
        ("1e400", "metadata.n"),
        ("-1e400", "metadata.n"),
        ("1" * 5000, "metadata.n"),
        ("-" + "9" * 30, "metadata.n"),
        ("[1, 99999999999999999999]", "metadata.n.1"),
    ],
)
async def test_a_number_out_of_range_in_metadata_is_422_naming_it(
    tcp_api: Api, auth: dict[str, str], number: str, field: str
) -> None:
    body = _with_metadata_n(number)
    status, err, _ = await _raw(tcp_api, "POST", INITIATE, body, {**auth, **JSON})
    assert status == 422, err
    assert _fields(err) == {field}
    assert "out of range" in json.dumps(err)


async def test_nan_and_infinity_literals_are_not_json(tcp_api: Api, auth: dict[str, str]) -> None:
    for literal in ("NaN", "Infinity", "-Infinity"):
        body = _with_metadata_n(literal)
        status, err, _ = await _raw(tcp_api, "POST", INITIATE, body, {**auth, **JSON})
        assert status == 400, (literal, err)
        _error(err, "invalid_json")


async def test_64_bit_integers_and_large_finite_floats_are_stored(
    tcp_api: Api, auth: dict[str, str]
) -> None:
    metadata = {"max": 2**63 - 1, "min": -(2**63), "big": 1.5e300}
    status, body, _ = await tcp_api.call(
        "POST", INITIATE, json=initiate_body(metadata=metadata), headers=auth
    )
    assert status == 202, body
    # PostgreSQL's jsonb writes a large float out in full: the same number, as an integer
    assert body["metadata"]["max"] == 2**63 - 1
    assert body["metadata"]["min"] == -(2**63)
    assert float(body["metadata"]["big"]) == 1.5e300


_TRUNK = {"config": {"endpoint": "trunk"}}  # what a sip_trunk provider needs


async def test_calls_per_second_below_a_hundredth_is_422_not_a_database_error(
    tcp_api: Api, auth: dict[str, str]
) -> None:
    # the column keeps 2 decimals: 0.001 would be stored as 0 and fail its CHECK
    for value in (0.001, 0.0049):
        status, err, _ = await tcp_api.call(
            "POST",
            "/api/v1/voip-providers",
            json={
                "name": "slow",
                "provider_type": "sip_trunk",
                "calls_per_second": value,
                **_TRUNK,
            },
            headers=auth,
        )
        assert status == 422, (value, err)
        assert _fields(err) == {"calls_per_second"}
    status, err, _ = await tcp_api.call(
        "POST",
        "/api/v1/voip-providers",
        json={
            "name": "big",
            "provider_type": "sip_trunk",
            "max_concurrent_calls": 2**31,
            **_TRUNK,
        },
        headers=auth,
    )
    assert status == 422, err
    assert _fields(err) == {"max_concurrent_calls"}
    status, body, _ = await tcp_api.call(
        "POST",
        "/api/v1/voip-providers",
        json={"name": "ok", "provider_type": "sip_trunk", "calls_per_second": 0.01, **_TRUNK},
        headers=auth,
    )
    assert status == 201, body
    assert body["calls_per_second"] == 0.01


@pytest.mark.parametrize(
    "when",
    ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00Z"],
)
async def test_a_time_the_database_cannot_store_as_utc_is_422_naming_it(
    tcp_api: Api, auth: dict[str, str], when: str
) -> None:
    status, err, _ = await tcp_api.call(
        "POST",
        "/api/v1/agent-activity",
        json={"agent_id": "a1", "activity": "login", "occurred_at": when},
        headers=auth,
    )
    assert status == 422, err
    assert _fields(err) == {"occurred_at"}
    for path in (f"{C2C}/sessions", f"{C2C}/stats"):
        status, err, _ = await tcp_api.call(
            "GET", path, params={"created_after": when}, headers=auth
        )
        assert status == 422, (path, err)
        assert _fields(err) == {"created_after"}


async def test_an_ivr_menu_variable_must_be_a_name_even_without_input(
    tcp_api: Api, auth: dict[str, str]
) -> None:
    status, err, _ = await tcp_api.call(
        "PUT",
        "/api/v1/ivr-menus/v1",
        json={"variable": "\u008a<", "options": {"1": {"action": "hangup"}}},
        headers=auth,
    )
    assert status == 422, err
    assert _fields(err) == {"variable"}


# -- methods and the document -----------------------------------------------------------------


async def test_405_names_the_allowed_methods_in_allow(tcp_api: Api, auth: dict[str, str]) -> None:
    status, err, headers = await tcp_api.call("DELETE", INITIATE, headers=auth)
    assert status == 405, err
    assert headers["Allow"] == "POST"
    assert _error(err, "method_not_allowed") is not None
    status, err, headers = await tcp_api.call("POST", "/api/v1/ivr-menus/m", headers=auth)
    assert status == 405
    assert set(headers["Allow"].split(", ")) == {"DELETE", "GET", "PUT"}


async def test_every_operation_documents_the_errors_its_kind_can_give(tcp_api: Api) -> None:
    status, doc, _ = await tcp_api.call("GET", "/api/v1/openapi.json")
    assert status == 200
    error_ref = {"$ref": "#/components/schemas/ErrorOut"}
    for path, operations in doc["paths"].items():
        for method, op in operations.items():
            where = f"{method.upper()} {path}"
            expected: set[str] = set()
            if op.get("security"):
                expected |= {"401", "503"}
            if "requestBody" in op:
                expected |= {"400", "413", "415", "422"}
            # a $ref parameter is the shared X-CTC-Tenant header: an unknown tenant is 401
            if any(p.get("in") in ("query", "header") for p in op.get("parameters", [])):
                expected.add("422")
            if "{" in path:
                expected.add("404")
            assert expected <= set(op["responses"]), (where, expected - set(op["responses"]))
            for code in expected:
                content = op["responses"][code]["content"]
                assert content == {"application/json": {"schema": error_ref}}, (where, code)
    events = doc["paths"][EVENTS]["get"]["responses"]
    assert "429" in events
    sse_schema = events["200"]["content"]["text/event-stream"]["schema"]
    assert sse_schema["properties"]["data"]["contentSchema"] == {
        "$ref": "#/components/schemas/StreamEventOut"
    }


async def test_a_streamed_event_matches_its_documented_schema(
    api_engine: Engine, tcp_api: Api, auth: dict[str, str]
) -> None:
    from jsonschema import Draft202012Validator

    _, doc, _ = await tcp_api.call("GET", "/api/v1/openapi.json")
    status, call, _ = await tcp_api.call("POST", INITIATE, json=initiate_body(), headers=auth)
    assert status == 202, call
    base = f"http://127.0.0.1:{api_engine.api.tcp_port}"
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None)) as session,
        session.get(f"{base}{EVENTS}", params={"after": "0"}, headers=auth) as resp,
    ):
        assert resp.status == 200, await resp.text()
        message: dict[str, Any] = {}
        async with asyncio.timeout(WAIT):
            while "data" not in message:  # id and event come before data
                line = (await resp.content.readline()).decode().rstrip("\n")
                name, _, value = line.partition(": ")
                if name in ("id", "event", "data"):
                    message[name] = value
    envelope = doc["paths"][EVENTS]["get"]["responses"]["200"]["content"]["text/event-stream"]
    Draft202012Validator(envelope["schema"]).validate(message)
    data = {"$ref": "#/components/schemas/StreamEventOut", "components": doc["components"]}
    Draft202012Validator(data).validate(json.loads(message["data"]))


# -- event stream caps ------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def _stream(
    session: aiohttp.ClientSession, base: str, auth: dict[str, str]
) -> AsyncIterator[aiohttp.ClientResponse]:
    """An open stream, once the engine has taken its place (its ``retry:`` line arrived)."""
    async with session.get(f"{base}{EVENTS}", headers=auth) as resp:
        assert resp.status == 200, await resp.text()
        async with asyncio.timeout(WAIT):
            assert (await resp.content.readline()).startswith(b"retry:")
        yield resp


def test_the_stream_caps_come_from_the_api_settings(api_engine: Engine) -> None:
    api = api_engine.settings.api
    assert (api.max_event_streams_per_tenant, api.max_event_streams) == (20, 200)
    limits = api_engine.state.streams
    assert (limits.per_tenant, limits.total) == (20, 200)


class _WatchedLimits(StreamLimits):
    """The engine's limits, telling the test when no stream holds a place any more."""

    def __init__(self, *, per_tenant: int, total: int) -> None:
        super().__init__(per_tenant=per_tenant, total=total)
        self.all_free = asyncio.Event()

    def release(self, tenant_id: uuid.UUID) -> None:
        super().release(tenant_id)
        if not len(self):
            self.all_free.set()


@pytest.fixture
def small_caps(api_engine: Engine, monkeypatch: pytest.MonkeyPatch) -> _WatchedLimits:
    limits = _WatchedLimits(per_tenant=2, total=3)
    monkeypatch.setattr(api_engine.state, "streams", limits)
    return limits


async def _refused(session: aiohttp.ClientSession, base: str, auth: dict[str, str]) -> Any:
    async with session.get(f"{base}{EVENTS}", headers=auth) as resp:
        assert resp.status == 429, await resp.text()
        assert resp.headers["Retry-After"] == str(sse.CAPPED_RETRY_AFTER_S)
        return await resp.json()


async def test_event_streams_past_the_tenant_cap_or_the_global_cap_are_429_with_retry_after(
    api_engine: Engine, small_caps: _WatchedLimits
) -> None:
    base = f"http://127.0.0.1:{api_engine.api.tcp_port}"
    a, b, c = [bearer_headers(await new_token(api_engine.store)) for _ in range(3)]
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None)) as session,
        contextlib.AsyncExitStack() as streams,
    ):
        await streams.enter_async_context(_stream(session, base, a))
        await streams.enter_async_context(_stream(session, base, a))
        err = await _refused(session, base, a)
        _error(err, "too_many_streams")
        assert err["error"]["details"] == {"scope": "tenant", "limit": 2}
        await streams.enter_async_context(_stream(session, base, b))
        err = await _refused(session, base, c)
        assert err["error"]["details"] == {"scope": "global", "limit": 3}
        assert len(small_caps) == 3


async def test_a_closed_stream_frees_its_place(
    api_engine: Engine, small_caps: _WatchedLimits, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the engine notices a client went away at its next write (a keepalive)
    monkeypatch.setattr(sse, "KEEPALIVE", 0.05)
    base = f"http://127.0.0.1:{api_engine.api.tcp_port}"
    auth = bearer_headers(await new_token(api_engine.store))
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None)) as session:
        async with _stream(session, base, auth), _stream(session, base, auth):
            await _refused(session, base, auth)
        async with asyncio.timeout(WAIT):
            await small_caps.all_free.wait()
        async with _stream(session, base, auth), _stream(session, base, auth):
            pass


async def test_refused_streams_are_counted_in_metrics(
    api_engine: Engine, small_caps: _WatchedLimits
) -> None:
    base = f"http://127.0.0.1:{api_engine.api.tcp_port}"
    auth = bearer_headers(await new_token(api_engine.store))
    registry = api_engine.metrics.registry

    def refused() -> float:
        value = registry.get_sample_value("ctc_event_streams_refused_total", {"scope": "tenant"})
        return value or 0.0  # None until the first refusal

    before = refused()
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None)) as session,
        _stream(session, base, auth),
        _stream(session, base, auth),
    ):
        assert (registry.get_sample_value("ctc_event_streams") or 0.0) >= 2
        await _refused(session, base, auth)
        async with session.get(f"{base}/metrics", headers=auth) as resp:
            text = await resp.text()
    assert refused() == before + 1
    assert 'ctc_event_streams_refused_total{scope="tenant"}' in text


async def test_a_sip_trunk_with_a_bad_config_is_422_naming_the_config_field(
    tcp_api: Api, auth: dict[str, str]
) -> None:
    cases = [
        ({}, "config.endpoint"),
        ({"endpoint": "PJSIP/{number}@trunk"}, "config.endpoint"),
        ({"endpoint": "trunk", "strip_digits": "3"}, "config.strip_digits"),
        ({"endpoint": "trunk", "match_prefixes": "+91"}, "config.match_prefixes"),
        ({"endpoint": "trunk", "caller_id": "Sales"}, "config.caller_id"),
        ({"endpoint": "trunk", "prefix": "0"}, "config.prefix"),
    ]
    for config, field in cases:
        status, err, _ = await tcp_api.call(
            "POST",
            "/api/v1/voip-providers",
            json={"name": "bad-trunk", "provider_type": "sip_trunk", "config": config},
            headers=auth,
        )
        assert status == 422, (config, err)
        assert _fields(err) == {field}, (config, err)
    status, body, _ = await tcp_api.call(
        "POST",
        "/api/v1/voip-providers",
        json={
            "name": "good-trunk",
            "provider_type": "sip_trunk",
            "config": {
                "endpoint": "trunk-a",
                "strip_digits": 3,
                "add_prefix": "0",
                "match_prefixes": ["+91"],
                "caller_id": "+919800000000",
            },
        },
        headers=auth,
    )
    assert status == 201, body
    assert body["config"]["match_prefixes"] == ["+91"]


@pytest.mark.parametrize("listener", ["unix", "tcp"])
async def test_a_burst_of_clients_waits_in_the_listen_backlog_while_the_loop_is_busy(
    api_engine: Engine, listener: str
) -> None:
    # an ERP's burst comes while the one loop is busy: past aiohttp's backlog of 128 a
    # Unix-socket client's connect fails at once, a TCP client's SYN waits 1 s for a retry
    api = api_engine.settings.api
    family, address = (
        (socket.AF_UNIX, str(api.socket))
        if listener == "unix"
        else (socket.AF_INET, ("127.0.0.1", api.tcp.port))
    )
    burst = backlog_burst()
    # synchronous: the loop is busy and accepts nothing meanwhile
    assert connected_at_once(family, address, burst) == burst
