"""The sandbox Asterisk works as the engine needs it: ARI, Stasis, and SIPp phones.

Each test rings agent1 (PJSIP/agent1 -> SIPp on 127.0.0.1:5071) with one of the phone
scenarios of engine/devtools/scenarios and checks what ARI reports. Waits are on events,
bounded.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from pathlib import Path

import aiohttp
import pytest

from engine.devtools.sandbox import ARI_URL, Sandbox
from tests.e2e.helpers import AriEvents, SippPhone

pytestmark = pytest.mark.e2e

AGENT1 = "PJSIP/agent1"
AGENT1_PORT = 5071
TRUNK_PORT = 5080

# Hangup causes as ARI reports them (Q.850).
NORMAL_CLEARING = 16
USER_BUSY = 17
NO_ANSWER = 19


async def originate(ari: aiohttp.ClientSession, endpoint: str, **params: str) -> str:
    """``POST /channels`` into the ctc app; the new channel's id."""
    channel_id = f"test-{uuid.uuid4().hex[:12]}"
    query = {"endpoint": endpoint, "app": "ctc", "channelId": channel_id, **params}
    async with ari.post(f"{ARI_URL}/channels", params=query) as resp:
        body = await resp.text()
        assert resp.status == 200, f"originate {endpoint}: HTTP {resp.status} {body}"
    return channel_id


async def test_ari_answers_as_the_ctc_user(sandbox: Sandbox, ari: aiohttp.ClientSession) -> None:
    async with ari.get(f"{ARI_URL}/asterisk/info") as resp:
        assert resp.status == 200
        info = await resp.json()
    assert info["system"]["version"].startswith("22.")

    async with (
        aiohttp.ClientSession() as anonymous,
        anonymous.get(f"{ARI_URL}/asterisk/info") as resp,
    ):
        assert resp.status == 401

    status = sandbox.status()
    assert status.running
    assert status.ari_ok
    assert status.version == info["system"]["version"]
    assert "agent1" in sandbox.asterisk_cli("pjsip show endpoints")


async def test_originate_answer_and_hang_up(
    ari: aiohttp.ClientSession,
    ari_events: AriEvents,
    sipp_phone: Callable[..., SippPhone],
) -> None:
    with sipp_phone("uas_answer.xml", port=AGENT1_PORT) as phone:
        channel_id = await originate(ari, AGENT1)

        start = await ari_events.wait_for("StasisStart", channel_id=channel_id)
        assert start["channel"]["state"] == "Up"
        assert start["application"] == "ctc"

        async with ari.delete(f"{ARI_URL}/channels/{channel_id}") as resp:
            assert resp.status == 204

        await ari_events.wait_for("StasisEnd", channel_id=channel_id)
        destroyed = await ari_events.wait_for("ChannelDestroyed", channel_id=channel_id)
        assert destroyed["cause"] == NORMAL_CLEARING
        assert await phone.wait_async() == 0, phone.report()


async def test_busy_phone_ends_with_cause_17(
    ari: aiohttp.ClientSession,
    ari_events: AriEvents,
    sipp_phone: Callable[..., SippPhone],
) -> None:
    with sipp_phone("uas_busy.xml", port=AGENT1_PORT) as phone:
        channel_id = await originate(ari, AGENT1)

        destroyed = await ari_events.wait_for("ChannelDestroyed", channel_id=channel_id)
        assert destroyed["cause"] == USER_BUSY, destroyed
        assert await phone.wait_async() == 0, phone.report()
    assert not [e for e in ari_events.events if e["type"] == "StasisStart"], (
        "a busy phone never enters the app"
    )


async def test_phone_hanging_up_ends_with_cause_16(
    ari: aiohttp.ClientSession,
    ari_events: AriEvents,
    sipp_phone: Callable[..., SippPhone],
) -> None:
    with sipp_phone("uas_answer_then_hangup.xml", port=AGENT1_PORT, hold_ms=500) as phone:
        channel_id = await originate(ari, AGENT1)

        await ari_events.wait_for("StasisStart", channel_id=channel_id)
        # No DELETE from us: the phone sends BYE after its 500 ms of talk.
        await ari_events.wait_for("StasisEnd", channel_id=channel_id)
        destroyed = await ari_events.wait_for("ChannelDestroyed", channel_id=channel_id)
        assert destroyed["cause"] == NORMAL_CLEARING, destroyed
        assert await phone.wait_async() == 0, phone.report()


