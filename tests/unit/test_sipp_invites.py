"""A SIPp phone's message trace says which calls reached it and which Asterisk sent each:
the count the two-node e2e tests use to prove a call was dialled once, by its node."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.devtools.sipp import SippPhone
from engine.errors import SandboxError


def _received(call_id: str, via: str, request: str = "INVITE sip:agent1@127.0.0.1:5071") -> str:
    return (
        "----------------------------------------------- 2026-11-30 19:22:12.051535\n"
        "UDP message received [909] bytes :\n\n"
        f"{request} SIP/2.0\n"
        f"Via: SIP/2.0/UDP {via};rport;branch=z9hG4bKPj377d0ada\n"
        "From: <sip:+14155550122@127.0.0.1>;tag=b026d3dd\n"
        f"Call-ID: {call_id}\n"
        "CSeq: 14184 INVITE\n"
        "Content-Type: application/sdp\n\n"
        "v=0\nc=IN IP4 127.0.0.2\na=rtpmap:0 PCMU/8000\n\n"
    )


def _sent(call_id: str) -> str:
    return (
        "----------------------------------------------- 2026-11-30 19:22:12.052000\n"
        "UDP message sent (431 bytes):\n\n"
        "SIP/2.0 200 OK\n"
        "Via: SIP/2.0/UDP 127.0.0.9:5060;branch=z9hG4bKPj\n"
        f"Call-ID: {call_id}\n"
        "CSeq: 14184 INVITE\n\n"
    )


def test_each_call_is_counted_once_with_the_asterisk_that_dialled_it(tmp_path: Path) -> None:
    phone = SippPhone("uas_answer.xml", port=5071, workdir=tmp_path, trace_messages=True)
    assert phone.message_file is not None
    assert "-trace_msg" in phone.command
    assert phone.received_invites() == {}  # nothing logged yet
    phone.message_file.write_text(
        _received("one", "127.0.0.2:5060")
        + _sent("one")
        + _received("two", "127.0.0.3:5060")
        + _received("one", "127.0.0.2:5060")  # the re-INVITE bridging sends: same call
        + _received("three", "127.0.0.2:5060", request="BYE sip:agent1@127.0.0.1:5071")
    )
    assert phone.received_invites() == {"one": "127.0.0.2", "two": "127.0.0.3"}


def test_a_phone_without_its_trace_cannot_count(tmp_path: Path) -> None:
    phone = SippPhone("uas_answer.xml", port=5071, workdir=tmp_path)
    assert "-trace_msg" not in phone.command
    with pytest.raises(SandboxError, match="started without trace_messages"):
        phone.received_invites()


def test_the_trace_reads_as_messages_with_their_direction_start_line_and_headers(
    tmp_path: Path,
) -> None:
    phone = SippPhone("uas_answer.xml", port=5071, workdir=tmp_path, trace_messages=True)
    assert phone.message_file is not None
    phone.message_file.write_text(_received("one", "127.0.0.2:5060") + _sent("one"))
    [invite, ok] = phone.messages()
    assert (invite.sent, invite.start) == (False, "INVITE sip:agent1@127.0.0.1:5071 SIP/2.0")
    assert invite.headers["via"] == "SIP/2.0/UDP 127.0.0.2:5060;rport;branch=z9hG4bKPj377d0ada"
    assert (ok.sent, ok.start, ok.headers["call-id"]) == (True, "SIP/2.0 200 OK", "one")
