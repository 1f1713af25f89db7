"""Retention against PostgreSQL: what the prune deletes, what it keeps, in bounded batches
that calls write beside; the dry run; ``ctc db prune``; recording files; the daemon's
periodic pruner."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest

from engine.app.retention import PruneKind, RetentionService
from engine.asterisk.recording_files import SpoolRecordingFiles
from engine.config.settings import RetentionSettings
from engine.daemon import Engine
from engine.domain.call import CallStatus
from engine.domain.retention import RetentionPolicy
from engine.health import HealthReport
from engine.metrics import Metrics
from engine.retention import RetentionPruner
from engine.store.database import Database
from engine.store.migrations import default_migrations_dir, migrate
from engine.store.records import NewSession
from engine.store.repositories import Store
from engine.store.retention import PrunedTable
from tests.support.calls import C2C, CONNECT, session_in
from tests.support.cli import cli_environment, run_ctc
from tests.support.http import Api
from tests.support.tenants import tenant_headers
from tests.support.waiting import eventually

NOW = datetime.now(UTC)
OLD = NOW - timedelta(days=40)  # older than the 30 days the tests keep
RECENT = NOW - timedelta(days=5)


@pytest.fixture
async def db_url(empty_db: str) -> str:
    """A database of this test's own (a prune deletes across tenants), migrated."""
    await migrate(empty_db, default_migrations_dir())
    return empty_db


@pytest.fixture
async def store(db_url: str) -> AsyncIterator[Store]:
    async with Database(db_url, max_size=4) as database:
        yield Store.over(database)


async def _tenant_id(store: Store) -> uuid.UUID:
    return (await store.tenants.by_slug("default")).id


async def _call(
    store: Store,
    at: datetime,
    *,
    events: int = 3,
    callbacks: tuple[str, ...] = (),
    recording: str | None = None,
) -> uuid.UUID:
    """A completed call whose events were recorded at ``at``, one outbox row per state in
    ``callbacks`` (each pointing at its own event, delivered ones delivered at ``at``)."""
    tenant = await _tenant_id(store)
    session = uuid.uuid4()
    async with store.db.transaction() as conn:
        await conn.execute(
            "INSERT INTO click_to_call_session (id, tenant_id, status, agent_number,"
            " customer_number, created_at, ended_at, version, recording_path)"
            " VALUES ($1, $2, 'completed', '1001', '+14155550100', $3, $3, $4, $5)",
            session,
            tenant,
            at,
            events,
            recording,
        )
        ids = [
            await conn.fetchval(
                "INSERT INTO call_event (tenant_id, session_id, seq, event_type, occurred_at,"
                " recorded_at) VALUES ($1, $2, $3, 'test.fact', $4, $4) RETURNING id",
                tenant,
                session,
                seq,
                at,
            )
            for seq in range(1, events + 1)
        ]
        for event_id, state in zip(ids, callbacks, strict=False):
            await conn.execute(
                "INSERT INTO callback_outbox (tenant_id, session_id, event_id, url, payload,"
                " state, created_at, delivered_at)"
                " VALUES ($1, $2, $3, 'http://erp.example/cb', '{}', $4, $5, $6)",
                tenant,
                session,
                event_id,
                state,
                at,
                at if state == "delivered" else None,
            )
    return session


async def _events_of(store: Store, session: uuid.UUID) -> list[int]:
    rows = await store.db.fetch(
        "SELECT seq FROM call_event WHERE session_id = $1 ORDER BY seq", session
    )
    return [row["seq"] for row in rows]


async def _callbacks_of(store: Store, session: uuid.UUID) -> list[str]:
    rows = await store.db.fetch(
        "SELECT state FROM callback_outbox WHERE session_id = $1 ORDER BY id", session
    )
    return [row["state"] for row in rows]


