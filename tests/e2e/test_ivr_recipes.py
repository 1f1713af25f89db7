"""Every recipe of the IVR designer's reference (``docs/ivr/recipes/*.yaml``), imported as
published and walked by a SIPp caller through the sandbox's Stasis door.

The recipes name their ERP ``https://erp.example.com``; here that address is the test's ERP
stand-in on 127.0.0.1 (:class:`tests.e2e.test_ivr_lookup.Erp`, which answers what the walk
says), and the routing rules the recipes transfer to exist with the sandbox's agent phones
as members. Each walk is the keys a caller presses and what must follow: the key rows
(menu, key, outcome, value), the request the ERP received, the transfer. Every wait is on
an event, an ERP request or a SIPp exit, bounded.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from engine.daemon import Engine
from engine.devtools.sipp import SippPhone
from engine.ivr_yaml import load_menus, menu_warnings
from tests.e2e.engine_fixtures import completed_ivr_call
from tests.e2e.test_dtmf_caller import DIALLED, dtmf_caller
from tests.e2e.test_ivr import transfer_rows
from tests.e2e.test_ivr_lookup import Erp

pytestmark = pytest.mark.e2e

RECIPES = Path(__file__).resolve().parents[2] / "docs" / "ivr" / "recipes"
PUBLISHED_ERP = "https://erp.example.com"

Key = tuple[str, str | None, str, str | None]  # menu, key(s), outcome, value collected
CALLER = "<the caller's number>"


@dataclasses.dataclass(frozen=True)
class Walk:
    digits: str
    keys: list[Key]
    erp_answer: str | None = None  # the ERP's body (200); None: the walk asks it nothing
    erp_path: str | None = None  # the path the ERP must have been asked (under /erp)
    # the query the ERP must have been sent; CALLER stands for the caller's number
    erp_query: dict[str, str] = dataclasses.field(default_factory=dict)
    transferred: bool = False  # a routing rule's member answers (agent1), then hangs up
    gap_ms: int = 1500  # between keys: a lookup's answer picks the next menu first


WALKS: dict[str, dict[str, Walk]] = {
    "business-hours.yaml": {
        "closed": Walk(
            "1",
            [("main", "1", "option", None), ("closed", None, "timeout", None)],
            erp_answer="closed",
            erp_path="/erp/ivr/office-hours",
            erp_query={"line": CALLER},
        ),
        "open": Walk(
            "19",
            [("main", "1", "option", None), ("open", "9", "option", None)],
            erp_answer="open",
            erp_path="/erp/ivr/office-hours",
        ),
    },
    "language-choice.yaml": {
        "spanish": Walk("2#", [("main", "2", "option", None), ("welcome_es", "#", "option", None)]),
        "english-lookup": Walk(
            "11#",
            [
                ("main", "1", "option", None),
                ("welcome_en", "1", "option", None),
                ("welcome_en", "#", "option", None),
            ],
            erp_answer="42",
            erp_path="/erp/ivr/greeting",
            erp_query={"lang": "en", "line": CALLER},
            gap_ms=3000,  # "4 2" is said (keys are not heard then), then the menu again
        ),
    },
    "account-number.yaml": {
        "balance": Walk(
            "1123456#",
            [
                ("main", "1", "option", None),
                ("account", "123456#", "collected", "123456"),
                ("after_balance", None, "timeout", None),
            ],
            erp_answer="1250",
            erp_path="/erp/ivr/accounts/123456/balance",
        ),
    },
    "ring-group.yaml": {
        "support": Walk("1", [("main", "1", "option", None)], transferred=True),
    },
    "erp-lookup.yaml": {
        "vip": Walk(
            "19",
            [("main", "1", "option", None), ("vip", "9", "option", None)],
            erp_answer="vip",
            erp_path="/erp/ivr/customers/tier",
            erp_query={"number": CALLER},
        ),
        "anyone-else": Walk(
            "19",
            [("main", "1", "option", None), ("standard", "9", "option", None)],
            erp_answer="gold",
            erp_path="/erp/ivr/customers/tier",
        ),
    },
}

# the routing rules the recipes transfer to: the sandbox's agent phones
RULES = {"support": ["agent1", "agent2"], "priority": ["agent1"]}

CASES = [(recipe, name) for recipe, walks in WALKS.items() for name in walks]


def test_every_published_recipe_is_walked() -> None:
    published = sorted(p.name for p in RECIPES.glob("*.yaml"))
    assert published == sorted(WALKS)
    for name in published:  # and reads cleanly: no problem, no warning
        text = (RECIPES / name).read_text()
        assert menu_warnings(text, file=name) == []
        assert load_menus(text, file=name)


@pytest.fixture
async def erp() -> AsyncIterator[Erp]:
    server = Erp()
    await server.start()
    try:
        yield server
    finally:
        await server.close()


@pytest.fixture
async def recipes_tenant(ivr_engine: Engine) -> AsyncIterator[Engine]:
    """Tenant ``default`` may reach the ERP stand-in and has the recipes' routing rules."""
    tenant = await ivr_engine.store.tenants.update("default", allow_cidrs=("127.0.0.1/32",))
    for name, members in RULES.items():
        await ivr_engine.store.db.execute(
            # a rule's conditions are checked on the transfer: these hold for every walk
            # (the number the recipes' callers dial)
            "INSERT INTO call_routing_rule (tenant_id, name, match_type, conditions, strategy, "
            "members, ring_timeout_s) VALUES ($1, $2, 'conditions', $4::text::jsonb, "
            "'ring_group_simultaneous', $3::text::jsonb, 20) ON CONFLICT (tenant_id, name) DO "
            "UPDATE SET strategy = EXCLUDED.strategy, members = EXCLUDED.members, "
            "match_type = EXCLUDED.match_type, match_value = NULL, "
            "conditions = EXCLUDED.conditions, is_active = true",
            tenant.id,
            name,
            json.dumps(members),
            json.dumps({"dialed_number": [DIALLED]}),
        )
    try:
        yield ivr_engine
    finally:
        # the database is shared by the session: later tests expect loopback refused
        await ivr_engine.store.tenants.update("default", allow_cidrs=())


