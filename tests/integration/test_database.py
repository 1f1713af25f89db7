"""The pool's lifecycle (engine/store/database.py): started once, with or without its own
connect retry, and the daemon serving its API while PostgreSQL is away; and the ``jsonb``
codecs every repository relies on."""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest

from engine.config.settings import AgiSettings, ApiSettings, AriSettings, DatabaseSettings, Settings
from engine.daemon import Engine
from engine.errors import ClosedResourceError, DatabaseUnavailable
from engine.store.database import ConnectRetry, Database
from tests.support.http import socket_api
from tests.support.tcp_proxy import TcpProxy

WAIT = 20.0


@pytest.fixture
async def away(migrated_db: str) -> AsyncIterator[tuple[str, TcpProxy]]:
    """The database's URL through a proxy that refuses connections until told otherwise."""
    url = urlsplit(migrated_db)
    proxy = await TcpProxy(url.port or 5432).start()
    proxy.refusing = True
    try:
        yield urlunsplit(url._replace(netloc=f"{url.username}@127.0.0.1:{proxy.port}")), proxy
    finally:
        await proxy.close()


async def test_without_a_retry_start_fails_at_the_first_refusal(
    away: tuple[str, TcpProxy],
) -> None:
    url, _ = away
    db = Database(url, command_timeout=5)
    with pytest.raises(DatabaseUnavailable, match="cannot connect to PostgreSQL"):
        await db.start()
    assert db.is_closed
    with pytest.raises(ClosedResourceError, match="Database is closed"):
        await db.fetchval("SELECT 1")


async def test_with_a_retry_start_waits_for_postgresql_and_reports_each_failure(
    away: tuple[str, TcpProxy],
) -> None:
    url, proxy = away
    waits: list[float] = []
    four = asyncio.Event()

    def failed(_: DatabaseUnavailable, wait: float) -> None:
        waits.append(wait)
        if len(waits) == 4:
            four.set()

    retry = ConnectRetry(initial=0.01, maximum=0.04, on_failure=failed)
    db = Database(url, command_timeout=5, retry=retry)
    starting = asyncio.ensure_future(db.start())
    await asyncio.wait_for(four.wait(), WAIT)
    # the pool's users hear why: the last attempt's error, not just "not yet"
    with pytest.raises(
        DatabaseUnavailable, match="not connected to PostgreSQL yet: cannot connect to PostgreSQL"
    ):
        await db.fetchval("SELECT 1")
    proxy.refusing = False
    assert await asyncio.wait_for(starting, WAIT) is db
    try:
        assert await db.fetchval("SELECT 1") == 1
        assert waits[:4] == [0.01, 0.02, 0.04, 0.04]  # doubling, capped
    finally:
        await db.close()


async def test_closing_a_database_still_connecting_stops_the_retry(
    away: tuple[str, TcpProxy],
) -> None:
    url, proxy = away
    failed = asyncio.Event()
    retry = ConnectRetry(initial=0.01, maximum=0.01, on_failure=lambda *_: failed.set())
    db = Database(url, command_timeout=5, retry=retry)
    starting = asyncio.ensure_future(db.start())
    await asyncio.wait_for(failed.wait(), WAIT)
    await db.close()
    proxy.refusing = False  # the next attempt would succeed: the retry must not make it
    with pytest.raises(ClosedResourceError, match="Database was closed while connecting"):
        await asyncio.wait_for(starting, WAIT)
    assert db.is_closed
    with pytest.raises(ClosedResourceError, match="Database is closed"):
        await db.fetchval("SELECT 1")


async def test_cancelling_a_start_still_connecting_closes_the_database(
    away: tuple[str, TcpProxy],
) -> None:
    url, _ = away
    failed = asyncio.Event()
    retry = ConnectRetry(initial=0.01, maximum=0.01, on_failure=lambda *_: failed.set())
    db = Database(url, command_timeout=5, retry=retry)
    starting = asyncio.ensure_future(db.start())
    await asyncio.wait_for(failed.wait(), WAIT)
    starting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await starting
    assert db.is_closed
    await db.close()  # a no-op


def _watching(set_state: Callable[..., None], down: asyncio.Event) -> Callable[..., None]:
    """The health report's ``set``, also setting ``down`` once the database is reported down."""

    def set_and_tell(name: str, state: str, *args: Any, **kwargs: Any) -> None:
        set_state(name, state, *args, **kwargs)
        if (name, state) == ("database", "down"):
            down.set()

    return set_and_tell


async def test_the_engine_serves_its_api_while_postgresql_is_away(
    away: tuple[str, TcpProxy],
) -> None:
    url, proxy = away
    with tempfile.TemporaryDirectory(prefix="ctc-test-") as tmp:
        settings = Settings(
            agi=AgiSettings(enabled=False),
            ari=AriSettings(enabled=False),
            database=DatabaseSettings(url=url),
            api=ApiSettings.model_validate(
                {"socket": Path(tmp) / "engine.sock", "tcp": {"enabled": False}}
            ),
        )
        engine = Engine(settings)
        reported = asyncio.Event()
        engine.health.set = _watching(engine.health.set, reported)  # type: ignore[method-assign]
        async with engine:
            await asyncio.wait_for(reported.wait(), WAIT)
            status = engine.health.get("database")
            assert status is not None
            assert status.state == "down"
            assert "cannot connect to PostgreSQL" in status.detail
            api = engine.health.get("api")
            assert api is not None
            assert api.state == "up"
            assert not engine.database_ready.is_set()
            async with socket_api(settings.api.socket) as api_client:
                # the admin's health checks answer with the report, and it says why
                code, ready, _ = await api_client.call("GET", "/readyz")
                assert code == 503
                assert ready["components"]["database"]["state"] == "down"
                assert "cannot connect to PostgreSQL" in ready["components"]["database"]["detail"]
                code, health, _ = await api_client.call("GET", "/healthz")
                assert code == 200
                assert health["components"]["database"]["state"] == "down"
                # a route that needs to know the tenant cannot: 503, not 401
                code, err, _ = await api_client.call("GET", "/api/v1/click-to-call/sessions")
                assert code == 503
                assert err["error"]["code"] == "unavailable"
            proxy.refusing = False
            await asyncio.wait_for(engine.database_ready.wait(), WAIT)
            database = engine.health.get("database")
            assert database is not None
            assert database.state == "up"


async def test_jsonb_values_come_back_as_they_were_sent_integers_of_any_length_too(
    migrated_db: str,
) -> None:
    # an ERP's metadata may carry an order number past 64 bits: written and read exactly
    value = {"order": 123456789012345678901234, "ratio": 0.5, "tags": ["a", None]}
    async with Database(migrated_db) as db:
        assert await db.fetchval("SELECT $1::jsonb", value) == value
