from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

import asyncpg
import pytest

from engine.errors import MigrationChecksumMismatch, MigrationError
from engine.store.migrations import discover, migrate, migration_status
from tests.support.cli import run_ctc

SEED_TABLES = {
    "voip_provider",
    "click_to_call_session",
    "call_routing_rule",
    "call_dtmf_interaction",
    "ivr_menu",
    "ivr_menu_option",
    "call_recording_config",
    "call_quality_metric",
    "call_transfer",
    "agent_activity_log",
    "phone_number_list",
    "caller_id_profile",
    "click_to_call_webhook_log",
    "call_compliance_rule",
    "call_rate_config",
    "call_usage_billing",
}
OWN_TABLES = {
    "tenant",
    "api_token",
    "call_event",
    "callback_outbox",
    "schema_migration",
    "engine_node",
}


async def _tables(url: str) -> set[str]:
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        return {r["tablename"] for r in rows}
    finally:
        await conn.close()


async def test_migrate_from_zero_then_again_is_a_no_op(empty_db: str, migrations_dir: Path) -> None:
    files = discover(migrations_dir)
    applied = await migrate(empty_db, migrations_dir)
    assert [m.version for m in applied] == [m.version for m in files]
    assert await _tables(empty_db) >= SEED_TABLES | OWN_TABLES

    assert await migrate(empty_db, migrations_dir) == []
    status = await migration_status(empty_db, migrations_dir)
    assert [a.version for a in status.applied] == [m.version for m in files]
    assert status.pending == []
    assert status.changed == []


async def test_every_table_has_a_tenant_id(migrated_db: str) -> None:
    conn = await asyncpg.connect(migrated_db)
    try:
        rows = await conn.fetch(
            "SELECT t.tablename FROM pg_tables t WHERE t.schemaname = 'public' "
            "AND t.tablename NOT IN ('tenant', 'schema_migration', 'engine_node') "
            "AND NOT EXISTS ("
            "  SELECT 1 FROM information_schema.columns c WHERE c.table_name = t.tablename "
            "  AND c.column_name = 'tenant_id' AND c.is_nullable = 'NO')"
        )
    finally:
        await conn.close()
    assert [r["tablename"] for r in rows] == []


async def test_two_concurrent_ctc_db_migrate_are_safe(empty_db: str) -> None:
    env = {**os.environ, "CTC_DATABASE_URL": empty_db, "CTC_CONFIG": "/dev/null"}
    results = await asyncio.gather(*(run_ctc("db", "migrate", env=env) for _ in range(2)))
    assert [code for code, _, _ in results] == [0, 0], results
    outputs = sorted(out for _, out, _ in results)
    # one of them applied everything, the other found nothing pending
    assert outputs[0].startswith("0 migration(s) applied") or "applied 0001" in outputs[0]
    assert sum(o.count("applied 0001_init.sql") for o in outputs) == 1
    conn = await asyncpg.connect(empty_db)
    try:
        versions = [r["version"] for r in await conn.fetch("SELECT version FROM schema_migration")]
    finally:
        await conn.close()
    assert sorted(versions) == sorted(set(versions))


async def test_changed_applied_migration_is_refused(
    empty_db: str, migrations_dir: Path, tmp_path: Path
) -> None:
    copy = tmp_path / "sql"
    shutil.copytree(migrations_dir, copy)
    await migrate(empty_db, copy)
    first = sorted(copy.glob("0001_*.sql"))[0]
    first.write_text(first.read_text() + "\n-- edited after it was applied\n")

    with pytest.raises(MigrationChecksumMismatch, match=r"0001_init\.sql"):
        await migrate(empty_db, copy)
    status = await migration_status(empty_db, copy)
    assert [m.version for m in status.changed] == [1]

    config = tmp_path / "engine.yaml"
    config.write_text(f"database:\n  migrations_dir: {copy}\n")
    env = {**os.environ, "CTC_DATABASE_URL": empty_db, "CTC_CONFIG": str(config)}
    code, out, err = await run_ctc("db", "status", env=env)
    assert code == 1
    assert "CHANGED" in out
    assert err.startswith("error: ")


