"""Compliance and caller ID for every outbound customer leg, and the management of their
rule sets (number lists, compliance rules, caller-ID profiles) for the API and the CLI.

The two entry points every call path uses before it dials a customer:

- :meth:`OutboundPolicy.check` — may ``number`` be dialled for ``tenant`` now? It reads
  the lists' entries covering the number, the active rules and today's attempts (since the
  callee's local midnight), and lets :func:`engine.domain.compliance.evaluate` decide.
- :meth:`CallerIdChooser.choose` — which caller ID the leg presents, from the tenant's
  profiles (:mod:`engine.domain.caller_id`); None when the tenant has no profile.

:class:`ComplianceAdmin` validates what a client sends (numbers normalised to E.164, CSV
imports checked line by line, rules against their type) and stores it.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import re
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, time
from typing import Any

import structlog

from engine.domain.caller_id import CallerIdChoice, Profile, Rotation, choose, select_profile
from engine.domain.compliance import (
    Finding,
    ListEntry,
    ListType,
    RecordingConsent,
    Rule,
    RuleAction,
    RuleType,
    Verdict,
    evaluate,
    local_day_start,
    number_zones,
    recording_consent,
    zone_named,
)
from engine.domain.phone import to_e164
from engine.errors import InvalidInput, NotFound
from engine.store.guards import AttemptsGuard
from engine.store.records import Tenant
from engine.store.repositories import Store

__all__ = [
    "CallerIdChooser",
    "ComplianceAdmin",
    "NewListEntry",
    "OutboundPolicy",
    "parse_list_csv",
]

log = structlog.get_logger(__name__)

MAX_IMPORT_ROWS = 100_000


class OutboundPolicy:
    """Whether an outbound customer leg may be dialled (the pre-dial check)."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def check(self, tenant: Tenant, number: str, now: datetime | None = None) -> Verdict:
        """The verdict on dialling ``number`` (E.164) for ``tenant`` at ``now``."""
        verdict, _ = await self.screen(tenant, number, now)
        return verdict

    async def screen(
        self, tenant: Tenant, number: str, now: datetime | None = None
    ) -> tuple[Verdict, AttemptsGuard | None]:
        """:meth:`check`'s verdict, and when a ``max_attempts`` rule applies, the guard that
        recounts today's attempts under the number's lock in the new call's insert
        (:mod:`engine.store.guards`): two concurrent calls cannot both pass the limit."""
        at = now or datetime.now(UTC)
        entries = await self._store.number_lists.matching(tenant.id, number, at)
        rules = await self._store.compliance_rules.rules(tenant.id)
        if not any(r.rule_type is RuleType.MAX_ATTEMPTS for r in rules):
            return evaluate(number, at, entries=entries, rules=rules), None
        zones = number_zones(number)
        # the earliest local midnight of the zones the number may be in
        since = min((local_day_start(at, z) for z in zones), default=_utc_day(at))
        attempts = await self._store.compliance_rules.attempts_since(tenant.id, number, since)
        verdict = evaluate(number, at, entries=entries, rules=rules, attempts_today=attempts)

        def judge(done: int) -> Finding | None:
            return evaluate(number, at, entries=entries, rules=rules, attempts_today=done).refusal

        return verdict, AttemptsGuard(number, since, judge)

    async def recording_consent(
        self, tenant_id: uuid.UUID, number: str, metadata: Mapping[str, Any]
    ) -> RecordingConsent:
        """What recording a call to ``number`` needs first (the consent rules)."""
        rules = await self._store.compliance_rules.rules(tenant_id)
        return recording_consent(number, rules, metadata)


def _utc_day(now: datetime) -> datetime:
    return now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


class CallerIdChooser:
    """Which caller ID an outbound customer leg presents."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def choose(
        self,
        tenant: Tenant,
        number: str,
        now: datetime | None = None,
        *,
        provider_id: uuid.UUID | None = None,
    ) -> CallerIdChoice | None:
        """The caller ID for a leg to ``number`` over ``provider_id``; None when no
        profile of the tenant applies. A rotating profile's position advances per leg."""
        profiles = await self._store.caller_ids.profiles(tenant.id)
        profile = select_profile(profiles, number, provider_id)
        if profile is None:
            return None
        cursor = 0
        used: dict[str, int] = {}
        if profile.rotation is not Rotation.FIXED and profile.pool and profile.id is not None:
            cursor = await self._store.caller_ids.next_position(tenant.id, profile.id)
            if profile.daily_cap is not None:
                used = await self._store.caller_ids.presented_since(
                    tenant.id, profile.pool, _utc_day(now or datetime.now(UTC))
                )
        return choose(profile, number, cursor=cursor, used_today=used)


