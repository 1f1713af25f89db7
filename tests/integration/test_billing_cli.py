"""``ctc billing`` and ``ctc stats`` as an administrator runs them (subprocesses over the
run's database): rate cards in and out, errors naming file:line, rerate twice, the export,
the stats report, a tenant's time zone."""

from __future__ import annotations

import csv
import io
import json
import uuid
from pathlib import Path

from engine.daemon import Engine
from tests.support.cli import run_ctc
from tests.support.tenants import new_tenant

RATES = (
    "prefix,rate_per_minute_minor,currency,pulse,effective_from\n"
    "+1,60,USD,1/1,2026-01-01T00:00:00Z\n"
    "+1415,0.5,USD,30/6,2026-01-01T00:00:00Z\n"
)


async def test_billing_and_stats_commands(
    api_engine: Engine, cli_env: dict[str, str], tmp_path: Path
) -> None:
    tenant = await new_tenant(api_engine.store)
    t = tenant.slug
    bad = tmp_path / "bad.csv"
    bad.write_text("prefix,rate_per_minute_minor,currency\n+1,1,USD\n+1,1,US\n")
    code, _, err = await run_ctc("billing", "rates", "import", str(bad), "--tenant", t, env=cli_env)
    assert code == 1
    assert f"{bad}:3: currency: 'US' is not an ISO 4217 code" in err
    good = tmp_path / "rates.csv"
    good.write_text(RATES)
    code, out, err = await run_ctc(
        "billing", "rates", "import", str(good), "--tenant", t, env=cli_env
    )
    assert code == 0, err
    assert f"imported 2 rate card(s) into tenant {t}" in out
    code, out, _ = await run_ctc("billing", "rates", "list", "--tenant", t, env=cli_env)
    listed = list(csv.DictReader(io.StringIO(out)))
    assert [(r["prefix"], r["rate_per_minute_minor"], r["pulse"]) for r in listed] == [
        ("+1", "60", "1/1"),
        ("+1415", "0.5", "30/6"),
    ]

    # an answered call of October: the agent leg 40 s (+1, 1/1: 40), the customer 20 s
    # (+1415, 30/6 at 0.5 a minute: 30 s, 0.25 -> 1)
    session = uuid.uuid4()
    await api_engine.store.db.execute(
        "INSERT INTO click_to_call_session (id, tenant_id, agent_id, status, agent_number, "
        "customer_number, created_at, agent_answered_at, connected_at, ended_at, ring_ms, "
        "talk_ms) VALUES ($1, $2, 'ann', 'completed', '+12125550100', '+14155550100', "
        "'2026-10-05 09:00Z', '2026-10-05 09:00:05Z', '2026-10-05 09:00:25Z', "
        "'2026-10-05 09:00:45Z', 5000, 20000)",
        session,
        tenant.id,
    )
    period = ("--from", "2026-10-01", "--to", "2026-11-01")
    code, out, err = await run_ctc("billing", "rerate", *period, "--tenant", t, env=cli_env)
    assert code == 0, err
    assert "rerated 1 call(s): 2 line(s) added, 0 changed, 0 unchanged" in out
    code, out, _ = await run_ctc("billing", "rerate", *period, "--tenant", t, env=cli_env)
    assert "rerated 1 call(s): 0 line(s) added, 0 changed, 2 unchanged" in out
    code, out, err = await run_ctc(
        "billing", "rerate", "--from", "yesterday", "--to", "2026-11-01", env=cli_env
    )
    assert code == 1
    assert "--from: 'yesterday' is not an ISO 8601 date" in err

    code, out, _ = await run_ctc(
        "billing", "export", "--tenant", t, "--month", "2026-10", env=cli_env
    )
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [
        (r["leg"], r["duration_s"], r["billable_seconds"], r["amount_minor"]) for r in rows
    ] == [
        ("agent", "40", "40", "40"),
        ("customer", "20", "30", "1"),
    ]
    code, _, err = await run_ctc(
        "billing", "export", "--tenant", t, "--month", "10/2026", env=cli_env
    )
    assert code == 1
    assert "month: '10/2026' is not YYYY-MM" in err

    code, _, err = await run_ctc("tenant", "update", t, "--timezone", "Mars/Olympus", env=cli_env)
    assert code == 1
    assert "timezone: 'Mars/Olympus' is not an IANA time zone" in err
    code, _, err = await run_ctc(
        "tenant", "update", t, "--timezone", "America/New_York", env=cli_env
    )
    assert code == 0, err
    code, out, err = await run_ctc("stats", "--tenant", t, *period, "--json", env=cli_env)
    assert code == 0, err
    stats = json.loads(out)
    assert (stats["total"], stats["connect_rate"], stats["timezone"]) == (
        1,
        1.0,
        "America/New_York",
    )
    assert [b["key"] for b in stats["buckets"]] == ["2026-10-05T00:00:00-04:00"]
    assert stats["cost"] == [
        {"currency": "USD", "legs": 2, "billable_seconds": 70, "amount_minor": 41}
    ]
    code, out, err = await run_ctc("stats", "--tenant", t, *period, env=cli_env)
    assert code == 0, err
    assert "calls 1  live 0  connected 1  ASR 100.0%" in out
    assert "ann" in out
    assert "41 USD (2 legs)" in out


