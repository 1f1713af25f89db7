"""Inbound IVR over Stasis: a SIPp caller sends real RFC 2833 DTMF into Stasis(ctc,ivr,main);
the engine walks the tenant's menus (stored in PostgreSQL) and records every key."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from engine.daemon import Engine
from engine.devtools.sipp import SippPhone
from engine.ivr_yaml import load_menus
from engine.store.billing import BillingLine
from engine.store.records import QualityMetric
from tests.e2e.engine_fixtures import CallWatcher, completed_ivr_call
from tests.e2e.test_dtmf_caller import dtmf_caller
from tests.support.metrics import families, sample, scrape
from tests.support.waiting import eventually

pytestmark = pytest.mark.e2e

MENUS = """\
menus:
  main:
    greeting: sound:hello-world
    invalid_prompt: sound:beep
    timeout_prompt: sound:beep
    timeout_ms: 1500
    max_retries: 1
    options:
      1: {action: submenu, menu: sales}
      2: {action: submenu, menu: account}
      0: {action: transfer, target_type: agent, target: agent2, failure_prompt: sound:beep}
      3: {action: record_message, max_duration_s: 2, beep: false}
      9: {action: hangup}
    fallback: {action: hangup, prompt: sound:vm-goodbye}
  sales:
    greeting: sound:beep
    options:
      "#": {action: hangup}
      "*": {action: back}
  account:
    greeting: sound:beep
    input_mode: until_terminator
    terminator: "#"
    input_length: 6
    inter_digit_timeout_ms: 3000
    variable: acct
    options:
      collected: {action: hangup, prompt: sound:beep}