# -- management --------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class NewListEntry:
    """A list entry as a client writes it (``number``: a number, or a prefix ``+1800``
    when ``is_prefix``)."""

    list_type: str
    number: str
    is_prefix: bool = False
    expires_at: datetime | None = None
    reason: str | None = None
    source: str = "api"


def _list_type(value: str, field: str) -> ListType:
    try:
        return ListType(value.strip().lower())
    except ValueError:
        choices = ", ".join(t.value for t in ListType)
        raise InvalidInput(field, f"unknown list {value!r} (one of {choices})") from None


def _prefix(raw: str, field: str, *, longest: int = 15) -> str:
    text = raw.strip().replace(" ", "").replace("-", "")
    if re.fullmatch(rf"\+[0-9]{{1,{longest}}}", text) is None:
        raise InvalidInput(field, f"a prefix is + and 1-{longest} digits (e.g. +1800), not {raw!r}")
    if text[1] == "0":
        raise InvalidInput(field, f"a country code never starts with 0: {raw!r}")
    return text


def _entry(new: NewListEntry, field: str) -> ListEntry:
    list_type = _list_type(new.list_type, f"{field}list_type")
    number = (
        _prefix(new.number, f"{field}number")
        if new.is_prefix
        else to_e164(new.number, field=f"{field}number")
    )
    expires = new.expires_at
    if expires is not None and expires.tzinfo is None:
        raise InvalidInput(f"{field}expires_at", "needs a time zone (e.g. 2027-01-01T00:00Z)")
    return ListEntry(
        list_type,
        number,
        is_prefix=new.is_prefix,
        expires_at=expires,
        reason=(new.reason or None),
        source=new.source,
    )


_TRUE = {"1", "true", "yes", "y"}
_FALSE = {"", "0", "false", "no", "n"}
CSV_COLUMNS = ("number", "list_type", "is_prefix", "expires_at", "reason")


def parse_list_csv(
    text: str, *, list_type: str | None = None, source: str = "import", where: str = "line "
) -> list[NewListEntry]:
    """The entries of a CSV import: a header naming ``number`` and any of ``list_type``,
    ``is_prefix``, ``expires_at`` (ISO 8601 with zone), ``reason``; ``list_type`` given
    here fills rows that have none. A bad row raises :class:`InvalidInput` naming
    ``<where>N`` (``where``: ``"line "``, or a file's name and ``:``) and the column."""
    reader = csv.DictReader(io.StringIO(text, newline=""))  # \r\n, \r and \n end a row
    try:
        return _csv_rows(reader, list_type, source, where)
    except csv.Error as exc:
        raise InvalidInput(f"{where}{reader.line_num}", f"not CSV: {exc}") from None


def _csv_rows(
    reader: csv.DictReader[str], list_type: str | None, source: str, where: str
) -> list[NewListEntry]:
    header = [h.strip() for h in reader.fieldnames or ()]
    if "number" not in header:
        raise InvalidInput(f"{where}1", "the header must name a 'number' column")
    unknown = [h for h in header if h not in CSV_COLUMNS]
    if unknown:
        raise InvalidInput(
            f"{where}1",
            f"unknown column(s) {', '.join(unknown)} (known: {', '.join(CSV_COLUMNS)})",
        )
    reader.fieldnames = header
    out: list[NewListEntry] = []
    for row in reader:
        line = reader.line_num
        if len(out) >= MAX_IMPORT_ROWS:
            raise InvalidInput(f"{where}{line}", f"more than {MAX_IMPORT_ROWS} rows")
        if None in row:
            raise InvalidInput(f"{where}{line}", "more fields than the header names")
        cells = {k: (v or "").strip() for k, v in row.items()}
        if not any(cells.values()):
            continue
        kind = cells.get("list_type") or list_type
        if not kind:
            raise InvalidInput(f"{where}{line}: list_type", "no list (column or --list)")
        flag = cells.get("is_prefix", "").lower()
        if flag not in _TRUE | _FALSE:
            raise InvalidInput(f"{where}{line}: is_prefix", f"not a boolean: {flag!r}")
        expires = None
        if cells.get("expires_at"):
            try:
                expires = datetime.fromisoformat(cells["expires_at"])
            except ValueError:
                raise InvalidInput(
                    f"{where}{line}: expires_at", f"not an ISO 8601 time: {cells['expires_at']!r}"
                ) from None
        new = NewListEntry(
            kind,
            cells["number"],
            is_prefix=flag in _TRUE,
            expires_at=expires,
            reason=cells.get("reason") or None,
            source=source,
        )
        _entry(new, f"{where}{line}: ")  # validated here, with its line
        out.append(new)
    return out


