"""Billing use cases: rate cards in, out, corrected, changed from a date and ended; a
billing line per charged leg when a call ends, ``rerate`` after a rate change, and the
monthly CSV export.

The rating rules are :mod:`engine.domain.rating`; the CSV format of rate cards is
:mod:`engine.rate_cards`. :class:`BillingRecorder` charges each call (click-to-call,
agent-dialled, inbound) as its end is committed (it listens on the
:class:`~engine.events.EventBus`); a line it missed (the engine stopped between the end
and the line, or PostgreSQL refused it) is written by the next ``ctc billing rerate`` over
the period, which writes every line a period should have.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Final

import structlog

from engine.app.event_worker import EventWorker
from engine.domain.call import CallStatus
from engine.domain.rating import (
    ChargedLeg,
    Rate,
    RatedLeg,
    charged_legs,
    inbound_legs,
    number_prefixes,
    rate_leg,
)
from engine.errors import ConfigError, InvalidInput
from engine.events import EventBus
from engine.rate_cards import changed_rate, parse_rates
from engine.store.billing import BillingLine, EndedSession, LinesWritten
from engine.store.records import CallEvent, Tenant
from engine.store.repositories import Store

__all__ = [
    "EXPORT_COLUMNS",
    "BillingRecorder",
    "BillingService",
    "RerateReport",
    "month_bounds",
]

log = structlog.get_logger(__name__)

EXPORT_COLUMNS: Final = (
    "session_id",
    "leg",
    "ended_at",
    "destination_number",
    "matched_prefix",
    "rate_config_id",
    "provider_id",
    "duration_s",
    "billable_seconds",
    "rate_per_minute_minor",
    "rate_scale",
    "connection_fee_minor",
    "minimum_charge_minor",
    "amount_minor",
    "currency",
    "unrated_reason",
    "end_estimated",
    "invoice_ref",
)
_RERATE_BATCH: Final = 500
_BATCH_WINDOW: Final = 0.25
"""How long the recorder gathers ends before it charges them together (three round trips
per batch instead of three per call; a line is written that much later)."""


@dataclasses.dataclass(frozen=True, slots=True)
class RerateReport:
    """What a rerate did over its period."""

    sessions: int
    lines: LinesWritten


def month_bounds(month: str) -> tuple[datetime, datetime]:
    """``"2026-11"`` → [2026-11-01, 2026-12-01) in UTC; InvalidInput naming ``month``."""
    try:
        start = datetime.strptime(month, "%Y-%m").replace(tzinfo=UTC)
    except ValueError:
        raise InvalidInput("month", f"{month!r} is not YYYY-MM") from None
    end = (
        start.replace(year=start.year + 1, month=1)
        if start.month == 12
        else start.replace(month=start.month + 1)
    )
    return start, end


def _legs(session: EndedSession) -> list[ChargedLeg]:
    if session.direction == "inbound":
        return inbound_legs(
            dialed_number=session.dialed_number,
            connected_at=session.connected_at,
            ended_at=session.ended_at,
            target_number=session.target_number,
            target_answered_at=session.target_answered_at,
            end_estimated=session.end_estimated,
        )
    return charged_legs(
        agent_number=session.agent_number,
        customer_number=session.customer_number,
        agent_answered_at=session.agent_answered_at,
        connected_at=session.connected_at,
        ended_at=session.ended_at,
        provider_id=session.provider_id,
        end_estimated=session.end_estimated,
    )


def _rate_session(session: EndedSession, rates: list[Rate]) -> list[RatedLeg]:
    return [rate_leg(rates, leg) for leg in _legs(session)]


class BillingService:
    def __init__(self, store: Store) -> None:
        self._store = store

    # -- rate cards -----------------------------------------------------------------------

    async def import_rates(self, tenant: Tenant, text: str, *, source: str = "rates.csv") -> int:
        """Add the CSV's cards (all or none); ConfigError naming ``source:line`` when one
        is bad, also for a provider the tenant does not have."""
        rows = parse_rates(text, source=source)
        providers = {p.name: p.id for p in await self._store.providers.all(tenant.id)}
        rates: list[Rate] = []
        for row in rows:
            rate = row.rate
            if row.provider is not None:
                provider_id = providers.get(row.provider)
                if provider_id is None:
                    known = ", ".join(sorted(providers)) or "none"
                    raise ConfigError(
                        f"no provider {row.provider!r} in tenant {tenant.slug} (it has: {known})",
                        file=source,
                        line=row.line,
                        field="provider",
                    )
                rate = dataclasses.replace(rate, provider_id=provider_id)
            rates.append(rate)
        return await self._store.billing.add_rates(tenant.id, rates)

    async def rate(self, tenant: Tenant, rate_id: uuid.UUID) -> Rate:
        return await self._store.billing.rate(tenant.id, rate_id)

    async def update_rate(
        self,
        tenant: Tenant,
        rate_id: uuid.UUID,
        changes: Mapping[str, str],
        *,
        as_of: datetime | None = None,
    ) -> Rate:
        """Change a card's editable columns (:func:`engine.rate_cards.changed_rate`); the
        card as stored. Without ``as_of`` the card is corrected in place: a rerate then
        charges every uninvoiced leg it rated at the new values. With ``as_of`` the change
        starts then: the card ends at ``as_of`` (and keeps rating the legs answered before
        it) and a new card with the changes starts at ``as_of``; it is returned."""
        if not changes:
            raise InvalidInput("changes", "nothing to change")
        old = await self._store.billing.rate(tenant.id, rate_id)
        if as_of is None:
            new = changed_rate(old, changes)
            await self._store.billing.replace_rate(tenant.id, new)
            return new
        if "effective_from" in changes:
            raise InvalidInput("effective_from", "cannot be changed with as_of (it starts then)")
        if not old.effective_at(as_of) or as_of == old.effective_from:
            raise InvalidInput("as_of", f"the card is not in effect at {as_of.isoformat()}")
        new = changed_rate(dataclasses.replace(old, id=uuid.uuid4(), effective_from=as_of), changes)
        ended = dataclasses.replace(old, effective_to=as_of)
        await self._store.billing.replace_rate(tenant.id, new, ended=ended)
        return new

    async def end_rate(self, tenant: Tenant, rate_id: uuid.UUID, at: datetime) -> Rate:
        """End a card at ``at``: it rates no leg answered from then on (the legs it rated
        before keep their lines until a rerate, which rates them with it still). A card
        already ended by then is left as it is."""
        rate = await self._store.billing.rate(tenant.id, rate_id)
        if rate.effective_to is not None and rate.effective_to <= at:
            return rate
        if rate.effective_from is not None and at <= rate.effective_from:
            raise InvalidInput(
                "at", f"must be later than the card's start ({rate.effective_from.isoformat()})"
            )
        ended = dataclasses.replace(rate, effective_to=at)
        await self._store.billing.replace_rate(tenant.id, ended)
        return ended

    async def rates(self, tenant: Tenant, *, at: datetime | None = None) -> list[Rate]:
        return await self._store.billing.rates(tenant.id, at=at)

    async def provider_names(self, tenant: Tenant) -> dict[uuid.UUID, str]:
        return {p.id: p.name for p in await self._store.providers.all(tenant.id)}

    # -- lines ----------------------------------------------------------------------------

    async def charge_session(self, tenant_id: uuid.UUID, session_id: uuid.UUID) -> list[RatedLeg]:
        """Write the billing lines of an ended call (none for an unanswered one, nor for a
        session that has not ended); what was rated. Click-to-calls and agent-dialled calls:
        an agent's PBX endpoint is no paid leg (an unrated line at zero), the customer's is;
        inbound calls: the caller's leg by its DID, a transfer target's by its number
        (:mod:`engine.domain.rating`)."""
        rated = await self.charge_sessions([(tenant_id, session_id)])
        return rated.get(session_id, [])

    async def charge_sessions(
        self, keys: Sequence[tuple[uuid.UUID, uuid.UUID]]
    ) -> dict[uuid.UUID, list[RatedLeg]]:
        """:meth:`charge_session` for each (tenant, session) of ``keys``, in three round
        trips whatever their number (one more per tenant past the first): the sessions, the
        cards of every prefix their legs may match, the lines. What was rated, by session
        (the ended ones only)."""
        by_tenant: dict[uuid.UUID, list[EndedSession]] = {}
        for session in await self._store.billing.ended_sessions_of(keys):
            by_tenant.setdefault(session.tenant_id, []).append(session)
        rated: dict[uuid.UUID, list[RatedLeg]] = {}
        lines: list[tuple[uuid.UUID, uuid.UUID, RatedLeg]] = []
        for tenant_id, sessions in by_tenant.items():
            legs = {session.id: _legs(session) for session in sessions}
            numbers = {leg.number for charged in legs.values() for leg in charged}
            prefixes = sorted({p for number in numbers for p in number_prefixes(number)})
            # a card of another session's prefix is never chosen: it does not prefix the leg
            rates = await self._store.billing.candidate_rates(tenant_id, prefixes)
            for session_id, charged in legs.items():
                rated[session_id] = [rate_leg(rates, leg) for leg in charged]
                lines.extend((tenant_id, session_id, line) for line in rated[session_id])
        await self._store.billing.save_many(lines)
        return rated

    async def lines(self, tenant: Tenant, session_id: uuid.UUID) -> list[BillingLine]:
        await self._store.sessions.get(tenant.id, session_id)  # NotFound for another's
        return await self._store.billing.lines(tenant.id, session_id)

    async def rerate(
        self, since: datetime, until: datetime, *, tenant: Tenant | None = None
    ) -> RerateReport:
        """Rate again every answered call that ended in ``[since, until)`` (of
        one tenant, or all) at the cards as they are now, and write its lines: missing
        lines are added, changed ones rewritten, invoiced ones left. Running it twice
        changes nothing the second time."""
        if until <= since:
            raise InvalidInput("to", "must be later than --from")
        tenant_id = tenant.id if tenant is not None else None
        rates_of: dict[uuid.UUID, list[Rate]] = {}
        after: tuple[datetime, uuid.UUID] | None = None
        sessions = 0
        written = LinesWritten()
        while True:
            batch = await self._store.billing.ended_sessions(
                since, until, tenant_id=tenant_id, after=after, limit=_RERATE_BATCH
            )
            if not batch:
                break
            lines: list[tuple[uuid.UUID, uuid.UUID, RatedLeg]] = []
            for session in batch:
                rates = rates_of.get(session.tenant_id)
                if rates is None:
                    rates = rates_of[session.tenant_id] = await self._store.billing.rates(
                        session.tenant_id
                    )
                lines.extend(
                    (session.tenant_id, session.id, line) for line in _rate_session(session, rates)
                )
            written += await self._store.billing.save_many(lines)
            sessions += len(batch)
            last = batch[-1]
            if last.ended_at is None:
                raise RuntimeError(f"call {last.id} was rated without an end")
            after = (last.ended_at, last.id)
        log.info(
            "billing.rerated",
            tenant_id=str(tenant_id) if tenant_id else None,
            sessions=sessions,
            inserted=written.inserted,
            changed=written.changed,
            unchanged=written.unchanged,
            invoiced=written.invoiced,
        )
        return RerateReport(sessions, written)

    async def export(self, tenant: Tenant, month: str) -> str:
        """The tenant's billing lines of legs that ended in ``month`` (YYYY-MM, UTC), as
        CSV with a header row (:data:`EXPORT_COLUMNS`), oldest first."""
        since, until = month_bounds(month)
        lines = await self._store.billing.lines_between(tenant.id, since, until)
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(EXPORT_COLUMNS)
        for line in lines:
            writer.writerow(
                [
                    line.session_id,
                    line.leg,
                    line.billed_at.astimezone(UTC).isoformat(),
                    line.destination_number or "",
                    line.matched_prefix or "",
                    line.rate_config_id or "",
                    line.provider_id or "",
                    line.duration_s,
                    line.billable_seconds,
                    line.rate_per_minute_minor,
                    line.rate_scale,
                    line.connection_fee_minor,
                    line.minimum_charge_minor,
                    line.amount_minor,
                    line.currency,
                    line.unrated_reason or "",
                    "true" if line.end_estimated else "false",
                    line.invoice_ref or "",
                ]
            )
        return out.getvalue()


class BillingRecorder(EventWorker[tuple[uuid.UUID, uuid.UUID]]):
    """Charges each call (click-to-calls, agent-dialled and inbound IVR calls) once its end
    is committed: a listener on the event bus queues the sessions whose terminal status was
    published, one task rates them (:class:`~engine.app.event_worker.EventWorker`), the ends
    that come within ``batch_window`` of each other together.

    A failure to write a line is logged (``billing.failed``) and left to
    ``ctc billing rerate``; the queue is bounded (a burst past it is logged the same way).
    Close: what is queued is charged within ``close_grace`` seconds; what is not (queued or
    in a batch cut off) is logged as ``billing.closed_with_queue``, for a rerate.
    """

    def __init__(
        self,
        billing: BillingService,
        events: EventBus,
        *,
        max_queue: int = 10_000,
        close_grace: float = 5.0,
        batch_window: float = _BATCH_WINDOW,
    ) -> None:
        super().__init__(
            events,
            name="billing",
            max_queue=max_queue,
            close_grace=close_grace,
            batch_window=batch_window,
        )
        self._billing = billing

    def _wanted(self, event: CallEvent) -> tuple[uuid.UUID, uuid.UUID] | None:
        if event.status_to is None or not CallStatus(event.status_to).is_terminal:
            return None
        return event.tenant_id, event.session_id

    async def _handle(self, item: tuple[uuid.UUID, uuid.UUID]) -> None:
        await self._billing.charge_session(*item)

    async def _handle_many(self, items: list[tuple[uuid.UUID, uuid.UUID]]) -> None:
        await self._billing.charge_sessions(items)
