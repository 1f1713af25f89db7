"""sip_trunk providers end to end: the customer leg goes out through the provider's own PJSIP
trunk with its prefix rules and caller ID, and fails over to the next trunk only when the
first answered that it could not take the call.

Agent: SIPp on 127.0.0.1:5071 (agent1). Carriers: SIPp behind the sandbox's `trunk-a`
(127.0.0.1:5081) and `trunk-b` (127.0.0.1:5082). Each carrier's SIP messages are traced to a
file, so what it received (or that it received nothing) is read from what it saw.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from engine.daemon import Engine
from engine.doctor import run_doctor
from tests.e2e.engine_fixtures import AGENT_PORT, CUSTOMER, CallWatcher, call_api, initiate
from tests.e2e.helpers import SippPhone

pytestmark = pytest.mark.e2e

TRUNK_A_PORT = 5081
TRUNK_B_PORT = 5082
TRUNK_B_CALLER_ID = "+14155559999"


@pytest.fixture
async def trunks(c2c_engine: Engine) -> AsyncIterator[Callable[..., Awaitable[dict[str, Any]]]]:
    """Factory: ``await trunks("trunk-a", 10, strip_digits=1)`` adds an active sip_trunk
    provider to the default tenant; each is deactivated after the test, so the next test's
    failover never finds it (the database is shared by the session)."""
    made: list[uuid.UUID] = []

    async def add(endpoint: str, priority: int, **rules: Any) -> dict[str, Any]:
        status, body = await call_api(
            c2c_engine,
            "POST",
            "voip-providers",
            {
                "name": f"{endpoint}-{uuid.uuid4().hex[:8]}",
                "provider_type": "sip_trunk",
                "priority": priority,
                "config": {"endpoint": endpoint, **rules},
            },
        )
        assert status == 201, body
        made.append(uuid.UUID(body["id"]))
        return dict(body)

    yield add
    await c2c_engine.store.db.execute(
        "UPDATE voip_provider SET is_active = false WHERE id = ANY($1::uuid[])", made
    )


def _carrier(
    sipp_phone: Callable[..., SippPhone], scenario: str, port: int, tmp_path: Path
) -> tuple[SippPhone, Path]:
    messages = tmp_path / f"messages_{port}.log"
    phone = sipp_phone(
        scenario, port=port, extra_args=("-trace_msg", "-message_file", str(messages))
    )
    return phone, messages


def _received(messages: Path) -> str:
    return messages.read_text(errors="replace") if messages.exists() else ""


async def _statuses(engine: Engine, watch: CallWatcher) -> list[str | None]:
    session = await watch.session()
    events = await engine.store.sessions.events(session.tenant_id, session.id)
    return [e.status_to for e in events if e.status_to is not None]


async def _place(engine: Engine, provider: dict[str, Any]) -> CallWatcher:
    """A click-to-call whose provider is ``provider``, watched from before it exists."""
    watch = CallWatcher(engine)
    body = await initiate(engine, provider_id=provider["id"])
    watch.session_id = uuid.UUID(body["id"])
    return watch


async def _attempts(engine: Engine, watch: CallWatcher) -> list[dict[str, Any]]:
    session = await watch.session()
    events = await engine.store.sessions.events(session.tenant_id, session.id)
    return [dict(e.payload) for e in events if e.event_type == "provider.attempt"]


async def test_a_trunk_answering_503_fails_over_and_the_call_completes_through_the_next(
    c2c_engine: Engine,
    sipp_phone: Callable[..., SippPhone],
    tmp_path: Path,
    trunks: Callable[..., Awaitable[dict[str, Any]]],
) -> None:
    first = await trunks("trunk-a", 10)
    second = await trunks("trunk-b", 20, strip_digits=1, caller_id=TRUNK_B_CALLER_ID)
    trunk_a, a_saw = _carrier(sipp_phone, "uas_unavailable.xml", TRUNK_A_PORT, tmp_path)
    trunk_b, b_saw = _carrier(sipp_phone, "uas_answer_then_hangup.xml", TRUNK_B_PORT, tmp_path)
    with sipp_phone("uas_answer.xml", port=AGENT_PORT) as agent, trunk_a, trunk_b:
        watch = await _place(c2c_engine, first)
        end = await watch.until("completed", "failed", "busy", "no_answer", "canceled", within=45)
        assert end.status_to == "completed", watch.trail()
        assert await trunk_a.wait_async(30) == 0, trunk_a.report()
        assert await trunk_b.wait_async(30) == 0, trunk_b.report()
        assert await agent.wait_async(30) == 0, agent.report()

    # the first carrier got the number as it is, the second its own form and caller ID
    assert f"INVITE sip:{CUSTOMER}@" in _received(a_saw)
    b_invite = _received(b_saw)
    assert f"INVITE sip:{CUSTOMER[1:]}@" in b_invite
    caller = re.escape(TRUNK_B_CALLER_ID)
    assert re.search(rf"^From: .*<sip:{caller}@", b_invite, re.MULTILINE), b_invite
    assert re.search(rf"^P-Asserted-Identity: .*<sip:{caller}@", b_invite, re.MULTILINE)

    # the agent was dialled once, the customer leg twice, on one dialing_customer
    assert await _statuses(c2c_engine, watch) == [
        "queued",
        "dialing_agent",
        "agent_answered",
        "dialing_customer",
        "connected",
        "completed",
    ]
    attempts = await _attempts(c2c_engine, watch)
    assert [(a["provider"], a["outcome"], a["sip_code"]) for a in attempts] == [
        (first["name"], "trunk_unavailable", 503),
        (second["name"], "created", None),
    ]
    assert attempts[0]["next_provider"] == second["name"]
    assert attempts[0]["hangup_cause"] == 34
    assert [a["attempt"] for a in attempts] == [1, 2]
    assert [a["endpoint"] for a in attempts] == ["trunk-a", "trunk-b"]
    # the trunk that carried it is the session's provider (billing, stats, limits)
    session = await watch.session()
    stored = await c2c_engine.store.sessions.get(session.tenant_id, session.id)
    assert str(stored.provider_id) == second["id"]


async def test_a_trunk_answering_486_ends_the_call_busy_without_failover(
    c2c_engine: Engine,
    sipp_phone: Callable[..., SippPhone],
    tmp_path: Path,
    trunks: Callable[..., Awaitable[dict[str, Any]]],
) -> None:
    first = await trunks("trunk-a", 10)
    await trunks("trunk-b", 20)
    trunk_a, a_saw = _carrier(sipp_phone, "uas_busy.xml", TRUNK_A_PORT, tmp_path)
    trunk_b, b_saw = _carrier(sipp_phone, "uas_answer.xml", TRUNK_B_PORT, tmp_path)
    with sipp_phone("uas_answer.xml", port=AGENT_PORT) as agent, trunk_a, trunk_b:
        watch = await _place(c2c_engine, first)
        end = await watch.until("busy", "completed", "failed", "no_answer", "canceled")
        assert end.status_to == "busy", watch.trail()
        assert await trunk_a.wait_async(30) == 0, trunk_a.report()
        assert await agent.wait_async(30) == 0, agent.report()  # got its BYE
        assert trunk_b.returncode is None, trunk_b.report()  # still waiting for a call
    assert "INVITE sip:" in _received(a_saw)
    assert "INVITE" not in _received(b_saw)
    assert await _statuses(c2c_engine, watch) == [
        "queued",
        "dialing_agent",
        "agent_answered",
        "dialing_customer",
        "busy",
    ]
    attempts = await _attempts(c2c_engine, watch)
    assert [(a["provider"], a["outcome"], a["sip_code"]) for a in attempts] == [
        (first["name"], "busy", 486)
    ]
    assert attempts[0]["next_provider"] is None


async def test_doctor_checks_each_active_sip_trunks_endpoint_on_the_asterisk(
    c2c_engine: Engine, trunks: Callable[..., Awaitable[dict[str, Any]]]
) -> None:
    there = await trunks("trunk-a", 10)
    missing = await trunks("carrier-nowhere", 20)
    lines = [check.line for check in await run_doctor(c2c_engine.settings)]
    assert any(
        line.startswith("ok   ")
        and f"sip_trunk provider {there['name']} " in line
        and "PJSIP endpoint trunk-a exists" in line
        for line in lines
    ), lines
    assert any(
        line.startswith("FAIL ")
        and f"sip_trunk provider {missing['name']} " in line
        and "no PJSIP endpoint carrier-nowhere on the Asterisk" in line
        for line in lines
    ), lines
