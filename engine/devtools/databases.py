"""Throw-away PostgreSQL databases for the tests, the benchmarks and their fixtures.

Each caller gets a brand-new database named ``<prefix>_<12 hex>`` on the server that
``CTC_TEST_ADMIN_URL`` points at (default: the local ``postgres`` superuser over TCP), and
drops it, connections and all, when done.
"""

from __future__ import annotations

import os
import uuid

import asyncpg

from engine.errors import DatabaseUnavailable

__all__ = ["ADMIN_URL", "create_database", "drop_database"]

#: A superuser connection to the server's maintenance database (``postgres``).
ADMIN_URL = os.environ.get("CTC_TEST_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def _db_url(name: str) -> str:
    base, _, _ = ADMIN_URL.rpartition("/")
    return f"{base}/{name}"


async def create_database(prefix: str = "ctc_test") -> str:
    """Create an empty database; its URL. Raises DatabaseUnavailable if the server is not
    reachable."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    try:
        conn = await asyncpg.connect(ADMIN_URL, timeout=10)
    except OSError as exc:
        raise DatabaseUnavailable(f"PostgreSQL is not reachable at {ADMIN_URL}: {exc}") from exc
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return _db_url(name)


async def drop_database(url: str) -> None:
    """Drop the database ``url`` names, even with connections still open; harmless if gone."""
    name = url.rpartition("/")[2]
    conn = await asyncpg.connect(ADMIN_URL, timeout=10)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()
