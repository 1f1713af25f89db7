"""Forward-only SQL migrations from ``sql/NNNN_name.sql``.

Each pending file runs in its own transaction, in version order, while holding a
PostgreSQL advisory lock, so two ``ctc db migrate`` at once are safe: the second waits,
then finds nothing pending. The ledger (``schema_migration``) records each file's
SHA-256; if an applied file has changed on disk we refuse to run at all, because the
database no longer matches what the files say.

A file whose first line is ``-- ctc:no-transaction`` runs outside a transaction, one
statement at a time (split after each line ending in ``;``, so such a file holds plain
DDL, no function bodies), and is recorded in the ledger after its last statement. It is
for what PostgreSQL refuses inside a transaction and what must not block a live PBX:
``CREATE INDEX CONCURRENTLY`` on a table that calls write to. Such a file must be safe
to run again from the start, because a failure half-way leaves its earlier statements
done and the file unrecorded (``DROP INDEX CONCURRENTLY IF EXISTS`` before each build
also removes the invalid index a failed concurrent build leaves behind).
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import re
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import asyncpg
import structlog

from engine.errors import (
    DatabaseUnavailable,
    MigrationChecksumMismatch,
    MigrationError,
)
from engine.shared_data import shared_data_dir
from engine.store.database import CONNECTION_ERRORS

__all__ = [
    "NO_TRANSACTION_MARK",
    "AppliedMigration",
    "Migration",
    "MigrationStatus",
    "default_migrations_dir",
    "discover",
    "migrate",
    "migration_status",
]

log = structlog.get_logger(__name__)

_FILE_RE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
NO_TRANSACTION_MARK = "-- ctc:no-transaction"
_STATEMENT_END = re.compile(r";[ \t]*(?:--[^\n]*)?$", re.M)
# pg_advisory_lock key: "ctc-mig" in ASCII, fixed so every engine agrees on it
_LOCK_KEY = 0x6374632D6D6967
_LOCK_POLL = 0.1  # seconds between two tries of the lock

_LEDGER_DDL = """
CREATE TABLE IF NOT EXISTS schema_migration (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


@dataclasses.dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    path: Path
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()

    @property
    def transactional(self) -> bool:
        """False for a file marked ``-- ctc:no-transaction`` on its first line."""
        return self.sql.lstrip().partition("\n")[0].strip() != NO_TRANSACTION_MARK

    def statements(self) -> list[str]:
        """The file split after each line ending in ``;`` (for a no-transaction file)."""
        out: list[str] = []
        start = 0
        for end in _STATEMENT_END.finditer(self.sql):
            out.append(self.sql[start : end.end()])
            start = end.end()
        out.append(self.sql[start:])
        return [text for text in out if _has_sql(text)]


def _has_sql(text: str) -> bool:
    return any(line.strip() and not line.strip().startswith("--") for line in text.splitlines())


@dataclasses.dataclass(frozen=True, slots=True)
class AppliedMigration:
    version: int
    name: str
    checksum: str
    applied_at: datetime


@dataclasses.dataclass(frozen=True, slots=True)
class MigrationStatus:
    applied: list[AppliedMigration]
    pending: list[Migration]
    changed: list[Migration]  # applied, but the file on disk differs


def default_migrations_dir() -> Path:
    """The top-level ``sql/`` folder: the checkout's, else the one a wheel installs."""
    return shared_data_dir("sql")


def discover(directory: Path) -> list[Migration]:
    """Read every ``NNNN_name.sql`` in ``directory``, in version order."""
    if not directory.is_dir():
        raise MigrationError(f"{directory}: migrations directory not found")
    found: dict[int, Migration] = {}
    for path in sorted(directory.iterdir()):
        if path.suffix != ".sql":
            continue
        m = _FILE_RE.match(path.name)
        if m is None:
            raise MigrationError(f"{path}: migration file names must look like 0001_name.sql")
        version = int(m.group(1))
        if version in found:
            raise MigrationError(f"{path}: version {version} is used twice")
        found[version] = Migration(version, m.group(2), path, path.read_text(encoding="utf-8"))
    return [found[v] for v in sorted(found)]


async def _connect(url: str) -> asyncpg.Connection:
    try:
        return await asyncpg.connect(url, timeout=10)
    except CONNECTION_ERRORS as exc:
        raise DatabaseUnavailable(f"cannot connect to PostgreSQL: {exc}") from exc


async def _applied(conn: asyncpg.Connection) -> list[AppliedMigration]:
    exists = await conn.fetchval("SELECT to_regclass('schema_migration') IS NOT NULL")
    if not exists:
        return []
    rows = await conn.fetch(
        "SELECT version, name, checksum, applied_at FROM schema_migration ORDER BY version"
    )
    return [AppliedMigration(r["version"], r["name"], r["checksum"], r["applied_at"]) for r in rows]


def _compare(files: Sequence[Migration], applied: Sequence[AppliedMigration]) -> MigrationStatus:
    by_version = {m.version: m for m in files}
    done = {a.version for a in applied}
    changed = [
        by_version[a.version]
        for a in applied
        if a.version in by_version and by_version[a.version].checksum != a.checksum
    ]
    pending = [m for m in files if m.version not in done]
    return MigrationStatus(list(applied), pending, changed)


async def migration_status(url: str, directory: Path) -> MigrationStatus:
    files = discover(directory)
    conn = await _connect(url)
    try:
        return _compare(files, await _applied(conn))
    finally:
        await conn.close()


async def migrate(url: str, directory: Path) -> list[Migration]:
    """Apply every pending migration; return the ones this call applied."""
    files = discover(directory)
    conn = await _connect(url)
    try:
        await _take_lock(conn)
        try:
            await conn.execute(_LEDGER_DDL)
            status = _compare(files, await _applied(conn))
            if status.changed:
                names = ", ".join(m.path.name for m in status.changed)
                raise MigrationChecksumMismatch(
                    f"applied migration changed on disk: {names}; "
                    "migrations are forward-only, add a new file instead"
                )
            if status.pending and status.applied:
                newest = status.applied[-1].version
                late = [m for m in status.pending if m.version < newest]
                if late:
                    raise MigrationError(
                        f"{late[0].path.name} is older than applied version {newest}; "
                        "renumber it after the newest applied migration"
                    )
            for migration in status.pending:
                await _apply(conn, migration)
            return status.pending
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK_KEY)
    finally:
        await conn.close()


