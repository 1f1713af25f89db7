"""The engine's AMI wiring: when the link exists, and what FullyBooted does to the ARI link."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from engine.config import AmiSettings, ApiSettings, AriSettings, Settings
from engine.daemon import Engine


def settings(tmp_path: Path, **sections: object) -> Settings:
    return Settings.model_validate(
        {
            "api": ApiSettings(socket=tmp_path / "engine.sock"),
            "ari": AriSettings(password="ari-secret"),
            "ami": AmiSettings(password="ami-secret"),
            **sections,
        }
    )


@pytest.fixture
async def unstarted_engine(tmp_path: Path) -> AsyncIterator[Engine]:
    """An engine built from settings with ARI and AMI configured, never started."""
    built = Engine(settings(tmp_path))
    try:
        yield built
    finally:
        await built.close()


async def test_ami_link_is_built_with_ari(unstarted_engine: Engine) -> None:
    assert unstarted_engine.ami is not None
    assert (
        unstarted_engine.ami.host,
        unstarted_engine.ami.port,
        unstarted_engine.ami.username,
    ) == ("127.0.0.1", 5038, "ctc")


async def test_no_ami_link_without_ari_or_when_disabled(tmp_path: Path) -> None:
    for sections in (
        {"ari": AriSettings(enabled=False)},
        {"ami": AmiSettings(enabled=False, password="x")},
    ):
        built = Engine(settings(tmp_path, **sections))
        assert built.ami is None
        assert built.health.get("ami") is None
        await built.close()


async def test_no_ami_password_is_reported_not_dialled(tmp_path: Path) -> None:
    built = Engine(settings(tmp_path, ami=AmiSettings()))
    assert built.ami is None
    status = built.health.get("ami")
    assert status is not None
    assert (status.state, status.detail, status.required) == (
        "down",
        "ami.password is not set",
        False,
    )
    assert built.health.ready  # AMI is never required for readiness
    await built.close()


async def test_fully_booted_drops_the_ari_link_only_after_a_restart(
    unstarted_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert unstarted_engine.stasis is not None
    drops: list[int] = []

    async def drop() -> None:
        drops.append(1)

    monkeypatch.setattr(unstarted_engine.stasis.link, "drop", drop)

    async def booted(uptime: str | None, seconds_since_last: float) -> int:
        if unstarted_engine._booted_at is not None:
            unstarted_engine._booted_at -= seconds_since_last
        event = (
            {"Event": "FullyBooted"}
            if uptime is None
            else {"Event": "FullyBooted", "Uptime": uptime}
        )
        before = len(drops)
        await unstarted_engine._asterisk_booted(event)
        return len(drops) - before

    assert await booted("3600", 0) == 0  # the engine's first login: nothing to recreate
    assert await booted("3700", 100) == 0  # AMI reconnected, Asterisk kept running
    assert await booted("5", 60) == 1  # Asterisk started 5 s ago, after we last saw it
    assert await booted(None, 60) == 1  # unknown uptime: resync to be safe
    assert await booted("garbage", 60) == 1
