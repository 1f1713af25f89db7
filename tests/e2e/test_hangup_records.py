"""What the ``[ctc-hangup]`` handler records in AstDB, read and swept over AMI (sandbox).

The crash tests (test_engine_crash.py) show the records end calls at the right time; these
show the records themselves: written by a real hangup with the real cause, read per session,
and swept only for sessions that are over.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from typing import Any

import aiohttp
import pytest

from engine.asterisk.flows.hangup_records import FAMILY, HANDLER_VARIABLE, HangupRecords
from engine.asterisk.links.ami import AmiLink, AmiResponseError
from engine.devtools.sandbox import ARI_URL, Sandbox
from tests.e2e.helpers import AMI_PASSWORD, AriEvents

pytestmark = pytest.mark.e2e


@pytest.fixture
async def ami(sandbox: Sandbox) -> AsyncIterator[AmiLink]:
    link = AmiLink("127.0.0.1", 5038, "ctc", AMI_PASSWORD)
    async with link:
        await link.wait_connected(15)
        yield link


async def test_a_hangup_is_recorded_with_its_time_and_cause_and_read_per_session(
    ami: AmiLink, ari: aiohttp.ClientSession, ari_events: AriEvents
) -> None:
    sid = uuid.uuid4()
    channel = f"c2c-{sid}-agent"
    params = {"endpoint": "Local/answer@ctc-sandbox", "app": "ctc"}
    body = {"variables": {"CTC_SESSION_ID": str(sid), HANDLER_VARIABLE: "ctc-hangup,s,1"}}
    async with ari.post(f"{ARI_URL}/channels/{channel}", params=params, json=body) as resp:
        assert resp.status == 200, await resp.text()
    await ari_events.wait_for("StasisStart", channel_id=channel)
    async with ari.delete(f"{ARI_URL}/channels/{channel}", params={"reason": "busy"}) as resp:
        assert resp.status == 204
    destroyed = await ari_events.wait_for("ChannelDestroyed", channel_id=channel)
    records = HangupRecords(ami)
    ends = await records.read(sid)
    assert set(ends) == {channel}
    assert ends[channel].cause == destroyed["cause"] == 17
    assert abs((ends[channel].at - _when(destroyed)).total_seconds()) < 1
    assert await records.sweep(_live()) >= 1  # this session's, and any a test left
    assert await records.read(sid) == {}


async def test_the_sweep_deletes_only_records_of_sessions_that_are_over(ami: AmiLink) -> None:
    live, over = uuid.uuid4(), uuid.uuid4()
    keys = [
        f"{live}/c2c-{live}-agent",
        f"{over}/c2c-{over}-agent",
        f"{over}/c2c-{over}-customer",
        "/PJSIP-agent1-00000001",  # a copied handler on a channel without CTC_SESSION_ID
        "not-a-session/PJSIP-agent1-00000002",
    ]
    for key in keys:
        await ami.action("DBPut", Family=FAMILY, Key=key, Val="1796006565.499,16")
    try:
        records = HangupRecords(ami)
        assert await records.sweep(_live(live)) >= 1
        assert set(await records.read(live)) == {f"c2c-{live}-agent"}
        assert await records.read(over) == {}
        left = await ami.action("DBGetTree", Family=FAMILY)
        remaining = {str(e["Key"]) for e in left["events"]}
        assert f"/{FAMILY}//PJSIP-agent1-00000001" in remaining
        assert f"/{FAMILY}/not-a-session/PJSIP-agent1-00000002" in remaining
    finally:
        for key in keys:
            with contextlib.suppress(AmiResponseError):  # swept already
                await ami.action("DBDel", Family=FAMILY, Key=key)


def _live(*sessions: uuid.UUID) -> Callable[[], Awaitable[list[uuid.UUID]]]:
    async def live() -> list[uuid.UUID]:
        return list(sessions)

    return live


def _when(event: dict[str, Any]) -> datetime:
    return datetime.strptime(str(event["timestamp"]), "%Y-%m-%dT%H:%M:%S.%f%z")
