"""The FastAGI wire format: the request Asterisk sends, the commands we send, its replies.

No sockets here (the server, :mod:`engine.asterisk.links.agi_server`, owns those), so every
rule of the format is tested apart from any connection:

- Asterisk connects and sends a header block, ``agi_<name>: <value>`` lines ended by a
  blank line. :func:`parse_request` turns it into an :class:`AgiRequest` (``script``
  ``ivr/main``, ``query`` from ``?x=1``, ``args`` from ``AGI(url,a,b)``, channel,
  uniqueid, caller id...), or raises :class:`AgiProtocolError` for a block that is not one.
- A command is a verb and its arguments quoted as Asterisk's ``parse_args`` reads them
  (:func:`encode_command`); an argument that could inject a second command, or a line
  longer than Asterisk's buffer, is refused before anything is sent.
- Responses ``200 result=N (data) endpos=M`` are parsed by :func:`parse_response`;
  :meth:`AgiResponse.raise_for_code` turns ``511`` (dead channel) into :class:`AgiHangup`
  and ``510`` (unknown command), ``520`` (bad syntax, a multi-line usage block) into
  :class:`AgiCommandError`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlsplit

from engine.errors import AgiError

__all__ = [
    "AgiCommandError",
    "AgiHangup",
    "AgiProtocolError",
    "AgiRequest",
    "AgiResponse",
    "encode_command",
    "parse_request",
    "parse_response",
]

_MAX_COMMAND = 2047  # Asterisk reads a command line into a 2048-byte buffer (AGI_BUF_LEN)
_CODE = re.compile(r"(\d{3})([ -])(.*)")
_RESULT = re.compile(r"result=(\S*)(?: \((.*)\))?(?: endpos=(-?\d+))?\s*")
_OK = re.compile(r"200 " + _RESULT.pattern)  # the usual answer, read in one match
_HEADER = re.compile(r"agi_([a-z0-9_]+):(.*)")
_VERB = re.compile(r"[A-Z]+(?: [A-Z]+)*")
_VERBS_SEEN: set[str] = set()  # verbs that passed _VERB (the code's own few literals)
_UNSAFE = re.compile(r"[\r\n\0]")  # would end the command line early
_QUOTED = re.compile(r'[ \t"\\]')  # an argument with one of these is quoted
_UNKNOWN = frozenset({"", "unknown"})


class AgiProtocolError(AgiError):
    """The peer broke the protocol: a malformed request or an unparsable response."""


class AgiHangup(AgiError):
    """The channel hung up (``HANGUP``, ``511``) or Asterisk closed the connection."""


class AgiCommandError(AgiError):
    """Asterisk refused a command (``510``, ``520``) or it failed (``result=-1``).

    ``response`` is Asterisk's answer (None when the command was refused before sending).
    """

    def __init__(self, message: str, response: AgiResponse | None = None) -> None:
        self.response = response
        super().__init__(message)


@dataclass(frozen=True, slots=True)
class AgiRequest:
    """The header block Asterisk sends when it connects (see :func:`parse_request`)."""

    script: str
    """The script path without its query: ``ivr/main`` for ``agi://h:p/ivr/main?x=1``."""
    query: Mapping[str, str]
    """The script's query string (``?x=1`` -> ``{"x": "1"}``; a repeated key: the last)."""
    args: tuple[str, ...]
    """The dialplan arguments after the URL: ``AGI(url,a,b)`` -> ``("a", "b")``."""
    channel: str
    uniqueid: str
    callerid: str | None
    calleridname: str | None
    context: str
    extension: str
    priority: str
    language: str
    dnid: str | None
    request: str
    """The whole ``agi_request`` URL."""
    headers: Mapping[str, str] = field(repr=False)
    """Every header, without its ``agi_`` prefix (``headers["threadid"]``)."""


def _opt(value: str | None) -> str | None:
    return None if value is None or value in _UNKNOWN else value


