"""The DTMF caller: what ``scenarios/uac_dtmf.xml`` needs to key in any digit string.

``uac_dtmf.xml`` plays a member of the public who dials in and keys in digits with
sip-tester's RFC 2833 captures. What it does per call comes from SIPp's injection file
(:func:`caller_csv`). The stock captures arrive in order only for some strings (see
:func:`restamped_capture`), so :func:`caller_scenario` writes a variant of the scenario
that plays one restamped capture per digit position. The e2e tests and ``bench/ivr.py``
both drive callers this way.
"""

from __future__ import annotations

import re
import struct
from pathlib import Path

from engine.devtools.sipp import SCENARIOS
from engine.errors import SandboxError

__all__ = [
    "CALLER_SCENARIO",
    "CAPTURES",
    "CAPTURE_KEY",
    "caller_csv",
    "caller_scenario",
    "restamped_capture",
]

#: Debian sip-tester's RFC 2833 captures: ``dtmf_2833_<key>.pcap``.
CAPTURES = Path("/usr/share/sip-tester")
#: The capture file name's ``<key>`` for each DTMF digit.
CAPTURE_KEY = {**{d: d for d in "0123456789"}, "*": "star", "#": "pound"}
#: The caller as shipped: digits must climb the stock captures' timestamp order.
CALLER_SCENARIO = SCENARIOS / "uac_dtmf.xml"

_ETHERNET = 1  # pcap link type of the stock captures


def restamped_capture(key: str, position: int, out: Path) -> Path:
    """sip-tester's RFC 2833 capture of ``key``, moved to time slot ``position``.

    The stock captures carry fixed RTP timestamps (1 < 0 < 2 < ... < 9 < * < #) and Asterisk
    drops a DTMF event whose timestamp is not newer than the previous digit's: "11", "21" or
    "90" would lose digits. Each position gets its own, increasing, sequence numbers and
    timestamp; the UDP checksum is cleared (0: none) since the payload changed.
    """
    source = CAPTURES / f"dtmf_2833_{CAPTURE_KEY[key]}.pcap"
    data = bytearray(source.read_bytes())
    (linktype,) = struct.unpack_from("<I", data, 20)
    if linktype != _ETHERNET:
        raise SandboxError(f"{source}: expected an Ethernet capture, got link type {linktype}")
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


def caller_scenario(workdir: Path, digits: str, *, bye_timeout_ms: int | None = None) -> Path:
    """A variant of ``uac_dtmf.xml`` that plays one restamped capture per digit position.

    The digit loop, the -inf fields and the call flow stay those of ``uac_dtmf.xml``; only
    its key dispatch (``keys`` and ``plays`` blocks) is swapped for a position dispatch.
    With ``bye_timeout_ms`` a caller that waits for Asterisk's BYE gives up that long after
    its last digit (SIPp counts the call failed and hangs up): a key the IVR lost shows as
    a failed call instead of a call that lasts until the menu's own timeout.
    """
    text = CALLER_SCENARIO.read_text(encoding="iso-8859-1")
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
    text = _swap_block(text, "keys", keys)
    text = _swap_block(text, "plays", "\n".join(plays))
    if bye_timeout_ms is not None:
        text = _swap_block(
            text, "bye", f'<recv request="BYE" next="peer_bye" timeout="{bye_timeout_ms}"/>'
        )
    deadline = f"_bye{bye_timeout_ms}" if bye_timeout_ms is not None else ""
    path = workdir / f"uac_dtmf_{len(digits)}_digits{deadline}.xml"
    path.write_text(text, encoding="iso-8859-1")
    return path


def _swap_block(text: str, block: str, body: str) -> str:
    """``text`` with the part between ``<!-- block:begin -->`` and ``<!-- block:end -->``
    (markers included) replaced by ``body``, taken literally."""
    pattern = re.compile(f"<!-- {block}:begin -->.*?<!-- {block}:end -->", re.DOTALL)
    swapped, found = pattern.subn(lambda _match: body, text)
    if found != 1:
        raise SandboxError(f"{CALLER_SCENARIO} lost its {block} markers")
    return swapped


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
