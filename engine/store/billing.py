"""Rate cards (``call_rate_config``) and billing lines (``call_usage_billing``).

The rating itself is :mod:`engine.domain.rating`; this module finds the cards, the ended
sessions to charge, and writes the lines. A line is keyed by (session, leg): writing it
again (the leg's end reported twice, ``ctc billing rerate``) replaces it, unless it is
already on an invoice (``invoice_ref`` set): an invoiced line is money told to the ERP
and is never rewritten.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Final

import asyncpg

from engine.domain.rating import LegDirection, PulseRule, Rate, RatedLeg
from engine.errors import NotFound
from engine.store.database import Connection, Database, returned

__all__ = ["BillingLine", "BillingRepository", "EndedSession", "LinesWritten"]

_RATE_COLS: Final = (
    "id, name, provider_id, destination_prefix, direction, rate_per_minute_minor, rate_scale, "
    "connection_fee_minor, minimum_charge_minor, currency, billing_increment_s, "
    "min_duration_s, priority, effective_from, effective_to"
)

# the session columns rating needs, and an inbound call's answered transfer (the last
# one an IVR transfer completed: the target the caller talked to when the call ended)
_ENDED_COLS: Final = (
    "s.id, s.tenant_id, s.provider_id, s.direction, s.agent_number, s.customer_number, "
    "s.agent_answered_at, s.connected_at, s.ended_at, s.end_estimated, s.dialed_number, "
    "t.target AS target_number, t.answered_at AS target_answered_at"
)
_ENDED_FROM: Final = (
    "click_to_call_session s LEFT JOIN LATERAL ("
    "SELECT target, answered_at FROM call_transfer t "
    "WHERE t.session_id = s.id AND t.tenant_id = s.tenant_id AND s.direction = 'inbound' "
    "AND t.state = 'completed' AND t.answered_at IS NOT NULL "
    "ORDER BY t.answered_at DESC LIMIT 1) t ON true"
)


def _rate(row: asyncpg.Record) -> Rate:
    return Rate(
        id=row["id"],
        name=row["name"],
        provider_id=row["provider_id"],
        destination_prefix=row["destination_prefix"],
        direction=LegDirection(row["direction"]),
        rate_per_minute_minor=row["rate_per_minute_minor"],
        rate_scale=row["rate_scale"],
        connection_fee_minor=row["connection_fee_minor"],
        minimum_charge_minor=row["minimum_charge_minor"],
        currency=row["currency"],
        pulse=PulseRule(row["min_duration_s"], row["billing_increment_s"]),
        priority=row["priority"],
        effective_from=row["effective_from"],
        effective_to=row["effective_to"],
    )


@dataclasses.dataclass(frozen=True, slots=True)
class EndedSession:
    """What rating reads of an ended session."""

    id: uuid.UUID
    tenant_id: uuid.UUID
    provider_id: uuid.UUID | None
    direction: str
    agent_number: str
    customer_number: str
    agent_answered_at: datetime | None
    connected_at: datetime | None
    ended_at: datetime | None
    end_estimated: bool
    dialed_number: str | None = None
    target_number: str | None = None  # inbound: the transfer target that answered
    target_answered_at: datetime | None = None

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> EndedSession:
        return cls(**{f.name: row[f.name] for f in dataclasses.fields(cls)})


@dataclasses.dataclass(frozen=True, slots=True)
class BillingLine:
    """A stored billing line, as the export and the API show it."""

    session_id: uuid.UUID
    leg: str
    destination_number: str | None
    matched_prefix: str | None
    rate_config_id: uuid.UUID | None
    provider_id: uuid.UUID | None
    duration_s: int
    billable_seconds: int
    rate_per_minute_minor: int
    rate_scale: int
    connection_fee_minor: int
    minimum_charge_minor: int
    amount_minor: int
    currency: str
    billed_at: datetime
    unrated_reason: str | None
    end_estimated: bool
    invoice_ref: str | None

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> BillingLine:
        return cls(**{f.name: row[f.name] for f in dataclasses.fields(cls)})


_LINE_COLS: Final = ", ".join(f.name for f in dataclasses.fields(BillingLine))


@dataclasses.dataclass(frozen=True, slots=True)
class LinesWritten:
    """What a write of lines did: new lines, lines whose amount or rate changed, lines
    left as they were (same result), invoiced lines not touched."""

    inserted: int = 0
    changed: int = 0
    unchanged: int = 0
    invoiced: int = 0

    def __add__(self, other: LinesWritten) -> LinesWritten:
        return LinesWritten(
            self.inserted + other.inserted,
            self.changed + other.changed,
            self.unchanged + other.unchanged,
            self.invoiced + other.invoiced,
        )


# Upsert every line of a batch; an invoiced line is left alone, a line rated the same
# again is not touched (so rerate is idempotent: a second run changes nothing, and says so).
_SAVE: Final = """
WITH v AS (
    SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::uuid[], $5::uuid[],
                         $6::text[], $7::text[], $8::int[], $9::int[], $10::bigint[],
                         $11::smallint[], $12::bigint[], $13::bigint[], $14::bigint[],
                         $15::text[], $16::timestamptz[], $17::int[], $18::int[], $19::text[],
                         $20::boolean[])
        AS v(tenant_id, session_id, leg, rate_config_id, provider_id, destination_number,
             matched_prefix, duration_s, billable_seconds, rate_per_minute_minor, rate_scale,
             connection_fee_minor, minimum_charge_minor, amount_minor, currency, billed_at,
             min_duration_s, billing_increment_s, unrated_reason, end_estimated)
), old AS (
    SELECT b.session_id, b.leg, b.invoice_ref IS NOT NULL AS invoiced,
           (b.rate_config_id, b.duration_s, b.billable_seconds, b.amount_minor, b.currency,
            b.unrated_reason, b.billed_at, b.end_estimated)
           IS NOT DISTINCT FROM
           (v.rate_config_id, v.duration_s, v.billable_seconds, v.amount_minor, v.currency,
            v.unrated_reason, v.billed_at, v.end_estimated) AS same
    FROM call_usage_billing b JOIN v ON b.session_id = v.session_id AND b.leg = v.leg
), w AS (
    INSERT INTO call_usage_billing AS b
        (tenant_id, session_id, leg, rate_config_id, provider_id, destination_number,
         matched_prefix, duration_s, billable_seconds, rate_per_minute_minor, rate_scale,
         connection_fee_minor, minimum_charge_minor, amount_minor, currency, billed_at,
         min_duration_s, billing_increment_s, unrated_reason, end_estimated, rated_at)
    SELECT v.*, now() FROM v
    LEFT JOIN old ON old.session_id = v.session_id AND old.leg = v.leg
    WHERE old.session_id IS NULL OR NOT (old.invoiced OR old.same)
    ON CONFLICT (session_id, leg) DO UPDATE SET
        rate_config_id = EXCLUDED.rate_config_id, provider_id = EXCLUDED.provider_id,
        destination_number = EXCLUDED.destination_number,
        matched_prefix = EXCLUDED.matched_prefix, duration_s = EXCLUDED.duration_s,
        billable_seconds = EXCLUDED.billable_seconds,
        rate_per_minute_minor = EXCLUDED.rate_per_minute_minor,
        rate_scale = EXCLUDED.rate_scale, connection_fee_minor = EXCLUDED.connection_fee_minor,
        minimum_charge_minor = EXCLUDED.minimum_charge_minor,
        amount_minor = EXCLUDED.amount_minor, currency = EXCLUDED.currency,
        billed_at = EXCLUDED.billed_at, min_duration_s = EXCLUDED.min_duration_s,
        billing_increment_s = EXCLUDED.billing_increment_s,
        unrated_reason = EXCLUDED.unrated_reason, end_estimated = EXCLUDED.end_estimated,
        rated_at = now()
    WHERE b.invoice_ref IS NULL
    RETURNING 1
)
SELECT (SELECT count(*) FROM v) AS total,
       (SELECT count(*) FROM old) AS existing,
       (SELECT count(*) FROM old WHERE invoiced) AS invoiced,
       (SELECT count(*) FROM old WHERE same AND NOT invoiced) AS same,
       (SELECT count(*) FROM w) AS written
