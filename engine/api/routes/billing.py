"""Billing: the tenant's rate cards (list, import as CSV, change, end), a session's billing
lines, the monthly CSV export and a rerate after a rate change. The rules are in
:mod:`engine.domain.rating`, the CSV format of cards in :mod:`engine.rate_cards`."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from decimal import Decimal
from typing import Final

from aiohttp import web

from engine.api.endpoints import ApiRequest, BadRequest, json_response, router
from engine.api.models import (
    BillingExportQuery,
    BillingLineListOut,
    BillingLineOut,
    RateCardEndQuery,
    RateCardListOut,
    RateCardOut,
    RateCardPatchIn,
    RateCardsQuery,
    RatesImportedOut,
    RerateIn,
    RerateOut,
)
from engine.api.routes.common import API, C2C, error_responses, path_session_id, use_cases
from engine.domain.rating import Rate
from engine.errors import ConfigError

__all__ = [
    "billing_export",
    "end_rate",
    "import_rates",
    "list_rates",
    "rerate",
    "session_billing",
    "update_rate",
]

BILLING: Final = f"{API}/billing"


def _rate_out(rate: Rate) -> RateCardOut:
    return RateCardOut(
        id=rate.id,
        name=rate.name,
        destination_prefix=rate.destination_prefix,
        direction=rate.direction.value,
        provider_id=rate.provider_id,
        rate_per_minute_minor=rate.rate_per_minute_minor,
        rate_scale=rate.rate_scale,
        pulse=str(rate.pulse),
        connection_fee_minor=rate.connection_fee_minor,
        minimum_charge_minor=rate.minimum_charge_minor,
        currency=rate.currency,
        priority=rate.priority,
        effective_from=rate.effective_from,
        effective_to=rate.effective_to,
    )


@router.route(
    "GET",
    f"{BILLING}/rates",
    summary="The tenant's rate cards",
    tags=("billing",),
    query=RateCardsQuery,
    responses={200: RateCardListOut, **error_responses(401, 422)},
)
async def list_rates(req: ApiRequest) -> web.StreamResponse:
    """Every card (or only those effective at `at`), by prefix."""
    at = req.query_as(RateCardsQuery).at
    rates = await use_cases(req).billing.rates(req.require_tenant(), at=at)
    return json_response(RateCardListOut(items=[_rate_out(r) for r in rates]))


@router.route(
    "POST",
    f"{BILLING}/rates",
    summary="Add rate cards from CSV",
    tags=("billing",),
    body_content={"text/csv": {"schema": {"type": "string"}}},
    responses={201: RatesImportedOut, **error_responses(400, 401, 413, 415, 422)},
)
async def import_rates(req: ApiRequest) -> web.StreamResponse:
    """The body is a rate deck as `ctc billing rates import` reads it (a header row, then
    one card per row: prefix, rate_per_minute_minor, currency, pulse, ...). All cards are
    added or none; a bad cell is 422 naming its line and column. A changed rate is a new
    card with a later `effective_from`."""
    raw = await req.raw.read()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRequest(
            400, "invalid_encoding", f"body is not UTF-8: invalid byte at offset {exc.start}"
        ) from None
    try:
        imported = await use_cases(req).billing.import_rates(
            req.require_tenant(), text, source="body"
        )
    except ConfigError as exc:
        where = f"line {exc.line}" if exc.line is not None else "body"
        field = f"{where}: {exc.field}" if exc.field else where
        raise BadRequest(
            422, "validation_error", str(exc), [{"field": field, "message": exc.reason}]
        ) from None
    return json_response(RatesImportedOut(imported=imported), 201)


def _cell(value: object) -> str:
    """A changed value as a rate deck's cell (what :func:`engine.rate_cards.changed_rate`
    reads): instants in ISO 8601, numbers as written; null (``effective_to``: open-ended)
    is an empty cell."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, float):
        return format(Decimal(repr(value)), "f")
    return str(value)


