"""The IVR lookup path: what the interpreter does with an ERP answer it cannot speak, and
what ``http_lookup`` sends, returns and records (against a loopback aiohttp server)."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from engine.app.ivr_calls import http_lookup
from engine.domain.ivr import (
    Digit,
    Entered,
    HttpLookup,
    InputMode,
    IvrAction,
    IvrMenu,
    IvrOption,
    IvrState,
    LookupResult,
    Phase,
    Play,
    PromptFinished,
    SayMode,
    SayNumber,
    SetVariable,
    step,
)
from engine.domain.netpolicy import OutboundPolicy
from engine.outbound import HttpErpLookup, OutboundHttp

MENUS = {
    "acct": IvrMenu(
        "acct",
        greeting="sound:enter-account",
        input_mode=InputMode.UNTIL_TERMINATOR,
        terminator="#",
        variable="acct",
        options={
            "collected": IvrOption(
                IvrAction.HTTP_LOOKUP,
                url="https://erp.example/balance/{acct}",
                result_variable="balance",
                say=SayMode.NUMBER,
                routes={"closed": "closed"},
                failure_prompt="sound:lookup-failed",
            )
        },
    ),
    "closed": IvrMenu(
        "closed", greeting="sound:closed", options={"1": IvrOption(IvrAction.HANGUP)}
    ),
}


def _looking_up() -> IvrState:
    state = IvrState()
    for event in (Entered("acct"), PromptFinished(), Digit("4"), Digit("2"), Digit("#")):
        state = step(MENUS, state, event).state
    assert state.phase is Phase.LOOKING_UP
    return state


@pytest.mark.parametrize("value", ["12.50", "12.50 EUR", "n/a", "", "1234567890"])
def test_a_number_that_cannot_be_said_is_a_failed_lookup(value: str) -> None:
    # FastAGI's SAY NUMBER takes an int (the door crashed on "12.50") and Asterisk says
    # numbers below a billion: such answers take the failure path instead
    result = step(MENUS, _looking_up(), LookupResult(True, value))
    assert result.commands == (Play("sound:lookup-failed"),)
    assert "balance" not in result.state.variables
    assert step(MENUS, result.state, PromptFinished()).commands == (Play("sound:enter-account"),)


@pytest.mark.parametrize("value", ["0", "1250", "-30", "999999999"])
def test_a_whole_number_is_said(value: str) -> None:
    result = step(MENUS, _looking_up(), LookupResult(True, value))
    assert result.commands == (SetVariable("balance", value), SayNumber(value))


def test_a_routed_value_is_not_said_but_routes() -> None:
    result = step(MENUS, _looking_up(), LookupResult(True, "closed"))
    assert result.commands == (SetVariable("balance", "closed"), Play("sound:closed"))
    assert result.state.stack == ("acct", "closed")


# -- http_lookup --------------------------------------------------------------------------


LOOPBACK = OutboundPolicy.allowing(["127.0.0.1/32"])
"""The ERP stand-in listens on 127.0.0.1: its tenant must allow it (engine/domain/netpolicy.py)."""


class _Call:
    """Stands in for IvrCallRecord: collects the events http_lookup notes."""

    def __init__(self, policy: OutboundPolicy = LOOPBACK) -> None:
        self.notes: list[tuple[str, dict[str, Any]]] = []
        self.log = _Log()
        self.policy = policy

    async def note(self, event_type: str, payload: dict[str, Any]) -> None:
        self.notes.append((event_type, payload))


class _Log:
    def info(self, *_args: object, **_kwargs: object) -> None:
        pass


class _Erp:
    def __init__(self) -> None:
        self.status = 200
        self.body = b"1250"
        self.release = asyncio.Event()
        self.hold = False
        self.seen: list[tuple[str, str, dict[str, str], bytes]] = []
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.seen.append((request.method, request.path, dict(request.query), await request.read()))
        if self.hold:
            await self.release.wait()
        return web.Response(status=self.status, body=self.body)


@pytest.fixture
async def erp() -> AsyncIterator[_Erp]:
    server = _Erp()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", server.handle)
    runner = web.AppRunner(app, shutdown_timeout=1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        yield server
    finally:
        server.release.set()
        await runner.cleanup()


@pytest.fixture
async def lookups() -> AsyncIterator[HttpErpLookup]:
    async with OutboundHttp() as outbound:
        yield HttpErpLookup(outbound)


async def test_get_sends_params_as_query_and_records_request_and_result(
    erp: _Erp, lookups: HttpErpLookup
) -> None:
    erp.body = b"1250\n"
    call = _Call()
    lookup = HttpLookup(f"{erp.url}/balance/42", {"caller": "+14155550100"}, "GET", 2000)
    result = await http_lookup(lookups, lookup, call)  # type: ignore[arg-type]
    assert result == LookupResult(True, "1250")
    assert erp.seen == [("GET", "/balance/42", {"caller": "+14155550100"}, b"")]
    assert [kind for kind, _ in call.notes] == ["ivr.lookup", "ivr.lookup_result"]
    assert call.notes[0][1] == {
        "method": "GET",
        "url": f"{erp.url}/balance/42",
        "params": {"caller": "+14155550100"},
    }
    done = call.notes[1][1]
    assert (done["ok"], done["value"], done["error"]) == (True, "1250", None)


async def test_post_sends_params_as_json(erp: _Erp, lookups: HttpErpLookup) -> None:
    lookup = HttpLookup(f"{erp.url}/balance", {"acct": "42"}, "POST", 2000)
    assert await http_lookup(lookups, lookup, policy=LOOPBACK) == LookupResult(True, "1250")
    assert erp.seen == [("POST", "/balance", {}, b'{"acct": "42"}')]


async def test_an_error_status_is_a_failure(erp: _Erp, lookups: HttpErpLookup) -> None:
    erp.status = 500
    call = _Call()
    result = await http_lookup(lookups, HttpLookup(erp.url, {}), call)  # type: ignore[arg-type]
    assert result == LookupResult(False, error="HTTP 500")
    assert call.notes[1][1]["error"] == "HTTP 500"


async def test_no_answer_in_time_is_a_failure_that_says_so(
    erp: _Erp, lookups: HttpErpLookup
) -> None:
    erp.hold = True  # released by the fixture, after the lookup gave up
    result = await http_lookup(lookups, HttpLookup(erp.url, {}, timeout_ms=200), policy=LOOPBACK)
    assert result == LookupResult(False, error="timed out after 200 ms")


async def test_a_body_that_is_not_utf8_is_still_an_answer(
    erp: _Erp, lookups: HttpErpLookup
) -> None:
    erp.body = b"caf\xe9"
    result = await http_lookup(lookups, HttpLookup(erp.url, {}), policy=LOOPBACK)
    assert result.ok
    assert (result.value or "").startswith("caf")


async def test_a_url_that_is_not_one_is_a_failure(lookups: HttpErpLookup) -> None:
    result = await http_lookup(lookups, HttpLookup("http://[::1/x", {}), policy=LOOPBACK)
    assert not result.ok
    assert result.error


async def test_credentials_in_the_url_are_not_recorded(erp: _Erp, lookups: HttpErpLookup) -> None:
    call = _Call()
    url = erp.url.replace("http://", "http://ivr:s3cret@") + "/b"
    await http_lookup(lookups, HttpLookup(url, {}), call)  # type: ignore[arg-type]
    assert call.notes[0][1]["url"] == f"{erp.url}/b"


def test_keys_put_in_the_lookup_url_are_escaped() -> None:
    # with "*" as the terminator a caller may key "#": it must stay in the path segment
    menus = {
        **MENUS,
        "acct": dataclasses.replace(MENUS["acct"], terminator="*"),
    }
    state = IvrState()
    for event in (Entered("acct"), PromptFinished(), Digit("4"), Digit("#"), Digit("*")):
        decided = step(menus, state, event)
        state = decided.state
    (lookup,) = [c for c in decided.commands if isinstance(c, HttpLookup)]
    assert lookup.url == "https://erp.example/balance/4%23"


# -- where lookups may go (engine/domain/netpolicy.py) -----------------------------------------


async def test_a_lookup_to_loopback_is_refused_unless_the_tenant_allows_it(
    erp: _Erp, lookups: HttpErpLookup
) -> None:
    call = _Call(policy=OutboundPolicy())  # a tenant allowing nothing beyond global addresses
    result = await http_lookup(lookups, HttpLookup(erp.url, {}), call)  # type: ignore[arg-type]
    assert not result.ok
    assert (result.error or "").startswith("refused by policy: 127.0.0.1 is a loopback address")
    assert call.notes[1][1]["error"] == result.error
    assert erp.seen == []


async def test_a_name_resolving_to_loopback_is_refused(erp: _Erp, lookups: HttpErpLookup) -> None:
    url = erp.url.replace("127.0.0.1", "localhost")
    result = await http_lookup(lookups, HttpLookup(url, {}), policy=OutboundPolicy())
    assert not result.ok
    assert (result.error or "").startswith("refused by policy: localhost: ")
    assert erp.seen == []


@pytest.mark.parametrize(
    ("url", "error"),
    [
        ("file:///etc/passwd", "refused by policy: must be an http or https URL, not file://"),
        (
            "gopher://erp.example/1",
            "refused by policy: must be an http or https URL, not gopher://",
        ),
        (
            "http://169.254.169.254/latest/meta-data/",
            "refused by policy: 169.254.169.254 is a link-local address",
        ),
    ],
)
async def test_refused_urls_are_failures_without_a_request(
    lookups: HttpErpLookup, url: str, error: str
) -> None:
    # even with loopback allowed: the allowance admits networks, not schemes
    result = await http_lookup(lookups, HttpLookup(url, {}), policy=LOOPBACK)
    assert not result.ok
    assert (result.error or "").startswith(error)
