"""Whether an outbound leg to a number may be dialled now: the tenant's number lists and
compliance rules, decided without I/O.

Every outbound customer leg passes :func:`evaluate` before it is dialled (the application's
:class:`~engine.app.compliance.OutboundPolicy` gathers what it needs: the lists' entries
matching the number, the active rules, the attempts made today). The answer is a
:class:`Verdict`: allowed or not, and *why*, naming the rule (or list) that decided, so a
refused call's event and the API's answer explain themselves.

The order, first refusal wins:

1. **allowlist**: a number on the tenant's allowlist skips the list checks below (an
   explicit "this customer asked to be called" beats a list import);
2. **blocklist**: a number on the blocklist is never called, whatever the rules say;
3. **rules**, active ones by ``priority`` (lower first): ``country_block``, ``dnc_check``
   (the lists in ``params.lists``, default ``["dnc"]``), ``calling_hours`` (in the
   *callee's* local time: the rule's ``timezone``, else every zone the number may be in,
   from ``phonenumbers``; a window must hold in all of them), ``max_attempts`` (dialled
   attempts to the number since the callee's local midnight). A rule whose ``action`` is
   ``warn`` never refuses: it is reported in ``warnings``. ``consent_required`` decides
   nothing about dialling; :func:`recording_consent` reads it when the call is answered.

List entries match a number exactly, or (``is_prefix``) every number starting with them
(``+1800`` covers all US toll-free numbers); an entry past its ``expires_at`` is ignored.
"""

from __future__ import annotations

import dataclasses
import enum
import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, time, timedelta
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from phonenumbers import timezone as phone_timezone

from engine.errors import InvalidInput

__all__ = [
    "DEFAULT_CONSENT_MEDIA",
    "Finding",
    "ListEntry",
    "ListType",
    "RecordingConsent",
    "Rule",
    "RuleAction",
    "RuleType",
    "Verdict",
    "evaluate",
    "local_day_start",
    "matching_entries",
    "number_prefixes",
    "number_region",
    "number_zones",
    "recording_consent",
    "within_hours",
    "zone_named",
]

# Played to both parties before a recording starts where a consent rule applies (a sound
# of Asterisk's core set: "this conference is now being recorded").
DEFAULT_CONSENT_MEDIA = "sound:conf-now-recording"


class ListType(enum.StrEnum):
    DNC = "dnc"
    BLOCKLIST = "blocklist"
    ALLOWLIST = "allowlist"
    VIP = "vip"


class RuleType(enum.StrEnum):
    CALLING_HOURS = "calling_hours"
    DNC_CHECK = "dnc_check"
    MAX_ATTEMPTS = "max_attempts"
    CONSENT_REQUIRED = "consent_required"
    COUNTRY_BLOCK = "country_block"


class RuleAction(enum.StrEnum):
    REJECT = "reject"
    WARN = "warn"


@dataclasses.dataclass(frozen=True, slots=True)
class ListEntry:
    """One ``phone_number_list`` row: ``number`` is E.164, or an E.164 prefix when
    ``is_prefix``."""

    list_type: ListType
    number: str
    is_prefix: bool = False
    expires_at: datetime | None = None
    reason: str | None = None
    source: str = "api"
    id: uuid.UUID | None = None

    def matches(self, number: str, now: datetime) -> bool:
        if self.expires_at is not None and self.expires_at <= now:
            return False
        return number.startswith(self.number) if self.is_prefix else number == self.number


@dataclasses.dataclass(frozen=True, slots=True)
class Rule:
    """One active ``call_compliance_rule`` row, as the decision needs it."""

    name: str
    rule_type: RuleType
    priority: int = 100
    action: RuleAction = RuleAction.REJECT
    country_code: str | None = None
    timezone: str | None = None
    allowed_start: time | None = None
    allowed_end: time | None = None
    allowed_days: tuple[int, ...] | None = None
    max_attempts_per_day: int | None = None
    params: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    description: str = ""
    is_active: bool = True
    id: uuid.UUID | None = None

    def applies_to(self, region: str | None) -> bool:
        return self.country_code is None or self.country_code == region

    @property
    def hours(self) -> tuple[time, time]:
        """A calling-hours rule's window (start, end); ValueError naming the rule when it
        has none (the API and the store refuse such a rule, so only a hand-edited row can)."""
        if self.allowed_start is None or self.allowed_end is None:
            raise ValueError(f"compliance rule {self.name!r} has no allowed_start/allowed_end")
        return self.allowed_start, self.allowed_end


