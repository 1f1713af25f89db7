"""An inbound caller keys in DTMF: SIPp (``uac_dtmf.xml``) dials into ``from-caller``.

The caller (endpoint ``caller``, 127.0.0.1:5090) dials a number; the dialplan hands the call
to the ``ctc`` Stasis app with the args ``ivr,main``. The test plays the engine's part over
raw ARI: it answers the channel, then reads the digits the caller sends as RFC 2833 events
(sip-tester's ``dtmf_2833_*.pcap`` captures) from ChannelDtmfReceived, in order.
Every wait is on an ARI event or on SIPp's exit, bounded; nothing sleeps and hopes.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.e2e.helpers import ARI_URL, SCENARIOS, AriEvents, SippPhone

pytestmark = pytest.mark.e2e

CALLER_PORT = 5090  # dialplan/pjsip.conf: endpoint "caller" -> context from-caller
DIALLED = "5551000"
CAPTURES = Path("/usr/share/sip-tester")  # Debian sip-tester: dtmf_2833_<key>.pcap
CAPTURE_KEY = {**{d: d for d in "0123456789"}, "*": "star", "#": "pound"}


def restamped_capture(key: str, position: int, out: Path) -> Path:
    """sip-tester's RFC 2833 capture of ``key``, moved to time slot ``position``.

    The stock captures carry fixed RTP timestamps (1 < 0 < 2 < ... < 9 < * < #) and Asterisk
    drops a DTMF event whose timestamp is not newer than the previous digit's: "11", "21" or
    "90" would lose digits. Each position gets its own, increasing, sequence numbers and
    timestamp; the UDP checksum is cleared (0: none) since the payload changed.
    """
    data = bytearray((CAPTURES / f"dtmf_2833_{CAPTURE_KEY[key]}.pcap").read_bytes())
    (linktype,) = struct.unpack_from("<I", data, 20)
    assert linktype == 1, f"expected an Ethernet capture, got link type {linktype}"
    offset, first_seq = 24, None
    while offset < len(data):
        (incl_len,) = struct.unpack_from("<I", data, offset + 8)
        frame = offset + 16
        ip_header = (data[frame + 14] & 0x0F) * 4
        udp = frame + 14 + ip_header
        rtp = udp + 8
        (seq,) = struct.unpack_from(">H", data, rtp + 2)
        first_seq = seq if first_seq is None else first_seq
        new_seq = (1000 + 100 * position + seq - first_seq) & 0xFFFF
        struct.pack_into(">HI", data, rtp + 2, new_seq, 160_000 + 8_000 * position)
        struct.pack_into(">H", data, udp + 6, 0)
        offset = frame + incl_len
    out.write_bytes(data)
    return out


def caller_scenario(workdir: Path, digits: str) -> Path:
    """A variant of ``uac_dtmf.xml`` that plays one restamped capture per digit position.

    The digit loop, the -inf fields and the call flow stay those of ``uac_dtmf.xml``; only
    its key dispatch (``keys`` and ``plays`` blocks) is swapped for a position dispatch.
    """
    text = (SCENARIOS / "uac_dtmf.xml").read_text(encoding="iso-8859-1")
    positions = range(1, len(digits) + 1)
    keys = "\n".join(
        ['<add assign_to="pos" value="1"/>']
        + [
            f'<test assign_to="at_{i}" variable="pos" compare="equal" value="{i}"/>'
            for i in positions
        ]
    )
    plays = [f'<nop test="at_{i}" next="play_{i}"/>' for i in positions]
    plays.append('<nop next="bad_digit"/>')
    for i, key in zip(positions, digits, strict=True):
        pcap = restamped_capture(key, i, workdir / f"dtmf_{i:02d}_{CAPTURE_KEY[key]}.pcap")
        plays += [
            f'<label id="play_{i}"/>',
            f'<nop><action><exec play_pcap_audio="{pcap}"/></action></nop>',
            '<nop next="gap"/>',
        ]
    for block, body in (("keys", keys), ("plays", "\n".join(plays))):
        pattern = re.compile(f"<!-- {block}:begin -->.*?<!-- {block}:end -->", re.DOTALL)
        text, found = pattern.subn(lambda _m, body=body: body, text)
        assert found == 1, f"uac_dtmf.xml lost its {block} markers"
    path = workdir / f"uac_dtmf_{len(digits)}_digits.xml"
    path.write_text(text, encoding="iso-8859-1")
    return path


def caller_csv(
    path: Path,
    digits: str,
    *,
    wait_ms: int = 500,
    gap_ms: int = 400,
    hang_up: bool = False,
    hold_ms: int = 500,
) -> Path:
    """Write the injection file (``-inf``) that tells ``uac_dtmf.xml`` what to do.

    ``digits`` (0-9 * #) are sent ``wait_ms`` after the ACK, ``gap_ms`` apart; then the
    caller waits for Asterisk's BYE, or with ``hang_up`` sends BYE ``hold_ms`` later.
    """
    if bad := set(digits) - CAPTURE_KEY.keys():
        raise ValueError(f"not DTMF digits: {sorted(bad)}")
    end = "bye" if hang_up else "wait"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"SEQUENTIAL\n{wait_ms};{gap_ms};{end};{hold_ms};{digits}\n")
    return path


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
    digits in the captures' timestamp order (see :func:`restamped_capture`).
    """
    csv = caller_csv(workdir / "caller.csv", digits, **options)
    if digits and restamp:
        scenario = caller_scenario(workdir, digits)
    else:
        scenario = SCENARIOS / "uac_dtmf.xml"
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
