"""Routing rules (``call_routing_rule``) as :class:`~engine.domain.routing.RoutingRule`.

A rule comes with what its plan needs from the transfers it already made (its
``call_transfer`` rows, one per member offered): how many (``offers``, the round-robin
offset) and when each member was last offered (``last_offered``, for ``least_recent``).
``ivr_menu_id`` is resolved to the menu's name (None when that menu is not active).

The same rows as the tenant manages them (:class:`~engine.domain.routing_rules.
RuleDefinition`, names instead of ids), and the tenant's routing settings
(the schedules' default zone, ``tenant.timezone``; the agents' wrap-up,
``tenant_routing_setting``). A row
written before rules had several conditions (``match_type`` caller_prefix, dialed_number
or skill with its ``match_value``) reads as that one condition.

Every click-to-call reads its tenant's settings twice (its agent's reservation, its
agent's wrap-up at the end), so they are kept for a few seconds
(:mod:`engine.store.read_cache`): settings saved by this process are seen at once, ones
saved by another engine on the database within ``cache_ttl``.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import date, datetime, time
from typing import Any

import asyncpg

from engine.domain.routing import MAX_RULES, RoutingRule, Strategy
from engine.domain.routing_rules import (
    CONDITION_KEYS,
    Conditions,
    RoutingSettings,
    RuleDefinition,
)
from engine.domain.schedule import Schedule, Window
from engine.errors import Conflict, InvalidInput, NotFound
from engine.store.database import Connection, Database, returned
from engine.store.read_cache import ReadCache

__all__ = ["RoutingRepository"]

_SELECT = """
SELECT r.id, r.name, r.strategy, r.target, r.members, r.ring_timeout_s, r.fallback_rule_id,
       r.is_active, r.schedule, r.conditions, r.match_type, r.match_value,
       m.name AS ivr_menu,
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
        schedule=_schedule(row["schedule"]),
        conditions=Conditions.from_dict(_conditions(row)).as_tuples(),
    )


def _conditions(row: asyncpg.Record) -> dict[str, list[str]]:
    """The row's conditions; a row written before there were several (``match_type``
    caller_prefix, dialed_number or skill with its ``match_value``) has that one."""
    conditions = {k: v for k, v in (row["conditions"] or {}).items() if k in CONDITION_KEYS}
    legacy = row["match_type"]
    if legacy in ("caller_prefix", "dialed_number", "skill") and row["match_value"]:
        conditions.setdefault(legacy, [row["match_value"]])
    return conditions


def _schedule(data: Mapping[str, Any] | None) -> Schedule | None:
    """The ``schedule`` column: {"timezone", "windows": [{"days", "start", "end"}],
    "holidays": ["YYYY-MM-DD"]}."""
    if not data:
        return None
    windows = tuple(
        Window(tuple(w["days"]), time.fromisoformat(w["start"]), time.fromisoformat(w["end"]))
        for w in data.get("windows") or ()
    )
    holidays = tuple(date.fromisoformat(d) for d in data.get("holidays") or ())
    zone = data.get("timezone") or data.get("time_zone")
    return Schedule(windows, zone, holidays)


def _schedule_column(schedule: Schedule | None) -> dict[str, Any] | None:
    if schedule is None:
        return None
    out: dict[str, Any] = {
        "windows": [
            {"days": list(w.days), "start": f"{w.start:%H:%M}", "end": f"{w.end:%H:%M}"}
            for w in schedule.windows
        ],
        "holidays": [d.isoformat() for d in schedule.holidays],
    }
    if schedule.time_zone:
        out["timezone"] = schedule.time_zone
    return out


_DEFINITIONS = """
SELECT r.*, m.name AS ivr_menu, p.name AS provider, f.name AS fallback
FROM call_routing_rule r
LEFT JOIN ivr_menu m ON m.tenant_id = r.tenant_id AND m.id = r.ivr_menu_id
LEFT JOIN voip_provider p ON p.tenant_id = r.tenant_id AND p.id = r.provider_id
LEFT JOIN call_routing_rule f ON f.tenant_id = r.tenant_id AND f.id = r.fallback_rule_id
WHERE r.tenant_id = $1
"""


