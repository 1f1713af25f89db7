"""Routing rules (``call_routing_rule``) as :class:`~engine.domain.routing.RoutingRule`.

A rule comes with what its plan needs from the transfers it already made (its
``call_transfer`` rows, one per member offered): how many (``offers``, the round-robin
offset) and when each member was last offered (``last_offered``, for ``least_recent``).
``ivr_menu_id`` is resolved to the menu's name (None when that menu is not active).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import asyncpg

from engine.domain.routing import MAX_RULES, RoutingRule, Strategy
from engine.store.database import Database

__all__ = ["RoutingRepository"]

_SELECT = """
SELECT r.id, r.name, r.strategy, r.target, r.members, r.ring_timeout_s, r.fallback_rule_id,
       r.is_active, m.name AS ivr_menu,
       (SELECT count(*) FROM call_transfer t
        WHERE t.tenant_id = r.tenant_id AND t.routing_rule_id = r.id) AS offers,
       (SELECT coalesce(jsonb_object_agg(o.target, o.last_at), '{}'::jsonb) FROM (
            SELECT t.target, max(t.requested_at) AS last_at FROM call_transfer t
            WHERE t.tenant_id = r.tenant_id AND t.routing_rule_id = r.id
              AND t.target IS NOT NULL
            GROUP BY t.target) o) AS last_offered
FROM call_routing_rule r
LEFT JOIN ivr_menu m ON m.tenant_id = r.tenant_id AND m.id = r.ivr_menu_id AND m.is_active
WHERE r.tenant_id = $1
"""


def _member(value: Any) -> str:
    if isinstance(value, dict):  # {"target": "agent1", ...}
        return str(value.get("target") or value.get("number") or value.get("endpoint") or "")
    return str(value)


def _rule(row: asyncpg.Record) -> RoutingRule:
    # jsonb keeps the timestamps as ISO text
    last = {str(m): datetime.fromisoformat(w) for m, w in (row["last_offered"] or {}).items()}
    members = tuple(m for m in (_member(v) for v in row["members"] or ()) if m)
    return RoutingRule(
        id=row["id"],
        name=row["name"],
        strategy=Strategy(row["strategy"]),
        target=row["target"],
        members=members,
        ring_timeout_s=row["ring_timeout_s"],
        fallback_rule_id=row["fallback_rule_id"],
        ivr_menu=row["ivr_menu"],
        active=row["is_active"],
        offers=row["offers"],
        last_offered=last,
    )


class RoutingRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def get(self, tenant_id: uuid.UUID, rule_id: uuid.UUID) -> RoutingRule | None:
        """The tenant's rule ``rule_id`` with its offer history; None if there is none."""
        return await self._one(f"{_SELECT} AND r.id = $2", tenant_id, rule_id)

    async def find(self, tenant_id: uuid.UUID, ref: str) -> RoutingRule | None:
        """The tenant's rule named ``ref`` (or whose id is ``ref``), as IVR options name it."""
        return await self._one(
            f"{_SELECT} AND (r.name = $2 OR r.id::text = $2) ORDER BY r.name = $2 DESC LIMIT 1",
            tenant_id,
            ref,
        )

    async def chain(
        self, tenant_id: uuid.UUID, ref: str, *, max_rules: int = MAX_RULES
    ) -> tuple[uuid.UUID | None, dict[uuid.UUID, RoutingRule]]:
        """The rule ``ref`` names and its fallbacks (at most ``max_rules``, each once):
        (its id or None when unknown, rules by id) for :func:`plan_route`."""
        first = await self.find(tenant_id, ref)
        if first is None:
            return None, {}
        rules = {first.id: first}
        following = first.fallback_rule_id
        while following is not None and following not in rules and len(rules) < max_rules:
            rule = await self.get(tenant_id, following)
            if rule is None:
                break
            rules[rule.id] = rule
            following = rule.fallback_rule_id
        return first.id, rules

    async def _one(self, query: str, *args: Any) -> RoutingRule | None:
        row = await self._db.fetchrow(query, *args)
        return None if row is None else _rule(row)