def parse_request(block: bytes | str) -> AgiRequest:
    """The ``agi_*`` header block (up to, not needing, its blank line) as an AgiRequest.

    Strict on shape, lenient on content: every non-blank line must be ``agi_<name>: value``
    and ``agi_channel`` plus ``agi_network_script`` or ``agi_request`` must be present, or
    :class:`AgiProtocolError` is raised; unknown headers are kept in ``headers``.
    """
    text = block.decode("utf-8", errors="replace") if isinstance(block, bytes) else block
    headers: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        match = _HEADER.fullmatch(line.rstrip("\r"))
        if match is None:
            raise AgiProtocolError(
                f"AGI request line {number} is not 'agi_<name>: value': {line[:80]!r}"
            )
        headers[match[1]] = match[2].strip()
    if "channel" not in headers:
        raise AgiProtocolError("AGI request has no agi_channel")
    url = headers.get("request", "")
    script = headers.get("network_script")
    if script is None:
        if not url:
            raise AgiProtocolError("AGI request has neither agi_network_script nor agi_request")
        parts = urlsplit(url)
        script = parts.path + (f"?{parts.query}" if parts.query else "")
    path, _, query = script.partition("?")
    args: list[str] = []
    while (arg := headers.get(f"arg_{len(args) + 1}")) is not None:
        args.append(arg)
    return AgiRequest(
        script=path.strip("/"),
        query=dict(parse_qsl(query, keep_blank_values=True)),
        args=tuple(args),
        channel=headers["channel"],
        uniqueid=headers.get("uniqueid", ""),
        callerid=_opt(headers.get("callerid")),
        calleridname=_opt(headers.get("calleridname")),
        context=headers.get("context", ""),
        extension=headers.get("extension", ""),
        priority=headers.get("priority", ""),
        language=headers.get("language", ""),
        dnid=_opt(headers.get("dnid")),
        request=url,
        headers=headers,
    )


@dataclass(frozen=True, slots=True)
class AgiResponse:
    """One answer to a command: ``200 result=1 (timeout) endpos=8000``.

    ``result`` is the raw value after ``result=`` (``""`` for a GET DATA with no digits);
    ``data`` is what is in parentheses; for a non-200 code ``result`` is ``""`` and
    ``data`` the text Asterisk sent (for ``520`` the whole usage).
    """

    code: int
    result: str
    data: str | None = None
    endpos: int | None = None
    raw: str = ""

    @property
    def number(self) -> int | None:
        """``result`` as an integer, None when it is not one (GET DATA's digits are)."""
        try:
            return int(self.result)
        except ValueError:
            return None

    def raise_for_code(self, command: str) -> None:
        """Raise for an error code: 511 -> AgiHangup, 510 / 520 / other -> AgiCommandError."""
        if self.code == 200:
            return
        text = (self.data or "").strip()
        if self.code == 511:
            raise AgiHangup(f"AGI {command}: {text or 'channel is dead'}")
        what = {510: "unknown command", 520: "invalid syntax"}.get(self.code, "error")
        raise AgiCommandError(f"AGI {command}: {self.code} {what}: {text}", self)


def parse_response(line: str) -> AgiResponse:
    """One response (a ``520`` usage block may span lines) as an AgiResponse.

    :class:`AgiProtocolError` when it is not ``NNN text`` or a 200 without ``result=``.
    """
    first = line.split("\n", 1)[0].rstrip("\r")
    ok = _OK.fullmatch(first)
    if ok is not None:
        return AgiResponse(200, ok[1], ok[2], int(ok[3]) if ok[3] is not None else None, line)
    match = _CODE.fullmatch(first)
    if match is None:
        raise AgiProtocolError(f"AGI response is not 'NNN text': {first[:80]!r}")
    code = int(match[1])
    if code != 200:
        return AgiResponse(code, "", line[4:].rstrip("\r\n"), None, line)
    result = _RESULT.fullmatch(match[3])
    if result is None:
        raise AgiProtocolError(f"AGI 200 response without result=: {first[:80]!r}")
    endpos = int(result[3]) if result[3] is not None else None
    return AgiResponse(200, result[1], result[2], endpos, line)


def _quote(arg: str) -> str:
    # Asterisk's parse_args: '"' toggles quoting, '\' escapes the next character.
    if arg and _QUOTED.search(arg) is None:
        return arg
    return '"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"'


def encode_command(verb: str, *args: str | int) -> bytes:
    """``verb`` (``STREAM FILE``) and its arguments, quoted as Asterisk parses them.

    An argument with a line break or NUL would let it inject a second command, and a line
    longer than Asterisk's buffer would be cut: both raise :class:`AgiCommandError`.
    """
    if verb not in _VERBS_SEEN:
        if not _VERB.fullmatch(verb):
            raise AgiCommandError(f"AGI command {verb!r} is not a command name")
        if len(_VERBS_SEEN) < 64:
            _VERBS_SEEN.add(verb)
    parts = [verb]
    for arg in args:
        text = arg if type(arg) is str else str(arg)
        if _UNSAFE.search(text) is not None:
            raise AgiCommandError(f"AGI {verb}: argument {text[:40]!r} contains a line break")
        parts.append(_quote(text))
    data = " ".join(parts).encode()
    if len(data) > _MAX_COMMAND:
        raise AgiCommandError(f"AGI {verb}: command longer than {_MAX_COMMAND} bytes")
    return data + b"\n"
