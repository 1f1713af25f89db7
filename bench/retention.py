"""Retention at scale: batched deletes (what the engine does) against dropping monthly
partitions, on ten million ``call_event`` rows. Not part of the test run.

    .venv/bin/python -m bench.retention --events 10000000

On a scratch database (``ctc_retention_bench_<hex>``, created, migrated and dropped):

1. Seeds ``--events`` events over ``--months`` months, ten per session, ids growing with
   time (as in production), and one delivered callback per session (its last event).
2. Copies them into ``call_event_part``: the same columns, partitioned by month of
   ``recorded_at``. (PostgreSQL requires the partition key in every unique constraint, so
   the copy's primary key is ``(id, recorded_at)`` and ``callback_outbox.event_id`` can
   no longer reference it: that is part of the price of partitions.)
3. A writer inserts call events one per transaction at ``--rate``/s, as calls do, and
   records each insert's latency: alone (the baseline), during the engine's batched prune
   of the oldest month (callbacks then events, through :class:`RetentionService`), and
   during ``DETACH PARTITION CONCURRENTLY`` + ``DROP`` of the partitioned copy's oldest
   month, then a plain ``DROP TABLE`` of the next month.
4. The same again while a 3 s read (a report, a history replay) holds its lock on the
   table: a ``DELETE`` does not wait for it; a plain ``DROP`` of a partition needs an
   ``ACCESS EXCLUSIVE`` lock on the parent, queues behind the reader, and every insert
   queues behind the ``DROP``; ``DETACH ... CONCURRENTLY`` waits for the reader without
   holding inserts up.
5. The writer during the ``VACUUM`` that makes the deleted rows' space reusable.

Prints one table: rows/s of the prune, insert p50/p99/max per phase, table and index
sizes before and after, and what ``VACUUM`` did with the deleted rows.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import statistics
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import asyncpg

from engine.app.ports import FileDeletion
from engine.app.retention import RetentionService
from engine.devtools.databases import create_database, drop_database
from engine.domain.retention import RetentionPolicy
from engine.store.database import Database
from engine.store.migrations import default_migrations_dir, migrate
from engine.store.retention import RetentionRepository

_CUSTOMER = "+14155550100"
_EVENTS_PER_SESSION = 10
_CHUNK_SESSIONS = 100_000


@dataclass
class Latencies:
    """A writer's insert latencies (seconds) for one phase."""

    name: str
    samples: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # inserts PostgreSQL refused (deadlock)

    def row(self) -> str:
        if not self.samples:
            return f"{self.name:<48} (no inserts)"
        ordered = sorted(self.samples)
        p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
        failed = f"  FAILED {len(self.errors)}: {self.errors[0]}" if self.errors else ""
        return (
            f"{self.name:<48} n={len(ordered):>6}  p50 {statistics.median(ordered) * 1e3:7.2f} ms"
            f"  p99 {p99 * 1e3:8.2f} ms  max {ordered[-1] * 1e3:8.2f} ms{failed}"
        )


class Writer:
    """Inserts one call event per transaction at a steady rate into ``table``."""

    def __init__(self, url: str, table: str, tenant: uuid.UUID, rate: float) -> None:
        self._url = url
        self._table = table
        self._tenant = tenant
        self._interval = 1.0 / rate
        self._session = uuid.uuid4()
        self._seq = 0

    async def prepare(self, conn: asyncpg.Connection) -> None:
        await conn.execute(
            "INSERT INTO click_to_call_session (id, tenant_id, agent_number, customer_number)"
            " VALUES ($1, $2, '1001', $3)",
            self._session,
            self._tenant,
            _CUSTOMER,
        )

    @contextlib.asynccontextmanager
    async def running(self, into: Latencies) -> AsyncIterator[None]:
        conn = await asyncpg.connect(self._url)
        stop = asyncio.Event()

        async def loop() -> None:
            next_at = time.monotonic()
            while not stop.is_set():
                self._seq += 1
                started = time.monotonic()
                try:
                    await conn.execute(
                        f"INSERT INTO {self._table} (tenant_id, session_id, seq, event_type)"
                        " VALUES ($1, $2, $3, 'bench.write')",
                        self._tenant,
                        self._session,
                        self._seq,
                    )
                except asyncpg.PostgresError as exc:  # a call's write lost: say so, go on
                    into.errors.append(type(exc).__name__)
                into.samples.append(time.monotonic() - started)
                next_at += self._interval
                await asyncio.sleep(max(0.0, next_at - time.monotonic()))

        task = asyncio.create_task(loop())
        try:
            yield
        finally:
            stop.set()
            await task
            await conn.close()


