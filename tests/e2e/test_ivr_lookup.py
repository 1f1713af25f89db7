"""The IVR ``http_lookup`` action end to end, over both doors (Stasis/ARI and FastAGI).

A SIPp caller keys an account number with real RFC 2833 DTMF; the engine asks an ERP — here
a small aiohttp server on 127.0.0.1 that the test controls — and speaks the answer, lets it
pick the next menu, or takes the menu's failure path when the ERP fails or is too slow.

The request contract the engine sends (``engine/app/ivr_calls.py:http_lookup``): the
option's ``url`` with ``{variable}`` placeholders filled in, ``GET`` with ``params`` as the
query string (``POST``: as a JSON body), no other headers of its own. The ERP's answer is
plain text: its body (stripped) is the lookup's value, any status >= 400 is a failure.

Every wait is on an ERP request, a call event or SIPp's exit, each with a deadline.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from engine.daemon import Engine
from engine.devtools.sipp import SippPhone
from engine.ivr_yaml import load_menus
from engine.store.records import CallEvent
from tests.e2e.engine_fixtures import CallWatcher
from tests.e2e.test_dtmf_caller import DIALLED, dtmf_caller

pytestmark = pytest.mark.e2e

DOORS = pytest.mark.parametrize(
    "number", [DIALLED, "4573" + DIALLED], ids=["stasis", "fastagi"]
)  # [from-caller]: <n> -> Stasis(ctc,ivr,main), 4573<n> -> AGI(.../ivr/main)

ACCOUNT = "4711093"
LOOKUP_TIMEOUT_MS = 1000

# main: 1 = balance (spoken as a number), 2 = tier (the ERP's answer picks the menu).
MENUS = """\
menus:
  main:
    greeting: sound:beep
    timeout_ms: 5000
    max_retries: 0
    options:
      1: {{action: submenu, menu: balance}}
      2: {{action: submenu, menu: tier}}
    fallback: {{action: hangup, prompt: sound:vm-goodbye}}
  balance:
    greeting: sound:beep
    input_mode: until_terminator
    terminator: "#"
    input_length: 10
    inter_digit_timeout_ms: 4000
    timeout_ms: 1500
    max_retries: 0
    variable: acct
    options:
      collected:
        action: http_lookup
        url: "{erp}/balance/{{acct}}"
        params: {{caller: "{{caller}}", source: ivr}}
        timeout_ms: {timeout_ms}
        result_variable: balance
        say: number
        next: done
        failure_prompt: sound:beep
    fallback: {{action: hangup, prompt: sound:vm-goodbye}}
  tier:
    greeting: sound:beep
    input_mode: until_terminator
    terminator: "#"
    input_length: 10
    inter_digit_timeout_ms: 4000
    timeout_ms: 1500
    max_retries: 0
    variable: acct
    options:
      collected:
        action: http_lookup
        url: "{erp}/tier/{{acct}}"
        timeout_ms: {timeout_ms}
        routes: {{vip: vip, standard: standard}}
        failure_prompt: sound:beep
    fallback: {{action: hangup, prompt: sound:vm-goodbye}}
  vip:
    greeting: sound:beep
    timeout_ms: 3000
    max_retries: 0
    options:
      5: {{action: hangup, prompt: sound:vm-goodbye}}
    fallback: {{action: hangup}}
  standard:
    greeting: sound:beep
    timeout_ms: 3000
    max_retries: 0
    options:
      5: {{action: hangup}}
    fallback: {{action: hangup}}
  done:
    greeting: sound:beep
    timeout_ms: 500
    max_retries: 0
    fallback: {{action: hangup, prompt: sound:vm-goodbye}}
