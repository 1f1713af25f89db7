"""FastAGI wire format: request headers, responses, command encoding (no sockets)."""

from __future__ import annotations

import resource

import pytest

from engine.asterisk.links.agi_protocol import (
    AgiCommandError,
    AgiHangup,
    AgiProtocolError,
    AgiResponse,
    encode_command,
    parse_request,
    parse_response,
)
from engine.asterisk.links.agi_server import connection_cap
from engine.errors import AgiError, AsteriskError

# what Asterisk 22 sends for AGI(agi://127.0.0.1:4573/ivr/main?x=1&lang=fr,first,second)
REQUEST = b"""agi_network: yes
agi_network_script: ivr/main?x=1&lang=fr
agi_request: agi://127.0.0.1:4573/ivr/main?x=1&lang=fr
agi_channel: PJSIP/caller-00000001
agi_language: en
agi_type: PJSIP
agi_uniqueid: 1795681198.1572
agi_version: 22.10.1
agi_callerid: 5551234
agi_calleridname: Alice Example
agi_callingpres: 0
agi_dnid: 1000
agi_rdnis: unknown
agi_context: ctc-inbound-agi
agi_extension: 1000
agi_priority: 2
agi_enhanced: 0.0
agi_accountcode:
agi_threadid: 140123456789
agi_arg_1: first
agi_arg_2: second

"""


def test_request_fields() -> None:
    request = parse_request(REQUEST)
    assert request.script == "ivr/main"
    assert request.query == {"x": "1", "lang": "fr"}
    assert request.args == ("first", "second")
    assert request.channel == "PJSIP/caller-00000001"
    assert request.uniqueid == "1795681198.1572"
    assert request.callerid == "5551234"
    assert request.calleridname == "Alice Example"
    assert request.context == "ctc-inbound-agi"
    assert request.extension == "1000"
    assert request.priority == "2"
    assert request.language == "en"
    assert request.dnid == "1000"
    assert request.request == "agi://127.0.0.1:4573/ivr/main?x=1&lang=fr"
    assert request.headers["threadid"] == "140123456789"
    assert request.headers["accountcode"] == ""
    assert request.headers["rdnis"] == "unknown"


def test_request_unknown_caller_id_is_none() -> None:
    text = "agi_network_script: ivr/main\nagi_channel: Local/x;2\n"
    text += "agi_callerid: unknown\nagi_calleridname: unknown\nagi_dnid: unknown\n"
    text += "agi_accountcode: \n"  # Asterisk sends an empty value after the space
    request = parse_request(text)
    assert request.callerid is None
    assert request.calleridname is None
    assert request.dnid is None
    assert request.query == {}
    assert request.args == ()
    assert request.headers["accountcode"] == ""


def test_request_script_from_url_when_network_script_is_missing() -> None:
    request = parse_request(
        "agi_request: agi://127.0.0.1:4573/ivr/sub?a=&b=2\r\nagi_channel: Local/x;2\r\n"
    )
    assert request.script == "ivr/sub"
    assert request.query == {"a": "", "b": "2"}


def test_request_args_stop_at_the_first_gap() -> None:
    request = parse_request("agi_network_script: s\nagi_channel: c\nagi_arg_1: a\nagi_arg_3: c\n")
    assert request.args == ("a",)