async def _take_lock(conn: asyncpg.Connection) -> None:
    """Take the migration lock, trying every 100 ms rather than waiting in one statement.

    A ``SELECT pg_advisory_lock(...)`` that waits is a transaction that stays open, and
    ``CREATE INDEX CONCURRENTLY`` (a no-transaction file) waits for every open
    transaction to end: the holder would wait for the waiter, which waits for the holder
    (PostgreSQL reports a deadlock). Each try here is a transaction of its own, over at
    once."""
    while True:
        if await conn.fetchval("SELECT pg_try_advisory_lock($1)", _LOCK_KEY):
            return
        await asyncio.sleep(_LOCK_POLL)


async def _record(conn: asyncpg.Connection, migration: Migration) -> None:
    await conn.execute(
        "INSERT INTO schema_migration (version, name, checksum) VALUES ($1, $2, $3)",
        migration.version,
        migration.name,
        migration.checksum,
    )


async def _apply(conn: asyncpg.Connection, migration: Migration) -> None:
    try:
        if migration.transactional:
            async with conn.transaction():
                await conn.execute(migration.sql)
                await _record(conn, migration)
        else:
            for statement in migration.statements():
                await conn.execute(statement)
            await _record(conn, migration)
    except asyncpg.PostgresError as exc:
        raise MigrationError(f"{migration.path.name}: {exc}") from exc
    log.info("migration.applied", version=migration.version, name=migration.name)
