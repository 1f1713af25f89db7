"""The engine's AMI wiring: when the link exists, and what FullyBooted does to the ARI link."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from engine.asterisk.links.ari import AriEventLink
from engine.asterisk.links.restart_watch import RestartWatch
from engine.config.settings import AmiSettings, ApiSettings, AriSettings, Settings
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


async def test_the_engine_asks_ami_only_for_the_system_events_its_restart_watch_hears(
    unstarted_engine: Engine,
) -> None:
    assert unstarted_engine.ami is not None
    assert unstarted_engine.ami.events == RestartWatch.EVENTS == "system"


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


async def test_fully_booted_means_a_restart_only_when_the_uptime_is_shorter() -> None:
    now = [1000.0]
    restarts: list[float] = []

    async def on_restart() -> None:
        restarts.append(now[0])

    watch = RestartWatch(on_restart, clock=lambda: now[0])

    async def booted(uptime: str | None, seconds_since_last: float) -> int:
        now[0] += seconds_since_last
        event = (
            {"Event": "FullyBooted"}
            if uptime is None
            else {"Event": "FullyBooted", "Uptime": uptime}
        )
        before = len(restarts)
        await watch.fully_booted(event)
        return len(restarts) - before

    assert await booted("3600", 0) == 0  # the engine's first login: nothing to recreate
    assert watch.booted_at == 1000.0
    assert await booted("3700", 100) == 0  # AMI reconnected, Asterisk kept running
    assert await booted("5", 60) == 1  # Asterisk started 5 s ago, after we last saw it
    assert await booted(None, 60) == 1  # unknown uptime: resync to be safe
    assert await booted("garbage", 60) == 1


async def test_the_engine_drops_the_ari_link_when_asterisk_restarted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    drops: list[int] = []

    async def drop(link: AriEventLink) -> None:
        drops.append(1)

    monkeypatch.setattr(AriEventLink, "drop", drop)
    built = Engine(settings(tmp_path))
    try:
        assert built.restart_watch is not None
        await built.restart_watch.fully_booted({"Event": "FullyBooted", "Uptime": "3600"})
        assert drops == []  # the first login
        assert built.restart_watch.booted_at is not None
        built.restart_watch.booted_at -= 60  # a minute later, Asterisk is up for 5 s
        await built.restart_watch.fully_booted({"Event": "FullyBooted", "Uptime": "5"})
        assert drops == [1]
    finally:
        await built.close()


async def test_no_restart_watch_without_ami(tmp_path: Path) -> None:
    built = Engine(settings(tmp_path, ami=AmiSettings(enabled=False, password="x")))
    assert built.restart_watch is None
    await built.close()