async def test_a_failing_migration_rolls_back_alone(
    empty_db: str, migrations_dir: Path, tmp_path: Path
) -> None:
    copy = tmp_path / "sql"
    shutil.copytree(migrations_dir, copy)
    (copy / "9999_broken.sql").write_text("CREATE TABLE broken_ok (id int);\nSELECT nope;\n")
    with pytest.raises(MigrationError, match=r"9999_broken\.sql"):
        await migrate(empty_db, copy)
    tables = await _tables(empty_db)
    assert "broken_ok" not in tables  # its own transaction rolled back
    assert "click_to_call_session" in tables  # the good ones before it stayed


def test_bad_file_names_are_refused(tmp_path: Path) -> None:
    (tmp_path / "1_init.sql").write_text("SELECT 1;")
    with pytest.raises(MigrationError, match=r"0001_name\.sql"):
        discover(tmp_path)


_CONCURRENT_BUILD = (
    "-- ctc:no-transaction\n"
    "DROP INDEX CONCURRENTLY IF EXISTS probe_x_idx;  -- a failed build's leftover\n"
    "CREATE INDEX CONCURRENTLY probe_x_idx\n    ON probe (x);\n"
)


async def _index_valid(url: str, name: str) -> bool | None:
    conn = await asyncpg.connect(url)
    try:
        valid: bool | None = await conn.fetchval(
            "SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
            " WHERE c.relname = $1",
            name,
        )
        return valid
    finally:
        await conn.close()


async def test_a_no_transaction_migration_builds_an_index_concurrently(
    empty_db: str, tmp_path: Path
) -> None:
    (tmp_path / "0001_probe.sql").write_text("CREATE TABLE probe (x int);\n")
    (tmp_path / "0002_probe_index.sql").write_text(_CONCURRENT_BUILD)

    applied = await migrate(empty_db, tmp_path)

    # CREATE INDEX CONCURRENTLY fails inside a transaction block: it ran outside one
    assert [m.version for m in applied] == [1, 2]
    assert await _index_valid(empty_db, "probe_x_idx") is True
    assert await migrate(empty_db, tmp_path) == []


async def test_a_no_transaction_migration_that_failed_half_way_runs_again_from_the_start(
    empty_db: str, tmp_path: Path
) -> None:
    (tmp_path / "0001_probe.sql").write_text("CREATE TABLE probe (x int);\n")
    broken = tmp_path / "0002_probe_index.sql"
    broken.write_text(_CONCURRENT_BUILD + "SELECT nope;\n")
    with pytest.raises(MigrationError, match=r"0002_probe_index\.sql"):
        await migrate(empty_db, tmp_path)
    assert await _index_valid(empty_db, "probe_x_idx") is True  # done before the failure
    assert [a.version for a in (await migration_status(empty_db, tmp_path)).applied] == [1]

    broken.write_text(_CONCURRENT_BUILD)  # the admin's fix: the file was never recorded
    assert [m.version for m in await migrate(empty_db, tmp_path)] == [2]
    assert await _index_valid(empty_db, "probe_x_idx") is True


def test_a_no_transaction_file_is_split_after_each_statement(tmp_path: Path) -> None:
    (tmp_path / "0001_probe_index.sql").write_text(_CONCURRENT_BUILD)
    (tmp_path / "0002_plain.sql").write_text("-- not marked\nSELECT 1;\nSELECT 2;\n")

    marked, plain = discover(tmp_path)

    assert (marked.transactional, plain.transactional) == (False, True)
    assert [s.splitlines()[-1].strip() for s in marked.statements()] == [
        "DROP INDEX CONCURRENTLY IF EXISTS probe_x_idx;  -- a failed build's leftover",
        "ON probe (x);",
    ]


def test_the_retention_indexes_are_built_without_blocking_writes(migrations_dir: Path) -> None:
    by_name = {m.name: m for m in discover(migrations_dir)}
    indexes = by_name["retention_indexes"]
    assert not indexes.transactional
    sql = [
        line.strip()
        for line in indexes.sql.splitlines()
        if line.strip() and not line.strip().startswith("--")
    ]
    builds = [line for line in sql if line.startswith(("CREATE INDEX", "DROP INDEX"))]
    assert len(builds) == 4
    assert all("INDEX CONCURRENTLY" in line for line in builds)
