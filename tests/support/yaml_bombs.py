"""YAML documents built to exhaust a loader, shared by the config and IVR menu tests."""

from __future__ import annotations

__all__ = ["BILLION_LAUGHS"]

BILLION_LAUGHS = "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"{n}: &{n} [{', '.join([f'*{p}'] * 9)}]\n" for p, n in zip("abcdefgh", "bcdefghi", strict=True)
)
"""Nine lines, nine aliases a line: 9**9 values once expanded (the classic alias bomb)."""