async def test_unanswered_phone_ends_with_cause_19(
    ari: aiohttp.ClientSession,
    ari_events: AriEvents,
    sipp_phone: Callable[..., SippPhone],
) -> None:
    with sipp_phone("uas_noanswer.xml", port=AGENT1_PORT) as phone:
        channel_id = await originate(ari, AGENT1, timeout="1")

        ringing = await ari_events.wait_for(
            "ChannelStateChange",
            channel_id=channel_id,
            where=lambda e: e["channel"]["state"] == "Ringing",
        )
        assert ringing["channel"]["id"] == channel_id
        destroyed = await ari_events.wait_for("ChannelDestroyed", channel_id=channel_id)
        assert destroyed["cause"] == NO_ANSWER, destroyed
        assert await phone.wait_async() == 0, phone.report()


async def test_bridged_agent_and_customer_customer_hangs_up(
    ari: aiohttp.ClientSession,
    ari_events: AriEvents,
    sipp_phone: Callable[..., SippPhone],
) -> None:
    """Click-to-call in miniature: agent and customer (via the trunk) in a mixing bridge.

    Bridging makes Asterisk send connected-line updates to both phones mid-call; the
    scenarios must take them. The customer hangs up; the agent leg stays ours to end.
    """
    with (
        sipp_phone("uas_answer.xml", port=AGENT1_PORT) as agent,
        sipp_phone("uas_answer_then_hangup.xml", port=TRUNK_PORT, hold_ms=1000) as customer,
    ):
        agent_id = await originate(ari, AGENT1)
        await ari_events.wait_for("StasisStart", channel_id=agent_id)
        customer_id = await originate(ari, "PJSIP/15551230000@trunk")
        await ari_events.wait_for("StasisStart", channel_id=customer_id)

        async with ari.post(f"{ARI_URL}/bridges", params={"type": "mixing"}) as resp:
            assert resp.status == 200
            bridge_id = (await resp.json())["id"]
        try:
            async with ari.post(
                f"{ARI_URL}/bridges/{bridge_id}/addChannel",
                params={"channel": f"{agent_id},{customer_id}"},
            ) as resp:
                assert resp.status == 204
            await ari_events.wait_for("ChannelEnteredBridge", channel_id=agent_id)
            await ari_events.wait_for("ChannelEnteredBridge", channel_id=customer_id)

            destroyed = await ari_events.wait_for("ChannelDestroyed", channel_id=customer_id)
            assert destroyed["cause"] == NORMAL_CLEARING, destroyed
            assert await customer.wait_async() == 0, customer.report()

            async with ari.delete(f"{ARI_URL}/channels/{agent_id}") as resp:
                assert resp.status == 204
            await ari_events.wait_for("ChannelDestroyed", channel_id=agent_id)
            assert await agent.wait_async() == 0, agent.report()
        finally:
            async with ari.delete(f"{ARI_URL}/bridges/{bridge_id}"):
                pass


def _sandbox_leftovers(root: Path) -> tuple[list[int], list[str]]:
    """Living Asterisk processes chrooted into ``root``, and mounts under it."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if os.readlink(proc / "root") != str(root):
                continue
            states = {
                (task / "stat").read_text().rsplit(")", 1)[1].split()[0]
                for task in (proc / "task").iterdir()
            }
        except OSError:
            continue
        if states - {"Z", "X"}:  # some thread still runs (a zombie leader is not enough)
            pids.append(int(proc.name))
    mounts = [
        line.split()[1]
        for line in Path("/proc/mounts").read_text().splitlines()
        if line.split()[1].startswith(f"{root}/")
    ]
    return pids, mounts


def test_up_and_down_are_idempotent(sandbox: Sandbox) -> None:
    """Runs last: up twice is harmless, down twice is harmless and leaves nothing behind."""
    first = sandbox.up()
    again = sandbox.up()
    assert again.pid == first.pid
    assert again.ari_ok
    root = first.root
    assert root is not None

    sandbox.down()
    sandbox.down()
    assert not sandbox.status().running
    assert _sandbox_leftovers(root.resolve()) == ([], [])

    restarted = sandbox.up()  # leave it as the session fixture expects it
    assert restarted.ari_ok
