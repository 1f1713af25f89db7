"""Routing rules over the API and `ctc routing`, and agent states over the API.

CRUD with bad input answered by field (API) or file:line (CLI); the tenant's settings;
``explain`` choosing a rule by priority, schedule and prefix and leaving out agents who
are not available; agent states changed by reports and read back with time in state.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import yaml

from engine.daemon import Engine
from tests.support.cli import run_ctc
from tests.support.http import Api
from tests.support.tenants import new_tenant, tenant_headers

API = "/api/v1"
RULES = f"{API}/routing-rules"

SALES = {
    "priority": 10,
    "match": {"caller_prefix": ["+49"]},
    "schedule": {
        "time_zone": "Europe/Berlin",
        "windows": [{"days": [1, 2, 3, 4, 5], "start": "09:00", "end": "18:00"}],
        "holidays": ["2026-12-25"],
    },
    "strategy": "ring_group_round_robin",
    "members": ["ana", "bo", "cy"],
    "ring_timeout_s": 20,
    "fallback": "operator",
}


async def _put(api: Api, slug: str, name: str, body: Any) -> tuple[int, Any]:
    status, out, _ = await api.call(
        "PUT", f"{RULES}/{name}", json=body, headers=tenant_headers(slug)
    )
    return status, out


async def _explain(api: Api, slug: str, **body: Any) -> Any:
    status, out, _ = await api.call(
        "POST", f"{API}/routing/explain", json=body, headers=tenant_headers(slug)
    )
    assert status == 200, out
    return out


async def test_rules_crud_settings_and_explain_over_the_api(
    api_engine: Engine, unix_api: Api
) -> None:
    slug = (await new_tenant(api_engine.store)).slug
    headers = tenant_headers(slug)
    # the fallback must exist first: a name that refers to nothing is 422 naming the field
    status, out = await _put(unix_api, slug, "sales-hours", SALES)
    assert status == 422, out
    assert out["error"]["details"] == [
        {"field": "fallback", "message": "unknown routing rule 'operator'"}
    ]
    status, out = await _put(
        unix_api, slug, "operator", {"strategy": "ring_agent", "target": "op", "priority": 90}
    )
    assert status == 201, out
    status, out = await _put(unix_api, slug, "sales-hours", SALES)
    assert status == 201, out
    assert out["name"] == "sales-hours"
    assert out["rule"] == SALES
    status, out = await _put(unix_api, slug, "sales-hours", {**SALES, "ring_timeout_s": 25})
    assert status == 200, out
    status, listed, _ = await unix_api.call("GET", RULES, headers=headers)
    assert [r["name"] for r in listed["items"]] == ["sales-hours", "operator"]  # by priority

    status, out, _ = await unix_api.call(
        "PUT",
        f"{API}/routing-settings",
        json={"time_zone": "Europe/Berlin", "wrap_up_s": 45},
        headers=headers,
    )
    assert (status, out) == (200, {"time_zone": "Europe/Berlin", "wrap_up_s": 45})

    # Tuesday 10:00 in Berlin (the tenant's zone, no offset given), a German caller
    explained = await _explain(
        unix_api, slug, caller="+4930123456", number="+4930999999", at="2026-12-01T10:00:00"
    )
    assert explained["rule"] == "sales-hours"
    assert explained["reason"] == (
        "rule 'sales-hours' matched: Mon–Fri 09:00–18:00 Europe/Berlin, "
        "not on 1 holiday(s), caller +49 prefix"
    )
    assert explained["plan"] == "rings ana, then bo, then cy, then op"
    # Christmas: the operator's catch-all
    christmas = await _explain(unix_api, slug, caller="+4930123456", at="2026-12-25T10:00:00+01:00")
    assert christmas["rule"] == "operator"
    assert christmas["considered"][0]["why"] == "2026-12-25 is a holiday (Europe/Berlin)"

    # an agent on a call and one on a break are left out of the plan
    for agent, activity in (("ana", "on_call"), ("cy", "break")):
        status, out, _ = await unix_api.call(
            "POST",
            f"{API}/agent-activity",
            json={"agent_id": agent, "activity": activity},
            headers=headers,
        )
        assert status == 201, out
    explained = await _explain(unix_api, slug, caller="+4930123456", at="2026-12-01T10:00:00")
    assert explained["plan"] == "rings bo, then op; skipped ana (on_call), cy (break)"
    assert explained["skipped"] == {"ana": "on_call", "cy": "break"}

    status, board, _ = await unix_api.call("GET", f"{API}/agents", headers=headers)
    states = {a["agent"]: (a["state"], a["source"]) for a in board["items"]}
    assert states == {"ana": ("on_call", "activity"), "cy": ("break", "activity")}
    assert all(a["in_state_s"] >= 0 for a in board["items"])

    status, _, _ = await unix_api.call("DELETE", f"{RULES}/sales-hours", headers=headers)
    assert status == 204
    status, out, _ = await unix_api.call("GET", f"{RULES}/sales-hours", headers=headers)
    assert status == 404, out


async def test_bad_rules_are_answered_by_field(api_engine: Engine, unix_api: Api) -> None:
    slug = (await new_tenant(api_engine.store)).slug
    cases: list[tuple[Any, str, str]] = [
        ({"strategy": "ring_agent"}, "target", "required by strategy ring_agent"),
        ({"strategy": "dial"}, "strategy", "must be one of"),
        ({"strategy": "ring_agent", "target": "a", "colour": 1}, "colour", "unknown key"),
        (
            {"strategy": "ring_agent", "target": "a", "match": {"caller_prefix": ["49"]}},
            "match.caller_prefix.0",
            "an E.164 prefix",
        ),
        (
            {"strategy": "ring_agent", "target": "a", "match": {"callee_country": "XX"}},
            "match.callee_country.0",
            "not an ISO 3166 country code",
        ),
        (
            {
                "strategy": "ring_agent",
                "target": "a",
                "schedule": {"windows": [{"days": [1], "start": "25:00", "end": "10:00"}]},
            },
            "schedule.windows.0.start",
            "expected a time",
        ),
        (
            {"strategy": "ring_agent", "target": "a", "schedule": {"time_zone": "Nowhere/X"}},
            "schedule.time_zone",
            "unknown time zone",
        ),
        ({"strategy": "ivr_menu", "ivr_menu": "nope"}, "ivr_menu", "unknown IVR menu 'nope'"),
        ({"strategy": "provider", "provider": "nope"}, "provider", "unknown provider 'nope'"),
        (
            {"strategy": "ring_agent", "target": "a", "ring_timeout_s": 0},
            "ring_timeout_s",
            "between",
        ),
        ([1, 2], "body", "object"),
    ]
    for body, field, message in cases:
        status, out = await _put(unix_api, slug, "r1", body)
        assert status == 422, (body, out)
        if field == "body":
            continue
        (detail,) = out["error"]["details"]
        assert detail["field"] == field, (body, out)
        assert message in detail["message"], (body, out)
    status, out = await _put(unix_api, slug, "bad name", {"strategy": "ring_agent", "target": "a"})
    assert status == 422, out
    assert out["error"]["details"][0]["field"] == "name"

    # one catch-all per direction
    catch_all = {"strategy": "ring_agent", "target": "a"}
    assert (await _put(unix_api, slug, "all-1", catch_all))[0] == 201
    status, out = await _put(unix_api, slug, "all-2", catch_all)
    assert status == 409, out

    headers = tenant_headers(slug)
    for settings, field in (
        ({"time_zone": "Mars/Base"}, "time_zone"),
        ({"wrap_up_s": 99999}, "wrap_up_s"),
    ):
        status, out, _ = await unix_api.call(
            "PUT", f"{API}/routing-settings", json=settings, headers=headers
        )
        assert status == 422, out
        assert out["error"]["details"][0]["field"] == field
    status, out, _ = await unix_api.call(
        "POST", f"{API}/routing/explain", json={"number": "4930"}, headers=headers
    )
    assert status == 422, out
    assert out["error"]["details"][0]["field"] == "number"


ROUTING_YAML = """\
settings:
  time_zone: Europe/Berlin
  wrap_up_s: 30
