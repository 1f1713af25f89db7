"""Unit tests for the AMI wire format: lenient parsing, safe encoding."""

from __future__ import annotations

import pytest

from engine.asterisk.links.ami import encode_action, parse_message
from engine.errors import AmiError


def test_parse_response() -> None:
    block = b"Response: Success\r\nActionID: ctc-1\r\nMessage: Authentication accepted\r\n\r\n"
    assert parse_message(block) == {
        "Response": "Success",
        "ActionID": "ctc-1",
        "Message": "Authentication accepted",
    }


def test_parse_event_keeps_colons_in_values_and_empty_values() -> None:
    block = b"Event: Newchannel\r\nChannel: PJSIP/agent1-0001\r\nExten: \r\nUrl: sip:a@b:5060\r\n"
    assert parse_message(block) == {
        "Event": "Newchannel",
        "Channel": "PJSIP/agent1-0001",
        "Exten": "",
        "Url": "sip:a@b:5060",
    }


def test_parse_repeated_keys_are_joined() -> None:
    block = b"Response: Success\r\nOutput: line 1\r\nOutput: line 2\r\n\r\n"
    assert parse_message(block) == {"Response": "Success", "Output": "line 1\nline 2"}


def test_parse_well_known_keys_case_insensitively() -> None:
    msg = parse_message(b"response: Error\r\nactionid: 7\r\nmessage: nope\r\n\r\n")
    assert msg == {"Response": "Error", "ActionID": "7", "Message": "nope"}


def test_parse_skips_garbage_lines_but_keeps_the_message() -> None:
    block = b"\x00\xff garbage\r\n\r\nno colon here\nResponse: Success\nActionID: 3\r\n\r\n"
    assert parse_message(block) == {"Response": "Success", "ActionID": "3"}


@pytest.mark.parametrize(
    "block",
    [
        b"",
        b"\r\n",
        b"\x00\x01\x02\xff\xfe\r\n\r\n",
        b"just some text\r\n\r\n",
        b"Foo: bar\r\nBaz: qux\r\n\r\n",  # neither Response nor Event
        b"Response with space: x\r\n\r\n",
    ],
)
def test_parse_non_messages_is_none(block: bytes) -> None:
    assert parse_message(block) is None


def test_encode_action() -> None:
    data = encode_action(
        "Originate",
        "ctc-9",
        {
            "Channel": "Local/answer@ctc-sandbox",
            "Async": True,
            "Timeout": 30000,
            "Variable": ["A=1", "B=2"],
        },
    )
    assert data == (
        b"Action: Originate\r\nActionID: ctc-9\r\nChannel: Local/answer@ctc-sandbox\r\n"
        b"Async: true\r\nTimeout: 30000\r\nVariable: A=1\r\nVariable: B=2\r\n\r\n"
    )


@pytest.mark.parametrize(
    "fields",
    [
        {"Channel": "x\r\nAction: Hangup"},
        {"Channel": "x\nEvil: 1"},
        {"Variable": ["ok", "bad\r"]},
        {"Bad Key": "x"},
        {"": "x"},
        {"ActionID": "mine"},
        {"action": "Hangup"},
    ],
)
def test_encode_refuses_header_injection(fields: dict[str, str]) -> None:
    with pytest.raises(AmiError):
        encode_action("Originate", "ctc-1", fields)


def test_encode_refuses_bad_action_name() -> None:
    with pytest.raises(AmiError):
        encode_action("Ping\r\nAction: Originate", "ctc-1", {})