async def _keys(engine: Engine, session_id: Any) -> list[Key]:
    await engine.store.journal.flush()
    rows = await engine.store.db.fetch(
        "SELECT m.name AS menu, d.digit, d.outcome, d.input_value FROM call_dtmf_interaction d "
        "JOIN ivr_menu m ON m.id = d.menu_id WHERE d.session_id = $1 ORDER BY d.id",
        session_id,
    )
    return [(r["menu"], r["digit"], r["outcome"], r["input_value"]) for r in rows]


@pytest.mark.parametrize(("recipe", "walk"), CASES, ids=[f"{r[:-5]}-{w}" for r, w in CASES])
async def test_a_caller_walks_the_recipe(
    recipe: str,
    walk: str,
    recipes_tenant: Engine,
    erp: Erp,
    sipp_phone: Callable[..., SippPhone],
    tmp_path: Path,
) -> None:
    engine = recipes_tenant
    plan = WALKS[recipe][walk]
    text = (RECIPES / recipe).read_text().replace(PUBLISHED_ERP, erp.url)
    tenant = await engine.store.tenants.by_slug("default")
    await engine.use_cases.ivr_menus.import_menus(tenant, load_menus(text, file=recipe))
    if plan.erp_answer is not None:
        erp.answer = (200, plan.erp_answer)
    caller = dtmf_caller(
        sipp_phone,
        tmp_path / "caller",
        plan.digits,
        number=DIALLED,
        wait_ms=500,
        gap_ms=plan.gap_ms,
    )
    if plan.transferred:
        with (
            sipp_phone("uas_answer_then_hangup.xml", port=5071, hold_ms=1000) as agent,
            sipp_phone("uas_noanswer.xml", port=5072),
        ):
            watch = await completed_ivr_call(engine, caller, within=60)
            assert await agent.wait_async(30) == 0, agent.report()
        [row] = [r for r in await transfer_rows(engine, watch) if r["state"] == "completed"]
        assert (row["option_menu"], row["option_key"]) == ("main", "1"), row
    else:
        watch = await completed_ivr_call(engine, caller, within=60)
    assert await _keys(engine, watch.session_id) == plan.keys, watch.trail()
    if plan.erp_path is None:
        assert erp.requests.empty()
    else:
        asked = await erp.request(within=5)
        assert asked.path == plan.erp_path
        caller_number = (await watch.session()).caller_number or ""
        for name, value in plan.erp_query.items():
            assert asked.query[name] == (caller_number if value == CALLER else value), asked