def _service(
    store: Store,
    *,
    events: int | None = 30,
    callbacks: int | None = 30,
    recordings: int | None = None,
    batch_size: int = 5000,
    spool: Path | None = None,
) -> RetentionService:
    return RetentionService(
        store.retention,
        RetentionPolicy(events, callbacks, recordings),
        SpoolRecordingFiles(spool or Path("/nonexistent-spool")),
        batch_size=batch_size,
        batch_pause=0,
    )


# -- what goes, what stays ----------------------------------------------------------------------


async def test_only_events_older_than_the_period_are_pruned_and_sessions_stay(
    store: Store,
) -> None:
    old = await _call(store, OLD)
    recent = await _call(store, RECENT)

    report = await _service(store).prune()

    assert report.call_events == 3
    assert await _events_of(store, old) == []
    assert await _events_of(store, recent) == [1, 2, 3]
    assert (await store.sessions.by_id(old)) is not None  # the call itself is kept


async def test_an_undelivered_callback_is_never_pruned_and_keeps_its_event(store: Store) -> None:
    session = await _call(store, OLD, events=4, callbacks=("delivered", "pending", "dead"))

    report = await _service(store).prune()

    assert await _callbacks_of(store, session) == ["pending", "dead"]
    # seq 1's callback was delivered long ago: both went; 2 and 3 wait with theirs
    assert await _events_of(store, session) == [2, 3]
    assert (report.delivered_callbacks, report.call_events) == (1, 2)


async def test_a_delivered_callback_kept_longer_keeps_its_event(store: Store) -> None:
    session = await _call(store, OLD, events=2, callbacks=("delivered",))

    await _service(store, events=30, callbacks=90).prune()

    assert await _callbacks_of(store, session) == ["delivered"]
    assert await _events_of(store, session) == [1]


async def test_nothing_configured_prunes_nothing(store: Store) -> None:
    session = await _call(store, OLD, callbacks=("delivered",))

    report = await _service(store, events=None, callbacks=None).prune()

    assert (report.call_events, report.delivered_callbacks, report.batches) == (0, 0, 0)
    assert await _events_of(store, session) == [1, 2, 3]


async def test_outside_the_prune_call_event_stays_append_only(store: Store) -> None:
    await _call(store, OLD)
    with pytest.raises(asyncpg.RestrictViolationError, match="append-only"):
        await store.db.execute("DELETE FROM call_event")


# -- batches ------------------------------------------------------------------------------------


async def test_every_batch_deletes_at_most_batch_size_rows(store: Store) -> None:
    for _ in range(7):
        await _call(store, OLD, events=5, callbacks=("delivered",) * 5)
    service = _service(store, batch_size=10)
    per_batch: list[tuple[PruneKind, int]] = []
    service.on_pruned = lambda kind, count: per_batch.append((kind, count))

    report = await service.prune()

    assert (report.call_events, report.delivered_callbacks) == (35, 35)
    assert sum(count for _, count in per_batch) == 70
    assert max(count for _, count in per_batch) <= 10
    assert report.batches >= 8


async def test_a_call_is_written_while_a_prune_batch_holds_its_transaction(store: Store) -> None:
    old = await _call(store, OLD, callbacks=("delivered",))
    tenant = await _tenant_id(store)
    inside = asyncio.Event()
    release = asyncio.Event()

    async def hold(table: PrunedTable) -> None:
        if table == "call_event":
            inside.set()
            await release.wait()

    store.retention.in_batch = hold
    prune = asyncio.create_task(_service(store).prune())
    await asyncio.wait_for(inside.wait(), 20)
    # the batch has deleted and not committed: a call's writes (session, events, callback)
    # go through now, not after it
    new = NewSession(tenant, "1001", "+14155550100", callback_url="http://erp.example/cb")
    session, _ = await asyncio.wait_for(store.sessions.create(new), 20)
    await asyncio.wait_for(
        store.sessions.transition(tenant, session.id, CallStatus.DIALING_AGENT), 20
    )
    assert not prune.done()
    release.set()
    report = await asyncio.wait_for(prune, 20)

    assert report.call_events == 3
    assert await _events_of(store, old) == []
    assert await _events_of(store, session.id) == [1, 2]
    assert await _callbacks_of(store, session.id) == ["pending", "pending"]  # queued, dialing


