"""An inbound caller keys in DTMF: SIPp (``uac_dtmf.xml``) dials into ``from-caller``.

The caller (endpoint ``caller``, 127.0.0.1:5090) dials a number; the dialplan hands the call
to the ``ctc`` Stasis app with the args ``ivr,main``. The test plays the engine's part over
raw ARI: it answers the channel, then reads the digits the caller sends as RFC 2833 events
(sip-tester's ``dtmf_2833_*.pcap`` captures) from ChannelDtmfReceived, in order.
Every wait is on an ARI event or on SIPp's exit, bounded; nothing sleeps and hopes.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from engine.devtools.dtmf_caller import CALLER_SCENARIO, caller_csv, caller_scenario
from tests.e2e.helpers import ARI_URL, AriEvents, SippPhone

pytestmark = pytest.mark.e2e

CALLER_PORT = 5090  # dialplan/pjsip.conf: endpoint "caller" -> context from-caller
DIALLED = "5551000"


def dtmf_caller(
    sipp_phone: Callable[..., SippPhone],
    workdir: Path,
    digits: str,
    *,
    number: str = DIALLED,
    restamp: bool = True,
    **options: Any,
) -> SippPhone:
    """A SIPp caller on 127.0.0.1:5090 that dials ``number`` and sends ``digits``.

    ``options`` go to :func:`caller_csv` (``wait_ms``, ``gap_ms``, ``hang_up``, ``hold_ms``).
    ``restamp=False`` runs ``uac_dtmf.xml`` as shipped, with the stock captures: only for
    digits in the captures' timestamp order (see
    :func:`engine.devtools.dtmf_caller.restamped_capture`).
    """
    csv = caller_csv(workdir / "caller.csv", digits, **options)
    scenario = caller_scenario(workdir, digits) if digits and restamp else CALLER_SCENARIO
    return sipp_phone(
        str(scenario),
        port=CALLER_PORT,
        extra_args=("-s", number, "-inf", str(csv), "127.0.0.1:5060"),
    )


async def _answered_call(ari: aiohttp.ClientSession, events: AriEvents) -> str:
    """Wait for the caller's StasisStart (IVR "main"), answer it; the channel id."""
    start = await events.wait_for(
        "StasisStart", where=lambda e: e["channel"]["dialplan"]["exten"] == DIALLED, within=15
    )
    assert start["args"] == ["ivr", "main"], start
    channel_id: str = start["channel"]["id"]
    async with ari.post(f"{ARI_URL}/channels/{channel_id}/answer") as resp:
        assert resp.status == 204, await resp.text()
    return channel_id


async def _digits(events: AriEvents, channel_id: str, count: int) -> str:
    got = ""
    for _ in range(count):
        event = await events.wait_for("ChannelDtmfReceived", channel_id=channel_id, within=15)
        got += event["digit"]
    return got


async def test_caller_keys_menu_choice_and_account_then_engine_hangs_up(
    ari: aiohttp.ClientSession,
    ari_events: AriEvents,
    sipp_phone: Callable[..., SippPhone],
    tmp_path: Path,
) -> None:
    # Menu choice "1", then a 6-digit account number closed by "#".
    menu, account = "1", "123456#"
    with dtmf_caller(sipp_phone, tmp_path, menu + account) as caller:
        channel_id = await _answered_call(ari, ari_events)
        assert await _digits(ari_events, channel_id, len(menu)) == menu, caller.report()
        assert await _digits(ari_events, channel_id, len(account)) == account, caller.report()

        async with ari.delete(f"{ARI_URL}/channels/{channel_id}") as resp:
            assert resp.status == 204, await resp.text()
        await ari_events.wait_for("StasisEnd", channel_id=channel_id, within=10)
        assert await caller.wait_async(20) == 0, caller.report()


async def test_caller_hangs_up_after_digits(
    ari: aiohttp.ClientSession,
    ari_events: AriEvents,
    sipp_phone: Callable[..., SippPhone],
    tmp_path: Path,
) -> None:
    digits = "90*"  # out of the stock captures' order: needs the restamped variant
    with dtmf_caller(sipp_phone, tmp_path, digits, hang_up=True) as caller:
        channel_id = await _answered_call(ari, ari_events)
        assert await _digits(ari_events, channel_id, len(digits)) == digits, caller.report()

        # The caller's BYE (Reason: Q.850 cause 16) ends the call. ChannelDestroyed is not
        # ours to see: after StasisEnd the channel is back in the dialplan, out of the app.
        hangup = await ari_events.wait_for("ChannelHangupRequest", channel_id=channel_id, within=15)
        assert hangup["cause"] == 16, hangup
        await ari_events.wait_for("StasisEnd", channel_id=channel_id)
        assert await caller.wait_async(20) == 0, caller.report()


async def test_shipped_scenario_takes_mid_call_update(
    ari: aiohttp.ClientSession,
    ari_events: AriEvents,
    sipp_phone: Callable[..., SippPhone],
    tmp_path: Path,
) -> None:
    # uac_dtmf.xml as shipped (stock captures: digits in their timestamp order). Changing
    # the connected line makes Asterisk send the caller an UPDATE (a re-INVITE when the
    # phone does not allow UPDATE); the caller answers it and carries on with its digits.
    digits = "123#"
    with dtmf_caller(sipp_phone, tmp_path, digits, restamp=False, hang_up=True) as caller:
        channel_id = await _answered_call(ari, ari_events)
        async with ari.post(
            f"{ARI_URL}/channels/{channel_id}/variable",
            params={"variable": "CONNECTEDLINE(num)", "value": "5551999"},
        ) as resp:
            assert resp.status == 204, await resp.text()
        assert await _digits(ari_events, channel_id, len(digits)) == digits, caller.report()

        await ari_events.wait_for("StasisEnd", channel_id=channel_id, within=15)
        assert await caller.wait_async(20) == 0, caller.report()