async def _seed(conn: asyncpg.Connection, events: int, start: datetime, span: timedelta) -> None:
    sessions = events // _EVENTS_PER_SESSION
    step = span / sessions
    began = time.monotonic()
    # seeding only: no foreign-key or append-only triggers (ten million FK checks of rows
    # made consistent by construction); the measured phases run with them
    await conn.execute("SET session_replication_role = replica")
    for first in range(0, sessions, _CHUNK_SESSIONS):
        last = min(sessions, first + _CHUNK_SESSIONS) - 1
        await conn.execute(
            "INSERT INTO click_to_call_session (id, tenant_id, status, agent_number,"
            " customer_number, created_at, ended_at, updated_at, version)"
            " SELECT md5('s' || k)::uuid, t.id, 'completed', '1001', $1,"
            "        $2::timestamptz + k * $3::interval,"
            "        $2::timestamptz + k * $3::interval + interval '60 s',"
            "        $2::timestamptz + k * $3::interval, $6"
            " FROM tenant t, generate_series($4::int, $5::int) k WHERE t.slug = 'default'",
            _CUSTOMER,
            start,
            step,
            first,
            last,
            _EVENTS_PER_SESSION,
        )
        await conn.execute(
            "INSERT INTO call_event (tenant_id, session_id, seq, event_type, occurred_at,"
            " recorded_at)"
            " SELECT t.id, md5('s' || k)::uuid, n, 'bench.seed',"
            "        $1::timestamptz + k * $2::interval + n * interval '1 s',"
            "        $1::timestamptz + k * $2::interval + n * interval '1 s'"
            " FROM tenant t, generate_series($3::int, $4::int) k, generate_series(1, $5) n"
            " WHERE t.slug = 'default' ORDER BY k, n",
            start,
            step,
            first,
            last,
            _EVENTS_PER_SESSION,
        )
        done = (last + 1) * _EVENTS_PER_SESSION
        print(f"  seeded {done:>10} events  ({time.monotonic() - began:6.1f} s)", flush=True)
    await conn.execute(
        "INSERT INTO callback_outbox (tenant_id, session_id, event_id, url, payload, state,"
        " attempts, created_at, delivered_at)"
        " SELECT tenant_id, session_id, id, 'http://erp.example/cb', '{}', 'delivered', 1,"
        "        recorded_at, recorded_at + interval '1 s'"
        " FROM call_event WHERE seq = $1",
        _EVENTS_PER_SESSION,
    )
    await conn.execute("SET session_replication_role = DEFAULT")
    print(f"  seeded callbacks        ({time.monotonic() - began:6.1f} s)", flush=True)


def _month_bounds(start: datetime, months: int) -> list[datetime]:
    bounds = []
    year, month = start.year, start.month
    for _ in range(months + 2):
        bounds.append(datetime(year, month, 1, tzinfo=UTC))
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return bounds