async def test_rate_cards_are_updated_and_ended_from_the_cli(
    api_engine: Engine, cli_env: dict[str, str], tmp_path: Path
) -> None:
    tenant = await new_tenant(api_engine.store)
    t = tenant.slug
    deck = tmp_path / "rates.csv"
    deck.write_text(RATES)
    code, _, err = await run_ctc(
        "billing", "rates", "import", str(deck), "--tenant", t, env=cli_env
    )
    assert code == 0, err
    code, out, err = await run_ctc("billing", "rates", "list", "--ids", "--tenant", t, env=cli_env)
    assert code == 0, err
    cards = {row["prefix"]: row["id"] for row in csv.DictReader(io.StringIO(out))}
    card = cards["+1415"]

    async def update(*args: str) -> tuple[int, str, str]:
        return await run_ctc("billing", "rates", "update", *args, "--tenant", t, env=cli_env)

    code, _, err = await update(card, "--set", "pulse=7")
    assert code == 0, err  # "7" is 7/7
    for args, named in (
        (("--set", "pulse=0/0"), "pulse:"),
        (("--set", "prefix=+44"), "prefix: decides which legs the card matches"),
        (("--set", "colour=red"), "colour: not a rate card column"),
        (("--set", "currency"), "--set: 'currency' is not COLUMN=VALUE"),
        (("--set", "effective_to=2025-01-01T00:00Z"), "effective_to: must be later"),
        (("--set", "name=x", "--as-of", "2019-01-01"), "as_of: the card is not in effect"),
        ((), "changes: nothing to change"),
    ):
        code, _, err = await update(card, *args)
        assert code == 1, (args, err)
        assert named in err, (args, err)
    code, _, err = await update("nope", "--set", "name=x")
    assert code == 1
    assert "RATE_ID: 'nope' is not a card id" in err
    code, out, err = await update(card, "--set", "rate_per_minute_minor=2", "--as-of", "2026-06-01")
    assert code == 0, err
    assert f"rate card {card} ends at 2026-06-01T00:00:00+00:00; new card" in out
    code, out, err = await run_ctc(
        "billing", "rates", "end", card, "--at", "2026-07-01", "--tenant", t, env=cli_env
    )
    assert code == 0, err
    assert f"rate card {card} ends at 2026-06-01T00:00:00+00:00" in out  # ended already
    code, out, err = await run_ctc(
        "billing", "rates", "list", "--at", "2026-06-02T00:00:00Z", "--tenant", t, env=cli_env
    )
    assert code == 0, err
    rows = list(csv.DictReader(io.StringIO(out)))
    assert sorted((r["prefix"], r["rate_per_minute_minor"], r["pulse"]) for r in rows) == [
        ("+1", "60", "1/1"),
        ("+1415", "2", "7/7"),
    ]
