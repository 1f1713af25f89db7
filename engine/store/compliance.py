"""The tenant's number lists (``phone_number_list``), compliance rules
(``call_compliance_rule``) and caller-ID profiles (``caller_id_profile``), as the domain's
:mod:`engine.domain.compliance` and :mod:`engine.domain.caller_id` values; and the counts
their decisions need (attempts to a number, legs a caller ID presented).

Rules and profiles are configuration that history names: they are deactivated, never
deleted. List entries are deleted (an entry removed is a number callable again).

Every click-to-call reads its tenant's active rules twice (the pre-dial check, then the
recording consent) and its caller-ID profiles once, so those are kept for a few seconds
(:mod:`engine.store.read_cache`): a rule or profile made or switched by this process is
seen at once, one changed by another engine on the database within ``cache_ttl``. List
entries are not kept: the number's look-up is one index read, and a number added to the
do-not-call list takes effect on the next call, whichever engine placed it.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime

import asyncpg

from engine.domain.caller_id import Profile, Rotation
from engine.domain.compliance import ListEntry, ListType, Rule, RuleAction, RuleType
from engine.domain.compliance import number_prefixes as prefixes_of
from engine.errors import Conflict, InvalidInput
from engine.store.database import Database, returned
from engine.store.guards import attempts_since
from engine.store.read_cache import ReadCache

__all__ = [
    "CallerIdProfileRepository",
    "ComplianceRuleRepository",
    "NumberListRepository",
]

_ENTRY = "id, list_type, phone_number, is_prefix, expires_at, reason, source"


def _entry(row: asyncpg.Record) -> ListEntry:
    return ListEntry(
        list_type=ListType(row["list_type"]),
        number=row["phone_number"],
        is_prefix=row["is_prefix"],
        expires_at=row["expires_at"],
        reason=row["reason"],
        source=row["source"],
        id=row["id"],
    )


class NumberListRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def matching(self, tenant_id: uuid.UUID, number: str, now: datetime) -> list[ListEntry]:
        """The unexpired entries that may cover ``number``: the number itself and every
        prefix entry it starts with (one index look-up)."""
        rows = await self._db.fetch(
            f"SELECT {_ENTRY} FROM phone_number_list WHERE tenant_id = $1 "
            "AND phone_number = ANY($2::text[]) AND (expires_at IS NULL OR expires_at > $3)",
            tenant_id,
            prefixes_of(number),
            now,
        )
        return [e for e in map(_entry, rows) if e.is_prefix or e.number == number]

    async def add(self, tenant_id: uuid.UUID, entries: Sequence[ListEntry]) -> list[ListEntry]:
        """Add ``entries`` in one transaction; an entry already listed (same list, number
        and kind) takes the new reason, source and expiry."""
        out: list[ListEntry] = []
        async with self._db.transaction() as conn:
            for e in entries:
                row = await conn.fetchrow(
                    "INSERT INTO phone_number_list (tenant_id, list_type, phone_number, "
                    "is_prefix, expires_at, reason, source) VALUES ($1, $2, $3, $4, $5, $6, $7) "
                    "ON CONFLICT (tenant_id, list_type, phone_number, is_prefix) DO UPDATE SET "
                    "expires_at = EXCLUDED.expires_at, reason = EXCLUDED.reason, "
                    f"source = EXCLUDED.source RETURNING {_ENTRY}",
                    tenant_id,
                    e.list_type.value,
                    e.number,
                    e.is_prefix,
                    e.expires_at,
                    e.reason,
                    e.source,
                )
                out.append(_entry(returned(row, "INSERT INTO phone_number_list")))
        return out

    async def remove(self, tenant_id: uuid.UUID, entry_id: uuid.UUID) -> bool:
        status = await self._db.execute(
            "DELETE FROM phone_number_list WHERE tenant_id = $1 AND id = $2", tenant_id, entry_id
        )
        return status.endswith(" 1")

    async def entries(
        self,
        tenant_id: uuid.UUID,
        list_type: ListType | None = None,
        *,
        number: str | None = None,
        limit: int = 1000,
    ) -> list[ListEntry]:
        """The tenant's entries (of one list, or covering ``number``), newest first."""
        rows = await self._db.fetch(
            f"SELECT {_ENTRY} FROM phone_number_list WHERE tenant_id = $1 "
            "AND ($2::text IS NULL OR list_type = $2) "
            "AND ($3::text[] IS NULL OR phone_number = ANY($3)) "
            "ORDER BY created_at DESC, id LIMIT $4",
            tenant_id,
            list_type.value if list_type else None,
            prefixes_of(number) if number else None,
            limit,
        )
        found = map(_entry, rows)
        return [e for e in found if number is None or e.is_prefix or e.number == number]


