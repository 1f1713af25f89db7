"""Whether the tests run in CI, where a missing dependency fails instead of skipping.

A developer without PostgreSQL or root can still run what their machine can; CI sets
``CI=true`` so that a broken sandbox or database never lets a run pass by skipping.
"""

from __future__ import annotations

import os
from typing import NoReturn

import pytest

__all__ = ["IN_CI", "unavailable"]

IN_CI = os.environ.get("CI") == "true"


def unavailable(what: str, reason: str) -> NoReturn:
    """``what`` cannot run here: skip the test on a developer machine, fail it in CI."""
    if IN_CI:
        pytest.fail(f"{what} unavailable: {reason}", pytrace=False)
    pytest.skip(f"{what} unavailable: {reason}")
