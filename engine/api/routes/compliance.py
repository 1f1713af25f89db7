"""Compliance and caller ID: the tenant's number lists (blocklist, allowlist, do-not-call,
VIP; one by one or imported from CSV), compliance rules, caller-ID profiles, and the
pre-dial check explained for a number."""

from __future__ import annotations

import dataclasses
from typing import Any

from aiohttp import web

from engine.api.compliance_models import (
    ActiveIn,
    CallerIdChoiceOut,
    CallerIdProfileIn,
    CallerIdProfileListOut,
    CallerIdProfileOut,
    ComplianceCheckIn,
    ComplianceCheckOut,
    ComplianceRuleIn,
    ComplianceRuleListOut,
    ComplianceRuleOut,
    FindingOut,
    ListEntriesIn,
    ListEntryListOut,
    ListEntryOut,
    ListImportIn,
    ListImportOut,
    ListQuery,
)
from engine.api.endpoints import ApiRequest, json_response, router
from engine.api.routes.common import API, error_responses, use_cases
from engine.app.compliance import NewListEntry
from engine.domain.caller_id import Profile
from engine.domain.compliance import Finding, ListEntry, Rule

__all__ = [
    "add_list_entries",
    "check_number",
    "create_caller_id_profile",
    "create_compliance_rule",
    "delete_list_entry",
    "import_list_entries",
    "list_caller_id_profiles",
    "list_compliance_rules",
    "list_entries",
    "set_caller_id_profile_active",
    "set_compliance_rule_active",
]

LISTS = f"{API}/compliance/lists"
RULES = f"{API}/compliance/rules"
PROFILES = f"{API}/caller-id-profiles"
TAGS = ("compliance",)


def _entry_out(entry: ListEntry) -> ListEntryOut:
    return ListEntryOut(
        id=entry.id,
        list_type=entry.list_type.value,
        number=entry.number,
        is_prefix=entry.is_prefix,
        expires_at=entry.expires_at,
        reason=entry.reason,
        source=entry.source,
    )


def _fields(record: Rule | Profile) -> dict[str, Any]:
    """``record``'s fields by name, as they are (an answer model converts what it must)."""
    return {f.name: getattr(record, f.name) for f in dataclasses.fields(record)}


def _rule_out(rule: Rule) -> ComplianceRuleOut:
    fields = _fields(rule)
    fields["allowed_days"] = list(rule.allowed_days) if rule.allowed_days else None
    fields["params"] = dict(rule.params)
    return ComplianceRuleOut.model_validate(fields)


def _profile_out(profile: Profile) -> CallerIdProfileOut:
    fields = _fields(profile)
    fields["pool"] = list(profile.pool)
    return CallerIdProfileOut.model_validate(fields)


def _finding_out(finding: Finding) -> FindingOut:
    return FindingOut(rule=finding.rule, rule_type=finding.rule_type, reason=finding.reason)


@router.route(
    "GET",
    LISTS,
    summary="The tenant's number list entries",
    tags=TAGS,
    query=ListQuery,
    responses={200: ListEntryListOut, **error_responses(401, 422)},
)
async def list_entries(req: ApiRequest) -> web.StreamResponse:
    """Newest first (at most 1000); `number` gives the entries covering it (prefixes too)."""
    q = req.query_as(ListQuery)
    found = await use_cases(req).compliance.entries(req.require_tenant(), q.list_type, q.number)
    return json_response(ListEntryListOut(items=[_entry_out(e) for e in found]))


@router.route(
    "POST",
    LISTS,
    summary="Add numbers (or prefixes) to the tenant's lists",
    tags=TAGS,
    body=ListEntriesIn,
    responses={201: ListEntryListOut, **error_responses(400, 401, 413, 422)},
)
async def add_list_entries(req: ApiRequest) -> web.StreamResponse:
    """All or none: a bad number is 422 naming `entries[i].number`. An entry already on
    the list takes the new reason and expiry."""
    body = req.body_as(ListEntriesIn)
    new = [
        NewListEntry(e.list_type, e.number, e.is_prefix, e.expires_at, e.reason)
        for e in body.entries
    ]
    stored = await use_cases(req).compliance.add_entries(req.require_tenant(), new, field="entries")
    return json_response(ListEntryListOut(items=[_entry_out(e) for e in stored]), 201)


@router.route(
    "POST",
    f"{API}/compliance/list-imports",
    summary="Import list entries from CSV",
    tags=TAGS,
    body=ListImportIn,
    responses={201: ListImportOut, **error_responses(400, 401, 413, 422)},
)
async def import_list_entries(req: ApiRequest) -> web.StreamResponse:
    """All or none: a bad row is 422 naming `line N: column`."""
    body = req.body_as(ListImportIn)
    stored = await use_cases(req).compliance.import_csv(
        req.require_tenant(), body.csv, list_type=body.list_type
    )
    return json_response(ListImportOut(imported=len(stored)), 201)