"""


@pytest.fixture(autouse=True)
async def main_menus(ivr_engine: Engine) -> None:
    """Tenant ``default`` (the dialplan's callers) has the menus above."""
    tenant = await ivr_engine.store.tenants.by_slug("default")
    await ivr_engine.store.ivr.save(tenant.id, load_menus(MENUS))


async def _call(
    engine: Engine,
    sipp_phone: Callable[..., SippPhone],
    tmp_path: Path,
    digits: str,
    **options: Any,
) -> tuple[CallWatcher, list[dict[str, Any]]]:
    caller = dtmf_caller(sipp_phone, tmp_path / "caller", digits, **options)
    watch = await completed_ivr_call(engine, caller)
    rows = await engine.store.db.fetch(
        "SELECT m.name AS menu, d.digit, d.input_value, d.outcome, o.digit AS option_key, "
        "d.attempt, d.ms_since_prompt FROM call_dtmf_interaction d "
        "JOIN ivr_menu m ON m.id = d.menu_id LEFT JOIN ivr_menu_option o ON o.id = d.option_id "
        "WHERE d.session_id = $1 ORDER BY d.id",
        watch.session_id,
    )
    return watch, [dict(r) for r in rows]


async def transfer_rows(engine: Engine, watch: CallWatcher) -> list[dict[str, Any]]:
    """The session's ``call_transfer`` rows, oldest first, with the option's menu and key."""
    await engine.store.journal.flush()  # the session may still be written behind
    rows = await engine.store.db.fetch(
        "SELECT t.*, m.name AS option_menu, o.digit AS option_key FROM call_transfer t "
        "LEFT JOIN ivr_menu_option o ON o.id = t.option_id "
        "LEFT JOIN ivr_menu m ON m.id = o.menu_id "
        "WHERE t.session_id = $1 ORDER BY t.requested_at, t.id",
        watch.session_id,
    )
    return [dict(r) for r in rows]


def assert_ivr_transfer(row: dict[str, Any], menu: str, key: str) -> None:
    assert row["initiated_by"] == "ivr", row
    assert row["transfer_type"] == "blind", row
    assert row["from_leg"] == "caller", row
    assert (row["option_menu"], row["option_key"]) == (menu, key), row
    assert row["completed_at"] is not None, row
    if row["state"] == "completed":
        assert row["answered_at"] is not None, row
        assert row["requested_at"] <= row["answered_at"] <= row["completed_at"], row
        assert row["target_channel_id"], row
    else:
        assert row["answered_at"] is None, row


async def measured_and_billed(
    engine: Engine, watch: CallWatcher, legs: set[str]
) -> tuple[dict[str, QualityMetric], dict[str, BillingLine]]:
    """The call's final quality row and billing line per leg, once ``legs`` all have both
    (the quality rows are written in the background, the lines when the end commits)."""
    await engine.store.journal.flush()
    session = await watch.session()

    seen: list[object] = []

    async def both() -> tuple[dict[str, QualityMetric], dict[str, BillingLine]] | None:
        rows = await engine.store.quality.for_session(session.tenant_id, session.id)
        finals = {row.leg: row for row in rows if row.is_final}
        lines = {x.leg: x for x in await engine.store.billing.lines(session.tenant_id, session.id)}
        seen[:] = [rows, lines]
        return (finals, lines) if legs <= set(finals) and legs <= set(lines) else None

    what = f"quality rows and billing lines of {legs}"
    try:
        return await eventually(both, within=15, what=what)
    except AssertionError as exc:
        raise AssertionError(f"{exc} seen: {seen!r}") from None


def _door_counts(engine: Engine, door: str) -> dict[str, float]:
    """What the metrics say about a door's calls: answers, input outcomes, ended calls."""
    counts = {
        outcome: sample(engine, "ctc_ivr_inputs_total", door=door, outcome=outcome)
        for outcome in ("option", "invalid", "timeout", "collected")
    }
    counts["answered"] = sample(engine, "ctc_answer_latency_seconds_count", door=door)
    counts["completed"] = sample(engine, "ctc_calls_total", door=door, status="completed")
    return counts


def _counted(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {what: after[what] - before[what] for what in after if after[what] != before[what]}


async def test_two_level_menu_walk(
    ivr_engine: Engine, sipp_phone: Callable[..., SippPhone], tmp_path: Path
) -> None:
    before = _door_counts(ivr_engine, "ari")
    watch, rows = await _call(ivr_engine, sipp_phone, tmp_path, "1#", gap_ms=800)
    assert [(r["menu"], r["digit"], r["outcome"], r["option_key"]) for r in rows] == [
        ("main", "1", "option", "1"),
        ("sales", "#", "option", "#"),
    ]
    # the metrics an admin alerts on saw the same call: answered once, two keys, ended
    assert _counted(before, _door_counts(ivr_engine, "ari")) == {
        "answered": 1,
        "option": 2,
        "completed": 1,
    }
    scraped = families(await scrape(ivr_engine))
    up = {s.labels["component"]: s.value for s in scraped["ctc_component_up"].samples}
    assert up["ari"] == 1
    assert up["agi"] == 1
    assert all(r["ms_since_prompt"] is not None for r in rows)
    session = await watch.session()
    assert session.direction.value == "inbound"
    assert session.ivr_menu == "main"
    assert session.dialed_number == "5551000"
    assert [e.event_type for e in watch.events].count("ivr.dtmf") == 2


async def test_invalid_digit_then_valid(
    ivr_engine: Engine, sipp_phone: Callable[..., SippPhone], tmp_path: Path
) -> None:
    _, rows = await _call(ivr_engine, sipp_phone, tmp_path, "71#", gap_ms=800)
    assert [(r["menu"], r["digit"], r["outcome"], r["attempt"]) for r in rows] == [
        ("main", "7", "invalid", 1),
        ("main", "1", "option", 2),
        ("sales", "#", "option", 1),
    ]


async def test_silence_times_out_then_falls_back(
    ivr_engine: Engine, sipp_phone: Callable[..., SippPhone], tmp_path: Path
) -> None:
    before = _door_counts(ivr_engine, "ari")
    watch, rows = await _call(ivr_engine, sipp_phone, tmp_path, "", wait_ms=100)
    # one timeout per try (the first and one retry), then the fallback hangs up
    assert [(r["menu"], r["outcome"]) for r in rows] == [("main", "timeout"), ("main", "timeout")]
    assert _counted(before, _door_counts(ivr_engine, "ari")) == {
        "answered": 1,
        "timeout": 2,
        "completed": 1,
    }
    assert [r["attempt"] for r in rows] == [1, 2]
    assert (await watch.session()).end_reason == "ivr hung up"


async def test_six_digit_account_ending_in_pound(
    ivr_engine: Engine, sipp_phone: Callable[..., SippPhone], tmp_path: Path
) -> None:
    _, rows = await _call(ivr_engine, sipp_phone, tmp_path, "2123456#", gap_ms=500)
    collected = [r for r in rows if r["outcome"] == "collected"]
    assert [(r["menu"], r["input_value"]) for r in collected] == [("account", "123456")]
    assert rows[0]["menu"] == "main"
    assert rows[0]["digit"] == "2"


async def test_the_same_menu_through_fastagi(
    ivr_engine: Engine, sipp_phone: Callable[..., SippPhone], tmp_path: Path
) -> None:
    # [from-caller] sends 4573<number> to AGI(agi://127.0.0.1:4573/ivr/main)
    assert ivr_engine.agi is not None
    before = _door_counts(ivr_engine, "agi")
    watch, rows = await _call(
        ivr_engine, sipp_phone, tmp_path, "71#", gap_ms=800, number="45735551000"
    )
    assert [(r["menu"], r["digit"], r["outcome"], r["attempt"]) for r in rows] == [
        ("main", "7", "invalid", 1),
        ("main", "1", "option", 2),
        ("sales", "#", "option", 1),
    ]
    assert _counted(before, _door_counts(ivr_engine, "agi")) == {
        "answered": 1,
        "invalid": 1,
        "option": 2,
        "completed": 1,
    }
    session = await watch.session()
    assert session.metadata["door"] == "agi"
    assert session.ivr_menu == "main"


async def test_ivr_transfer_to_an_agent_who_answers(
    ivr_engine: Engine, sipp_phone: Callable[..., SippPhone], tmp_path: Path
) -> None:
    # agent2's phone answers and hangs up after 2 s: the transferred call then ends
    with sipp_phone("uas_answer_then_hangup.xml", port=5072, hold_ms=2000) as agent:
        watch, rows = await _call(ivr_engine, sipp_phone, tmp_path, "0")
        assert await agent.wait_async(30) == 0, agent.report()
    assert [(r["menu"], r["digit"], r["outcome"]) for r in rows] == [("main", "0", "option")]
    kinds = [e.event_type for e in watch.events]
    assert "ivr.transfer_dialing" in kinds
    assert "ivr.transferred" in kinds
    assert (await watch.session()).end_reason == "transferred call ended"
    (row,) = await transfer_rows(ivr_engine, watch)
    assert (row["target_type"], row["target"], row["state"]) == ("agent", "agent2", "completed")
    assert row["routing_rule_id"] is None
    assert row["target_channel_id"].startswith(f"ivr-{watch.session_id}-target")
    assert_ivr_transfer(row, "main", "0")
    quality, lines = await measured_and_billed(ivr_engine, watch, {"caller", "target"})
    # the caller's channel is Asterisk's (handed to the monitor), the target's ours
    assert quality["target"].channel_id == row["target_channel_id"]
    assert quality["caller"].channel_id == (await watch.session()).metadata["channel_id"]
    # Asterisk played the prompt and ringing to the caller: it sent RTP on that leg
    assert (quality["caller"].tx_packets or 0) > 10, quality["caller"]
    assert quality["caller"].mos is not None, quality["caller"]
    assert {"rtpaudioqos"} <= set(quality["caller"].raw), quality["caller"].raw
    # the sandbox's DID is an extension (no card can match it) and agent2 an endpoint:
    # zero lines that say why, with the talk time of each leg
    assert (lines["caller"].currency, lines["caller"].amount_minor) == ("XXX", 0)
    assert lines["caller"].duration_s >= 2, lines["caller"]
    assert lines["target"].destination_number == "agent2"
    assert 1 <= lines["target"].duration_s <= lines["caller"].duration_s, lines


async def test_ivr_transfer_to_a_busy_agent_returns_to_the_menu(
    ivr_engine: Engine, sipp_phone: Callable[..., SippPhone], tmp_path: Path
) -> None:
    # busy: the caller hears the failure prompt and the menu again, then presses 9
    with sipp_phone("uas_busy.xml", port=5072):
        watch, rows = await _call(ivr_engine, sipp_phone, tmp_path, "09", gap_ms=2500)
    assert [(r["menu"], r["digit"], r["outcome"]) for r in rows] == [
        ("main", "0", "option"),
        ("main", "9", "option"),
    ]
    kinds = [e.event_type for e in watch.events]
    assert "ivr.transferred" not in kinds
    assert (await watch.session()).end_reason == "ivr hung up"
    (row,) = await transfer_rows(ivr_engine, watch)
    assert (row["target"], row["state"], row["hangup_cause"]) == ("agent2", "busy", 17)
    assert_ivr_transfer(row, "main", "0")


async def test_ivr_transfer_through_fastagi(
    ivr_engine: Engine, sipp_phone: Callable[..., SippPhone], tmp_path: Path
) -> None:
    with sipp_phone("uas_answer_then_hangup.xml", port=5072, hold_ms=2000) as agent:
        watch, rows = await _call(ivr_engine, sipp_phone, tmp_path, "0", number="45735551000")
        assert await agent.wait_async(30) == 0, agent.report()
    assert [(r["menu"], r["digit"], r["outcome"]) for r in rows] == [("main", "0", "option")]
    assert "ivr.transferred" in [e.event_type for e in watch.events]
    assert (await watch.session()).end_reason == "transferred call ended"
    (row,) = await transfer_rows(ivr_engine, watch)
    assert (row["target_type"], row["target"], row["state"]) == ("agent", "agent2", "completed")
    assert "agent2" in row["target_channel_id"]  # Dial's DIALEDPEERNAME: PJSIP/agent2-…
    assert_ivr_transfer(row, "main", "0")
    # FastAGI: the caller's figures from CHANNEL(rtcp,all) once Dial returned (the
    # target's leg is Dial's own channel, which this door cannot read: see ivr_agi.py);
    # both legs billed
    quality, lines = await measured_and_billed(ivr_engine, watch, {"caller"})
    assert set(quality) == {"caller"}, quality
    assert "channel(rtcp,all)" in quality["caller"].raw, quality["caller"].raw
    assert (quality["caller"].tx_packets or 0) > 0, quality["caller"]
    assert quality["caller"].mos is not None, quality["caller"]
    assert set(lines) == {"caller", "target"}, lines
    assert lines["caller"].duration_s >= 2, lines["caller"]
    assert lines["target"].destination_number == "agent2"
    assert 1 <= lines["target"].duration_s <= lines["caller"].duration_s, lines


async def test_ivr_transfer_to_a_busy_agent_through_fastagi(
    ivr_engine: Engine, sipp_phone: Callable[..., SippPhone], tmp_path: Path
) -> None:
    with sipp_phone("uas_busy.xml", port=5072):
        watch, rows = await _call(
            ivr_engine, sipp_phone, tmp_path, "09", gap_ms=2500, number="45735551000"
        )
    assert [(r["menu"], r["digit"]) for r in rows] == [("main", "0"), ("main", "9")]
    (row,) = await transfer_rows(ivr_engine, watch)
    assert (row["target"], row["state"], row["hangup_cause"]) == ("agent2", "busy", 17)
    assert_ivr_transfer(row, "main", "0")


@pytest.mark.parametrize("number", ["5551000", "45735551000"], ids=["stasis", "fastagi"])
async def test_record_a_message(
    number: str, ivr_engine: Engine, sipp_phone: Callable[..., SippPhone], tmp_path: Path
) -> None:
    watch, rows = await _call(ivr_engine, sipp_phone, tmp_path, "3", number=number)
    assert [(r["menu"], r["digit"], r["outcome"]) for r in rows] == [("main", "3", "option")]
    assert "ivr.recording_message" in [e.event_type for e in watch.events]
    assert (await watch.session()).end_reason == "ivr hung up"
