"""A fresh PostgreSQL database per use, so tests never share rows by accident.

The server is the one ``CTC_TEST_ADMIN_URL`` names (default: the local PostgreSQL as
``postgres``, trust auth); every database made here is named ``<prefix>_<random>`` and
dropped, with its connections, by :func:`drop_database`.
"""

from __future__ import annotations

import os
import uuid

import asyncpg
import pytest

__all__ = ["ADMIN_URL", "create_database", "drop_database"]

ADMIN_URL = os.environ.get("CTC_TEST_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def _db_url(name: str) -> str:
    base, _, _ = ADMIN_URL.rpartition("/")
    return f"{base}/{name}"


async def create_database(prefix: str = "ctc_test") -> str:
    """A new empty database; its URL."""
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
    """Drop the database at ``url`` (closing whatever is still connected to it)."""
    name = url.rpartition("/")[2]
    conn = await asyncpg.connect(ADMIN_URL, timeout=10)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()
