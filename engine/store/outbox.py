"""The callback outbox: claiming due rows, and recording what their delivery did.

Rows are written by the session writers (:mod:`engine.store.write_through`,
:mod:`engine.store.journal`) with the status change they carry (same transaction, same
batch), so no callback is lost across crashes. This repository is the notifier's side of
the table. Why it is shaped this way:

- **Several engines may share one database.** :meth:`OutboxRepository.claim` selects due
  rows ``FOR UPDATE SKIP LOCKED`` in a short transaction and pushes their
  ``next_attempt_at`` forward by a *lease* before committing. The HTTP request then runs
  outside any transaction; another engine sees the row as not due until the lease runs
  out, so a row is never sent twice at once, and a crash mid-delivery only delays it.
- **In order per call.** A row is claimable only when no *earlier* row (lower id) of the
  same session is still pending, leased or not; so a session's callbacks go out one after
  the other in ``seq`` order. A row that goes ``dead`` no longer holds the next one back.
- **Fencing.** The lease end returned by the claim is the token: the outcome is written
  only ``WHERE next_attempt_at = <lease>``, so a delivery whose lease expired (and was
  re-claimed elsewhere) cannot overwrite the newer attempt's bookkeeping.

A row whose tenant ``callback_secret`` cannot be opened (sealed under a key that is no
longer configured, or damaged) cannot be signed: :meth:`OutboxRepository.claim` marks it
``dead`` with the reason (which names the key id) and returns the rest of the batch, so
one tenant's broken secret does not stop the other tenants' callbacks.

Delivery is at-least-once (a crash after the receiver answered but before the outcome is
stored sends it again): receivers de-duplicate on ``X-CTC-Event-Id``.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg
import structlog

from engine.domain.netpolicy import OutboundPolicy
from engine.errors import CtcError, SecretsError
from engine.secrets import Keyring
from engine.store.database import Database, returned
from engine.store.records import StoredCallback

__all__ = ["ClaimedCallback", "OutboxBacklog", "OutboxCounts", "OutboxRepository"]

log = structlog.get_logger(__name__)

_MAX_ERROR_CHARS = 500


@dataclasses.dataclass(frozen=True, slots=True)
class ClaimedCallback:
    """One outbox row, leased to this notifier until ``lease_until``."""

    id: int
    tenant_id: uuid.UUID
    session_id: uuid.UUID
    event_id: int
    url: str
    payload: dict[str, Any]
    attempts: int  # attempts made before this one
    lease_until: datetime
    secret: str  # the tenant's callback_secret (decrypted), the HMAC key
    # the secret before the tenant's last rotation while its grace period runs (decrypted),
    # else None: callbacks are signed with both meanwhile
    previous_secret: str | None = None
    policy: OutboundPolicy = dataclasses.field(
        default_factory=OutboundPolicy
    )  # where the tenant's callbacks may go

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> ClaimedCallback:
        fields = dict(row)
        fields["policy"] = OutboundPolicy.allowing(fields.pop("allow_cidrs"))
        return cls(**fields)


@dataclasses.dataclass(frozen=True, slots=True)
class OutboxCounts:
    pending: int
    dead: int


@dataclasses.dataclass(frozen=True, slots=True)
class OutboxBacklog:
    """Rows waiting for delivery, and how long the oldest has waited (seconds; 0: none)."""

    pending: int
    oldest_age: float


class OutboxRepository:
    def __init__(self, db: Database, *, keyring: Keyring) -> None:
        self._db = db
        self._keyring = keyring

    async def claim(self, limit: int, *, lease_seconds: float) -> list[ClaimedCallback]:
        """Lease up to ``limit`` due rows, at most one per session (its earliest pending).

        Rows whose tenant secret cannot be opened are marked ``dead`` and left out, so the
        list may be shorter than the rows leased."""
        if limit < 1:
            return []
        async with self._db.transaction() as conn:
            rows = await conn.fetch(
                "WITH due AS ("
                "  SELECT o.id FROM callback_outbox o"
                "  WHERE o.state = 'pending' AND o.next_attempt_at <= now()"
                "    AND NOT EXISTS (SELECT 1 FROM callback_outbox e"
                "                    WHERE e.session_id = o.session_id"
                "                      AND e.state = 'pending' AND e.id < o.id)"
                "  ORDER BY o.id LIMIT $1"
                "  FOR UPDATE OF o SKIP LOCKED"
                ") "
                "UPDATE callback_outbox c"
                "   SET next_attempt_at = now() + $2::float8 * interval '1 second'"
                "  FROM due, tenant t"
                " WHERE c.id = due.id AND t.id = c.tenant_id "
                "RETURNING c.id, c.tenant_id, c.session_id, c.event_id, c.url, c.payload,"
                "          c.attempts, c.next_attempt_at AS lease_until,"
                "          t.callback_secret AS secret, t.outbound_allow_cidrs AS allow_cidrs,"
                "          CASE WHEN t.previous_callback_secret_until > now()"
                "               THEN t.previous_callback_secret END AS previous_secret",
                limit,
                lease_seconds,
            )
        claimed: list[ClaimedCallback] = []
        for row in sorted(rows, key=lambda r: r["id"]):
            leased = ClaimedCallback.from_row(row)
            try:
                secret = self._keyring.unseal(
                    leased.secret, what=f"callback_secret of tenant {leased.tenant_id}"
                )
            except SecretsError as exc:
                await self._bury_unsignable(leased, exc)
                continue
            claimed.append(
                dataclasses.replace(leased, secret=secret, previous_secret=self._previous(leased))
            )
        return claimed

    def _previous(self, leased: ClaimedCallback) -> str | None:
        """The tenant's previous secret, opened; one that cannot be opened only stops
        signing with it (the current secret still signs), logged."""
        if leased.previous_secret is None:
            return None
        try:
            return self._keyring.unseal(
                leased.previous_secret,
                what=f"previous_callback_secret of tenant {leased.tenant_id}",
            )
        except SecretsError as exc:
            log.warning("callback.previous_secret_unusable", error=str(exc))
            return None

    async def _bury_unsignable(self, leased: ClaimedCallback, exc: SecretsError) -> None:
        """Mark ``dead`` a row whose tenant secret cannot be opened, so it neither holds the
        rest of the batch back nor comes back after every lease. A failure to record that
        is logged: the row stays leased and is tried again after the lease."""
        error = f"cannot sign: {exc}"
        try:
            await self.mark_failed(leased, error=error, status=None, retry_in=None)
        except (CtcError, asyncpg.PostgresError) as record_exc:
            log.warning(
                "callback.bookkeeping_failed",
                outbox_id=leased.id,
                tenant_id=str(leased.tenant_id),
                error=repr(record_exc),
                delivery_error=error,
            )
            return
        log.error(
            "callback.dead",
            outbox_id=leased.id,
            tenant_id=str(leased.tenant_id),
            session_id=str(leased.session_id),
            error=error,
        )

    async def mark_delivered(self, claimed: ClaimedCallback, *, status: int) -> bool:
        """Record a 2xx; False if the lease was lost (another engine owns the row now)."""
        result = await self._db.execute(
            "UPDATE callback_outbox SET state = 'delivered', delivered_at = now(), "
            "attempts = attempts + 1, last_status = $3, last_error = NULL "
            "WHERE id = $1 AND state = 'pending' AND next_attempt_at = $2",
            claimed.id,
            claimed.lease_until,
            status,
        )
        return result == "UPDATE 1"

    async def mark_failed(
        self,
        claimed: ClaimedCallback,
        *,
        error: str,
        status: int | None,
        retry_in: float | None,
    ) -> bool:
        """Record a failed attempt: retry after ``retry_in`` seconds, or ``dead`` if None.

        False if the lease was lost.
        """
        result = await self._db.execute(
            "UPDATE callback_outbox SET attempts = attempts + 1, last_error = $3, "
            "last_status = $4, "
            "state = CASE WHEN $5::float8 IS NULL THEN 'dead' ELSE 'pending' END, "
            "next_attempt_at = CASE WHEN $5::float8 IS NULL THEN next_attempt_at "
            "                  ELSE now() + $5::float8 * interval '1 second' END "
            "WHERE id = $1 AND state = 'pending' AND next_attempt_at = $2",
            claimed.id,
            claimed.lease_until,
            error[:_MAX_ERROR_CHARS],
            status,
            retry_in,
        )
        return result == "UPDATE 1"

    async def release(self, claimed: Sequence[ClaimedCallback]) -> None:
        """Give leases back unused (a graceful stop): the rows are due again at once."""
        if not claimed:
            return
        await self._db.execute(
            "UPDATE callback_outbox o SET next_attempt_at = now() "
            "FROM unnest($1::bigint[], $2::timestamptz[]) AS l(id, lease_until) "
            "WHERE o.id = l.id AND o.state = 'pending' AND o.next_attempt_at = l.lease_until",
            [c.id for c in claimed],
            [c.lease_until for c in claimed],
        )

    async def backlog(self) -> OutboxBacklog:
        """Pending rows and the oldest one's age (reads only pending rows: the partial index
        on them finds them; a large backlog costs a read of each, every refresh)."""
        row = await self._db.fetchrow(
            "SELECT count(*) AS pending, "
            "COALESCE(EXTRACT(EPOCH FROM now() - min(created_at)), 0)::float8 AS oldest_age "
            "FROM callback_outbox WHERE state = 'pending'"
        )
        found = returned(row, "the outbox backlog")
        return OutboxBacklog(pending=int(found["pending"]), oldest_age=float(found["oldest_age"]))

    async def listing(
        self,
        *,
        tenant_id: uuid.UUID | None,
        states: Sequence[str] = (),
        session_id: uuid.UUID | None = None,
        limit: int = 50,
    ) -> list[StoredCallback]:
        """Rows newest first: of one tenant (None: every tenant), in ``states`` (empty:
        any), of one session when given."""
        rows = await self._db.fetch(
            "SELECT o.id, o.tenant_id, o.session_id, o.event_id, "
            "       o.payload->>'event_type' AS event_type, o.state, o.url, o.attempts, "
            "       o.last_status, o.last_error, o.created_at, o.next_attempt_at, "
            "       o.delivered_at "
            "FROM callback_outbox o "
            "WHERE ($1::uuid IS NULL OR o.tenant_id = $1) "
            "  AND (cardinality($2::text[]) = 0 OR o.state = ANY($2::text[])) "
            "  AND ($3::uuid IS NULL OR o.session_id = $3) "
            "ORDER BY o.id DESC LIMIT $4",
            tenant_id,
            list(states),
            session_id,
            limit,
        )
        return [StoredCallback(**dict(row)) for row in rows]

    async def replay(
        self, ids: Sequence[int], *, tenant_id: uuid.UUID | None, all_dead: bool = False
    ) -> list[StoredCallback]:
        """Send again: ``dead`` or ``delivered`` rows ``ids`` (or, with ``all_dead``, every
        dead row) become ``pending``, due now, with a fresh attempt count; the body and
        ``X-CTC-Event-Id`` stay the same (receivers de-duplicate on it), the signature is
        made afresh when sent. Pending rows are left as they are. Of one tenant unless
        ``tenant_id`` is None. The rows changed, oldest first."""
        rows = await self._db.fetch(
            "UPDATE callback_outbox o SET state = 'pending', attempts = 0, "
            "       next_attempt_at = now(), delivered_at = NULL "
            "WHERE o.state IN ('dead', 'delivered') "
            "  AND ($1::uuid IS NULL OR o.tenant_id = $1) "
            "  AND (o.id = ANY($2::bigint[]) OR ($3::bool AND o.state = 'dead')) "
            "RETURNING o.id, o.tenant_id, o.session_id, o.event_id, "
            "          o.payload->>'event_type' AS event_type, o.state, o.url, o.attempts, "
            "          o.last_status, o.last_error, o.created_at, o.next_attempt_at, "
            "          o.delivered_at",
            tenant_id,
            list(ids),
            all_dead,
        )
        return sorted((StoredCallback(**dict(row)) for row in rows), key=lambda c: c.id)

    async def counts(self) -> OutboxCounts:
        """Pending and dead rows (scans the table: for tests and tools, not hot paths)."""
        row = await self._db.fetchrow(
            "SELECT count(*) FILTER (WHERE state = 'pending') AS pending, "
            "count(*) FILTER (WHERE state = 'dead') AS dead FROM callback_outbox"
        )
        counts = returned(row, "the outbox count")
        return OutboxCounts(pending=int(counts["pending"]), dead=int(counts["dead"]))
