"""Fixtures shared by every test layer: a fresh PostgreSQL database per test or per run.

The helpers behind them, and everything else the layers share, are in :mod:`tests.support`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser

from engine.devtools.databases import create_database, drop_database
from engine.store.migrations import default_migrations_dir, migrate
from tests.support.browser import chromium


@pytest.fixture
async def empty_db() -> AsyncIterator[str]:
    """A brand-new empty database, dropped afterwards."""
    url = await create_database()
    try:
        yield url
    finally:
        await drop_database(url)


@pytest.fixture(scope="session")
async def migrated_db() -> AsyncIterator[str]:
    """One database with every migration applied, shared by the session."""
    url = await create_database()
    try:
        await migrate(url, default_migrations_dir())
        yield url
    finally:
        await drop_database(url)


@pytest.fixture(scope="session")
def migrations_dir() -> Path:
    return default_migrations_dir()


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    """Headless chromium for the web console's tests, one for the run."""
    async with chromium() as running:
        yield running
