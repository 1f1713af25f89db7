"""Fixtures shared by every test layer: a fresh PostgreSQL database per run."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from engine.store.migrations import default_migrations_dir, migrate

ADMIN_URL = os.environ.get("CTC_TEST_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
IN_CI = os.environ.get("CI") == "true"


def _db_url(name: str) -> str:
    base, _, _ = ADMIN_URL.rpartition("/")
    return f"{base}/{name}"


async def create_database(prefix: str = "ctc_test") -> str:
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    try:
        conn = await asyncpg.connect(ADMIN_URL, timeout=10)
    except OSError as exc:
        pytest.fail(f"PostgreSQL is not reachable at {ADMIN_URL}: {exc}")
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return _db_url(name)


async def drop_database(url: str) -> None:
    name = url.rpartition("/")[2]
    conn = await asyncpg.connect(ADMIN_URL, timeout=10)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


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