"""


@dataclasses.dataclass(frozen=True)
class ErpRequest:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes


class Erp:
    """The ERP the lookups reach: records each request, answers as the test says.

    ``answer`` is (status, body). With ``hold`` the handler does not answer until the test
    sets ``release`` (the engine's lookup times out first).
    """

    def __init__(self) -> None:
        self.requests: asyncio.Queue[ErpRequest] = asyncio.Queue()
        self.answer: tuple[int, str] = (200, "")
        self.hold = False
        self.release = asyncio.Event()
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def _handle(self, request: web.Request) -> web.Response:
        self.requests.put_nowait(
            ErpRequest(
                method=request.method,
                path=request.path,
                query=dict(request.query),
                headers=dict(request.headers),
                body=await request.read(),
            )
        )
        if self.hold:
            await self.release.wait()
        status, text = self.answer
        return web.Response(status=status, text=text)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, shutdown_timeout=2)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}/erp"

    async def close(self) -> None:
        self.release.set()
        if self._runner is not None:
            await self._runner.cleanup()

    async def request(self, within: float = 30.0) -> ErpRequest:
        async with asyncio.timeout(within):
            return await self.requests.get()


@pytest.fixture
async def erp() -> AsyncIterator[Erp]:
    server = Erp()
    await server.start()
    try:
        yield server
    finally:
        await server.close()


@pytest.fixture(autouse=True)
async def lookup_menus(ivr_engine: Engine, erp: Erp) -> AsyncIterator[None]:
    """Tenant ``default`` has the menus above, asking ``erp``, which it may reach."""
    menus = MENUS.format(erp=erp.url, timeout_ms=LOOKUP_TIMEOUT_MS)
    # the ERP stand-in is on 127.0.0.1: the tenant must allow it (engine/domain/netpolicy.py)
    tenant = await ivr_engine.store.tenants.update("default", allow_cidrs=("127.0.0.1/32",))
    try:
        await ivr_engine.store.ivr.save(tenant.id, load_menus(menus))
        yield
    finally:
        # the database is shared by the session: later tests expect loopback refused
        await ivr_engine.store.tenants.update("default", allow_cidrs=())


@dataclasses.dataclass
class Finished:
    watch: CallWatcher
    events: list[CallEvent]
    rows: list[dict[str, Any]]
    end_reason: str | None
    caller_number: str | None

    def kinds(self) -> list[str]:
        return [e.event_type for e in self.events]

    def one(self, event_type: str) -> CallEvent:
        found = [e for e in self.events if e.event_type == event_type]
        assert len(found) == 1, (event_type, self.kinds())
        return found[0]

    def dtmf(self) -> list[tuple[str, str | None, str, str | None]]:
        return [(r["menu"], r["digit"], r["outcome"], r["input_value"]) for r in self.rows]


async def _call(
    engine: Engine,
    sipp_phone: Callable[..., SippPhone],
    workdir: Path,
    digits: str,
    number: str,
) -> Finished:
    """One caller keys ``digits``; wait (bounded) until the session ends and the caller's
    SIPp has exited cleanly (it waits for the engine's BYE)."""
    watch = CallWatcher(engine)
    try:
        with dtmf_caller(sipp_phone, workdir, digits, number=number, gap_ms=800) as caller:
            created = await watch.until_event("session.created", within=20)
            watch.session_id = created.session_id
            end = await watch.until("completed", "failed", "canceled", within=60)
            assert end.status_to == "completed", watch.trail()
            assert await caller.wait_async(30) == 0, caller.report()
    finally:
        watch.close()
    session = await watch.session()
    events = await engine.store.sessions.events(session.tenant_id, session.id)
    rows = await engine.store.db.fetch(
        "SELECT m.name AS menu, d.digit, d.input_value, d.outcome, o.digit AS option_key, "
        "d.attempt FROM call_dtmf_interaction d "
        "JOIN ivr_menu m ON m.id = d.menu_id LEFT JOIN ivr_menu_option o ON o.id = d.option_id "
        "WHERE d.session_id = $1 ORDER BY d.id",
        session.id,
    )
    return Finished(
        watch, events, [dict(r) for r in rows], session.end_reason, session.caller_number
    )


def _assert_plain_get(got: ErpRequest, path: str) -> None:
    assert got.method == "GET"
    assert got.path == path
    assert got.body == b""
    # the engine documents no signature or tenant header for lookups: none is sent
    assert not any(name.lower().startswith("x-ctc") for name in got.headers), got.headers


# -- 1. the caller keys an account number; the engine speaks the ERP's balance -------------


@DOORS
async def test_balance_is_looked_up_and_spoken(
    number: str,
    ivr_engine: Engine,
    erp: Erp,
    sipp_phone: Callable[..., SippPhone],
    tmp_path: Path,
) -> None:
    erp.answer = (200, "1250\n")
    call = await _call(ivr_engine, sipp_phone, tmp_path, "1" + ACCOUNT + "#", number)

    got = await erp.request(within=5)
    _assert_plain_get(got, f"/erp/balance/{ACCOUNT}")
    assert got.query == {"caller": call.caller_number or "", "source": "ivr"}
    assert erp.requests.empty(), "one lookup per collected account"

    # the key presses: menu choice, the account (with its #), then the `next` menu's silence
    assert call.dtmf() == [
        ("main", "1", "option", None),
        ("balance", ACCOUNT + "#", "collected", ACCOUNT),
        ("done", None, "timeout", None),
    ]
    lookup = call.one("ivr.lookup")
    assert lookup.payload["method"] == "GET"
    assert lookup.payload["url"] == f"{erp.url}/balance/{ACCOUNT}"
    assert lookup.payload["params"]["source"] == "ivr"
    result = call.one("ivr.lookup_result")
    assert result.payload["ok"] is True
    assert result.payload["value"] == "1250"
    assert result.payload["error"] is None
    kinds = call.kinds()
    assert kinds.index("ivr.lookup") < kinds.index("ivr.lookup_result") < kinds.index("ivr.ended")
    assert call.end_reason == "ivr hung up"


# -- 2. the ERP's answer selects the next menu -----------------------------------------------


@DOORS
async def test_erp_answer_routes_the_caller_to_a_menu(
    number: str,
    ivr_engine: Engine,
    erp: Erp,
    sipp_phone: Callable[..., SippPhone],
    tmp_path: Path,
) -> None:
    erp.answer = (200, "vip")
    call = await _call(ivr_engine, sipp_phone, tmp_path, "2" + ACCOUNT + "#5", number)

    got = await erp.request(within=5)
    _assert_plain_get(got, f"/erp/tier/{ACCOUNT}")
    assert got.query == {}
    # "5" is a key pressed in the vip menu: the caller landed there (not in standard)
    assert [(r["menu"], r["digit"], r["outcome"], r["option_key"]) for r in call.rows] == [
        ("main", "2", "option", "2"),
        ("tier", ACCOUNT + "#", "collected", "collected"),
        ("vip", "5", "option", "5"),
    ]
    result = call.one("ivr.lookup_result")
    assert (result.payload["ok"], result.payload["value"]) == (True, "vip")
    assert call.end_reason == "ivr hung up"


# -- 3. the ERP fails or is too slow: failure prompt, the menu again, its fallback ----------


@DOORS
@pytest.mark.parametrize("failure", ["http-500", "timeout", "not-a-number"])
async def test_failing_erp_takes_the_failure_path(
    number: str,
    failure: str,
    ivr_engine: Engine,
    erp: Erp,
    sipp_phone: Callable[..., SippPhone],
    tmp_path: Path,
) -> None:
    if failure == "http-500":
        erp.answer = (500, "database down")
        outcome = {"ok": False, "value": None, "error": "HTTP 500"}
    elif failure == "timeout":
        erp.hold = True  # the handler waits for `release`: the engine's 1 s timeout comes first
        outcome = {"ok": False, "value": None, "error": f"timed out after {LOOKUP_TIMEOUT_MS} ms"}
    else:
        # the ERP answers, but nothing `say: number` can speak (FastAGI's door used to crash
        # on int("12.50 EUR") and leave the session connected): the interpreter treats it as
        # a failed lookup
        erp.answer = (200, "12.50 EUR")
        outcome = {"ok": True, "value": "12.50 EUR", "error": None}
    try:
        call = await _call(ivr_engine, sipp_phone, tmp_path, "1" + ACCOUNT + "#", number)
    finally:
        erp.release.set()  # let a held ERP handler finish (the engine gave up long ago)

    got = await erp.request(within=5)
    _assert_plain_get(got, f"/erp/balance/{ACCOUNT}")
    assert erp.requests.empty(), "a failed lookup is not retried"
    result = call.one("ivr.lookup_result")
    assert {key: result.payload[key] for key in outcome} == outcome
    # after the failure prompt the balance menu is presented again (its greeting, then its
    # input timer: the timeout row), and with no retries left its fallback hangs up
    assert call.dtmf() == [
        ("main", "1", "option", None),
        ("balance", ACCOUNT + "#", "collected", ACCOUNT),
        ("balance", None, "timeout", None),
    ]
    # in order: the lookup, its failure, the menu's silence after it, the fallback's hang-up
    kinds = call.kinds()
    retry = max(i for i, e in enumerate(call.events) if e.payload.get("outcome") == "timeout")
    assert kinds.index("ivr.lookup") < kinds.index("ivr.lookup_result") < retry
    # the caller's quality row (and a low-MOS event, were its MOS under the floor) comes
    # with its hangup, after the IVR ended
    assert [kind for kind in kinds if not kind.startswith("quality.")][-1] == "ivr.ended"
    assert call.end_reason == "ivr hung up"