async def _partitioned_copy(conn: asyncpg.Connection, bounds: list[datetime]) -> list[str]:
    began = time.monotonic()
    await conn.execute(
        "CREATE TABLE call_event_part ("
        " id bigint NOT NULL, tenant_id uuid NOT NULL REFERENCES tenant(id),"
        " session_id uuid NOT NULL, seq integer NOT NULL CHECK (seq > 0),"
        " event_type text NOT NULL, status_from text, status_to text,"
        " payload jsonb NOT NULL DEFAULT '{}'::jsonb,"
        " occurred_at timestamptz NOT NULL DEFAULT now(),"
        " recorded_at timestamptz NOT NULL DEFAULT now(),"
        " FOREIGN KEY (tenant_id, session_id) REFERENCES click_to_call_session (tenant_id, id),"
        " PRIMARY KEY (id, recorded_at), UNIQUE (session_id, seq, recorded_at)"
        ") PARTITION BY RANGE (recorded_at)"
    )
    await conn.execute("CREATE SEQUENCE call_event_part_id_seq")
    await conn.execute(
        "ALTER TABLE call_event_part ALTER COLUMN id SET DEFAULT nextval('call_event_part_id_seq')"
    )
    await conn.execute(
        "CREATE INDEX call_event_part_tenant_id_idx ON call_event_part (tenant_id, id)"
    )
    names = []
    for low, high in itertools.pairwise(bounds):
        name = f"call_event_p{low:%Y%m}"
        names.append(name)
        await conn.execute(
            f"CREATE TABLE {name} PARTITION OF call_event_part"
            f" FOR VALUES FROM ('{low.isoformat()}') TO ('{high.isoformat()}')"
        )
    await conn.execute("SET session_replication_role = replica")
    await conn.execute("INSERT INTO call_event_part SELECT * FROM call_event")
    await conn.execute("SET session_replication_role = DEFAULT")
    await conn.execute(
        "SELECT setval('call_event_part_id_seq', (SELECT max(id) FROM call_event_part))"
    )
    print(f"  partitioned copy        ({time.monotonic() - began:6.1f} s)", flush=True)
    return names


async def _sizes(conn: asyncpg.Connection, table: str) -> str:
    row = await conn.fetchrow(
        "SELECT pg_table_size($1::regclass) AS heap, pg_indexes_size($1::regclass) AS idx,"
        " (SELECT n_live_tup FROM pg_stat_user_tables WHERE relid = $1::regclass) AS live,"
        " (SELECT n_dead_tup FROM pg_stat_user_tables WHERE relid = $1::regclass) AS dead",
        table,
    )
    return (
        f"heap {row['heap'] / 2**20:8.1f} MiB  indexes {row['idx'] / 2**20:8.1f} MiB"
        f"  live {row['live']}  dead {row['dead']}"
    )


async def _partition_sizes(conn: asyncpg.Connection) -> str:
    row = await conn.fetchrow(
        "SELECT sum(pg_table_size(c.oid)) AS heap, sum(pg_indexes_size(c.oid)) AS idx,"
        " count(*) AS parts"
        " FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
        " WHERE i.inhparent = 'call_event_part'::regclass"
    )
    return (
        f"heap {row['heap'] / 2**20:8.1f} MiB  indexes {row['idx'] / 2**20:8.1f} MiB"
        f"  partitions {row['parts']}"
    )


@contextlib.asynccontextmanager
async def _reader_holding(url: str, table: str, seconds: float) -> AsyncIterator[None]:
    """A transaction that read ``table`` and keeps its lock for ``seconds`` (a report)."""
    conn = await asyncpg.connect(url)
    locked = asyncio.Event()

    async def hold() -> None:
        async with conn.transaction():
            await conn.fetchval(f"SELECT id FROM {table} ORDER BY id DESC LIMIT 1")
            locked.set()
            await asyncio.sleep(seconds)

    task = asyncio.create_task(hold())
    await locked.wait()
    try:
        yield
    finally:
        await task
        await conn.close()


async def _timed(work: Callable[[], Awaitable[object]]) -> float:
    started = time.monotonic()
    await work()
    return time.monotonic() - started


async def _attempt(work: Callable[[], Awaitable[object]]) -> str:
    """How long ``work`` took, or what PostgreSQL refused (a deadlock) after how long."""
    started = time.monotonic()
    try:
        await work()
    except asyncpg.PostgresError as exc:
        return f"FAILED {type(exc).__name__} after {(time.monotonic() - started) * 1e3:.0f} ms"
    return f"{(time.monotonic() - started) * 1e3:.0f} ms"


async def _locks_of_dropping(conn: asyncpg.Connection, partition: str, *, detach: bool) -> str:
    """The locks a (DETACH +) DROP of ``partition`` takes (in a transaction rolled back)."""
    async with conn.transaction():
        if detach:
            await conn.execute(f"ALTER TABLE call_event_part DETACH PARTITION {partition}")
        await conn.execute(f"DROP TABLE {partition}")
        rows = await conn.fetch(
            "SELECT c.relname, l.mode FROM pg_locks l JOIN pg_class c ON c.oid = l.relation"
            " WHERE l.pid = pg_backend_pid() AND c.relkind IN ('r', 'p')"
            " AND c.relname NOT LIKE 'pg_%' ORDER BY c.relname"
        )
        listing = ", ".join(f"{r['relname']} {r['mode']}" for r in rows)
        raise _RolledBack(listing)


