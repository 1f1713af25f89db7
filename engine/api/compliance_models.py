"""Request and response bodies of the compliance and caller-ID routes (number lists,
compliance rules, caller-ID profiles, the pre-dial check explained).

Kept apart from :mod:`engine.api.models` because they are one resource family; the
OpenAPI document is generated from them the same way. Shapes are checked here (types,
enums, lengths); what needs the domain (E.164, time zones, what a rule type needs) is
checked by :mod:`engine.app.compliance`, which names the field.
"""

from __future__ import annotations

import uuid
from datetime import datetime, time
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, WithJsonSchema

__all__ = [
    "ActiveIn",
    "CallerIdChoiceOut",
    "CallerIdProfileIn",
    "CallerIdProfileListOut",
    "CallerIdProfileOut",
    "ComplianceCheckIn",
    "ComplianceCheckOut",
    "ComplianceRuleIn",
    "ComplianceRuleListOut",
    "ComplianceRuleOut",
    "FindingOut",
    "ListEntriesIn",
    "ListEntryIn",
    "ListEntryListOut",
    "ListEntryOut",
    "ListImportIn",
    "ListImportOut",
    "ListQuery",
]

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
Number = Annotated[str, StringConstraints(strip_whitespace=True, min_length=2, max_length=40)]
ListName = Literal["dnc", "blocklist", "allowlist", "vip"]


# A wall-clock time in the callee's zone: no UTC offset. JSON Schema's "time" format is
# RFC 3339's full-time, which needs an offset ("15:49:24" is not one), so the schema says
# what the API sends and takes instead.
LocalTime = Annotated[
    time,
    WithJsonSchema(
        {
            "type": "string",
            "pattern": r"^[0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,6})?)?$",
            "description": "HH:MM[:SS], local time without an offset",
        }
    ),
]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True)


class ListEntryIn(_In):
    list_type: ListName
    number: Number = Field(description="E.164 number, or with is_prefix an E.164 prefix (+1800)")
    is_prefix: bool = False
    expires_at: datetime | None = Field(default=None, description="ignored from then on")
    reason: Annotated[str, StringConstraints(max_length=500)] | None = None


class ListEntriesIn(_In):
    entries: list[ListEntryIn] = Field(min_length=1, max_length=10_000)


class ListImportIn(_In):
    """A CSV file's text: a header naming `number` and any of `list_type`, `is_prefix`,
    `expires_at`, `reason`; `list_type` here fills rows without one."""

    csv: Annotated[str, StringConstraints(min_length=1, max_length=5_000_000)]
    list_type: ListName | None = None


class ListImportOut(_Out):
    imported: int = Field(description="entries added or updated")


class ListQuery(_In):
    list_type: ListName | None = None
    number: Number | None = Field(default=None, description="entries covering this number")


class ListEntryOut(_Out):
    id: uuid.UUID | None
    list_type: str
    number: str
    is_prefix: bool
    expires_at: datetime | None
    reason: str | None
    source: str


class ListEntryListOut(_Out):
    items: list[ListEntryOut]


class ComplianceRuleIn(_In):
    name: Name
    rule_type: Literal[
        "calling_hours", "dnc_check", "max_attempts", "consent_required", "country_block"
    ]
    description: Annotated[str, StringConstraints(max_length=1000)] = ""
    priority: int = Field(default=100, ge=0, le=1_000_000)
    action: Literal["reject", "warn"] = "reject"
    country_code: Annotated[str, StringConstraints(pattern=r"^[A-Za-z]{2}$")] | None = None
    timezone: Annotated[str, StringConstraints(max_length=64)] | None = Field(
        default=None, description="IANA zone; none: the callee number's own zone(s)"
    )
    allowed_start: LocalTime | None = None
    allowed_end: LocalTime | None = None
    allowed_days: list[Annotated[int, Field(ge=1, le=7)]] | None = Field(
        default=None, min_length=1, max_length=7, description="ISO weekdays, 1 = Monday"
    )
    max_attempts_per_day: int | None = Field(default=None, ge=1, le=1000)
    params: dict[str, Any] = Field(
        default_factory=dict,
        description='dnc_check: {"lists": ["dnc"]}; consent_required: '
        '{"metadata_key": "...", "announcement": "sound:..."}',
    )
    is_active: bool = True


class ComplianceRuleOut(_Out):
    id: uuid.UUID | None
    name: str
    rule_type: str
    description: str
    priority: int
    action: str
    country_code: str | None
    timezone: str | None
    allowed_start: LocalTime | None
    allowed_end: LocalTime | None
    allowed_days: list[int] | None
    max_attempts_per_day: int | None
    params: dict[str, Any]
    is_active: bool


class ComplianceRuleListOut(_Out):
    items: list[ComplianceRuleOut]


class CallerIdProfileIn(_In):
    name: Name
    caller_id: Number = Field(description="presented for fixed, and when the pool has none")
    rotation: Literal["fixed", "round_robin", "local_presence"] = "fixed"
    pool: list[Number] = Field(default_factory=list, max_length=1000)
    priority: int = Field(default=100, ge=0, le=1_000_000)
    match_prefix: Number | None = None
    provider_id: uuid.UUID | None = None
    is_default: bool = False
    daily_cap: int | None = Field(default=None, ge=1, le=1_000_000)
    is_active: bool = True


class CallerIdProfileOut(_Out):
    id: uuid.UUID | None
    name: str
    caller_id: str
    rotation: str
    pool: list[str]
    priority: int
    match_prefix: str | None
    provider_id: uuid.UUID | None
    is_default: bool
    daily_cap: int | None
    is_active: bool


class ActiveIn(_In):
    is_active: bool


class CallerIdProfileListOut(_Out):
    items: list[CallerIdProfileOut]


class ComplianceCheckIn(_In):
    number: Number
    at: datetime | None = Field(default=None, description="when (default: now)")


class FindingOut(_Out):
    rule: str
    rule_type: str
    reason: str


class CallerIdChoiceOut(_Out):
    caller_id: str
    profile: str
    reason: str


class ComplianceCheckOut(_Out):
    number: str
    allowed: bool
    refusal: FindingOut | None
    warnings: list[FindingOut]
    caller_id: CallerIdChoiceOut | None
