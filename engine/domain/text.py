"""What text the engine can store: the one rule every door applies to what it is given.

PostgreSQL's ``text`` refuses NUL, and a lone surrogate (``\\ud800`` on its own, which
JSON escapes and YAML escapes can both produce) is not Unicode that UTF-8 can carry: such a
value reaching the database fails the whole statement. So the API's body reader and the
YAML loader (engine config, IVR menu files) refuse it up front, naming the field.
"""

from __future__ import annotations

import re

__all__ = ["text_problem"]

_SURROGATE = re.compile("[\ud800-\udfff]")


def text_problem(value: str) -> str | None:
    """Why ``value`` cannot be stored as text, or None."""
    if "\x00" in value:
        return "must not contain NUL (\\u0000)"
    if _SURROGATE.search(value):
        return "must be valid Unicode (no lone surrogates)"
    return None
