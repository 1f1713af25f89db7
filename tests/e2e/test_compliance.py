"""Compliance and caller ID end to end, on the sandbox Asterisk with SIPp phones.

- A blocklisted number is answered 403 and ends ``rejected``; the customer phone (SIPp,
  tracing every SIP message) then receives the INVITE of the next, allowed call only, and
  that INVITE presents the profile's local-presence number in ``From`` and in
  ``P-Asserted-Identity``.
- A call outside the callee's calling hours is rejected and never reaches Asterisk.
- With a consent rule, the announcement plays on the bridge and finishes before the
  recording starts.

Each test uses its own tenant, so its rules touch no other test's calls.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from engine.daemon import Engine
from engine.devtools.sandbox import ARI_URL, Sandbox
from engine.devtools.sipp import SippPhone
from tests.e2e.engine_fixtures import (
    AGENT_PORT,
    CUSTOMER,
    CUSTOMER_PORT,
    CallWatcher,
    initiate,
)
from tests.e2e.helpers import ari_session
from tests.support.http import socket_api
from tests.support.tenants import new_tenant, tenant_headers

pytestmark = pytest.mark.e2e

BLOCKED = "+14155550111"  # same trunk, same SIPp phone as CUSTOMER
LOCAL_NUMBER = "+14155550122"  # the pool's number in CUSTOMER's area code (415)


async def _post(engine: Engine, slug: str, path: str, body: Any) -> tuple[int, Any]:
    async with socket_api(engine.settings.api.socket) as api:
        status, data, _ = await api.call(
            "POST", f"/api/v1/{path}", json=body, headers=tenant_headers(slug)
        )
    return status, data


async def _refused(engine: Engine, slug: str, number: str, rule: str) -> uuid.UUID:
    """Initiate a call to ``number``: 403 naming ``rule``, the session stored rejected."""
    status, data = await _post(
        engine,
        slug,
        "click-to-call/initiate",
        {"agent_number": "agent1", "customer_number": number},
    )
    assert status == 403, data
    detail = data["error"]["details"][0]
    assert detail["rule"] == rule
    session_id = uuid.UUID(detail["session_id"])
    session = await engine.store.sessions.by_id(session_id)
    assert session is not None
    assert session.status.value == "rejected"
    assert session.agent_channel_id is None
    assert session.customer_channel_id is None
    events = await engine.store.sessions.events(session.tenant_id, session_id)
    assert [e.event_type for e in events] == ["session.created", "session.rejected"]
    assert events[1].payload["rule"] == rule
    return session_id


async def _end(engine: Engine, slug: str, watcher: CallWatcher) -> None:
    status, data = await _post(
        engine, slug, f"click-to-call/sessions/{watcher.session_id}/end", {"reason": "e2e"}
    )
    assert status == 200, data
    await watcher.until("completed", within=20)


def _invites(trace: Path) -> list[str]:
    """The INVITE requests SIPp received, as text (its -trace_msg file: each message
    after a dashed line and a "UDP message received [n] bytes :" line)."""
    text = trace.read_text(errors="replace") if trace.exists() else ""
    found = []
    for chunk in re.split(r"^-{20,}.*$", text, flags=re.M):
        lines = chunk.strip().splitlines()
        if lines and lines[0].startswith("UDP message received"):
            message = "\n".join(lines[1:]).strip()
            if message.startswith("INVITE sip:"):
                found.append(message)
    return found


def _header(message: str, name: str) -> str:
    found = re.search(rf"^{name}:\s*(.+)$", message, re.M | re.I)
    assert found is not None, f"no {name} in\n{message}"
    return found.group(1).strip()


async def _connected_then_ended(engine: Engine, slug: str, **body: Any) -> CallWatcher:
    watcher = CallWatcher(engine)
    placed = await initiate(engine, tenant=slug, **body)
    watcher.session_id = uuid.UUID(placed["id"])
    connected = await watcher.until("connected", "failed", "busy", "no_answer", within=30)
    assert connected.status_to == "connected", watcher.trail()
    return watcher


async def test_blocked_number_never_dialled_and_local_presence_caller_id(
    c2c_engine: Engine, sandbox: Sandbox, sipp_phone: Callable[..., SippPhone], tmp_path: Path
) -> None:
    tenant = await new_tenant(c2c_engine.store)
    slug = tenant.slug
    status, data = await _post(
        c2c_engine,
        slug,
        "compliance/lists",
        {"entries": [{"list_type": "blocklist", "number": BLOCKED, "reason": "e2e"}]},
    )
    assert status == 201, data
    profile = {
        "name": "local",
        "caller_id": "+12125550199",
        "rotation": "local_presence",
        "pool": ["+12125550111", LOCAL_NUMBER],
        "is_default": True,
    }
    status, data = await _post(c2c_engine, slug, "caller-id-profiles", profile)
    assert status == 201, data

    trace = tmp_path / "customer_messages.log"
    agent = sipp_phone("uas_answer.xml", port=AGENT_PORT)
    customer = sipp_phone(
        "uas_answer.xml",
        port=CUSTOMER_PORT,
        extra_args=("-trace_msg", "-message_file", str(trace)),
    )
    with agent, customer:
        await _refused(c2c_engine, slug, BLOCKED, "blocklist")
        watcher = await _connected_then_ended(c2c_engine, slug)
        session = await watcher.session()
        assert session.caller_id == LOCAL_NUMBER
        chosen = await watcher.until_event("caller_id.chosen", within=5)
        assert chosen.payload["caller_id"] == LOCAL_NUMBER
        await _end(c2c_engine, slug, watcher)
        assert await customer.wait_async(30) == 0, customer.report()
        assert await agent.wait_async(30) == 0, agent.report()

    invites = _invites(trace)
    assert invites, trace.read_text(errors="replace")[:2000]
    assert not any(BLOCKED in m for m in invites), invites
    # new calls only (a re-INVITE of the bridged call carries the To tag of the dialog)
    initial = [m for m in invites if ";tag=" not in _header(m, "To")]
    assert [m.splitlines()[0].split()[1] for m in initial] == [f"sip:{CUSTOMER}@127.0.0.1:5080"]
    initial_invite = initial[0]
    assert f"sip:{LOCAL_NUMBER}@" in _header(initial_invite, "From"), initial_invite
    pai = _header(initial_invite, "P-Asserted-Identity")
    # Asterisk writes it from the caller ID the engine set (the trunk's send_pai = yes)
    assert pai == f"<sip:{LOCAL_NUMBER}@127.0.0.1>", initial_invite
    assert len(re.findall(r"^P-Asserted-Identity:", initial_invite, re.M)) == 1


async def test_a_call_outside_the_callees_calling_hours_is_rejected(
    c2c_engine: Engine, sandbox: Sandbox
) -> None:
    tenant = await new_tenant(c2c_engine.store)
    # a one-minute window twelve hours from now in San Francisco (CUSTOMER's zone)
    local = datetime.now(UTC).astimezone(ZoneInfo("America/Los_Angeles")) + timedelta(hours=12)
    rule = {
        "name": "business-hours",
        "rule_type": "calling_hours",
        "allowed_start": local.strftime("%H:%M"),
        "allowed_end": (local + timedelta(minutes=1)).strftime("%H:%M"),
    }
    status, data = await _post(c2c_engine, tenant.slug, "compliance/rules", rule)
    assert status == 201, data
    session_id = await _refused(c2c_engine, tenant.slug, CUSTOMER, "business-hours")
    # nothing of the call exists in Asterisk
    async with ari_session() as ari, ari.get(f"{ARI_URL}/channels") as resp:
        channels = [c["id"] for c in await resp.json()]
    assert not [c for c in channels if str(session_id) in c], channels


async def test_consent_announcement_finishes_before_recording_starts(
    c2c_engine: Engine, sandbox: Sandbox, sipp_phone: Callable[..., SippPhone]
) -> None:
    tenant = await new_tenant(c2c_engine.store)
    await c2c_engine.store.recording.set_default(tenant.id, is_enabled=True, fmt="wav")
    rule = {"name": "consent", "rule_type": "consent_required", "params": {}}
    status, data = await _post(c2c_engine, tenant.slug, "compliance/rules", rule)
    assert status == 201, data
    with (
        sipp_phone("uas_answer.xml", port=AGENT_PORT),
        sipp_phone("uas_answer.xml", port=CUSTOMER_PORT),
    ):
        watcher = await _connected_then_ended(c2c_engine, tenant.slug)
        started = await watcher.until_event("recording.started", within=30)
        played = await watcher.until_event("recording.consent_played", within=1)
        assert played.seq < started.seq, watcher.trail()
        assert played.payload["media"] == "sound:conf-now-recording"
        connected = next(e for e in watcher.events if e.status_to == "connected")
        assert connected.seq < played.seq
        await _end(c2c_engine, tenant.slug, watcher)
        await watcher.until_event("recording.finished", within=30)
