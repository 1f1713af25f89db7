"""Call quality rows (``call_quality_metric``): written by the quality monitor, read by
the API (and by stats and billing for average MOS).

High-volume facts, written outside any call's transaction: a batch (a sampler round, the
final rows of the legs that ended together) is one multi-row ``INSERT`` over ``unnest``
(one Bind and Execute, where ``executemany`` sends one per row). A batch mixes calls (both
IVR doors and click-to-calls end in it), so one call PostgreSQL refuses (its session
deleted meanwhile) must not cost the others: a refused batch is written again a session at
a time, and only the refused session's rows are left out.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import asyncpg
import structlog

from engine import json_text
from engine.store.database import Database
from engine.store.records import QualityMetric

__all__ = ["QualityRepository"]

log = structlog.get_logger(__name__)

_COLUMNS = (
    "tenant_id, session_id, channel_id, leg, sampled_at, is_final, rx_packets, tx_packets, "
    "rx_lost_packets, tx_lost_packets, jitter_ms, rtt_ms, mos, raw"
)


class QualityRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def add(self, rows: Sequence[QualityMetric]) -> list[QualityMetric]:
        """Store ``rows``; the ones stored: those of a session PostgreSQL refuses (e.g. gone)
        are logged and left out. PostgreSQL away raises (``DatabaseUnavailable``)."""
        # in session order, as the journal writes its sessions: the rows' foreign keys lock
        # their sessions in one order (a 1,000-call run saw the two deadlock while the
        # journal's upsert locked its rows FOR UPDATE; it no longer does, _KEY_COLUMNS in
        # engine/store/journal.py)
        rows = sorted(rows, key=lambda row: row.session_id)
        try:
            await self._insert(rows)
            return list(rows)
        except asyncpg.PostgresError as exc:
            refused = exc
        sessions = sorted({row.session_id for row in rows})
        if len(sessions) == 1:
            log.warning("quality.rows_refused", call_id=str(sessions[0]), error=str(refused))
            return []
        stored: list[QualityMetric] = []
        for session_id in sessions:
            of_session = [row for row in rows if row.session_id == session_id]
            try:
                await self._insert(of_session)
            except asyncpg.PostgresError as exc:
                log.warning("quality.rows_refused", call_id=str(session_id), error=str(exc))
            else:
                stored.extend(of_session)
        return stored

    async def _insert(self, rows: Sequence[QualityMetric]) -> None:
        if not rows:
            return
        await self._db.execute(
            f"INSERT INTO call_quality_metric ({_COLUMNS}) "
            "SELECT tenant_id, session_id, channel_id, leg::call_leg, sampled_at, is_final, "
            "rx_packets, tx_packets, rx_lost_packets, tx_lost_packets, jitter_ms, rtt_ms, mos, "
            "raw::jsonb FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], "
            "$5::timestamptz[], $6::boolean[], $7::bigint[], $8::bigint[], $9::bigint[], "
            "$10::bigint[], $11::float8[], $12::float8[], $13::float8[], $14::text[]) "
            f"WITH ORDINALITY AS r({_COLUMNS}, n) ORDER BY n",
            [r.tenant_id for r in rows],
            [r.session_id for r in rows],
            [r.channel_id for r in rows],
            [r.leg for r in rows],
            [r.sampled_at for r in rows],
            [r.is_final for r in rows],
            [r.rx_packets for r in rows],
            [r.tx_packets for r in rows],
            [r.rx_lost_packets for r in rows],
            [r.tx_lost_packets for r in rows],
            [r.jitter_ms for r in rows],
            [r.rtt_ms for r in rows],
            [r.mos for r in rows],
            [json_text.dumps(dict(r.raw)) for r in rows],
        )

    async def for_session(self, tenant_id: uuid.UUID, session_id: uuid.UUID) -> list[QualityMetric]:
        """The session's rows, oldest first (samples, then each leg's final row)."""
        rows = await self._db.fetch(
            f"SELECT {_COLUMNS} FROM call_quality_metric WHERE tenant_id = $1 "
            "AND session_id = $2 ORDER BY sampled_at, id",
            tenant_id,
            session_id,
        )
        return [
            QualityMetric(
                tenant_id=row["tenant_id"],
                session_id=row["session_id"],
                channel_id=row["channel_id"],
                leg=row["leg"],
                sampled_at=row["sampled_at"],
                is_final=row["is_final"],
                rx_packets=row["rx_packets"],
                tx_packets=row["tx_packets"],
                rx_lost_packets=row["rx_lost_packets"],
                tx_lost_packets=row["tx_lost_packets"],
                jitter_ms=None if row["jitter_ms"] is None else float(row["jitter_ms"]),
                rtt_ms=None if row["rtt_ms"] is None else float(row["rtt_ms"]),
                mos=None if row["mos"] is None else float(row["mos"]),
                raw=row["raw"],
            )
            for row in rows
        ]
