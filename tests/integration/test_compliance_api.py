"""Compliance and caller ID through the API and the CLI, against the real PostgreSQL: a
refused initiate is stored rejected with its rule and reason and answered 403; the caller
ID chosen is stored on the session; every rule set is managed with bad input named by
field or file:line."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from engine.daemon import Engine
from tests.support.calls import CONNECT, initiate_body, place_call
from tests.support.cli import run_ctc
from tests.support.http import Api
from tests.support.tenants import new_tenant, tenant_headers

API = "/api/v1"
C2C = f"{API}/click-to-call"
SF = "+14155550100"  # America/Los_Angeles


async def _tenant(engine: Engine) -> str:
    return (await new_tenant(engine.store)).slug


async def _call(api: Api, slug: str, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    status, data, _ = await api.call(method, path, json=body, headers=tenant_headers(slug))
    return status, data


async def _events(api: Api, slug: str, session_id: str) -> list[dict[str, Any]]:
    status, detail = await _call(api, slug, "GET", f"{C2C}/sessions/{session_id}")
    assert status == 200, detail
    events: list[dict[str, Any]] = detail["events"]
    return events


async def _rejected(api: Api, slug: str, body: dict[str, Any], rule: str) -> dict[str, Any]:
    """Initiate ``body``, expect 403 naming ``rule``; the stored session and its events."""
    status, data = await _call(api, slug, "POST", f"{C2C}/initiate", body)
    assert status == 403, data
    assert data["error"]["code"] == "call_rejected"
    detail = data["error"]["details"][0]
    assert detail["rule"] == rule
    assert detail["field"] == "customer_number"
    events = await _events(api, slug, detail["session_id"])
    assert [(e["event_type"], e["status_to"]) for e in events] == [
        ("session.created", "queued"),
        ("session.rejected", "rejected"),
    ]
    assert events[1]["payload"]["rule"] == rule
    assert events[1]["payload"]["reason"] == detail["message"]
    return detail


async def test_a_blocklisted_number_is_rejected_and_an_allowlisted_prefix_is_not(
    api_engine: Engine, unix_api: Api
) -> None:
    t = await _tenant(api_engine)
    entries = {
        "entries": [
            {"list_type": "blocklist", "number": "+1415", "is_prefix": True, "reason": "test block"}
        ]
    }
    status, data = await _call(unix_api, t, "POST", f"{API}/compliance/lists", entries)
    assert status == 201, data
    assert data["items"][0]["number"] == "+1415"
    detail = await _rejected(unix_api, t, initiate_body(customer_number=SF), "blocklist")
    assert "test block" in detail["message"]
    # the same Idempotency-Key again: the same refusal, no second session
    body = initiate_body(customer_number=SF)
    first = await unix_api.call(
        "POST", f"{C2C}/initiate", json=body, headers=tenant_headers(t, **{"Idempotency-Key": "k"})
    )
    again = await unix_api.call(
        "POST", f"{C2C}/initiate", json=body, headers=tenant_headers(t, **{"Idempotency-Key": "k"})
    )
    assert first[0] == again[0] == 403
    assert first[1]["error"]["details"] == again[1]["error"]["details"]

    allow = {"entries": [{"list_type": "allowlist", "number": SF}]}
    assert (await _call(unix_api, t, "POST", f"{API}/compliance/lists", allow))[0] == 201
    status, data = await _call(
        unix_api, t, "POST", f"{C2C}/initiate", initiate_body(customer_number=SF)
    )
    assert status == 202, data

    status, listed = await _call(unix_api, t, "GET", f"{API}/compliance/lists?number=%2B{SF[1:]}")
    assert status == 200
    assert {e["list_type"] for e in listed["items"]} == {"blocklist", "allowlist"}
    for entry in listed["items"]:
        status, _ = await _call(unix_api, t, "DELETE", f"{API}/compliance/lists/{entry['id']}")
        assert status == 204
    status, listed = await _call(unix_api, t, "GET", f"{API}/compliance/lists")
    assert listed["items"] == []


async def test_expired_entries_and_dnc_through_a_rule(api_engine: Engine, unix_api: Api) -> None:
    t = await _tenant(api_engine)
    past = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    entries = {
        "entries": [
            {"list_type": "blocklist", "number": SF, "expires_at": past},
            {"list_type": "dnc", "number": "+12125550100"},
        ]
    }
    assert (await _call(unix_api, t, "POST", f"{API}/compliance/lists", entries))[0] == 201
    assert (await _call(unix_api, t, "POST", f"{C2C}/initiate", initiate_body()))[0] == 202
    rule = {"name": "national-dnc", "rule_type": "dnc_check"}
    status, created = await _call(unix_api, t, "POST", f"{API}/compliance/rules", rule)
    assert status == 201, created
    await _rejected(unix_api, t, initiate_body(customer_number="+12125550100"), "national-dnc")
    # deactivated, the rule no longer refuses
    status, _ = await _call(
        unix_api, t, "PATCH", f"{API}/compliance/rules/{created['id']}", {"is_active": False}
    )
    assert status == 200
    body = initiate_body(customer_number="+12125550100")
    assert (await _call(unix_api, t, "POST", f"{C2C}/initiate", body))[0] == 202


async def test_calling_hours_attempts_and_warnings(api_engine: Engine, unix_api: Api) -> None:
    t = await _tenant(api_engine)
    # a one-minute window twelve hours away from now in San Francisco: never open now
    local = datetime.now(UTC).astimezone(ZoneInfo("America/Los_Angeles"))
    start = (local + timedelta(hours=12)).strftime("%H:%M")
    end = (local + timedelta(hours=12, minutes=1)).strftime("%H:%M")
    hours = {
        "name": "office-hours",
        "rule_type": "calling_hours",
        "allowed_start": start,
        "allowed_end": end,
        "country_code": "US",
    }
    assert (await _call(unix_api, t, "POST", f"{API}/compliance/rules", hours))[0] == 201
    detail = await _rejected(unix_api, t, initiate_body(customer_number=SF), "office-hours")
    assert "America/Los_Angeles" in detail["message"]
    status, check = await _call(unix_api, t, "POST", f"{API}/compliance/check", {"number": SF})
    assert status == 200
    assert check["allowed"] is False
    assert check["refusal"]["rule"] == "office-hours"
    # India is not covered by that rule; two attempts a day, and a warning
    india = "+919876543210"
    cap = {"name": "twice", "rule_type": "max_attempts", "max_attempts_per_day": 2}
    warn = {
        "name": "india-watch",
        "rule_type": "country_block",
        "country_code": "IN",
        "action": "warn",
    }
    for rule in (cap, warn):
        assert (await _call(unix_api, t, "POST", f"{API}/compliance/rules", rule))[0] == 201
    for _ in range(2):
        status, placed = await _call(
            unix_api, t, "POST", f"{C2C}/initiate", initiate_body(customer_number=india)
        )
        assert status == 202, placed
    events = await _events(unix_api, t, placed["id"])
    warned = [e for e in events if e["event_type"] == "compliance.warning"]
    assert [e["payload"]["rule"] for e in warned] == ["india-watch"]
    await _rejected(unix_api, t, initiate_body(customer_number=india), "twice")


async def test_caller_id_local_presence_and_rotation(api_engine: Engine, unix_api: Api) -> None:
    t = await _tenant(api_engine)
    local = {
        "name": "local",
        "caller_id": "+12125550199",
        "rotation": "local_presence",
        "pool": ["+1 212 555 0111", "+14155550122", "+14155550133"],
        "is_default": True,
    }
    status, profile = await _call(unix_api, t, "POST", f"{API}/caller-id-profiles", local)
    assert status == 201, profile
    assert profile["pool"][0] == "+12125550111"  # normalised
    chosen: Counter[str] = Counter()
    for _ in range(4):
        status, placed = await _call(unix_api, t, "POST", f"{C2C}/initiate", initiate_body())
        assert status == 202, placed
        chosen[placed["caller_id"]] += 1
    assert chosen == {"+14155550122": 2, "+14155550133": 2}
    events = await _events(unix_api, t, placed["id"])
    picked = [e["payload"] for e in events if e["event_type"] == "caller_id.chosen"]
    assert picked[0]["caller_id"] == placed["caller_id"]
    assert picked[0]["profile"] == "local"
    assert "area code 415" in picked[0]["reason"]
    # a caller ID the client asks for is kept
    status, placed = await _call(
        unix_api, t, "POST", f"{C2C}/initiate", initiate_body(caller_id="+12125550100")
    )
    assert placed["caller_id"] == "+12125550100"
    status, listed = await _call(unix_api, t, "GET", f"{API}/caller-id-profiles")
    assert [p["name"] for p in listed["items"]] == ["local"]


async def test_bad_input_names_the_field(api_engine: Engine, unix_api: Api) -> None:
    t = await _tenant(api_engine)
    cases: list[tuple[str, dict[str, Any], str]] = [
        ("compliance/rules", {"name": "h", "rule_type": "calling_hours"}, "allowed_start"),
        (
            "compliance/rules",
            {
                "name": "h",
                "rule_type": "calling_hours",
                "allowed_start": "09:00",
                "allowed_end": "17:00",
                "timezone": "Mars/Olympus",
            },
            "timezone",
        ),
        ("compliance/rules", {"name": "m", "rule_type": "max_attempts"}, "max_attempts_per_day"),
        ("compliance/rules", {"name": "c", "rule_type": "country_block"}, "country_code"),
        (
            "compliance/rules",
            {"name": "d", "rule_type": "dnc_check", "params": {"lists": ["nope"]}},
            "params.lists[0]",
        ),
        ("compliance/rules", {"name": "x", "rule_type": "nonsense"}, "rule_type"),
        (
            "compliance/lists",
            {"entries": [{"list_type": "dnc", "number": SF}, {"list_type": "dnc", "number": "12"}]},
            "entries[1].number",
        ),
        (
            "compliance/lists",
            {"entries": [{"list_type": "dnc", "number": "+0", "is_prefix": True}]},
            "entries[0].number",
        ),
        (
            "caller-id-profiles",
            {"name": "p", "caller_id": SF, "rotation": "round_robin", "pool": [SF, "not a number"]},
            "pool[1]",
        ),
        ("caller-id-profiles", {"name": "p", "caller_id": SF, "rotation": "round_robin"}, "pool"),
        (
            "compliance/list-imports",
            {"csv": f"number,list_type\n{SF},dnc\n+1 555,dnc\n"},
            "line 3: number",
        ),
        ("compliance/list-imports", {"csv": "phone\n+14155550100\n"}, "line 1"),
        ("compliance/list-imports", {"csv": f"number\n{SF}\n"}, "line 2: list_type"),
    ]
    for path, body, field in cases:
        status, data = await _call(unix_api, t, "POST", f"{API}/{path}", body)
        assert status == 422, (path, body, data)
        fields = [d.get("field", d.get("loc")) for d in data["error"]["details"]]
        assert any(field == f or field in str(f) for f in fields), (field, data)
    # nothing of a failed import or batch was stored
    status, listed = await _call(unix_api, t, "GET", f"{API}/compliance/lists")
    assert listed["items"] == []
    ok = {
        "csv": f"number,is_prefix,reason\n{SF},no,asked\n+1800,yes,toll free\n",
        "list_type": "dnc",
    }
    status, data = await _call(unix_api, t, "POST", f"{API}/compliance/list-imports", ok)
    assert (status, data) == (201, {"imported": 2})


async def test_cli_manages_every_rule_set(
    api_engine: Engine, cli_env: dict[str, str], tmp_path: Path
) -> None:
    t = await _tenant(api_engine)
    good = tmp_path / "dnc.csv"
    good.write_text(f"number,list_type,reason\n{SF},dnc,asked\n+1800,blocklist,\n")
    code, out, err = await run_ctc("compliance", "import", str(good), "--tenant", t, env=cli_env)
    assert code != 0  # +1800 without is_prefix is not a number
    assert f"{good}:3: number" in err, err
    good.write_text(f"number,list_type,reason\n{SF},dnc,asked\n")
    code, out, err = await run_ctc("compliance", "import", str(good), "--tenant", t, env=cli_env)
    assert code == 0, err
    assert "imported 1" in out
    code, out, err = await run_ctc(
        "compliance", "add", "+1800", "--prefix", "--list", "blocklist", "--tenant", t, env=cli_env
    )
    assert code == 0, err
    code, out, err = await run_ctc(
        "compliance", "rule-add", "dnc", "--type", "dnc_check", "--tenant", t, env=cli_env
    )
    assert code == 0, err
    code, out, err = await run_ctc(
        "compliance",
        "rule-add",
        "bad",
        "--type",
        "calling_hours",
        "--start",
        "9",
        "--end",
        "17:00",
        "--tenant",
        t,
        env=cli_env,
    )
    assert code != 0
    assert "allowed_start" in err, err
    code, out, err = await run_ctc(
        "caller-id",
        "add",
        "main",
        "--caller-id",
        "+12125550199",
        "--default",
        "--tenant",
        t,
        env=cli_env,
    )
    assert code == 0, err
    code, out, err = await run_ctc("compliance", "check", SF, "--tenant", t, env=cli_env)
    assert code == 0, err
    assert "rejected by dnc" in out
    assert "caller ID +12125550199" in out
    code, out, err = await run_ctc(
        "compliance", "check", "+18005550100", "--tenant", t, env=cli_env
    )
    assert "rejected by blocklist" in out, out
    code, out, err = await run_ctc("compliance", "list", "--tenant", t, env=cli_env)
    assert "+1800*" in out
    assert SF in out
    code, out, err = await run_ctc("caller-id", "list", "--tenant", t, env=cli_env)
    assert "main fixed +12125550199" in out


async def test_a_transfer_to_a_refused_number_is_not_made(
    api_engine: Engine, unix_api: Api
) -> None:
    t = await _tenant(api_engine)
    session_id = await place_call(unix_api, t, *CONNECT)
    entries = {"entries": [{"list_type": "blocklist", "number": "+12125550100"}]}
    assert (await _call(unix_api, t, "POST", f"{API}/compliance/lists", entries))[0] == 201
    status, data = await _call(
        unix_api,
        t,
        "POST",
        f"{C2C}/sessions/{session_id}/transfer",
        {"type": "blind", "target": "+12125550100"},
    )
    assert status == 403, data
    assert data["error"]["details"][0]["field"] == "target"
    assert data["error"]["details"][0]["rule"] == "blocklist"
    status, session = await _call(unix_api, t, "GET", f"{C2C}/sessions/{session_id}")
    assert session["status"] == "connected"