"""


class BillingRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    # -- rate cards ---------------------------------------------------------------------

    async def add_rates(self, tenant_id: uuid.UUID, rates: Sequence[Rate]) -> int:
        """Insert ``rates`` for the tenant, all or none; how many."""
        if not rates:
            return 0
        async with self._db.transaction() as conn:
            await self._insert(conn, tenant_id, rates)
        return len(rates)

    @staticmethod
    async def _insert(conn: Connection, tenant_id: uuid.UUID, rates: Sequence[Rate]) -> None:
        await conn.executemany(
            "INSERT INTO call_rate_config (id, tenant_id, name, provider_id, "
            "destination_prefix, direction, rate_per_minute_minor, rate_scale, "
            "connection_fee_minor, minimum_charge_minor, currency, billing_increment_s, "
            "min_duration_s, priority, effective_from, effective_to) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, "
            "coalesce($15, now()), $16)",
            [
                (
                    r.id,
                    tenant_id,
                    r.name,
                    r.provider_id,
                    r.destination_prefix,
                    r.direction.value,
                    r.rate_per_minute_minor,
                    r.rate_scale,
                    r.connection_fee_minor,
                    r.minimum_charge_minor,
                    r.currency,
                    r.pulse.increment_s,
                    r.pulse.min_duration_s,
                    r.priority,
                    r.effective_from,
                    r.effective_to,
                )
                for r in rates
            ],
        )

    async def rates(self, tenant_id: uuid.UUID, *, at: datetime | None = None) -> list[Rate]:
        """The tenant's rate cards (only those effective at ``at`` when given), by prefix."""
        rows = await self._db.fetch(
            f"SELECT {_RATE_COLS} FROM call_rate_config WHERE tenant_id = $1 "
            f"AND ($2::timestamptz IS NULL OR (effective_from <= $2 "
            f"     AND (effective_to IS NULL OR effective_to > $2))) "
            f"ORDER BY destination_prefix, direction, provider_id NULLS FIRST, effective_from",
            tenant_id,
            at,
        )
        return [_rate(r) for r in rows]

    async def rate(self, tenant_id: uuid.UUID, rate_id: uuid.UUID) -> Rate:
        """One of the tenant's cards; NotFound for another tenant's or none."""
        row = await self._db.fetchrow(
            f"SELECT {_RATE_COLS} FROM call_rate_config WHERE tenant_id = $1 AND id = $2",
            tenant_id,
            rate_id,
        )
        if row is None:
            raise NotFound("rate card", rate_id)
        return _rate(row)

    async def replace_rate(
        self, tenant_id: uuid.UUID, rate: Rate, *, ended: Rate | None = None
    ) -> None:
        """Store ``rate``'s editable columns over the card with its id, or (``ended``
        given) end ``ended`` and add ``rate`` as a new card, in one transaction."""
        async with self._db.transaction() as conn:
            if ended is not None:
                await conn.execute(
                    "UPDATE call_rate_config SET effective_to = $3, updated_at = now() "
                    "WHERE tenant_id = $1 AND id = $2",
                    tenant_id,
                    ended.id,
                    ended.effective_to,
                )
                await self._insert(conn, tenant_id, [rate])
                return
            await conn.execute(
                "UPDATE call_rate_config SET name = $3, rate_per_minute_minor = $4, "
                "rate_scale = $5, connection_fee_minor = $6, minimum_charge_minor = $7, "
                "currency = $8, billing_increment_s = $9, min_duration_s = $10, "
                "priority = $11, effective_from = $12, effective_to = $13, updated_at = now() "
                "WHERE tenant_id = $1 AND id = $2",
                tenant_id,
                rate.id,
                rate.name,
                rate.rate_per_minute_minor,
                rate.rate_scale,
                rate.connection_fee_minor,
                rate.minimum_charge_minor,
                rate.currency,
                rate.pulse.increment_s,
                rate.pulse.min_duration_s,
                rate.priority,
                rate.effective_from,
                rate.effective_to,
            )

    async def candidate_rates(self, tenant_id: uuid.UUID, prefixes: Sequence[str]) -> list[Rate]:
        """The tenant's cards whose prefix is one of ``prefixes`` (every prefix of a
        number: :func:`engine.domain.rating.number_prefixes`), any date and provider."""
        if not prefixes:
            return []
        rows = await self._db.fetch(
            f"SELECT {_RATE_COLS} FROM call_rate_config "
            f"WHERE tenant_id = $1 AND destination_prefix = ANY($2::text[])",
            tenant_id,
            list(prefixes),
        )
        return [_rate(r) for r in rows]

    # -- sessions to charge ---------------------------------------------------------------

    async def ended_sessions_of(
        self, keys: Sequence[tuple[uuid.UUID, uuid.UUID]]
    ) -> list[EndedSession]:
        """Of the sessions ``keys`` names (tenant, session), the ended ones this engine
        charges, in one round trip: an engine (its connections say ``ctc.node``) charges the
        calls its node created and those no node claims; the event feed also tells it
        other nodes' ends, which their own engines charge. A tool (no node) may charge any."""
        if not keys:
            return []
        rows = await self._db.fetch(
            f"SELECT {_ENDED_COLS} FROM {_ENDED_FROM} "
            f"WHERE (s.tenant_id, s.id) IN (SELECT * FROM unnest($1::uuid[], $2::uuid[])) "
            f"AND s.ended_at IS NOT NULL "
            f"AND (s.node IS NULL OR coalesce(current_setting('ctc.node', true), '') "
            f"IN ('', s.node))",
            [tenant_id for tenant_id, _ in keys],
            [session_id for _, session_id in keys],
        )
        return [EndedSession.from_row(row) for row in rows]

    async def ended_sessions(
        self,
        since: datetime,
        until: datetime,
        *,
        tenant_id: uuid.UUID | None = None,
        after: tuple[datetime, uuid.UUID] | None = None,
        limit: int = 1000,
    ) -> list[EndedSession]:
        """Answered calls that ended in ``[since, until)`` (one tenant's, or every
        tenant's), in (ended_at, id) order after ``after``: a batch of a rerate. Answered:
        a click-to-call's or agent-dialled call's agent, an inbound call's IVR."""
        args: list[Any] = [since, until, tenant_id, limit]
        where = ""
        if after is not None:
            args.extend(after)
            where = "AND (s.ended_at, s.id) > ($5, $6) "
        rows = await self._db.fetch(
            f"SELECT {_ENDED_COLS} FROM {_ENDED_FROM} "
            f"WHERE s.ended_at >= $1 AND s.ended_at < $2 "
            f"AND (s.direction IN ('click_to_call', 'outbound') "
            f"     AND s.agent_answered_at IS NOT NULL "
            f"     OR s.direction = 'inbound' AND s.connected_at IS NOT NULL) "
            f"AND ($3::uuid IS NULL OR s.tenant_id = $3) {where}"
            f"ORDER BY s.ended_at, s.id LIMIT $4",
            *args,
        )
        return [EndedSession.from_row(r) for r in rows]

    # -- billing lines ---------------------------------------------------------------------

    async def save_many(
        self, lines: Sequence[tuple[uuid.UUID, uuid.UUID, RatedLeg]]
    ) -> LinesWritten:
        """Write lines (tenant, session, rated leg) in one statement; see the module doc."""
        if not lines:
            return LinesWritten()
        columns: list[list[Any]] = [[] for _ in range(20)]
        for tenant_id, session_id, line in lines:
            rate = line.rate
            values = (
                tenant_id,
                session_id,
                line.leg.leg,
                rate.id if rate is not None else None,
                line.leg.provider_id,
                line.leg.number,
                line.matched_prefix,
                line.duration_s,
                line.billable_seconds,
                rate.rate_per_minute_minor if rate is not None else 0,
                rate.rate_scale if rate is not None else 0,
                rate.connection_fee_minor if rate is not None else 0,
                rate.minimum_charge_minor if rate is not None else 0,
                line.amount_minor,
                line.currency,
                line.leg.ended_at,
                rate.pulse.min_duration_s if rate is not None else None,
                rate.pulse.increment_s if rate is not None else None,
                line.unrated_reason,
                line.leg.end_estimated,
            )
            for column, value in zip(columns, values, strict=True):
                column.append(value)
        row = returned(await self._db.fetchrow(_SAVE, *columns), "the billing lines' save")
        total, existing = int(row["total"]), int(row["existing"])
        invoiced, same = int(row["invoiced"]), int(row["same"])
        return LinesWritten(
            inserted=total - existing,
            changed=existing - invoiced - same,
            unchanged=same,
            invoiced=invoiced,
        )

    async def lines(self, tenant_id: uuid.UUID, session_id: uuid.UUID) -> list[BillingLine]:
        rows = await self._db.fetch(
            f"SELECT {_LINE_COLS} FROM call_usage_billing "
            f"WHERE tenant_id = $1 AND session_id = $2 ORDER BY leg",
            tenant_id,
            session_id,
        )
        return [BillingLine.from_row(r) for r in rows]

    async def lines_between(
        self, tenant_id: uuid.UUID, since: datetime, until: datetime
    ) -> list[BillingLine]:
        """The tenant's lines whose leg ended in ``[since, until)``, oldest first."""
        rows = await self._db.fetch(
            f"SELECT {_LINE_COLS} FROM call_usage_billing "
            f"WHERE tenant_id = $1 AND billed_at >= $2 AND billed_at < $3 "
            f"ORDER BY billed_at, session_id, leg",
            tenant_id,
            since,
            until,
        )
        return [BillingLine.from_row(r) for r in rows]