@dataclasses.dataclass(frozen=True, slots=True)
class Finding:
    """Why a rule (or a list) objects to the call: ``rule`` is the rule's name, or
    ``"blocklist"`` for the list itself."""

    rule: str
    rule_type: str
    reason: str
    rule_id: uuid.UUID | None = None

    def as_payload(self) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "rule": self.rule,
            "rule_type": self.rule_type,
            "reason": self.reason,
        }
        if self.rule_id is not None:
            payload["rule_id"] = str(self.rule_id)
        return payload


@dataclasses.dataclass(frozen=True, slots=True)
class Verdict:
    """The decision on one outbound leg: ``refusal`` is set when it must not be dialled."""

    refusal: Finding | None = None
    warnings: tuple[Finding, ...] = ()

    @property
    def allowed(self) -> bool:
        return self.refusal is None


# -- numbers -----------------------------------------------------------------------------------


def number_prefixes(number: str) -> list[str]:
    """Every prefix of an E.164 number that a list entry could be: ``+1``, ``+14``, ...,
    the number itself (what the store looks up in one query)."""
    return [number[:i] for i in range(2, len(number) + 1)]


def _parsed(number: str) -> phonenumbers.PhoneNumber | None:
    try:
        return phonenumbers.parse(number, None)
    except phonenumbers.NumberParseException:
        return None


def number_region(number: str) -> str | None:
    """The ISO country of an E.164 number (``US`` for +1 415 ...), None if unknown."""
    parsed = _parsed(number)
    if parsed is None:
        return None
    region: str | None = phonenumbers.region_code_for_number(parsed)
    return region if region and region != "ZZ" else None


@lru_cache(maxsize=256)
def _zone(name: str) -> ZoneInfo | None:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


def number_zones(number: str) -> tuple[ZoneInfo, ...]:
    """The time zones the number may be in (one for most geographic numbers; every zone of
    the country for mobiles and toll-free numbers in countries with several)."""
    parsed = _parsed(number)
    if parsed is None:
        return ()
    names = phone_timezone.time_zones_for_number(parsed)
    zones = (_zone(n) for n in names if n != phone_timezone.UNKNOWN_TIMEZONE)
    return tuple(z for z in zones if z is not None)


def zone_named(name: str, *, field: str = "timezone") -> ZoneInfo:
    """The IANA zone ``name`` (InvalidInput naming ``field`` when there is none)."""
    zone = _zone(name)
    if zone is None:
        raise InvalidInput(field, f"unknown time zone {name!r}")
    return zone


def _zones_for(rule: Rule, number: str) -> tuple[ZoneInfo, ...]:
    if rule.timezone is not None:
        return (zone_named(rule.timezone),)
    return number_zones(number)


# -- lists -------------------------------------------------------------------------------------


def matching_entries(entries: Iterable[ListEntry], number: str, now: datetime) -> list[ListEntry]:
    """The entries that cover ``number`` now, the most specific (longest) first."""
    found = [e for e in entries if e.matches(number, now)]
    return sorted(found, key=lambda e: (-len(e.number), e.is_prefix))


def _on_list(entries: Sequence[ListEntry], list_type: ListType) -> ListEntry | None:
    return next((e for e in entries if e.list_type is list_type), None)


def _entry_text(entry: ListEntry) -> str:
    what = f"numbers starting {entry.number}" if entry.is_prefix else entry.number
    why = f" ({entry.reason})" if entry.reason else ""
    return f"{what} on the {entry.list_type.value} list{why}"


# -- calling hours -----------------------------------------------------------------------------


def within_hours(
    local: datetime, start: time, end: time, days: Sequence[int] | None = None
) -> bool:
    """Whether wall-clock ``local`` falls in the window ``start``-``end`` (end excluded; a
    window with start > end wraps past midnight and belongs to the day it starts on) on one
    of ``days`` (ISO weekdays; None: every day)."""
    clock = local.time().replace(tzinfo=None)
    if start < end:
        inside = start <= clock < end
        day = local.isoweekday()
    elif clock >= start:
        inside, day = True, local.isoweekday()
    elif clock < end:
        inside, day = True, (local - timedelta(days=1)).isoweekday()
    else:
        inside, day = False, local.isoweekday()
    return inside and (days is None or day in days)


def _hours_text(rule: Rule) -> str:
    start, end = rule.hours
    span = f"{start:%H:%M}-{end:%H:%M}"
    if rule.allowed_days:
        span += " on ISO days " + ",".join(str(d) for d in rule.allowed_days)
    return span


def _calling_hours(rule: Rule, number: str, now: datetime) -> str | None:
    start, end = rule.hours
    zones = _zones_for(rule, number)
    if not zones:
        return f"the local time of {number} is unknown; allowed {_hours_text(rule)}"
    for zone in zones:
        local = now.astimezone(zone)
        if not within_hours(local, start, end, rule.allowed_days):
            return (
                f"{local:%a %H:%M} in {zone.key} is outside the calling hours {_hours_text(rule)}"
            )
    return None


