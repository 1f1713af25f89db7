"""A ``sip_trunk`` provider: which PJSIP endpoint of the local Asterisk carries a customer
leg, how the number is rewritten for that carrier, and which caller ID it sends.

Carriers disagree on the number format they accept on a trunk (``+E.164``, national with a
``0``, an international access code, a tech prefix for a route class), so each provider row
says how to turn the session's E.164 number into the Request-URI user part:

* ``match_prefixes``: the trunk carries only numbers starting with one of these (empty:
  every number). A number no prefix matches is never sent to that trunk;
* ``strip_digits``: remove that many leading characters (the ``+`` counts as one:
  ``+919812345678`` stripped of 3 is ``9812345678``);
* ``add_prefix``: then put this in front (``0`` gives ``09812345678``).

``caller_id`` replaces the caller ID chosen for the session on this trunk (a carrier that
only accepts its own numbers as From). Everything else stays in the row's ``config`` for the
operator and is refused here, so a misspelt key is an error instead of a silent default.

Pure: the provider's ``config`` mapping in, a :class:`SipTrunkConfig` or an
:class:`~engine.errors.InvalidInput` naming the field (``config.<key>``) out.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Any

from engine.errors import InvalidInput

__all__ = ["SipTrunkConfig", "parse_sip_trunk_config"]

_ENDPOINT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,79}")
_PREFIX = re.compile(r"\+?[0-9*#]{0,15}")
_MATCH = re.compile(r"\+?[0-9]{1,15}")
_CALLER_ID = re.compile(r"\+?[0-9]{2,20}")
_MAX_STRIP = 15
_KEYS = (
    "endpoint",
    "strip_digits",
    "add_prefix",
    "match_prefixes",
    "caller_id",
    "breaker_failures",  # read by the engine's provider breakers (engine/app/provider_breakers)
    "breaker_reset_s",
)


@dataclasses.dataclass(frozen=True, slots=True)
class SipTrunkConfig:
    """A sip_trunk provider's dialling rules (see the module docstring)."""

    endpoint: str
    strip_digits: int = 0
    add_prefix: str = ""
    match_prefixes: tuple[str, ...] = ()
    caller_id: str | None = None

    def carries(self, number: str) -> bool:
        """Whether this trunk takes ``number`` (a prefix matches, and something is left to
        dial once ``strip_digits`` are removed)."""
        if self.match_prefixes and not any(number.startswith(p) for p in self.match_prefixes):
            return False
        return len(number) > self.strip_digits

    def dialled_number(self, number: str) -> str:
        """``number`` as this carrier wants it in the Request-URI."""
        if not self.carries(number):
            raise ValueError(f"trunk {self.endpoint} does not carry {number}")
        return self.add_prefix + number[self.strip_digits :]

    def dial_string(self, number: str) -> str:
        """The Asterisk dial string of ``number`` through this trunk."""
        return f"PJSIP/{self.dialled_number(number)}@{self.endpoint}"


def parse_sip_trunk_config(config: Mapping[str, Any]) -> SipTrunkConfig:
    """A provider row's ``config`` as trunk rules; InvalidInput naming the first bad field."""
    unknown = sorted(set(config) - set(_KEYS))
    if unknown:
        raise InvalidInput(
            f"config.{unknown[0]}", f"unknown setting for a sip_trunk (known: {', '.join(_KEYS)})"
        )
    endpoint = config.get("endpoint")
    if not isinstance(endpoint, str) or not _ENDPOINT.fullmatch(endpoint):
        raise InvalidInput(
            "config.endpoint",
            "the name of a PJSIP endpoint on the Asterisk (letters, digits, _ . -; e.g. trunk)",
        )
    strip = config.get("strip_digits", 0)
    if isinstance(strip, bool) or not isinstance(strip, int) or not 0 <= strip <= _MAX_STRIP:
        raise InvalidInput("config.strip_digits", f"an integer from 0 to {_MAX_STRIP}")
    prefix = config.get("add_prefix", "")
    if not isinstance(prefix, str) or not _PREFIX.fullmatch(prefix):
        raise InvalidInput("config.add_prefix", "up to 15 digits, * or #, after an optional +")
    matches = config.get("match_prefixes", [])
    if not isinstance(matches, list) or not all(
        isinstance(m, str) and _MATCH.fullmatch(m) for m in matches
    ):
        raise InvalidInput(
            "config.match_prefixes", 'a list of number prefixes (1 to 15 digits, e.g. "+91")'
        )
    caller_id = config.get("caller_id")
    if caller_id is not None and (
        not isinstance(caller_id, str) or not _CALLER_ID.fullmatch(caller_id)
    ):
        raise InvalidInput("config.caller_id", "a number (2 to 20 digits after an optional +)")
    return SipTrunkConfig(
        endpoint=endpoint,
        strip_digits=strip,
        add_prefix=prefix,
        match_prefixes=tuple(matches),
        caller_id=caller_id,
    )