rules:
  sales-hours:
    priority: 10
    match:
      caller_prefix: "+49"
    schedule:
      windows:
        - {days: [1, 2, 3, 4, 5], start: "09:00", end: "18:00"}
    strategy: ring_group_simultaneous
    members: [agent3, agent4]
    fallback: operator
  operator:
    priority: 90
    strategy: ring_agent
    target: op
"""


async def test_ctc_routing_import_export_and_explain(
    api_engine: Engine, cli_env: dict[str, str], tmp_path: Path
) -> None:
    slug = (await new_tenant(api_engine.store)).slug
    good = tmp_path / "routing.yaml"
    good.write_text(ROUTING_YAML)
    code, out, err = await run_ctc("routing", "import", str(good), "--tenant", slug, env=cli_env)
    assert code == 0, err
    assert "imported 2 rule(s) and its settings" in out

    code, out, err = await run_ctc("routing", "export", "--tenant", slug, env=cli_env)
    assert code == 0, err
    exported = yaml.safe_load(out)
    assert exported["settings"] == {"time_zone": "Europe/Berlin", "wrap_up_s": 30}
    assert exported["rules"]["sales-hours"]["members"] == ["agent3", "agent4"]
    assert exported["rules"]["sales-hours"]["fallback"] == "operator"
    again = tmp_path / "again.yaml"
    again.write_text(out)
    code, out, err = await run_ctc("routing", "import", str(again), "--tenant", slug, env=cli_env)
    assert code == 0, err
    assert "sales-hours (replaced)" in out

    code, out, err = await run_ctc(
        "routing",
        "explain",
        "--number",
        "+4930999999",
        "--caller",
        "+4930123456",
        "--at",
        "2026-12-01T10:00",
        "--tenant",
        slug,
        env=cli_env,
    )
    assert code == 0, err
    assert "rule 'sales-hours' matched: Mon–Fri 09:00–18:00 Europe/Berlin, caller +49 prefix" in out
    assert "plan: rings agent3 & agent4, then op" in out
    code, out, err = await run_ctc(
        "routing",
        "explain",
        "--caller",
        "+4930123456",
        "--at",
        "2026-12-05T10:00",
        "--tenant",
        slug,
        env=cli_env,
    )
    assert code == 0, err
    assert "Sat 10:00 Europe/Berlin is outside Mon–Fri 09:00–18:00" in out
    assert "rule 'operator' matched: every call (catch-all)" in out

    bad = tmp_path / "bad.yaml"
    bad.write_text(
        textwrap.dedent(
            """\
            rules:
              x:
                strategy: ring_agent
                target: a
                match:
                  callee_country: [DE, Germany]
            """
        )
    )
    code, _, err = await run_ctc("routing", "import", str(bad), "--tenant", slug, env=cli_env)
    assert code == 1
    assert f"{bad}:6: rules.x.match.callee_country.1: not an ISO 3166 country code" in err
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text(
        "rules:\n  y:\n    strategy: ring_agent\n    target: a\n    fallback: nope\n"
        "    match: {skill: german}\n"
    )
    code, _, err = await run_ctc("routing", "import", str(unknown), "--tenant", slug, env=cli_env)
    assert code == 1
    assert f"{unknown}:5: rules.y.fallback: unknown routing rule 'nope'" in err
    code, _, err = await run_ctc(
        "routing", "explain", "--at", "tomorrow", "--tenant", slug, env=cli_env
    )
    assert code == 1
    assert "--at: not an ISO 8601 time" in err


async def test_a_zone_changed_through_the_tenant_is_seen_at_once_by_the_routing_settings(
    api_engine: Engine,
) -> None:
    store = api_engine.store
    tenant = await new_tenant(store)
    assert (await store.routing.settings(tenant.id)).time_zone == "UTC"  # cached now
    await store.tenants.update(tenant.slug, timezone="Asia/Kolkata")
    assert (await store.routing.settings(tenant.id)).time_zone == "Asia/Kolkata"