async def test_two_engines_pruning_at_once_take_turns_batch_by_batch(store: Store) -> None:
    for _ in range(4):
        await _call(store, OLD, events=5, callbacks=("delivered",) * 5)
    first_inside = asyncio.Event()
    release = asyncio.Event()

    async def hold_the_first(table: PrunedTable) -> None:
        if not first_inside.is_set():
            first_inside.set()
            await release.wait()

    store.retention.in_batch = hold_the_first
    first = asyncio.create_task(_service(store, batch_size=10).prune())
    await asyncio.wait_for(first_inside.wait(), 20)
    second = asyncio.create_task(_service(store, batch_size=10).prune())

    async def second_waits_its_turn() -> bool:
        return bool(
            await store.db.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND wait_event_type = 'Lock' AND wait_event = 'advisory'"
            )
        )

    await eventually(second_waits_its_turn, what="the second prune waiting for its turn")
    release.set()
    reports = await asyncio.wait_for(asyncio.gather(first, second), 20)

    assert sum(report.call_events for report in reports) == 20
    assert sum(report.delivered_callbacks for report in reports) == 20
    assert await store.db.fetchval("SELECT count(*) FROM call_event") == 0


# -- the dry run --------------------------------------------------------------------------------


async def test_the_dry_run_counts_what_the_prune_then_deletes_and_deletes_nothing(
    store: Store,
) -> None:
    await _call(store, OLD, events=4, callbacks=("delivered", "pending"))
    await _call(store, RECENT, callbacks=("delivered",))
    service = _service(store)

    plan = await service.plan()
    assert await store.db.fetchval("SELECT count(*) FROM call_event") == 7
    report = await service.prune()

    assert (plan.due.call_events, plan.due.delivered_callbacks) == (3, 1)
    assert (report.call_events, report.delivered_callbacks) == (3, 1)
    assert plan.due.recordings is None  # recordings are kept forever here
    assert plan.cutoffs.call_events is not None
    assert NOW - timedelta(days=30, minutes=5) < plan.cutoffs.call_events < NOW


# -- recordings ---------------------------------------------------------------------------------


async def test_old_recordings_are_deleted_and_the_call_says_so(
    store: Store, tmp_path: Path
) -> None:
    spool = tmp_path / "recording"
    spool.mkdir()
    old_file, recent_file, outside = spool / "c2c-old.wav", spool / "c2c-new.wav", tmp_path / "x"
    for path in (old_file, recent_file, outside):
        path.write_bytes(b"RIFF")
    undeletable = spool / "c2c-dir.wav"  # unlink refuses a directory (as it would a
    undeletable.mkdir()  # file the engine's user may not delete; root may delete any)
    old = await _call(store, OLD, recording=str(old_file))
    gone = await _call(store, OLD, recording=str(spool / "c2c-gone.wav"))
    escaping = await _call(store, OLD, recording=str(spool / ".." / "x"))
    refused = await _call(store, OLD, recording=str(undeletable))
    recent = await _call(store, RECENT, recording=str(recent_file))
    service = _service(store, events=None, callbacks=None, recordings=30, spool=spool)

    plan = await service.plan()
    report = await service.prune()

    assert plan.due.recordings == 4
    assert report.recordings == {"deleted": 1, "missing": 1, "refused": 1, "failed": 1}
    assert not old_file.exists()
    assert recent_file.exists()
    assert outside.exists()
    calls = (old, gone, escaping, refused, recent)
    sessions = {sid: await store.sessions.by_id(sid) for sid in calls}
    reasons = {sid: s.recording_deleted_reason for sid, s in sessions.items() if s is not None}
    assert reasons == {
        old: "retention",
        gone: "missing",
        escaping: None,
        refused: None,
        recent: None,
    }
    deleted = sessions[old]
    assert deleted is not None
    assert deleted.recording_deleted_at is not None
    assert deleted.recording_path == str(old_file)  # what was recorded stays said
    # a second run tries again what was not deleted, and leaves it as it is
    again = await service.prune()
    assert again.recordings == {"refused": 1, "failed": 1}


