"""The kernel's cap on a listen backlog is reported only when it is below what the engine
asks for (engine/listening.py); the daemon warns at start when it is."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.listening import LISTEN_BACKLOG, backlog_cap


@pytest.mark.parametrize(
    ("somaxconn", "cap"),
    [("128\n", 128), (f"{LISTEN_BACKLOG}\n", None), ("65535\n", None), ("", None)],
)
def test_the_cap_is_reported_only_below_the_engines_backlog(
    tmp_path: Path, somaxconn: str, cap: int | None
) -> None:
    limit = tmp_path / "somaxconn"
    limit.write_text(somaxconn)
    assert backlog_cap(limit) == cap


def test_an_unreadable_cap_is_no_cap(tmp_path: Path) -> None:
    assert backlog_cap(tmp_path / "missing") is None
