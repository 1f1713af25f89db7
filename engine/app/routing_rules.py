"""The routing rules use case: manage a tenant's rules and settings, and explain a decision.

The API's body for one rule and an entry of a ``ctc routing import`` file go through the
same loader (:mod:`engine.routing_yaml`), so both accept exactly the same rules; a problem
is InvalidInput naming the field (the API answers 422 with it). :meth:`explain` says which
rule a call would follow and what that rule would ring now (agents not available left
out), without placing a call.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Mapping
from typing import Any

from engine.app.agent_states import AgentStateService
from engine.domain.routing import RoutePlan, plan_route
from engine.domain.routing_rules import (
    CallFacts,
    RoutingDecision,
    RoutingSettings,
    RuleDefinition,
    select_rule,
)
from engine.errors import ConfigError, InvalidInput
from engine.routing_yaml import RoutingDocument, rule_from_data
from engine.store.records import Tenant
from engine.store.repositories import Store
from engine.yaml_lines import YamlSource

__all__ = ["Explanation", "RoutingRuleService"]


@dataclasses.dataclass(frozen=True, slots=True)
class Explanation:
    facts: CallFacts
    time_zone: str  # the tenant's (schedules naming none are read in it)
    decision: RoutingDecision
    plan: RoutePlan | None  # what the chosen rule would ring now (None: no rule)
    names: dict[uuid.UUID, str]  # the plan's rules by id


def _field_error(exc: ConfigError | InvalidInput, prefix: str = "") -> InvalidInput:
    field = exc.field or ""
    if prefix and field.startswith(prefix):
        field = field[len(prefix) :]
    return InvalidInput(field or "body", exc.reason)


class RoutingRuleService:
    def __init__(self, store: Store, agent_states: AgentStateService) -> None:
        self._store = store
        self._agents = agent_states

    async def rules(self, tenant: Tenant) -> list[RuleDefinition]:
        """Every rule of the tenant, by priority then name."""
        return await self._store.routing.definitions(tenant.id)

    async def get(self, tenant: Tenant, name: str) -> RuleDefinition:
        return await self._store.routing.definition(tenant.id, name)

    async def save_data(
        self, tenant: Tenant, name: str, data: Mapping[str, Any]
    ) -> tuple[RuleDefinition, bool]:
        """Create or replace rule ``name`` from its plain data (a YAML entry's shape);
        (the stored rule, whether it is new). InvalidInput names the field in ``data``."""
        try:
            rule = rule_from_data(name, dict(data), YamlSource(file=None), (), name_loc=("name",))
        except ConfigError as exc:
            raise _field_error(exc) from None
        try:
            saved = await self._store.routing.save(tenant.id, [rule])
        except InvalidInput as exc:
            raise _field_error(exc, f"{name}.") from None
        return saved[name]

    async def import_document(
        self, tenant: Tenant, document: RoutingDocument
    ) -> dict[str, tuple[RuleDefinition, bool]]:
        """Create or replace the document's rules (others stay) and its settings, if any.
        InvalidInput names ``<rule>.<field>`` for a name that refers to nothing."""
        if document.settings is not None:
            await self._store.routing.save_settings(tenant.id, document.settings)
        if not document.rules:
            return {}
        return await self._store.routing.save(tenant.id, list(document.rules.values()))

    async def delete(self, tenant: Tenant, name: str) -> None:
        await self._store.routing.delete(tenant.id, name)

    async def settings(self, tenant: Tenant) -> RoutingSettings:
        return await self._store.routing.settings(tenant.id)

    async def save_settings(self, tenant: Tenant, settings: RoutingSettings) -> RoutingSettings:
        await self._store.routing.save_settings(tenant.id, settings)
        return settings

    async def explain(self, tenant: Tenant, facts: CallFacts) -> Explanation:
        """The rule the call would follow and what it would ring now; nothing is placed."""
        settings = await self._store.routing.settings(tenant.id)
        rules = await self._store.routing.definitions(tenant.id)
        decision = select_rule(rules, facts, settings.time_zone)
        plan, names = None, {}
        if decision.rule is not None:
            first, chain = await self._store.routing.chain(tenant.id, decision.rule.name)
            names = {r.id: r.name for r in chain.values()}
            if first is not None:
                members = {m for r in chain.values() for m in (*r.members, r.target) if m}
                plan = plan_route(
                    chain,
                    first,
                    unavailable=await self._agents.unavailable(tenant.id, members),
                    at=facts.at,
                    zone=settings.time_zone,
                )
        return Explanation(facts, settings.time_zone, decision, plan, names)
