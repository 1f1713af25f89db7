"""Rate cards as CSV: parse (validated, every problem naming file:line and column) and dump
(``ctc billing rates list --csv``, which ``ctc billing rates import`` reads back).

Why CSV: carriers send rate decks as spreadsheets, and an admin edits them as such. One
card per row, a header row first; columns in any order, unknown columns refused::

    prefix,rate_per_minute_minor,currency,pulse,connection_fee_minor,minimum_charge_minor,direction,provider,priority,effective_from,effective_to,name
    +44,1.25,GBP,30/6,0,0,outbound,,100,2026-01-01T00:00:00Z,,UK
    +4420,0.85,GBP,1/1,,,,,,,,London

- ``prefix`` (required): ``+`` and up to 15 digits; ``+`` alone matches every number.
- ``rate_per_minute_minor`` (required): per minute, in minor units (cents, paise), with up
  to 6 decimals for sub-unit carrier rates (``0.85`` = 0.85 cents a minute).
- ``currency`` (required): ISO 4217, e.g. ``USD``.
- ``pulse``: ``MIN/INCREMENT`` seconds (``1/1``, ``30/6``, ``60/60``; default ``60/60``).
- ``connection_fee_minor``, ``minimum_charge_minor``: whole minor units (default 0).
- ``direction``: ``outbound`` (default) or ``inbound``.
- ``provider``: a provider's name in the tenant; empty = any provider.
- ``priority``: lower wins a tie on the same prefix (default 100).
- ``effective_from`` / ``effective_to``: ISO 8601 with a zone (``Z`` or ``+05:30``);
  ``effective_from`` empty = now, ``effective_to`` empty = open-ended.

Empty cells take the default. A changed rate is a new row with a later
``effective_from``: the newest card effective at a leg's answer wins, and the old one
keeps rating the calls before it.

A stored card is changed by the same columns (:func:`changed_rate`: ``ctc billing rates
update --set COLUMN=VALUE``, ``PATCH /api/v1/billing/rates/{id}``), except those that
decide which legs it matches (``prefix``, ``direction``, ``provider``): a card for other
legs is another card, imported, and the old one ended (``ctc billing rates end``).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import re
import uuid
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Final, TypeVar

from engine.domain.rating import LegDirection, PulseRule, Rate, check_prefix
from engine.errors import ConfigError, DomainError, InvalidInput

__all__ = ["COLUMNS", "EDITABLE", "RateCardRow", "changed_rate", "dump_rates", "parse_rates"]

T = TypeVar("T")

COLUMNS: Final = (
    "prefix",
    "rate_per_minute_minor",
    "currency",
    "pulse",
    "connection_fee_minor",
    "minimum_charge_minor",
    "direction",
    "provider",
    "priority",
    "effective_from",
    "effective_to",
    "name",
)
_REQUIRED: Final = ("prefix", "rate_per_minute_minor", "currency")
#: The columns of a stored card that may be changed (the others decide what it matches).
EDITABLE: Final = (
    "rate_per_minute_minor",
    "currency",
    "pulse",
    "connection_fee_minor",
    "minimum_charge_minor",
    "priority",
    "effective_from",
    "effective_to",
    "name",
)
_CURRENCY_RE: Final = re.compile(r"^[A-Z]{3}$")
_MAX_ROWS: Final = 200_000
_MAX_MINOR: Final = 10**15


@dataclasses.dataclass(frozen=True, slots=True)
class RateCardRow:
    """One parsed row: the card (its provider not yet resolved) and where it came from."""

    line: int
    rate: Rate
    provider: str | None  # a provider name, resolved against the tenant's providers


def parse_rates(text: str, *, source: str = "rates.csv") -> list[RateCardRow]:
    """The cards of a CSV document; ConfigError ``source:line: column: problem`` on the
    first bad cell (in file order)."""
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except StopIteration:
        raise ConfigError("empty file: expected a header row", file=source) from None
    except csv.Error as exc:
        raise ConfigError(f"not CSV: {exc}", file=source, line=1) from None
    names = [h.strip().lower() for h in header]
    for name in names:
        if name not in COLUMNS:
            raise ConfigError(
                f"unknown column {name!r} (columns: {', '.join(COLUMNS)})", file=source, line=1
            )
    if len(set(names)) != len(names):
        raise ConfigError("a column appears twice in the header", file=source, line=1)
    for name in _REQUIRED:
        if name not in names:
            raise ConfigError(f"the header lacks the required column {name!r}", file=source, line=1)
    rows: list[RateCardRow] = []
    try:
        for cells in reader:
            line = reader.line_num
            if not any(c.strip() for c in cells):
                continue
            if len(cells) != len(names):
                raise ConfigError(
                    f"{len(cells)} cells, the header has {len(names)}", file=source, line=line
                )
            if len(rows) >= _MAX_ROWS:
                raise ConfigError(f"more than {_MAX_ROWS} rate cards", file=source, line=line)
            rows.append(
                _row(dict(zip(names, (c.strip() for c in cells), strict=True)), line, source)
            )
    except csv.Error as exc:
        raise ConfigError(f"not CSV: {exc}", file=source, line=reader.line_num) from None
    if not rows:
        raise ConfigError("no rate cards (only a header)", file=source)
    return rows


def _row(cells: Mapping[str, str], line: int, source: str) -> RateCardRow:
    def cell(name: str, convert: Callable[[str], T], default: T) -> T:
        value = cells.get(name, "")
        if not value:
            if name in _REQUIRED:
                raise ConfigError("required", file=source, line=line, field=name)
            return default
        try:
            return convert(value)
        except (ValueError, DomainError) as exc:
            raise ConfigError(str(exc), file=source, line=line, field=name) from None

    prefix = cell("prefix", _prefix, "+")
    per_minute, scale = cell("rate_per_minute_minor", _decimal_minor, (0, 0))
    rate = Rate(
        id=uuid.uuid4(),
        name=cell("name", _name, ""),
        destination_prefix=prefix,
        rate_per_minute_minor=per_minute,
        rate_scale=scale,
        currency=cell("currency", _currency, "XXX"),
        pulse=cell("pulse", PulseRule.parse, PulseRule(60, 60)),
        connection_fee_minor=cell("connection_fee_minor", _whole_minor, 0),
        minimum_charge_minor=cell("minimum_charge_minor", _whole_minor, 0),
        direction=cell("direction", _direction, LegDirection.OUTBOUND),
        priority=cell("priority", _priority, 100),
        effective_from=cell("effective_from", _instant, None),
        effective_to=cell("effective_to", _instant, None),
    )
    if (
        rate.effective_from is not None
        and rate.effective_to is not None
        and rate.effective_to <= rate.effective_from
    ):
        raise ConfigError(
            "must be later than effective_from", file=source, line=line, field="effective_to"
        )
    provider = cells.get("provider") or None
    return RateCardRow(line, rate, provider)


def _prefix(value: str) -> str:
    problem = check_prefix(value)
    if problem is not None:
        raise ValueError(f"{value!r}: {problem}")
    return value


def _decimal_minor(value: str) -> tuple[int, int]:
    """``"0.85"`` → (85, 2): the rate in 10^-scale minor units, scale at most 6."""
    try:
        number = Decimal(value)
    except InvalidOperation:
        raise ValueError(f"{value!r} is not a number") from None
    if not number.is_finite() or number < 0:
        raise ValueError(f"{value!r} must be a number >= 0")
    exponent = number.normalize().as_tuple().exponent
    if not isinstance(exponent, int):  # "n", "N" or "F": ruled out by is_finite above
        raise ValueError(f"{value!r} is not a finite number")
    scale = max(0, -exponent)
    if scale > 6:
        raise ValueError(f"{value!r} has more than 6 decimals")
    scaled = int(number.scaleb(scale))
    if scaled >= _MAX_MINOR:
        raise ValueError(f"{value!r} is too large")
    return scaled, scale


def _whole_minor(value: str) -> int:
    if not value.isdigit():
        raise ValueError(f"{value!r} must be a whole number of minor units >= 0")
    amount = int(value)
    if amount >= _MAX_MINOR:
        raise ValueError(f"{value!r} is too large")
    return amount


def _currency(value: str) -> str:
    if not _CURRENCY_RE.match(value):
        raise ValueError(f"{value!r} is not an ISO 4217 code such as USD")
    return value


def _direction(value: str) -> LegDirection:
    try:
        return LegDirection(value)
    except ValueError:
        raise ValueError(f"{value!r}: must be outbound or inbound") from None


def _priority(value: str) -> int:
    if not value.isdigit() or int(value) > 1_000_000:
        raise ValueError(f"{value!r} must be a whole number 0-1000000")
    return int(value)


def _instant(value: str) -> datetime:
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{value!r} is not an ISO 8601 date and time") from None
    if when.tzinfo is None:
        raise ValueError(f"{value!r} has no zone: add Z or an offset such as +05:30")
    return when


def _name(value: str) -> str:
    if len(value) > 200:
        raise ValueError("longer than 200 characters")
    return value


def changed_rate(rate: Rate, changes: Mapping[str, str]) -> Rate:
    """``rate`` with ``changes`` (column → cell text, as a rate deck writes it) applied;
    :class:`InvalidInput` naming the column when one is not editable or not valid, or
    ``effective_to`` when the card would end before it starts."""
    updated = rate
    for column, text in changes.items():
        if column not in EDITABLE:
            why = (
                "decides which legs the card matches: import a new card and end this one"
                if column in COLUMNS
                else f"not a rate card column (editable: {', '.join(EDITABLE)})"
            )
            raise InvalidInput(column, why)
        value = text.strip()
        if not value and column in _REQUIRED:
            raise InvalidInput(column, "required")
        try:
            updated = _changed(updated, column, value)
        except (ValueError, DomainError) as exc:
            raise InvalidInput(column, str(exc)) from None
    if (
        updated.effective_from is not None
        and updated.effective_to is not None
        and updated.effective_to <= updated.effective_from
    ):
        raise InvalidInput("effective_to", "must be later than effective_from")
    return updated


def _changed(rate: Rate, column: str, value: str) -> Rate:
    """One column of a card set from its cell text (empty: the column's default)."""
    match column:
        case "rate_per_minute_minor":
            per_minute, scale = _decimal_minor(value)
            return dataclasses.replace(rate, rate_per_minute_minor=per_minute, rate_scale=scale)
        case "currency":
            return dataclasses.replace(rate, currency=_currency(value))
        case "pulse":
            pulse = PulseRule.parse(value) if value else PulseRule(60, 60)
            return dataclasses.replace(rate, pulse=pulse)
        case "connection_fee_minor":
            return dataclasses.replace(rate, connection_fee_minor=_whole_minor(value or "0"))
        case "minimum_charge_minor":
            return dataclasses.replace(rate, minimum_charge_minor=_whole_minor(value or "0"))
        case "priority":
            return dataclasses.replace(rate, priority=_priority(value or "100"))
        case "effective_from":
            if not value:
                raise ValueError("required (a stored card has a start)")
            return dataclasses.replace(rate, effective_from=_instant(value))
        case "effective_to":
            return dataclasses.replace(rate, effective_to=_instant(value) if value else None)
        case _:
            return dataclasses.replace(rate, name=_name(value))


def dump_rates(
    rates: Iterable[Rate], provider_names: Mapping[uuid.UUID, str], *, ids: bool = False
) -> str:
    """The cards as CSV that :func:`parse_rates` reads back (dates in UTC ISO 8601); with
    ``ids``, each card's id first (what ``update`` and ``end`` name; not for import)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["id", *COLUMNS] if ids else COLUMNS)
    for r in rates:
        per_minute = Decimal(r.rate_per_minute_minor).scaleb(-r.rate_scale)
        writer.writerow(
            ([str(r.id)] if ids else [])
            + [
                r.destination_prefix,
                f"{per_minute:f}",
                r.currency,
                str(r.pulse),
                r.connection_fee_minor,
                r.minimum_charge_minor,
                r.direction.value,
                provider_names.get(r.provider_id, "") if r.provider_id else "",
                r.priority,
                r.effective_from.isoformat() if r.effective_from else "",
                r.effective_to.isoformat() if r.effective_to else "",
                r.name,
            ]
        )
    return out.getvalue()