_RULE = (
    "id, name, description, rule_type, is_active, priority, country_code, timezone, "
    "allowed_start, allowed_end, allowed_days, max_attempts_per_day, params, action"
)


def _rule(row: asyncpg.Record) -> Rule:
    days = row["allowed_days"]
    return Rule(
        name=row["name"],
        rule_type=RuleType(row["rule_type"]),
        priority=row["priority"],
        action=RuleAction(row["action"]),
        country_code=row["country_code"],
        timezone=row["timezone"],
        allowed_start=row["allowed_start"],
        allowed_end=row["allowed_end"],
        allowed_days=tuple(days) if days is not None else None,
        max_attempts_per_day=row["max_attempts_per_day"],
        params=row["params"] or {},
        description=row["description"],
        is_active=row["is_active"],
        id=row["id"],
    )


class ComplianceRuleRepository:
    def __init__(self, db: Database, *, cache_ttl: float = 5.0) -> None:
        self._db = db
        # each tenant's active rules (kept a few seconds: see the module)
        self._active: ReadCache[uuid.UUID, tuple[Rule, ...]] = ReadCache(cache_ttl)

    async def rules(self, tenant_id: uuid.UUID, *, active_only: bool = True) -> list[Rule]:
        """The tenant's rules in evaluation order (priority, then name); the active ones
        are kept a few seconds (see the module)."""
        if not active_only:
            return await self._read(tenant_id, active_only=False)

        async def read() -> tuple[Rule, ...]:
            return tuple(await self._read(tenant_id, active_only=True))

        return list(await self._active.get(tenant_id, read))

    async def _read(self, tenant_id: uuid.UUID, *, active_only: bool) -> list[Rule]:
        rows = await self._db.fetch(
            f"SELECT {_RULE} FROM call_compliance_rule WHERE tenant_id = $1 "
            "AND (is_active OR NOT $2) ORDER BY priority, name",
            tenant_id,
            active_only,
        )
        return [_rule(r) for r in rows]

    async def create(self, tenant_id: uuid.UUID, rule: Rule) -> Rule:
        try:
            row = await self._db.fetchrow(
                "INSERT INTO call_compliance_rule (tenant_id, name, description, rule_type, "
                "is_active, priority, country_code, timezone, allowed_start, allowed_end, "
                "allowed_days, max_attempts_per_day, params, action) VALUES "
                f"($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) RETURNING {_RULE}",
                tenant_id,
                rule.name,
                rule.description,
                rule.rule_type.value,
                rule.is_active,
                rule.priority,
                rule.country_code,
                rule.timezone,
                rule.allowed_start,
                rule.allowed_end,
                list(rule.allowed_days) if rule.allowed_days is not None else None,
                rule.max_attempts_per_day,
                dict(rule.params),
                rule.action.value,
            )
        except asyncpg.UniqueViolationError as exc:
            raise Conflict(f"a compliance rule named {rule.name!r} exists") from exc
        finally:
            self._active.clear()  # this process sees the change at once
        return _rule(returned(row, "INSERT INTO call_compliance_rule"))

    async def set_active(
        self, tenant_id: uuid.UUID, rule_id: uuid.UUID, active: bool
    ) -> Rule | None:
        row = await self._db.fetchrow(
            f"UPDATE call_compliance_rule SET is_active = $3, updated_at = now() "
            f"WHERE tenant_id = $1 AND id = $2 RETURNING {_RULE}",
            tenant_id,
            rule_id,
            active,
        )
        self._active.clear()  # this process sees the change at once
        return None if row is None else _rule(row)

    async def attempts_since(self, tenant_id: uuid.UUID, number: str, since: datetime) -> int:
        """Calls placed to ``number`` since ``since``
        (:func:`engine.store.guards.attempts_since`)."""
        return await attempts_since(self._db, tenant_id, number, since)


_PROFILE = (
    "id, name, caller_id, is_default, provider_id, match_prefix, priority, rotation, pool, "
    "is_active, daily_cap"
)


