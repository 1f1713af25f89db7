"""Call quality rows (``call_quality_metric``): written by the quality monitor, read by
the API (and by stats and billing for average MOS).

High-volume facts, written outside any call's transaction: a batch of samples is one
``executemany``.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from engine.store.database import Database
from engine.store.records import QualityMetric

__all__ = ["QualityRepository"]

_COLUMNS = (
    "tenant_id, session_id, channel_id, leg, sampled_at, is_final, rx_packets, tx_packets, "
    "rx_lost_packets, tx_lost_packets, jitter_ms, rtt_ms, mos, raw"
)


class QualityRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def add(self, rows: Sequence[QualityMetric]) -> None:
        """Store ``rows``; a row whose session is gone (deleted) fails the batch."""
        if not rows:
            return
        async with self._db.connection() as conn:
            await conn.executemany(
                f"INSERT INTO call_quality_metric ({_COLUMNS}) "
                "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
                [
                    (
                        r.tenant_id,
                        r.session_id,
                        r.channel_id,
                        r.leg,
                        r.sampled_at,
                        r.is_final,
                        r.rx_packets,
                        r.tx_packets,
                        r.rx_lost_packets,
                        r.tx_lost_packets,
                        r.jitter_ms,
                        r.rtt_ms,
                        r.mos,
                        dict(r.raw),
                    )
                    for r in rows
                ],
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