def _definition(row: asyncpg.Record) -> RuleDefinition:
    members = tuple(m for m in (_member(v) for v in row["members"] or ()) if m)
    return RuleDefinition(
        id=row["id"],
        name=row["name"],
        strategy=Strategy(row["strategy"]),
        priority=row["priority"],
        active=row["is_active"],
        direction=row["direction"],
        description=row["description"],
        conditions=Conditions.from_dict(_conditions(row)),
        schedule=_schedule(row["schedule"]),
        target=row["target"],
        members=members,
        ivr_menu=row["ivr_menu"],
        provider=row["provider"],
        ring_timeout_s=row["ring_timeout_s"],
        fallback=row["fallback"],
    )


class RoutingRepository:
    def __init__(self, db: Database, *, cache_ttl: float = 5.0) -> None:
        self._db = db
        self._settings: ReadCache[uuid.UUID, RoutingSettings] = ReadCache(cache_ttl)

    def forget_settings(self) -> None:
        """Forget the settings read so far (this process changed a tenant's zone)."""
        self._settings.clear()

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

    # -- the rules as the tenant manages them --------------------------------------------------

    async def definitions(self, tenant_id: uuid.UUID) -> list[RuleDefinition]:
        """Every rule of the tenant, by priority then name."""
        rows = await self._db.fetch(f"{_DEFINITIONS} ORDER BY r.priority, r.name", tenant_id)
        return [_definition(r) for r in rows]

    async def definition(self, tenant_id: uuid.UUID, name: str) -> RuleDefinition:
        """The tenant's rule ``name`` (NotFound)."""
        row = await self._db.fetchrow(f"{_DEFINITIONS} AND r.name = $2", tenant_id, name)
        if row is None:
            raise NotFound("routing rule", name)
        return _definition(row)

    async def save(
        self, tenant_id: uuid.UUID, rules: list[RuleDefinition]
    ) -> dict[str, tuple[RuleDefinition, bool]]:
        """Create or replace ``rules`` (by name) at once: name -> (stored, created). A menu,
        provider or fallback that names nothing of the tenant's is InvalidInput naming
        ``<rule>.<field>``; a second catch-all for a direction is a Conflict."""
        created: dict[str, bool] = {}
        async with self._db.transaction() as conn:
            ids: dict[str, uuid.UUID] = {}
            for rule in rules:
                ids[rule.name], created[rule.name] = await self._upsert(conn, tenant_id, rule)
            for rule in rules:
                fallback = None
                if rule.fallback is not None:
                    fallback = ids.get(rule.fallback) or await conn.fetchval(
                        "SELECT id FROM call_routing_rule WHERE tenant_id = $1 AND name = $2",
                        tenant_id,
                        rule.fallback,
                    )
                    if fallback is None:
                        raise InvalidInput(
                            f"{rule.name}.fallback", f"unknown routing rule {rule.fallback!r}"
                        )
                await conn.execute(
                    "UPDATE call_routing_rule SET fallback_rule_id = $3 "
                    "WHERE tenant_id = $1 AND id = $2",
                    tenant_id,
                    ids[rule.name],
                    fallback,
                )
        return {
            rule.name: (await self.definition(tenant_id, rule.name), created[rule.name])
            for rule in rules
        }

    async def _upsert(
        self, conn: Connection, tenant_id: uuid.UUID, rule: RuleDefinition
    ) -> tuple[uuid.UUID, bool]:
        menu_id = provider_id = None
        if rule.ivr_menu is not None:
            menu_id = await conn.fetchval(
                "SELECT id FROM ivr_menu WHERE tenant_id = $1 AND name = $2",
                tenant_id,
                rule.ivr_menu,
            )
            if menu_id is None:
                raise InvalidInput(f"{rule.name}.ivr_menu", f"unknown IVR menu {rule.ivr_menu!r}")
        if rule.provider is not None:
            provider_id = await conn.fetchval(
                "SELECT id FROM voip_provider WHERE tenant_id = $1 AND name = $2",
                tenant_id,
                rule.provider,
            )
            if provider_id is None:
                raise InvalidInput(f"{rule.name}.provider", f"unknown provider {rule.provider!r}")
        try:
            row = await conn.fetchrow(
                "INSERT INTO call_routing_rule (tenant_id, name, description, priority, "
                "is_active, direction, match_type, match_value, conditions, schedule, strategy, "
                "target, members, ivr_menu_id, provider_id, ring_timeout_s) "
                "VALUES ($1, $2, $3, $4, $5, $6, $7, NULL, $8, $9, $10, $11, $12, $13, $14, $15) "
                "ON CONFLICT (tenant_id, name) DO UPDATE SET description = EXCLUDED.description, "
                "priority = EXCLUDED.priority, is_active = EXCLUDED.is_active, "
                "direction = EXCLUDED.direction, match_type = EXCLUDED.match_type, "
                "match_value = NULL, conditions = EXCLUDED.conditions, "
                "schedule = EXCLUDED.schedule, strategy = EXCLUDED.strategy, "
                "target = EXCLUDED.target, members = EXCLUDED.members, "
                "ivr_menu_id = EXCLUDED.ivr_menu_id, provider_id = EXCLUDED.provider_id, "
                "ring_timeout_s = EXCLUDED.ring_timeout_s, updated_at = now() "
                "RETURNING id, (xmax = 0) AS created",
                tenant_id,
                rule.name,
                rule.description,
                rule.priority,
                rule.active,
                rule.direction,
                rule.match_type,
                rule.conditions.as_dict(),
                _schedule_column(rule.schedule),
                rule.strategy.value,
                rule.target,
                list(rule.members),
                menu_id,
                provider_id,
                rule.ring_timeout_s,
            )
        except asyncpg.UniqueViolationError as exc:
            if exc.constraint_name != "call_routing_rule_one_default_idx":
                raise Conflict(f"routing rule {rule.name!r}: {exc}") from None
            raise Conflict(
                f"routing rule {rule.name!r}: the tenant already has an active catch-all "
                f"(no match, no schedule) for {rule.direction} calls"
            ) from None
        stored = returned(row, "INSERT INTO call_routing_rule")
        return stored["id"], stored["created"]

    async def delete(self, tenant_id: uuid.UUID, name: str) -> None:
        """Delete the tenant's rule ``name`` (NotFound); Conflict while an IVR option or
        call history refers to it (deactivate it instead). Rules falling back to it then
        fall back to nothing."""
        try:
            done = await self._db.execute(
                "DELETE FROM call_routing_rule WHERE tenant_id = $1 AND name = $2",
                tenant_id,
                name,
            )
        except asyncpg.ForeignKeyViolationError:
            raise Conflict(
                f"routing rule {name!r} is in use by an IVR menu or call history; "
                "set active: false instead"
            ) from None
        if done.endswith(" 0"):
            raise NotFound("routing rule", name)

    async def settings(self, tenant_id: uuid.UUID) -> RoutingSettings:
        """The tenant's routing settings (the defaults until it sets any); kept a few
        seconds (see the module)."""

        async def read() -> RoutingSettings:
            row = await self._db.fetchrow(
                "SELECT t.timezone AS time_zone, coalesce(s.wrap_up_s, 0) AS wrap_up_s "
                "FROM tenant t LEFT JOIN tenant_routing_setting s ON s.tenant_id = t.id "
                "WHERE t.id = $1",
                tenant_id,
            )
            return RoutingSettings() if row is None else RoutingSettings(**dict(row))

        return await self._settings.get(tenant_id, read)

    async def save_settings(self, tenant_id: uuid.UUID, settings: RoutingSettings) -> None:
        # the zone is the tenant's own (its stats' buckets read it too), one statement
        await self._db.execute(
            "WITH z AS (UPDATE tenant SET timezone = $2 WHERE id = $1) "
            "INSERT INTO tenant_routing_setting (tenant_id, wrap_up_s) VALUES ($1, $3) "
            "ON CONFLICT (tenant_id) DO UPDATE SET wrap_up_s = EXCLUDED.wrap_up_s, "
            "updated_at = now()",
            tenant_id,
            settings.time_zone,
            settings.wrap_up_s,
        )
        self._settings.clear()  # this process sees the change at once

    async def _one(self, query: str, *args: Any) -> RoutingRule | None:
        row = await self._db.fetchrow(query, *args)
        return None if row is None else _rule(row)
