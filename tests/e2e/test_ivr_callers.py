"""Callers as they are, on both IVR doors (Stasis and FastAGI): one who types ahead over the
prompts, keys 200 ms apart across menu levels, loses no key; one who calls past capacity
is handed back to the dialplan at once (it refuses the call unanswered: SIP 503) and the
engine stores nothing for them, while the caller already in the menu is served.
(bench/ivr.py drives the same callers at load.)"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from engine.config.settings import IvrSettings
from engine.daemon import Engine
from engine.devtools.dtmf_caller import CALLER_SCENARIO
from engine.devtools.sandbox import Sandbox
from engine.devtools.sipp import SippPhone
from engine.ivr_yaml import load_menus
from tests.e2e.engine_fixtures import TEST_IVR, CallWatcher, completed_ivr_call, running_engine
from tests.e2e.test_dtmf_caller import CALLER_PORT, dtmf_caller
from tests.e2e.test_ivr import MENUS  # main: 1 -> sales (# hangs up), 2 -> account

pytestmark = pytest.mark.e2e

DOORS = {"stasis": "5551000", "fastagi": "45735551000"}  # dialplan [from-caller]


async def _engine(
    migrated_db: str, sandbox: Sandbox, workdir: Path, ivr: IvrSettings
) -> AsyncIterator[Engine]:
    async with running_engine(migrated_db, sandbox, workdir, app="ctc", agi=True, ivr=ivr) as e:
        tenant = await e.store.tenants.by_slug("default")
        await e.store.ivr.save(tenant.id, load_menus(MENUS))
        yield e


@pytest.fixture
async def engine(migrated_db: str, sandbox: Sandbox, tmp_path: Path) -> AsyncIterator[Engine]:
    async for e in _engine(migrated_db, sandbox, tmp_path, TEST_IVR):
        yield e


@pytest.fixture
async def one_call_engine(
    migrated_db: str, sandbox: Sandbox, tmp_path: Path
) -> AsyncIterator[Engine]:
    """Capacity: one IVR call in progress."""
    capacity = TEST_IVR.model_copy(update={"max_calls": 1})
    async for e in _engine(migrated_db, sandbox, tmp_path, capacity):
        yield e


def _callers(
    sipp_phone: Callable[..., SippPhone],
    workdir: Path,
    door: str,
    lines: list[str],
    *,
    trace_messages: bool = False,
) -> SippPhone:
    """One SIPp placing a call a second per line of ``uac_dtmf.xml``'s injection file
    (``wait_ms;gap_ms;end;hold_ms;digits``: see engine/devtools/dtmf_caller.py)."""
    csv = workdir / "callers.csv"
    csv.write_text("SEQUENTIAL\n" + "".join(f"{line}\n" for line in lines))
    return sipp_phone(
        str(CALLER_SCENARIO),
        port=CALLER_PORT,
        calls=len(lines),
        extra_args=("-s", DOORS[door], "-inf", str(csv), "-r", "1", "127.0.0.1:5060"),
        trace_messages=trace_messages,
    )


def _branch(via: str) -> str:
    return via.partition("branch=")[2].split(";")[0]


async def _keys(engine: Engine, session_id: Any) -> list[tuple[str, str | None, str, str | None]]:
    rows = await engine.store.db.fetch(
        "SELECT m.name AS menu, d.digit, d.outcome, d.input_value FROM call_dtmf_interaction d "
        "JOIN ivr_menu m ON m.id = d.menu_id WHERE d.session_id = $1 ORDER BY d.id",
        session_id,
    )
    return [(r["menu"], r["digit"], r["outcome"], r["input_value"]) for r in rows]


@pytest.mark.parametrize("door", sorted(DOORS))
@pytest.mark.parametrize(
    ("digits", "expected"),
    [
        ("1#", [("main", "1", "option", None), ("sales", "#", "option", None)]),
        (
            "2123456#",
            [("main", "2", "option", None), ("account", "123456#", "collected", "123456")],
        ),
    ],
    ids=["two-levels", "account-number"],
)
async def test_a_caller_who_types_ahead_over_the_prompts_loses_no_key(
    engine: Engine,
    sipp_phone: Callable[..., SippPhone],
    tmp_path: Path,
    door: str,
    digits: str,
    expected: list[tuple[str, str | None, str, str | None]],
) -> None:
    # the first key 0.4 s into the greeting, the others 200 ms apart: over the prompts and
    # across the change of menu, as a caller who knows the menu keys it
    caller = dtmf_caller(
        sipp_phone, tmp_path / "caller", digits, number=DOORS[door], wait_ms=400, gap_ms=200
    )
    watch = await completed_ivr_call(engine, caller)
    await engine.store.journal.flush()
    assert await _keys(engine, watch.session_id) == expected, watch.trail()
    assert (await watch.session()).end_reason == "ivr hung up"


@pytest.mark.parametrize("door", sorted(DOORS))
async def test_past_capacity_a_new_caller_is_handed_back_and_the_caller_in_the_menu_is_served(
    one_call_engine: Engine,
    sipp_phone: Callable[..., SippPhone],
    tmp_path: Path,
    door: str,
) -> None:
    engine = one_call_engine
    # one SIPp, two calls a second apart: the first stays in the menu (no key) and hangs up
    # after 3 s; the second arrives meanwhile
    mark = await engine.store.db.fetchval("SELECT clock_timestamp()")
    watch = CallWatcher(engine)
    phone = _callers(
        sipp_phone,
        tmp_path,
        door,
        ["100;400;bye;3000;", "100;400;wait;0;"],
        trace_messages=True,
    )
    with phone:
        created = await watch.until_event("session.created", within=20)
        watch.session_id = created.session_id
        assert await phone.wait_async(40) == 0, phone.report()
    # the second caller is refused unanswered: a 503 (a prompt for each refused caller
    # would cost an overloaded Asterisk more than the menu), ACKed in its own transaction
    # (Asterisk sent it once: no retransmission waiting for an ACK that did not match)
    messages = phone.messages()
    [refusal] = [m for m in messages if m.start.startswith("SIP/2.0 503 ")]
    refused = refusal.headers["call-id"]
    [invite] = [
        m
        for m in messages
        if m.sent and m.start.startswith("INVITE ") and m.headers["call-id"] == refused
    ]
    [ack] = [
        m
        for m in messages
        if m.sent and m.start.startswith("ACK ") and m.headers["call-id"] == refused
    ]
    assert _branch(ack.headers["via"]) == _branch(invite.headers["via"])
    assert ack.headers["to"] == refusal.headers["to"]  # with the tag Asterisk gave
    answers = [
        m for m in messages if m.start == "SIP/2.0 200 OK" and m.headers["cseq"] == "1 INVITE"
    ]
    assert len(answers) == 1  # only the caller in the menu was answered
    assert answers[0].headers["call-id"] != refused
    end = await watch.until("completed", "failed", "canceled", within=20)
    assert (end.status_to, (await watch.session()).end_reason) == ("completed", "caller hung up")
    shed = engine.metrics.registry.get_sample_value(
        "ctc_ivr_shed_total",
        {"door": "agi" if door == "fastagi" else "ari", "reason": "max_calls"},
    )
    assert shed == 1
    await engine.store.journal.flush()
    stored = await engine.store.db.fetchval(
        "SELECT count(*) FROM click_to_call_session "
        "WHERE direction = 'inbound' AND created_at >= $1",
        mark,
    )
    assert stored == 1  # the caller handed back is no call of the engine's
    assert engine.ivr_admission.in_progress == 0


@pytest.mark.parametrize("door", sorted(DOORS))
async def test_a_caller_who_sends_no_audio_is_answered_at_once(
    engine: Engine,
    sipp_phone: Callable[..., SippPhone],
    tmp_path: Path,
    door: str,
) -> None:
    # a phone with silence suppression sends no media; this one hangs up 0.2 s after the
    # answer. AGI's own ANSWER would still be waiting for its first media frame then (up
    # to 500 ms), so the caller would never have reached the menu
    watch = CallWatcher(engine)
    phone = _callers(sipp_phone, tmp_path, door, ["0;400;bye;200;"])
    with phone:
        created = await watch.until_event("session.created", within=20)
        watch.session_id = created.session_id
        assert await phone.wait_async(40) == 0, phone.report()
    await watch.until("completed", "failed", "canceled", within=20)
    assert ("ivr.answered", "connected") in watch.trail(), watch.trail()
    assert (await watch.session()).end_reason == "caller hung up"