def _profile(row: asyncpg.Record) -> Profile:
    return Profile(
        name=row["name"],
        caller_id=row["caller_id"],
        rotation=Rotation(row["rotation"]),
        pool=tuple(str(n) for n in row["pool"] or ()),
        priority=row["priority"],
        match_prefix=row["match_prefix"],
        provider_id=row["provider_id"],
        is_default=row["is_default"],
        is_active=row["is_active"],
        daily_cap=row["daily_cap"],
        id=row["id"],
    )


class CallerIdProfileRepository:
    def __init__(self, db: Database, *, cache_ttl: float = 5.0) -> None:
        self._db = db
        # each tenant's active profiles (kept a few seconds: see the module)
        self._active: ReadCache[uuid.UUID, tuple[Profile, ...]] = ReadCache(cache_ttl)

    async def profiles(self, tenant_id: uuid.UUID, *, active_only: bool = True) -> list[Profile]:
        """The tenant's profiles (priority, then name); the active ones are kept a few
        seconds (see the module)."""
        if not active_only:
            return await self._read(tenant_id, active_only=False)

        async def read() -> tuple[Profile, ...]:
            return tuple(await self._read(tenant_id, active_only=True))

        return list(await self._active.get(tenant_id, read))

    async def _read(self, tenant_id: uuid.UUID, *, active_only: bool) -> list[Profile]:
        rows = await self._db.fetch(
            f"SELECT {_PROFILE} FROM caller_id_profile WHERE tenant_id = $1 "
            "AND (is_active OR NOT $2) ORDER BY priority, name",
            tenant_id,
            active_only,
        )
        return [_profile(r) for r in rows]

    async def create(self, tenant_id: uuid.UUID, profile: Profile) -> Profile:
        try:
            row = await self._db.fetchrow(
                "INSERT INTO caller_id_profile (tenant_id, name, caller_id, is_default, "
                "provider_id, match_prefix, priority, rotation, pool, is_active, daily_cap) "
                f"VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING {_PROFILE}",
                tenant_id,
                profile.name,
                profile.caller_id,
                profile.is_default,
                profile.provider_id,
                profile.match_prefix,
                profile.priority,
                profile.rotation.value,
                list(profile.pool),
                profile.is_active,
                profile.daily_cap,
            )
        except asyncpg.UniqueViolationError as exc:
            raise Conflict(
                f"a caller-ID profile named {profile.name!r} (or a second default) exists"
            ) from exc
        except asyncpg.ForeignKeyViolationError as exc:
            raise InvalidInput("provider_id", f"unknown provider {profile.provider_id}") from exc
        finally:
            self._active.clear()  # this process sees the change at once
        return _profile(returned(row, "INSERT INTO caller_id_profile"))

    async def set_active(
        self, tenant_id: uuid.UUID, profile_id: uuid.UUID, active: bool
    ) -> Profile | None:
        row = await self._db.fetchrow(
            "UPDATE caller_id_profile SET is_active = $3, updated_at = now() "
            f"WHERE tenant_id = $1 AND id = $2 RETURNING {_PROFILE}",
            tenant_id,
            profile_id,
            active,
        )
        self._active.clear()  # this process sees the change at once
        return None if row is None else _profile(row)

    async def next_position(self, tenant_id: uuid.UUID, profile_id: uuid.UUID) -> int:
        """Take the profile's rotation position for one leg (shared by every engine on the
        database: each leg gets its own)."""
        position: int | None = await self._db.fetchval(
            "UPDATE caller_id_profile SET rotation_cursor = rotation_cursor + 1 "
            "WHERE tenant_id = $1 AND id = $2 RETURNING rotation_cursor - 1",
            tenant_id,
            profile_id,
        )
        return position or 0

    async def presented_since(
        self, tenant_id: uuid.UUID, numbers: Iterable[str], since: datetime
    ) -> dict[str, int]:
        """How many sessions since ``since`` presented each of ``numbers``."""
        rows = await self._db.fetch(
            "SELECT caller_id, count(*) AS n FROM click_to_call_session WHERE tenant_id = $1 "
            "AND caller_id = ANY($2::text[]) AND created_at >= $3 AND status <> 'rejected' "
            "GROUP BY caller_id",
            tenant_id,
            list(numbers),
            since,
        )
        return {r["caller_id"]: r["n"] for r in rows}
