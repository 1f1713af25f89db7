"""Routing rules: list, read, create or replace (validated as ``ctc routing import``
validates a file), delete; the tenant's routing settings; and the explanation of the rule
a call would follow, without placing it."""

from __future__ import annotations

from datetime import UTC, datetime

from aiohttp import web

from engine.api.endpoints import ApiRequest, json_response, read_json_object, router
from engine.api.models import (
    RoutingExplainIn,
    RoutingExplainOut,
    RoutingRuleIn,
    RoutingRuleListOut,
    RoutingRuleOut,
    RoutingSettingsIO,
)
from engine.api.routes.common import API, error_responses, use_cases
from engine.app.routing_rules import Explanation
from engine.domain.routing import plan_summary
from engine.domain.routing_rules import CallFacts, RoutingSettings, RuleDefinition
from engine.domain.schedule import at_local
from engine.errors import InvalidInput
from engine.routing_yaml import rule_entry

__all__ = [
    "delete_routing_rule",
    "explain_routing",
    "get_routing_rule",
    "get_routing_settings",
    "list_routing_rules",
    "put_routing_rule",
    "put_routing_settings",
]

RULES = f"{API}/routing-rules"


def _rule_out(rule: RuleDefinition) -> RoutingRuleOut:
    if rule.id is None:
        raise RuntimeError(f"routing rule {rule.name!r} has no id: not a stored rule")
    return RoutingRuleOut(
        name=rule.name, id=rule.id, rule=RoutingRuleIn.model_validate(rule_entry(rule))
    )


@router.route(
    "GET",
    RULES,
    summary="List the tenant's routing rules, by priority",
    tags=("routing",),
    responses={200: RoutingRuleListOut, **error_responses(401)},
)
async def list_routing_rules(req: ApiRequest) -> web.StreamResponse:
    rules = await use_cases(req).routing.rules(req.require_tenant())
    return json_response(RoutingRuleListOut(items=[_rule_out(r) for r in rules]))


@router.route(
    "GET",
    f"{RULES}/{{name}}",
    summary="One routing rule",
    tags=("routing",),
    responses={200: RoutingRuleOut, **error_responses(401, 404)},
)
async def get_routing_rule(req: ApiRequest) -> web.StreamResponse:
    rule = await use_cases(req).routing.get(req.require_tenant(), req.raw.match_info["name"])
    return json_response(_rule_out(rule))


@router.route(
    "PUT",
    f"{RULES}/{{name}}",
    summary="Create or replace one routing rule",
    tags=("routing",),
    body_content={"application/json": {"schema": {"$ref": "#/components/schemas/RoutingRuleIn"}}},
    responses={200: RoutingRuleOut, 201: RoutingRuleOut, **error_responses(400, 401, 409, 422)},
)
async def put_routing_rule(req: ApiRequest) -> web.StreamResponse:
    """The body is one rule as in a routing YAML file (`ctc routing import`), validated by
    the same loader: unknown keys, wrong types, prefixes, countries, windows, time zones,
    the fields a strategy needs, and the menu, provider or fallback it names are 422
    naming the field; a second catch-all for a direction is 409. 201 when it is new."""
    name = req.raw.match_info["name"]
    _, data = await read_json_object(req.raw)  # 400 unless JSON, 422 unless an object
    saved, created = await use_cases(req).routing.save_data(req.require_tenant(), name, data)
    return json_response(_rule_out(saved), 201 if created else 200, {"Location": f"{RULES}/{name}"})


@router.route(
    "DELETE",
    f"{RULES}/{{name}}",
    summary="Delete a routing rule",
    tags=("routing",),
    responses={204: None, **error_responses(401, 404, 409)},
)
async def delete_routing_rule(req: ApiRequest) -> web.StreamResponse:
    """409 while an IVR menu or call history refers to it (set `active: false` instead)."""
    await use_cases(req).routing.delete(req.require_tenant(), req.raw.match_info["name"])
    return json_response(None, 204)


@router.route(
    "GET",
    f"{API}/routing-settings",
    summary="The tenant's routing settings (time zone, agents' wrap-up)",
    tags=("routing",),
    responses={200: RoutingSettingsIO, **error_responses(401)},
)
async def get_routing_settings(req: ApiRequest) -> web.StreamResponse:
    settings = await use_cases(req).routing.settings(req.require_tenant())
    body = RoutingSettingsIO(time_zone=settings.time_zone, wrap_up_s=settings.wrap_up_s)
    return json_response(body)


@router.route(
    "PUT",
    f"{API}/routing-settings",
    summary="Set the tenant's routing settings",
    tags=("routing",),
    body=RoutingSettingsIO,
    responses={200: RoutingSettingsIO, **error_responses(400, 401, 422)},
)
async def put_routing_settings(req: ApiRequest) -> web.StreamResponse:
    """An unknown time zone or a wrap-up outside 0..3600 s is 422 naming the field."""
    body = req.body_as(RoutingSettingsIO)
    settings = RoutingSettings(time_zone=body.time_zone, wrap_up_s=body.wrap_up_s)
    await use_cases(req).routing.save_settings(req.require_tenant(), settings)
    return json_response(body)


def explanation_out(explained: Explanation) -> RoutingExplainOut:
    decision, plan = explained.decision, explained.plan
    names = explained.names
    return RoutingExplainOut(
        rule=decision.rule.name if decision.rule is not None else None,
        reason=decision.reason,
        at=explained.facts.at,
        time_zone=explained.time_zone,
        considered=[
            {"rule": v.rule, "priority": v.priority, "applies": v.applies, "why": v.why}
            for v in decision.considered
        ],
        plan=plan_summary(plan) if plan is not None else None,
        attempts=[
            {
                "rule": names.get(a.rule_id) if a.rule_id else None,
                "targets": list(a.targets),
                "reason": a.reason,
            }
            for a in (plan.attempts if plan is not None else ())
        ],
        skipped=dict(plan.skipped) if plan is not None else {},
        menu=plan.menu if plan is not None else None,
    )


@router.route(
    "POST",
    f"{API}/routing/explain",
    summary="Which routing rule a call would follow, and what it would ring now",
    tags=("routing",),
    body=RoutingExplainIn,
    responses={200: RoutingExplainOut, **error_responses(400, 401, 422)},
)
async def explain_routing(req: ApiRequest) -> web.StreamResponse:
    """Nothing is placed. Agents not available now are left out of the plan (`skipped`)."""
    body = req.body_as(RoutingExplainIn)
    tenant = req.require_tenant()
    routing = use_cases(req).routing
    zone = (await routing.settings(tenant)).time_zone
    at = at_local(body.at, zone) if body.at is not None else datetime.now(UTC)
    if body.number is not None and not body.number.startswith("+"):
        raise InvalidInput("number", "an E.164 number: '+' and digits")
    facts = CallFacts(
        at=at,
        direction=body.direction,
        caller=body.caller,
        callee=body.number,
        dialed=body.dialed or body.number,
        ivr_choice=body.ivr_choice,
        skills=frozenset(body.skills),
    )
    return json_response(explanation_out(await routing.explain(tenant, facts)))