@router.route(
    "DELETE",
    f"{LISTS}/{{entry_id}}",
    summary="Remove a list entry",
    tags=TAGS,
    responses={204: None, **error_responses(401, 404)},
)
async def delete_list_entry(req: ApiRequest) -> web.StreamResponse:
    entry_id = req.path_uuid("entry_id", "list entry")
    await use_cases(req).compliance.remove_entry(req.require_tenant(), entry_id)
    return json_response(None, 204)


@router.route(
    "GET",
    RULES,
    summary="The tenant's compliance rules",
    tags=TAGS,
    responses={200: ComplianceRuleListOut, **error_responses(401)},
)
async def list_compliance_rules(req: ApiRequest) -> web.StreamResponse:
    """Every rule, active or not, in evaluation order (priority, then name)."""
    rules = await use_cases(req).compliance.rules(req.require_tenant())
    return json_response(ComplianceRuleListOut(items=[_rule_out(r) for r in rules]))


@router.route(
    "POST",
    RULES,
    summary="Add a compliance rule",
    tags=TAGS,
    body=ComplianceRuleIn,
    responses={201: ComplianceRuleOut, **error_responses(400, 401, 409, 413, 422)},
)
async def create_compliance_rule(req: ApiRequest) -> web.StreamResponse:
    """What the rule type needs is checked (calling_hours: the window; max_attempts: the
    cap; country_block: the country; a time zone must exist): 422 naming the field."""
    body = req.body_as(ComplianceRuleIn)
    rule = await use_cases(req).compliance.create_rule(req.require_tenant(), body.model_dump())
    return json_response(_rule_out(rule), 201)


@router.route(
    "PATCH",
    f"{RULES}/{{rule_id}}",
    summary="Activate or deactivate a compliance rule",
    tags=TAGS,
    body=ActiveIn,
    responses={200: ComplianceRuleOut, **error_responses(400, 401, 404, 413, 422)},
)
async def set_compliance_rule_active(req: ApiRequest) -> web.StreamResponse:
    """Rules are deactivated, never deleted: call events name them."""
    rule_id = req.path_uuid("rule_id", "compliance rule")
    rule = await use_cases(req).compliance.set_rule_active(
        req.require_tenant(), rule_id, req.body_as(ActiveIn).is_active
    )
    return json_response(_rule_out(rule))


@router.route(
    "GET",
    PROFILES,
    summary="The tenant's caller-ID profiles",
    tags=TAGS,
    responses={200: CallerIdProfileListOut, **error_responses(401)},
)
async def list_caller_id_profiles(req: ApiRequest) -> web.StreamResponse:
    profiles = await use_cases(req).compliance.profiles(req.require_tenant())
    return json_response(CallerIdProfileListOut(items=[_profile_out(p) for p in profiles]))


@router.route(
    "POST",
    PROFILES,
    summary="Add a caller-ID profile",
    tags=TAGS,
    body=CallerIdProfileIn,
    responses={201: CallerIdProfileOut, **error_responses(400, 401, 409, 413, 422)},
)
async def create_caller_id_profile(req: ApiRequest) -> web.StreamResponse:
    """Numbers are normalised to E.164 (422 naming `caller_id` or `pool[i]`); a second
    default or a name taken is 409."""
    body = req.body_as(CallerIdProfileIn)
    profile = await use_cases(req).compliance.create_profile(
        req.require_tenant(), body.model_dump()
    )
    return json_response(_profile_out(profile), 201)


@router.route(
    "PATCH",
    f"{PROFILES}/{{profile_id}}",
    summary="Activate or deactivate a caller-ID profile",
    tags=TAGS,
    body=ActiveIn,
    responses={200: CallerIdProfileOut, **error_responses(400, 401, 404, 413, 422)},
)
async def set_caller_id_profile_active(req: ApiRequest) -> web.StreamResponse:
    profile_id = req.path_uuid("profile_id", "caller-ID profile")
    profile = await use_cases(req).compliance.set_profile_active(
        req.require_tenant(), profile_id, req.body_as(ActiveIn).is_active
    )
    return json_response(_profile_out(profile))


@router.route(
    "POST",
    f"{API}/compliance/check",
    summary="Explain the pre-dial check for a number",
    tags=TAGS,
    body=ComplianceCheckIn,
    responses={200: ComplianceCheckOut, **error_responses(400, 401, 413, 422)},
)
async def check_number(req: ApiRequest) -> web.StreamResponse:
    """What a click-to-call to `number` would meet now (or `at`): allowed or the rule that
    refuses it and why, the warnings, and the caller ID it would present. Nothing is
    dialled and no rotation advances."""
    body = req.body_as(ComplianceCheckIn)
    number, verdict, choice = await use_cases(req).compliance.explain(
        req.require_tenant(), body.number, body.at
    )
    return json_response(
        ComplianceCheckOut(
            number=number,
            allowed=verdict.allowed,
            refusal=_finding_out(verdict.refusal) if verdict.refusal else None,
            warnings=[_finding_out(w) for w in verdict.warnings],
            caller_id=CallerIdChoiceOut(
                caller_id=choice.number, profile=choice.profile, reason=choice.reason
            )
            if choice
            else None,
        )
    )