class _RolledBack(Exception):
    """Rolls back the transaction of :func:`_locks_of_dropping`, carrying its finding."""


async def _run(args: argparse.Namespace) -> None:
    url = await create_database("ctc_retention_bench")
    print(f"database {url.rpartition('/')[2]}, {args.events} events over {args.months} months")
    lines: list[str] = []
    try:
        await migrate(url, default_migrations_dir())
        conn = await asyncpg.connect(url, command_timeout=None)
        await conn.execute("SET maintenance_work_mem = '256MB'")
        tenant = await conn.fetchval("SELECT id FROM tenant WHERE slug = 'default'")
        now = datetime.now(UTC)
        bounds = _month_bounds(now - timedelta(days=30 * args.months), args.months)
        start, span = bounds[1], now - bounds[1]
        await _seed(conn, args.events, start, span)
        parts = await _partitioned_copy(conn, bounds)
        began = time.monotonic()
        await conn.execute("VACUUM ANALYZE")
        print(f"  vacuum analyze          ({time.monotonic() - began:6.1f} s)", flush=True)

        writer = Writer(url, "call_event", tenant, args.rate)
        await writer.prepare(conn)
        part_writer = Writer(url, "call_event_part", tenant, args.rate)
        await part_writer.prepare(conn)

        lines.append(f"call_event before          {await _sizes(conn, 'call_event')}")
        lines.append(f"callback_outbox before     {await _sizes(conn, 'callback_outbox')}")
        lines.append(f"call_event_part before     {await _partition_sizes(conn)}")

        phases: list[Latencies] = []
        baseline = Latencies("insert alone (call_event)")
        async with writer.running(baseline):
            await asyncio.sleep(args.baseline)
        phases.append(baseline)

        # the engine's prune of the oldest month of data (bounds[1] to bounds[2])
        cutoff = bounds[2]
        days = 30
        db = Database(url, min_size=1, max_size=2)
        async with db:
            repository = RetentionRepository(db)
            service = RetentionService(
                repository,
                RetentionPolicy(call_events_days=days, delivered_callbacks_days=days),
                _NoFiles(),
                batch_size=args.batch_size,
                batch_pause=args.batch_pause,
                clock=lambda: cutoff + timedelta(days=days),
            )
            dry = await _timed(service.plan)
            plan = await service.plan()
            lines.append(
                f"dry run: {plan.due.call_events} events, {plan.due.delivered_callbacks}"
                f" callbacks due (cut-off {cutoff:%Y-%m-%d}), counted in {dry:.1f} s"
            )
            during = Latencies(f"insert during batched prune ({args.batch_size}/batch)")
            async with writer.running(during):
                report = await service.prune()
            phases.append(during)
            rows = report.call_events + report.delivered_callbacks
            lines.append(
                f"batched prune: {report.call_events} events + {report.delivered_callbacks}"
                f" callbacks in {report.seconds:.1f} s = {rows / report.seconds:,.0f} rows/s"
                f" ({report.batches} batches, {args.batch_pause} s pause each)"
            )
            lines.append(f"call_event after prune     {await _sizes(conn, 'call_event')}")
            vacuumed = Latencies("insert during VACUUM call_event")
            async with writer.running(vacuumed):
                vacuum = await _timed(lambda: conn.execute("VACUUM (ANALYZE) call_event"))
            phases.append(vacuumed)
            await _timed(lambda: conn.execute("VACUUM (ANALYZE) callback_outbox"))
            lines.append(f"VACUUM call_event: {vacuum:.1f} s (space kept for reuse, not returned)")
            lines.append(f"call_event after vacuum    {await _sizes(conn, 'call_event')}")
            lines.append(f"callback_outbox after      {await _sizes(conn, 'callback_outbox')}")

            # the next month again, while a 3 s read holds the table
            cutoff = bounds[3]
            held = Latencies("insert during batched prune + 3 s reader")
            async with writer.running(held), _reader_holding(url, "call_event", 3.0):
                report = await service.prune()
            phases.append(held)
            lines.append(
                f"batched prune beside a 3 s reader: {report.call_events} events in"
                f" {report.seconds:.1f} s"
            )

        part_base = Latencies("insert alone (call_event_part)")
        async with part_writer.running(part_base):
            await asyncio.sleep(args.baseline)
        phases.append(part_base)

        for detach in (True, False):
            try:
                await _locks_of_dropping(conn, parts[5], detach=detach)
            except _RolledBack as found:
                what = "DETACH + DROP" if detach else "DROP"
                lines.append(f"{what} {parts[5]} takes (rolled back): {found}")

        detach = Latencies("insert during DETACH CONCURRENTLY + DROP")
        async with part_writer.running(detach):
            await asyncio.sleep(1.0)
            outcome = await _attempt(lambda: _detach_and_drop(url, parts[1]))
            await asyncio.sleep(1.0)
        phases.append(detach)
        lines.append(f"DETACH CONCURRENTLY + DROP {parts[1]}: {outcome}")

        drop = Latencies("insert during plain DROP TABLE partition")
        async with part_writer.running(drop):
            await asyncio.sleep(1.0)
            outcome = await _attempt(lambda: conn.execute(f"DROP TABLE {parts[2]}"))
            await asyncio.sleep(1.0)
        phases.append(drop)
        lines.append(f"DROP TABLE {parts[2]}: {outcome}")

        held_drop = Latencies("insert during DROP partition + 3 s reader")
        async with part_writer.running(held_drop):
            async with _reader_holding(url, "call_event_part", 3.0):
                outcome = await _attempt(lambda: conn.execute(f"DROP TABLE {parts[3]}"))
            await asyncio.sleep(1.0)
        phases.append(held_drop)
        lines.append(f"DROP TABLE {parts[3]} beside a 3 s reader: {outcome}")

        held_detach = Latencies("insert during DETACH CONCURRENTLY + 3 s reader")
        async with part_writer.running(held_detach):
            async with _reader_holding(url, "call_event_part", 3.0):
                outcome = await _attempt(lambda: _detach_and_drop(url, parts[4]))
            await asyncio.sleep(1.0)
        phases.append(held_detach)
        lines.append(f"DETACH CONCURRENTLY + DROP {parts[4]} beside a 3 s reader: {outcome}")

        # the detached partition's foreign keys: its DROP locks the sessions table
        held_sessions = Latencies("insert during DETACH CONC. + 3 s session reader")
        async with part_writer.running(held_sessions):
            async with _reader_holding(url, "click_to_call_session", 3.0):
                outcome = await _attempt(lambda: _detach_and_drop(url, parts[6]))
            await asyncio.sleep(1.0)
        phases.append(held_sessions)
        lines.append(
            f"DETACH CONCURRENTLY + DROP {parts[6]} beside a 3 s reader of sessions: {outcome}"
        )
        lines.append(f"call_event_part after      {await _partition_sizes(conn)}")
        await conn.close()

        print()
        print(f"writer: one INSERT per transaction at {args.rate:g}/s")
        for phase in phases:
            print(phase.row())
        print()
        for line in lines:
            print(line)
    finally:
        if not args.keep:
            await drop_database(url)


async def _detach_and_drop(url: str, partition: str) -> None:
    # DETACH ... CONCURRENTLY refuses to run inside a transaction block: its own connection
    conn = await asyncpg.connect(url, command_timeout=None)
    try:
        await conn.execute(f"ALTER TABLE call_event_part DETACH PARTITION {partition} CONCURRENTLY")
        await conn.execute(f"DROP TABLE {partition}")
    finally:
        await conn.close()


class _NoFiles:
    """The bench prunes no recordings."""

    async def delete(self, path: str) -> FileDeletion:
        raise RuntimeError(f"no recordings in the bench ({path})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--months", type=int, default=12)
    parser.add_argument("--rate", type=float, default=200.0, help="writer inserts per second")
    parser.add_argument("--baseline", type=float, default=15.0, help="seconds of writer alone")
    parser.add_argument("--batch-size", type=int, default=5000)
    parser.add_argument("--batch-pause", type=float, default=0.05)
    parser.add_argument("--keep", action="store_true", help="do not drop the database")
    asyncio.run(_run(parser.parse_args()))


if __name__ == "__main__":
    main()
