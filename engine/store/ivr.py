"""IVR menus (``ivr_menu`` + ``ivr_menu_option``) in and out of :class:`IvrMenu` values.

Column mapping (sql/0002_call_policy.sql):

* menu: ``greeting`` -> ``greeting_prompt``, ``variable`` -> ``variable_name``, the other
  scalar fields to the column of the same name; ``options`` -> one ``ivr_menu_option`` row
  per key (``position`` keeps their order); ``fallback`` -> the ``fallback_*`` columns.
* option: ``action``, ``prompt``; ``menu`` (submenu) -> ``target_menu_id``;
  ``target_type``/``target`` -> ``transfer_target_type``/``transfer_target`` (and
  ``routing_rule_id``, resolved by rule name or id, for ``routing_rule``); every other field
  that differs from its default (``next``, ``failure_prompt``, ``url``, ``routes``, ...) ->
  ``action_params``. ``params`` and ``routes`` are stored as ``[[key, value], ...]``:
  jsonb objects do not keep key order, and an export should read like the import.
* The fallback has no prompt column: its ``prompt`` lives in ``fallback_action_params``. A
  menu without an explicit fallback is stored as ``hangup`` with ``{}`` params; an explicit
  fallback always carries a ``"prompt"`` key (``null`` when it has none), which is how the
  two are told apart when loading.

Menus are replaced by name: saving upserts the named menus (bumping ``version``), replaces
their options (upsert by key, so option ids of unchanged keys survive for the DTMF history)
and leaves the tenant's other menus alone. The whole set is checked with
:func:`~engine.domain.ivr.check_menus` inside the same transaction.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Mapping
from typing import Any

import asyncpg

from engine.domain.ivr import (
    BY_CONDITIONS,
    InputMode,
    IvrAction,
    IvrMenu,
    IvrOption,
    MenuBook,
    SayMode,
    TransferTargetType,
    check_menus,
)
from engine.domain.netpolicy import OutboundPolicy, check_url
from engine.errors import Conflict, InvalidInput, NotFound
from engine.store.database import Connection, Database
from engine.store.read_cache import ReadCache
from engine.store.records import StoredIvrMenu

__all__ = ["IvrMenuRepository"]


# Option fields with a column of their own; the rest go to action_params.
_COLUMN_FIELDS = frozenset({"action", "prompt", "menu", "target_type", "target"})
_OPTION_DEFAULTS = IvrOption(IvrAction.HANGUP)
_PARAM_FIELDS = tuple(f.name for f in dataclasses.fields(IvrOption) if f.name not in _COLUMN_FIELDS)

_MAPPING_FIELDS = ("params", "routes")


def _params(option: IvrOption) -> dict[str, Any]:
    out: dict[str, Any] = {}
    names = list(_PARAM_FIELDS)
    # the target columns only hold the fields of their own action
    if option.action is not IvrAction.SUBMENU:
        names.append("menu")
    if option.action is not IvrAction.TRANSFER:
        names += ["target_type", "target"]
    for name in names:
        value = getattr(option, name)
        if value != getattr(_OPTION_DEFAULTS, name):
            # jsonb objects do not keep key order: mappings are stored as [key, value] pairs
            out[name] = [list(i) for i in value.items()] if isinstance(value, Mapping) else value
    return out


def _option(
    action: str,
    prompt: str | None,
    target_menu: str | None,
    target_type: str | None,
    target: str | None,
    params: Mapping[str, Any],
) -> IvrOption:
    fields: dict[str, Any] = {"menu": target_menu, "target": target, **params}
    for name in _MAPPING_FIELDS:
        if name in fields:
            fields[name] = dict(fields[name])
    kind = fields.get("target_type", target_type)
    fields["target_type"] = TransferTargetType(kind) if kind is not None else None
    if fields.get("say") is not None:
        fields["say"] = SayMode(fields["say"])
    return IvrOption(IvrAction(action), prompt=prompt, **fields)


_MENU_SELECT = """
SELECT m.id, m.version, m.name, m.description, m.greeting_prompt, m.invalid_prompt,
       m.timeout_prompt, m.timeout_ms, m.inter_digit_timeout_ms, m.max_retries, m.input_mode,
       m.input_length, m.terminator, m.variable_name, m.fallback_action,
       fm.name AS fallback_menu, m.fallback_transfer_target_type, m.fallback_transfer_target,
       m.fallback_action_params