def local_day_start(now: datetime, zone: ZoneInfo) -> datetime:
    """The instant the callee's day began (local midnight in ``zone``, DST-safe: a day
    that starts in a gap starts at its first existing instant)."""
    local = now.astimezone(zone)
    midnight = datetime(local.year, local.month, local.day, tzinfo=zone)
    # fold=0 in a gap is the later offset's instant: never after now
    return min(midnight, now)


# -- the decision ------------------------------------------------------------------------------


def _rule_finding(rule: Rule, reason: str) -> Finding:
    return Finding(rule.name, rule.rule_type.value, reason, rule.id)


def _check(
    rule: Rule,
    number: str,
    region: str | None,
    matched: Sequence[ListEntry],
    allowlisted: bool,
    attempts_today: int,
    now: datetime,
) -> str | None:
    """The rule's objection to dialling ``number`` now, or None."""
    match rule.rule_type:
        case RuleType.COUNTRY_BLOCK:
            return f"calls to {region} are blocked"  # applies_to matched the country
        case RuleType.DNC_CHECK:
            if allowlisted:
                return None
            lists = rule.params.get("lists") or [ListType.DNC.value]
            for entry in matched:
                if entry.list_type.value in lists:
                    return _entry_text(entry)
            return None
        case RuleType.CALLING_HOURS:
            return _calling_hours(rule, number, now)
        case RuleType.MAX_ATTEMPTS:
            cap = rule.max_attempts_per_day
            if cap is not None and attempts_today >= cap:
                return f"{attempts_today} attempts to {number} today (at most {cap} a day)"
            return None
    return None  # consent_required: decided when the call is answered


def evaluate(
    number: str,
    now: datetime,
    *,
    entries: Iterable[ListEntry] = (),
    rules: Iterable[Rule] = (),
    attempts_today: int = 0,
) -> Verdict:
    """Whether ``number`` (E.164) may be dialled at ``now`` (aware) under the tenant's list
    ``entries`` (those that may match it; others are ignored) and active ``rules``;
    ``attempts_today``: legs dialled to it since its local midnight."""
    matched = matching_entries(entries, number, now)
    allowlisted = _on_list(matched, ListType.ALLOWLIST) is not None
    blocked = None if allowlisted else _on_list(matched, ListType.BLOCKLIST)
    if blocked is not None:
        return Verdict(Finding("blocklist", "blocklist", _entry_text(blocked)))
    region = number_region(number)
    warnings: list[Finding] = []
    for rule in sorted(rules, key=lambda r: (r.priority, r.name)):
        if not rule.applies_to(region):
            continue
        objection = _check(rule, number, region, matched, allowlisted, attempts_today, now)
        if objection is None:
            continue
        finding = _rule_finding(rule, objection)
        if rule.action is RuleAction.WARN:
            warnings.append(finding)
        else:
            return Verdict(finding, tuple(warnings))
    return Verdict(None, tuple(warnings))


# -- recording consent -------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class RecordingConsent:
    """What a recorded call must do first: play ``announcement`` to both parties before
    the recording starts, or not record at all (``refused``: why)."""

    announcement: str | None = None
    refused: Finding | None = None
    rule: str | None = None


def recording_consent(
    number: str, rules: Iterable[Rule], metadata: Mapping[str, Any]
) -> RecordingConsent:
    """The consent a recorded call to ``number`` needs under the active ``rules``: the
    first ``consent_required`` rule (by priority) that applies to the number's country
    decides. With ``params.metadata_key`` the session's metadata must say consent was given
    (a true value under that key), else recording is refused; the announcement
    (``params.announcement``, default :data:`DEFAULT_CONSENT_MEDIA`) is played either way
    the call is recorded."""
    region = number_region(number)
    for rule in sorted(rules, key=lambda r: (r.priority, r.name)):
        if rule.rule_type is not RuleType.CONSENT_REQUIRED or not rule.applies_to(region):
            continue
        key = rule.params.get("metadata_key")
        if key and not _truthy(metadata.get(str(key))):
            why = f"no recording consent for {number} (metadata {key!r} is not true)"
            return RecordingConsent(refused=_rule_finding(rule, why), rule=rule.name)
        media = str(rule.params.get("announcement") or DEFAULT_CONSENT_MEDIA)
        return RecordingConsent(announcement=media, rule=rule.name)
    return RecordingConsent()


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in {"1", "true", "yes", "y", "given"}
    return value is True or (isinstance(value, int) and not isinstance(value, bool) and value > 0)