async def test_the_api_says_a_recording_was_deleted_by_retention(
    api_engine: Engine, unix_api: Api, tmp_path: Path
) -> None:
    store = api_engine.store
    slug, session_id = await session_in(store, unix_api, *CONNECT)
    recording = tmp_path / f"c2c-{session_id}.wav"
    recording.write_bytes(b"RIFF")
    await store.db.execute(
        "UPDATE click_to_call_session SET recording_path = $2, ended_at = $3 WHERE id = $1",
        uuid.UUID(session_id),
        str(recording),
        OLD,
    )
    # only recordings: the run's shared database holds other tests' rows
    service = _service(store, events=None, callbacks=None, recordings=30, spool=tmp_path)

    report = await service.prune()

    assert report.recordings == {"deleted": 1}
    status, body, _ = await unix_api.call(
        "GET", f"{C2C}/sessions/{session_id}", headers=tenant_headers(slug)
    )
    assert status == 200, body
    assert body["recording_path"] == str(recording)
    assert body["recording_deleted_reason"] == "retention"
    assert datetime.fromisoformat(body["recording_deleted_at"]) > OLD
    assert body["events_pruned"] is False  # its events are all there


async def test_the_api_says_a_timeline_was_pruned(api_engine: Engine, unix_api: Api) -> None:
    store = api_engine.store
    slug, session_id = await session_in(store, unix_api, *CONNECT)
    # its first events as a prune leaves them: gone (as the prune, so the trigger allows it)
    async with store.db.transaction() as conn:
        await conn.execute("SELECT set_config('ctc.prune', 'retention', true)")
        await conn.execute(
            "DELETE FROM call_event WHERE session_id = $1 AND seq <= 2", uuid.UUID(session_id)
        )

    status, body, _ = await unix_api.call(
        "GET", f"{C2C}/sessions/{session_id}", headers=tenant_headers(slug)
    )

    assert status == 200, body
    assert body["events_pruned"] is True
    assert [event["seq"] for event in body["events"]] == [3, 4, 5]


# -- ctc db prune -------------------------------------------------------------------------------


def _keeping_30_days(env: dict[str, str]) -> dict[str, str]:
    """``env`` with a config keeping events and delivered callbacks 30 days."""
    Path(env["CTC_CONFIG"]).write_text(
        "ari:\n  enabled: false\nagi:\n  enabled: false\n"
        "retention:\n  call_events_days: 30\n  delivered_callbacks_days: 30\n"
    )
    return env


async def test_ctc_db_prune_dry_run_then_prune(store: Store, db_url: str, tmp_path: Path) -> None:
    session = await _call(store, OLD, events=4, callbacks=("delivered", "pending"))
    env = _keeping_30_days(cli_environment(db_url, tmp_path))

    code, out, err = await run_ctc("db", "prune", "--dry-run", env=env)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == "dry run: nothing is deleted"
    assert lines[1].split()[:3] == ["call_event", "3", "recorded"]
    assert "(retention.call_events_days: 30)" in lines[1]
    assert lines[2].split()[:3] == ["callback_outbox", "1", "delivered"]
    assert lines[3].split()[:2] == ["recordings", "-"]
    assert "kept forever (retention.recordings_days: null)" in lines[3]
    assert await _events_of(store, session) == [1, 2, 3, 4]

    code, out, err = await run_ctc("db", "prune", env=env)
    assert code == 0, err
    assert out.splitlines()[0].split()[:2] == ["call_event", "3"]
    assert out.splitlines()[1].split()[:2] == ["callback_outbox", "1"]
    assert await _events_of(store, session) == [2]