FROM ivr_menu m
LEFT JOIN ivr_menu fm ON fm.tenant_id = m.tenant_id AND fm.id = m.fallback_target_menu_id
WHERE m.tenant_id = $1 AND m.is_active AND ($2::text IS NULL OR m.name = $2)
ORDER BY m.name
"""

_OPTION_SELECT = """
SELECT o.menu_id, o.digit, o.action, o.prompt, tm.name AS target_menu, o.transfer_target_type,
       o.transfer_target, o.action_params
FROM ivr_menu_option o
LEFT JOIN ivr_menu tm ON tm.tenant_id = o.tenant_id AND tm.id = o.target_menu_id
WHERE o.tenant_id = $1 AND o.menu_id = ANY($2::uuid[])
ORDER BY o.menu_id, o.position, o.digit
"""


async def _fetch(conn: Connection, tenant_id: uuid.UUID, name: str | None) -> list[StoredIvrMenu]:
    rows = await conn.fetch(_MENU_SELECT, tenant_id, name)
    if not rows:
        return []
    options: dict[uuid.UUID, dict[str, IvrOption]] = {row["id"]: {} for row in rows}
    for o in await conn.fetch(_OPTION_SELECT, tenant_id, list(options)):
        options[o["menu_id"]][o["digit"]] = _option(
            o["action"],
            o["prompt"],
            o["target_menu"],
            o["transfer_target_type"],
            o["transfer_target"],
            o["action_params"],
        )
    out = []
    for row in rows:
        params = dict(row["fallback_action_params"])
        fallback = None
        if "prompt" in params:
            prompt = params.pop("prompt")
            fallback = _option(
                row["fallback_action"],
                prompt,
                row["fallback_menu"],
                row["fallback_transfer_target_type"],
                row["fallback_transfer_target"],
                params,
            )
        menu = IvrMenu(
            row["name"],
            greeting=row["greeting_prompt"],
            options=options[row["id"]],
            timeout_ms=row["timeout_ms"],
            inter_digit_timeout_ms=row["inter_digit_timeout_ms"],
            max_retries=row["max_retries"],
            invalid_prompt=row["invalid_prompt"],
            timeout_prompt=row["timeout_prompt"],
            input_mode=InputMode(row["input_mode"]),
            input_length=row["input_length"],
            terminator=row["terminator"],
            variable=row["variable_name"],
            fallback=fallback,
            description=row["description"],
        )
        out.append(StoredIvrMenu(row["id"], row["version"], menu))
    return out


def _problem_field(path: tuple[str, ...]) -> str:
    return ".".join(path)


def _check_lookup_urls(menus: Mapping[str, IvrMenu], policy: OutboundPolicy) -> None:
    """Every ``http_lookup`` URL is one the tenant may request (scheme, and the host when
    it is an address; names are checked when resolved, at the call). InvalidInput names
    the option's ``url`` (``main.options.1.url``)."""
    for menu in menus.values():
        options = [(f"options.{key}", option) for key, option in menu.options.items()]
        if menu.fallback is not None:
            options.append(("fallback", menu.fallback))
        for where, option in options:
            if option.action is IvrAction.HTTP_LOOKUP and option.url is not None:
                check_url(option.url, policy, field=f"{menu.name}.{where}.url")