@pytest.mark.parametrize(
    ("block", "reason"),
    [
        (b"GET / HTTP/1.1\r\nHost: x\r\n", "not 'agi_<name>: value'"),
        (b"agi_network_script: ivr/main\n", "no agi_channel"),
        (b"agi_channel: PJSIP/x\n", "neither agi_network_script nor agi_request"),
        (b"agi_channel: x\nagi_network_script: s\nnonsense\n", "line 3"),
        (b"agi_Channel: x\n", "not 'agi_<name>"),
        (b"", "no agi_channel"),
        (b"\xff\xfe\x00garbage\n", "not 'agi_<name>"),
    ],
)
def test_bad_requests_raise_protocol_error(block: bytes, reason: str) -> None:
    with pytest.raises(AgiProtocolError, match=reason):
        parse_request(block)


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("200 result=0", AgiResponse(200, "0", None, None)),
        ("200 result=1", AgiResponse(200, "1", None, None)),
        ("200 result=-1", AgiResponse(200, "-1", None, None)),
        ("200 result=0 endpos=8000", AgiResponse(200, "0", None, 8000)),
        ("200 result=49 endpos=1234", AgiResponse(200, "49", None, 1234)),
        ("200 result=-1 endpos=0", AgiResponse(200, "-1", None, 0)),
        ("200 result=1 (hello world)", AgiResponse(200, "1", "hello world", None)),
        ("200 result=1 (a (nested) value)", AgiResponse(200, "1", "a (nested) value", None)),
        ("200 result=1 ()", AgiResponse(200, "1", "", None)),
        ("200 result=123 (timeout)", AgiResponse(200, "123", "timeout", None)),
        ("200 result= (timeout)", AgiResponse(200, "", "timeout", None)),
        ("200 result=", AgiResponse(200, "", None, None)),
        ("200 result=1 (dtmf) endpos=42", AgiResponse(200, "1", "dtmf", 42)),
        ("200 result=0\r", AgiResponse(200, "0", None, None)),
    ],
)
def test_parse_200_responses(line: str, expected: AgiResponse) -> None:
    response = parse_response(line)
    assert (response.code, response.result, response.data, response.endpos) == (
        expected.code,
        expected.result,
        expected.data,
        expected.endpos,
    )
    response.raise_for_code("TEST")  # a 200 never raises


def test_number() -> None:
    assert parse_response("200 result=-2").number == -2
    assert parse_response("200 result=#12").number is None
    assert parse_response("200 result=").number is None


def test_error_codes() -> None:
    unknown = parse_response("510 Invalid or unknown command")
    assert unknown.code == 510
    with pytest.raises(AgiCommandError, match="510 unknown command") as caught:
        unknown.raise_for_code("FOO")
    assert caught.value.response is unknown

    dead = parse_response("511 Command Not Permitted on a dead channel or intercept routine")
    with pytest.raises(AgiHangup, match="dead channel"):
        dead.raise_for_code("STREAM FILE")

    usage = parse_response(
        "520-Invalid command syntax.  Proper usage follows:\n"
        "Sets a variable to the current channel.\n"
        "520 End of proper usage."
    )
    assert usage.code == 520
    assert "Sets a variable" in (usage.data or "")
    with pytest.raises(AgiCommandError, match="invalid syntax"):
        usage.raise_for_code("SET VARIABLE")


@pytest.mark.parametrize(
    "line", ["", "HANGUP", "hello", "20 result=0", "200result=0", "200 foo=1", "2000 result=1"]
)
def test_garbage_responses(line: str) -> None:
    with pytest.raises(AgiProtocolError):
        parse_response(line)


def test_error_tree() -> None:
    for cls in (AgiProtocolError, AgiHangup, AgiCommandError):
        assert issubclass(cls, AgiError)
    assert issubclass(AgiError, AsteriskError)


def test_encode_command_quotes_as_asterisk_parses() -> None:
    assert encode_command("ANSWER") == b"ANSWER\n"
    assert encode_command("STREAM FILE", "beep", "") == b'STREAM FILE beep ""\n'
    assert encode_command("GET DATA", "menu", 5000, 4) == b"GET DATA menu 5000 4\n"
    assert (
        encode_command("SET VARIABLE", "X", 'say "hi" \\ bye')
        == b'SET VARIABLE X "say \\"hi\\" \\\\ bye"\n'
    )
    assert encode_command("EXEC", "Dial", "PJSIP/a,30") == b"EXEC Dial PJSIP/a,30\n"


@pytest.mark.parametrize("arg", ["a\nHANGUP", "a\rb", "nul\0"])
def test_encode_command_refuses_injection(arg: str) -> None:
    with pytest.raises(AgiCommandError, match="line break"):
        encode_command("VERBOSE", arg)


@pytest.mark.parametrize("verb", ["", "answer", "ANSWER\nHANGUP", "GET  DATA", "X1"])
def test_encode_command_refuses_bad_verbs(verb: str) -> None:
    with pytest.raises(AgiCommandError):
        encode_command(verb)


def test_encode_command_refuses_overlong_lines() -> None:
    with pytest.raises(AgiCommandError, match="longer than"):
        encode_command("VERBOSE", "x" * 3000)


def test_the_default_connection_cap_leaves_descriptors_for_the_rest_of_the_engine() -> None:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    cap = connection_cap()
    assert cap >= 64
    if soft != resource.RLIM_INFINITY and soft > 320:
        assert cap == soft - 256