@router.route(
    "PATCH",
    f"{BILLING}/rates/{{rate_id}}",
    summary="Change a rate card",
    tags=("billing",),
    body=RateCardPatchIn,
    responses={200: RateCardOut, **error_responses(400, 401, 404, 413, 422)},
)
async def update_rate(req: ApiRequest) -> web.StreamResponse:
    """Change the card's price, pulse, fees, currency, priority, name or dates (the prefix,
    direction and provider decide which legs it matches: import another card for those).
    Without `as_of` the card is corrected in place and the answer is the card; with it the
    card ends at `as_of` and the answer is the new card that starts then. Legs already
    billed keep their lines until `POST /billing/rerate` rates them again (idempotent).
    422 names the field."""
    body = req.body_as(RateCardPatchIn)
    changes = {
        name: _cell(value)
        for name, value in body.model_dump(exclude_unset=True, exclude={"as_of"}).items()
        if value is not None or name == "effective_to"
    }
    rate = await use_cases(req).billing.update_rate(
        req.require_tenant(), req.path_uuid("rate_id", "rate card"), changes, as_of=body.as_of
    )
    return json_response(_rate_out(rate))


@router.route(
    "DELETE",
    f"{BILLING}/rates/{{rate_id}}",
    summary="End a rate card",
    tags=("billing",),
    query=RateCardEndQuery,
    responses={200: RateCardOut, **error_responses(401, 404, 422)},
)
async def end_rate(req: ApiRequest) -> web.StreamResponse:
    """A card is never deleted (billing lines name it): it is ended at `at` (default now)
    and rates no leg answered from then on. A card already ended by then is left as it is;
    `at` before the card's start is 422."""
    at = req.query_as(RateCardEndQuery).at or datetime.now(UTC)
    rate = await use_cases(req).billing.end_rate(
        req.require_tenant(), req.path_uuid("rate_id", "rate card"), at
    )
    return json_response(_rate_out(rate))


@router.route(
    "GET",
    f"{C2C}/sessions/{{session_id}}/billing",
    summary="A session's billing lines",
    tags=("billing",),
    responses={200: BillingLineListOut, **error_responses(401, 404)},
)
async def session_billing(req: ApiRequest) -> web.StreamResponse:
    """One line per charged leg (its talk time from answer to end), written when the call
    ended; none while it is live or when no leg was answered."""
    lines = await use_cases(req).billing.lines(req.require_tenant(), path_session_id(req))
    items = [BillingLineOut.model_validate(dataclasses.asdict(x)) for x in lines]
    return json_response(BillingLineListOut(items=items))


@router.route(
    "GET",
    f"{BILLING}/export",
    summary="The billing lines of a month, as CSV",
    tags=("billing",),
    query=BillingExportQuery,
    responses={200: None, **error_responses(401, 422)},
    response_content="text/csv",
)
async def billing_export(req: ApiRequest) -> web.StreamResponse:
    """Every billing line of the tenant whose leg ended in `month` (UTC), oldest first,
    with a header row; amounts in minor units, the same file as `ctc billing export`."""
    month = req.query_as(BillingExportQuery).month
    tenant = req.require_tenant()
    text = await use_cases(req).billing.export(tenant, month)
    return web.Response(
        text=text,
        content_type="text/csv",
        headers={
            "Content-Disposition": f'attachment; filename="billing-{tenant.slug}-{month}.csv"'
        },
    )


@router.route(
    "POST",
    f"{BILLING}/rerate",
    summary="Rate a period's calls again after a rate change",
    tags=("billing",),
    body=RerateIn,
    responses={200: RerateOut, **error_responses(400, 401, 413, 422)},
)
async def rerate(req: ApiRequest) -> web.StreamResponse:
    """Every answered call of the tenant that ended in `[from, to)` is rated again at the
    cards as they are now: missing lines are written, changed ones rewritten, invoiced ones
    (`invoice_ref` set) left as billed. Idempotent: a second run reports only `unchanged`."""
    body = req.body_as(RerateIn)
    report = await use_cases(req).billing.rerate(body.from_, body.to, tenant=req.require_tenant())
    lines = report.lines
    return json_response(
        RerateOut(
            sessions=report.sessions,
            inserted=lines.inserted,
            changed=lines.changed,
            unchanged=lines.unchanged,
            invoiced=lines.invoiced,
        )
    )