async def test_ctc_db_prune_refuses_a_schema_that_is_not_current(
    empty_db: str, tmp_path: Path
) -> None:
    code, _, err = await run_ctc("db", "prune", env=cli_environment(empty_db, tmp_path))
    assert code == 1
    assert "migration(s) pending: run `ctc db migrate` first" in err


# -- the daemon's pruner ------------------------------------------------------------------------


async def test_the_pruner_runs_reports_and_stops_cleanly(store: Store) -> None:
    await _call(store, OLD, callbacks=("delivered",))
    health, metrics = HealthReport(), Metrics()
    pruner = RetentionPruner(
        _service(store), interval=3600, health=health, metrics=metrics, first_delay=0
    )

    async with pruner:
        await eventually(lambda: pruner.runs >= 1, what="a first prune")
        status = health.get("retention")
        assert status is not None
        assert status.state == "up"
        assert not status.required
        assert "3 events, 1 delivered callbacks" in status.detail
        assert (
            metrics.registry.get_sample_value("ctc_retention_pruned_total", {"kind": "call_events"})
            == 3
        )
        assert metrics.registry.get_sample_value("ctc_retention_runs_total", {"outcome": "ok"}) == 1
        assert (
            metrics.registry.get_sample_value("ctc_retention_last_success_timestamp_seconds") or 0
        ) > 0
    assert pruner.is_closed
    await pruner.close()  # twice: a no-op


async def test_the_engine_runs_a_pruner_and_reports_it_in_health(api_engine: Engine) -> None:
    # the default settings expire delivered callbacks: a pruner waits for its first run
    assert api_engine.retention.is_open
    status = api_engine.health.get("retention")
    assert status is not None
    assert status.state == "up"
    assert not status.required


async def test_a_failed_prune_is_reported_and_the_pruner_goes_on(store: Store) -> None:
    health, metrics = HealthReport(), Metrics()
    pruner = RetentionPruner(_service(store), interval=3600, health=health, metrics=metrics)
    await store.db.close()  # the database is gone

    assert await pruner.run_once() is None
    status = health.get("retention")
    assert status is not None
    assert status.state == "down"
    assert "last prune failed: ClosedResourceError" in status.detail
    assert metrics.registry.get_sample_value("ctc_retention_runs_total", {"outcome": "failed"}) == 1


async def test_with_nothing_to_expire_the_pruner_runs_nothing(store: Store) -> None:
    health = HealthReport()
    service = RetentionService.from_settings(
        store.retention,
        RetentionSettings(delivered_callbacks_days=None),
        SpoolRecordingFiles(Path("/nonexistent-spool")),
    )
    async with RetentionPruner(
        service, interval=3600, health=health, metrics=Metrics(), first_delay=0
    ):
        status = health.get("retention")
        assert status is not None
        assert (status.state, status.detail) == ("up", "retention keeps everything")


async def test_expired_number_list_entries_are_purged_in_batches_and_the_rest_stay(
    store: Store,
) -> None:
    tenant = await _tenant_id(store)
    now = datetime.now(UTC)
    rows = [(f"+1415555{i:04}", now - timedelta(days=1)) for i in range(5)]
    rows += [("+14155559998", now + timedelta(days=1)), ("+14155559999", None)]
    for number, expires in rows:
        await store.db.execute(
            "INSERT INTO phone_number_list (tenant_id, list_type, phone_number, expires_at) "
            "VALUES ($1, 'blocklist', $2, $3)",
            tenant,
            number,
            expires,
        )
    service = _service(store, events=None, batch_size=2)
    assert (await service.plan()).due.expired_list_entries == 5

    report = await service.prune()

    assert report.expired_list_entries == 5
    assert report.count("expired_list_entries") == 5
    left = await store.db.fetch("SELECT phone_number FROM phone_number_list ORDER BY 1")
    assert [r["phone_number"] for r in left] == ["+14155559998", "+14155559999"]