def _time(value: str | time | None, field: str) -> time | None:
    if value is None or isinstance(value, time):
        return value
    try:
        return time.fromisoformat(value)
    except ValueError:
        raise InvalidInput(field, f"not a time of day (HH:MM): {value!r}") from None


class ComplianceAdmin:
    """The rule sets of compliance and caller ID, as the API and the CLI manage them."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self.policy = OutboundPolicy(store)
        self.caller_ids = CallerIdChooser(store)

    # lists

    async def add_entries(
        self, tenant: Tenant, entries: Sequence[NewListEntry], *, field: str = ""
    ) -> list[ListEntry]:
        """Validate every entry (``field`` prefixes the names in errors), then store all."""
        checked = [_entry(e, f"{field}[{i}]." if field else "") for i, e in enumerate(entries)]
        stored = await self._store.number_lists.add(tenant.id, checked)
        log.info("compliance.list_entries_added", tenant_id=str(tenant.id), count=len(stored))
        return stored

    async def import_csv(
        self, tenant: Tenant, text: str, *, list_type: str | None = None, where: str = "line "
    ) -> list[ListEntry]:
        if list_type is not None:
            _list_type(list_type, "list_type")
        rows = parse_list_csv(text, list_type=list_type, where=where)
        return await self._store.number_lists.add(tenant.id, [_entry(e, "") for e in rows])

    async def entries(
        self, tenant: Tenant, list_type: str | None = None, number: str | None = None
    ) -> list[ListEntry]:
        kind = _list_type(list_type, "list_type") if list_type else None
        normal = to_e164(number, field="number") if number else None
        return await self._store.number_lists.entries(tenant.id, kind, number=normal)

    async def remove_entry(self, tenant: Tenant, entry_id: uuid.UUID) -> None:
        if not await self._store.number_lists.remove(tenant.id, entry_id):
            raise NotFound("list entry", entry_id)

    # rules

    async def rules(self, tenant: Tenant, *, active_only: bool = False) -> list[Rule]:
        return await self._store.compliance_rules.rules(tenant.id, active_only=active_only)

    async def create_rule(self, tenant: Tenant, fields: Mapping[str, Any]) -> Rule:
        return await self._store.compliance_rules.create(tenant.id, rule_of(fields))

    async def set_rule_active(self, tenant: Tenant, rule_id: uuid.UUID, active: bool) -> Rule:
        rule = await self._store.compliance_rules.set_active(tenant.id, rule_id, active)
        if rule is None:
            raise NotFound("compliance rule", rule_id)
        return rule

    async def explain(
        self, tenant: Tenant, number: str, now: datetime | None = None
    ) -> tuple[str, Verdict, CallerIdChoice | None]:
        """What the pre-dial check says about ``number`` now, and which caller ID it would
        present (without advancing any rotation: the choice shown is the next one's)."""
        normal = to_e164(number, field="number")
        at = now or datetime.now(UTC)
        verdict = await self.policy.check(tenant, normal, at)
        profiles = await self._store.caller_ids.profiles(tenant.id)
        profile = select_profile(profiles, normal)
        choice = None if profile is None else choose(profile, normal)
        return normal, verdict, choice

    # caller-ID profiles

    async def profiles(self, tenant: Tenant) -> list[Profile]:
        return await self._store.caller_ids.profiles(tenant.id, active_only=False)

    async def create_profile(self, tenant: Tenant, fields: Mapping[str, Any]) -> Profile:
        return await self._store.caller_ids.create(tenant.id, profile_of(fields))

    async def set_profile_active(
        self, tenant: Tenant, profile_id: uuid.UUID, active: bool
    ) -> Profile:
        profile = await self._store.caller_ids.set_active(tenant.id, profile_id, active)
        if profile is None:
            raise NotFound("caller-ID profile", profile_id)
        return profile


def _enum(kind: type[Any], value: Any, field: str) -> Any:
    try:
        return kind(value)
    except ValueError:
        choices = ", ".join(m.value for m in kind)
        raise InvalidInput(field, f"unknown value {value!r} (one of {choices})") from None


_CONSENT_MEDIA = re.compile(r"sound:(?!/)(?!.*\.\.)[A-Za-z0-9_/-]{1,100}")


def rule_of(fields: Mapping[str, Any]) -> Rule:
    """A rule from a client's fields, checked against what its type needs."""
    rule_type: RuleType = _enum(RuleType, fields.get("rule_type"), "rule_type")
    if not str(fields.get("name") or "").strip():
        raise InvalidInput("name", "a rule needs a name")
    start = _time(fields.get("allowed_start"), "allowed_start")
    end = _time(fields.get("allowed_end"), "allowed_end")
    if (start is None) != (end is None):
        raise InvalidInput("allowed_end" if end is None else "allowed_start", "set both or neither")
    if start is not None and start == end:
        raise InvalidInput("allowed_end", "an empty window (start = end)")
    if rule_type is RuleType.CALLING_HOURS and start is None:
        raise InvalidInput("allowed_start", "calling_hours needs allowed_start and allowed_end")
    cap = fields.get("max_attempts_per_day")
    if rule_type is RuleType.MAX_ATTEMPTS and cap is None:
        raise InvalidInput("max_attempts_per_day", "max_attempts needs it")
    country = fields.get("country_code")
    if country is not None:
        country = str(country).upper()
        if len(country) != 2 or not country.isalpha() or not country.isascii():
            raise InvalidInput("country_code", f"an ISO 3166 alpha-2 code, not {country!r}")
    if rule_type is RuleType.COUNTRY_BLOCK and country is None:
        raise InvalidInput("country_code", "country_block needs the country")
    zone = fields.get("timezone")
    if zone is not None:
        zone_named(str(zone), field="timezone")
    days = fields.get("allowed_days")
    params = dict(fields.get("params") or {})
    announcement = params.get("announcement")
    if announcement is not None and not _CONSENT_MEDIA.fullmatch(str(announcement)):
        # played by Asterisk on the tenant's calls: a core sound by name only, never a path
        # or another tenant's recording
        raise InvalidInput(
            "params.announcement", "a sound name: 'sound:' and letters, digits, '_', '-', '/'"
        )
    lists = params.get("lists")
    if lists is not None:
        if not isinstance(lists, list):
            raise InvalidInput("params.lists", "a list of list names")
        for i, name in enumerate(lists):
            _list_type(str(name), f"params.lists[{i}]")
    return Rule(
        name=str(fields.get("name") or ""),
        rule_type=rule_type,
        priority=int(fields.get("priority", 100)),
        action=_enum(RuleAction, fields.get("action", "reject"), "action"),
        country_code=country,
        timezone=zone,
        allowed_start=start,
        allowed_end=end,
        allowed_days=tuple(days) if days else None,
        max_attempts_per_day=cap,
        params=params,
        description=str(fields.get("description") or ""),
        is_active=bool(fields.get("is_active", True)),
    )


def profile_of(fields: Mapping[str, Any]) -> Profile:
    """A caller-ID profile from a client's fields, numbers normalised to E.164."""
    rotation: Rotation = _enum(Rotation, fields.get("rotation", "fixed"), "rotation")
    if not str(fields.get("name") or "").strip():
        raise InvalidInput("name", "a profile needs a name")
    pool = tuple(
        to_e164(str(n), field=f"pool[{i}]") for i, n in enumerate(fields.get("pool") or ())
    )
    if rotation is not Rotation.FIXED and not pool:
        raise InvalidInput("pool", f"{rotation.value} needs at least one number")
    prefix = fields.get("match_prefix")
    return Profile(
        name=str(fields.get("name") or ""),
        caller_id=to_e164(str(fields.get("caller_id") or ""), field="caller_id"),
        rotation=rotation,
        pool=pool,
        priority=int(fields.get("priority", 100)),
        match_prefix=_prefix(prefix, "match_prefix", longest=14) if prefix else None,
        provider_id=fields.get("provider_id"),
        is_default=bool(fields.get("is_default", False)),
        is_active=bool(fields.get("is_active", True)),
        daily_cap=fields.get("daily_cap"),
    )