class IvrMenuRepository:
    """Menus in PostgreSQL. Every IVR call starts from the tenant's :meth:`book`, so books
    are cached for ``book_ttl`` seconds (:mod:`engine.store.read_cache`) and dropped at
    once when this process saves or deletes a menu; a change made by another process
    (``ctc ivr import``) reaches calls that start after at most ``book_ttl`` seconds and
    one read. A call keeps the book it started with."""

    def __init__(self, db: Database, *, book_ttl: float = 2.0) -> None:
        self._db = db
        self._books: ReadCache[uuid.UUID, MenuBook] = ReadCache(book_ttl)

    async def all(self, tenant_id: uuid.UUID) -> dict[str, IvrMenu]:
        """The tenant's active menus by name (in name order)."""
        return {s.menu.name: s.menu for s in await self.stored(tenant_id)}

    async def book(self, tenant_id: uuid.UUID) -> MenuBook:
        """The tenant's active menus with their ids and option ids (for DTMF rows); while
        PostgreSQL is away, the last book read (the journal keeps the calls' rows)."""

        async def read() -> MenuBook:
            async with self._db.connection() as conn:
                stored = await _fetch(conn, tenant_id, None)
                rows = await conn.fetch(
                    "SELECT o.id, o.digit, m.name FROM ivr_menu_option o "
                    "JOIN ivr_menu m ON m.tenant_id = o.tenant_id AND m.id = o.menu_id "
                    "WHERE o.tenant_id = $1 AND m.is_active",
                    tenant_id,
                )
            return MenuBook(
                menus={s.menu.name: s.menu for s in stored},
                menu_ids={s.menu.name: (s.id, s.version) for s in stored},
                option_ids={(r["name"], r["digit"]): r["id"] for r in rows},
            )

        return await self._books.get(tenant_id, read)

    async def stored(self, tenant_id: uuid.UUID) -> list[StoredIvrMenu]:
        async with self._db.connection() as conn:
            return await _fetch(conn, tenant_id, None)

    async def get(self, tenant_id: uuid.UUID, name: str) -> StoredIvrMenu:
        async with self._db.connection() as conn:
            found = await _fetch(conn, tenant_id, name)
        if not found:
            raise NotFound("ivr menu", name)
        return found[0]

    async def save(
        self, tenant_id: uuid.UUID, menus: Mapping[str, IvrMenu]
    ) -> dict[str, StoredIvrMenu]:
        """Create or replace ``menus`` (by name) in one transaction; the others stay.

        Raises :class:`InvalidInput` (``field`` = ``menu.options.1.menu``...) when the
        resulting set of menus fails :func:`check_menus` or a routing rule is unknown.
        """
        try:
            return await self._save(tenant_id, menus)
        finally:  # after the commit: a call starting meanwhile may have cached the old book
            self._books.clear()

    async def _save(
        self, tenant_id: uuid.UUID, menus: Mapping[str, IvrMenu]
    ) -> dict[str, StoredIvrMenu]:
        async with self._db.transaction() as conn:
            # one writer of a tenant's menus at a time, so the set check below holds
            allowed = await conn.fetchval(
                "SELECT outbound_allow_cidrs FROM tenant WHERE id = $1 FOR NO KEY UPDATE",
                tenant_id,
            )
            current = {s.menu.name: s.menu for s in await _fetch(conn, tenant_id, None)}
            problems = check_menus({**current, **menus}, placeholders_of=menus.keys())
            if problems:
                first = problems[0]
                raise InvalidInput(_problem_field(first.path), first.message)
            _check_lookup_urls(menus, OutboundPolicy.allowing(allowed or ()))
            created: set[str] = set()
            for name in menus:
                new = await conn.fetchval(
                    "INSERT INTO ivr_menu (tenant_id, name) VALUES ($1, $2) "
                    "ON CONFLICT (tenant_id, name) DO NOTHING RETURNING id",
                    tenant_id,
                    name,
                )
                if new is not None:
                    created.add(name)
            ids: dict[str, uuid.UUID] = {
                r["name"]: r["id"]
                for r in await conn.fetch(
                    "SELECT name, id FROM ivr_menu WHERE tenant_id = $1", tenant_id
                )
            }
            for name, menu in menus.items():
                await self._write_menu(conn, tenant_id, ids, menu, bump=name not in created)
            saved = await _fetch(conn, tenant_id, None)
        return {s.menu.name: s for s in saved if s.menu.name in menus}

    async def _targets(
        self,
        conn: Connection,
        tenant_id: uuid.UUID,
        ids: Mapping[str, uuid.UUID],
        option: IvrOption,
        field: str,
    ) -> tuple[uuid.UUID | None, uuid.UUID | None]:
        """(target_menu_id, routing_rule_id) of an option."""
        menu_id = ids[option.menu] if option.action is IvrAction.SUBMENU and option.menu else None
        rule_id = None
        if (
            option.action is IvrAction.TRANSFER
            and option.target_type is TransferTargetType.ROUTING_RULE
            and option.target != BY_CONDITIONS  # no rule named: chosen per call
        ):
            rule_id = await conn.fetchval(
                "SELECT id FROM call_routing_rule WHERE tenant_id = $1 "
                "AND (name = $2 OR id::text = $2) ORDER BY name = $2 DESC LIMIT 1",
                tenant_id,
                option.target,
            )
            if rule_id is None:
                raise InvalidInput(f"{field}.target", f"unknown routing rule {option.target!r}")
        return menu_id, rule_id

    async def _write_menu(
        self,
        conn: Connection,
        tenant_id: uuid.UUID,
        ids: Mapping[str, uuid.UUID],
        menu: IvrMenu,
        *,
        bump: bool,
    ) -> None:
        menu_id = ids[menu.name]
        fallback = menu.fallback
        fb_menu: uuid.UUID | None = None
        fb_rule: uuid.UUID | None = None
        fb_params: dict[str, Any] = {}
        if fallback is not None:
            fb_menu, fb_rule = await self._targets(
                conn, tenant_id, ids, fallback, f"{menu.name}.fallback"
            )
            fb_params = {"prompt": fallback.prompt, **_params(fallback)}
        transfer = fallback is not None and fallback.action is IvrAction.TRANSFER
        await conn.execute(
            "UPDATE ivr_menu SET description = $3, greeting_prompt = $4, invalid_prompt = $5, "
            "timeout_prompt = $6, timeout_ms = $7, inter_digit_timeout_ms = $8, "
            "max_retries = $9, input_mode = $10, input_length = $11, terminator = $12, "
            "variable_name = $13, fallback_action = $14, fallback_target_menu_id = $15, "
            "fallback_transfer_target_type = $16, fallback_transfer_target = $17, "
            "fallback_routing_rule_id = $18, fallback_action_params = $19, is_active = true, "
            "version = version + $20, updated_at = now() WHERE tenant_id = $1 AND id = $2",
            tenant_id,
            menu_id,
            menu.description,
            menu.greeting,
            menu.invalid_prompt,
            menu.timeout_prompt,
            menu.timeout_ms,
            menu.inter_digit_timeout_ms,
            menu.max_retries,
            menu.input_mode.value,
            menu.input_length,
            menu.terminator,
            menu.variable,
            (fallback.action if fallback is not None else IvrAction.HANGUP).value,
            fb_menu,
            fallback.target_type.value if transfer and fallback and fallback.target_type else None,
            fallback.target if transfer and fallback else None,
            fb_rule,
            fb_params,
            1 if bump else 0,
        )
        for position, (key, option) in enumerate(menu.options.items()):
            target_menu, rule = await self._targets(
                conn, tenant_id, ids, option, f"{menu.name}.options.{key}"
            )
            is_transfer = option.action is IvrAction.TRANSFER
            await conn.execute(
                "INSERT INTO ivr_menu_option (tenant_id, menu_id, digit, action, target_menu_id, "
                "transfer_target_type, transfer_target, routing_rule_id, action_params, prompt, "
                "position) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) "
                "ON CONFLICT (menu_id, digit) DO UPDATE SET action = EXCLUDED.action, "
                "target_menu_id = EXCLUDED.target_menu_id, "
                "transfer_target_type = EXCLUDED.transfer_target_type, "
                "transfer_target = EXCLUDED.transfer_target, "
                "routing_rule_id = EXCLUDED.routing_rule_id, "
                "action_params = EXCLUDED.action_params, prompt = EXCLUDED.prompt, "
                "position = EXCLUDED.position, updated_at = now()",
                tenant_id,
                menu_id,
                key,
                option.action.value,
                target_menu,
                option.target_type.value if is_transfer and option.target_type else None,
                option.target if is_transfer else None,
                rule,
                _params(option),
                option.prompt,
                position,
            )
        await conn.execute(
            "DELETE FROM ivr_menu_option WHERE tenant_id = $1 AND menu_id = $2 "
            "AND NOT (digit = ANY($3::text[]))",
            tenant_id,
            menu_id,
            list(menu.options),
        )

    async def delete(self, tenant_id: uuid.UUID, name: str) -> None:
        """Delete a menu and its options.

        :class:`Conflict` when another menu would break without it (a submenu, ``next``,
        a lookup route, or the only way back out), a routing rule points at it, or call
        history (DTMF rows) references it: deactivate or edit those first.
        """
        try:
            await self._delete(tenant_id, name)
        finally:
            self._books.clear()

    async def _delete(self, tenant_id: uuid.UUID, name: str) -> None:
        async with self._db.transaction() as conn:
            await conn.execute("SELECT 1 FROM tenant WHERE id = $1 FOR NO KEY UPDATE", tenant_id)
            current = {s.menu.name: s.menu for s in await _fetch(conn, tenant_id, None)}
            if name not in current:
                raise NotFound("ivr menu", name)
            rest = {n: m for n, m in current.items() if n != name}
            problems = check_menus(rest)
            if problems:
                first = problems[0]
                raise Conflict(
                    f"ivr menu {name!r} is in use: without it, "
                    f"{_problem_field(first.path)}: {first.message}"
                )
            try:
                async with conn.transaction():  # a savepoint, so the FK error is ours to map
                    await conn.execute(
                        "DELETE FROM ivr_menu WHERE tenant_id = $1 AND name = $2", tenant_id, name
                    )
            except asyncpg.ForeignKeyViolationError as exc:
                table = getattr(exc, "table_name", None) or "another row"
                raise Conflict(
                    f"ivr menu {name!r} is referenced by {table}; it cannot be deleted"
                ) from exc
