"""The IVR menu use cases: list, get, save (validated) and delete a tenant's menus.

A menu sent to the API is validated by the same loader as a menus YAML file
(:mod:`engine.ivr_yaml`, used by ``ctc ivr import``), so both accept exactly the same
menus. The API's body is one menu as JSON; :meth:`IvrMenuService.save_json` splices it into
a YAML document beside the tenant's other menus (JSON is YAML's flow style), so the loader
sees duplicate keys and checks the targets against the other menus, and names each problem
by its field in the body.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

import yaml

from engine.domain.ivr import IvrMenu
from engine.errors import ConfigError, ConfigErrors, InvalidInput, InvalidInputs
from engine.ivr_yaml import dump_menus, load_menus
from engine.store.records import StoredIvrMenu, Tenant
from engine.store.repositories import Store

__all__ = ["IvrMenuService", "menu_entries"]


def menu_entries(menus: Mapping[str, IvrMenu]) -> dict[str, Any]:
    """Menus as the plain data of their YAML entries (the shape the API's PUT accepts)."""
    if not menus:
        return {}
    entries: dict[str, Any] = yaml.safe_load(dump_menus(menus))["menus"]
    return entries


def _body_field(name: str, field: str | None) -> str:
    """A problem's field relative to the menu's body (``options.1.menu``)."""
    for prefix in (f"menus.{name}", name):
        if field == prefix:
            return "name"
        if field is not None and field.startswith(prefix + "."):
            return field[len(prefix) + 1 :]
    return field or "body"


# A character beyond the BMP escaped in JSON is a surrogate pair (backslash-u d83d,
# backslash-u de00); YAML decodes each half on its own, into two lone surrogates that
# PostgreSQL cannot store. YAML's own escape for it is one backslash-U 0001F600. An even
# number of backslashes before "u" is text (an escaped backslash), not an escape.
_SURROGATE_PAIR = re.compile(
    r"(?<!\\)((?:\\\\)*)\\u([dD][89abAB][0-9a-fA-F]{2})\\u([dD][c-fC-F][0-9a-fA-F]{2})"
)


def _yaml_escapes(json_text: str) -> str:
    """JSON text that YAML reads as the same strings (surrogate pairs as one \\U escape)."""

    def one(match: re.Match[str]) -> str:
        high, low = int(match[2], 16), int(match[3], 16)
        code = 0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00)
        return f"{match[1]}\\U{code:08X}"

    return _SURROGATE_PAIR.sub(one, json_text)


class IvrMenuService:
    def __init__(self, store: Store) -> None:
        self._store = store

    async def stored(self, tenant: Tenant) -> list[StoredIvrMenu]:
        """The tenant's menus with their versions, by name."""
        return await self._store.ivr.stored(tenant.id)

    async def get(self, tenant: Tenant, name: str) -> StoredIvrMenu:
        return await self._store.ivr.get(tenant.id, name)

    async def delete(self, tenant: Tenant, name: str) -> None:
        """Conflict while another menu, a routing rule or call history refers to it."""
        await self._store.ivr.delete(tenant.id, name)

    async def save_json(
        self, tenant: Tenant, name: str, json_text: str, data: Mapping[str, Any]
    ) -> tuple[StoredIvrMenu, bool]:
        """Validate menu ``name`` given as a JSON object (its text and its decoded value)
        and create or replace it; return it and whether it is new. A problem is
        InvalidInput naming the field in the body (``name`` for the menu's own name);
        several are InvalidInputs, every one in document order."""
        repo = self._store.ivr
        stored = await repo.all(tenant.id)
        others = menu_entries({n: m for n, m in stored.items() if n != name})

        def document(body: str) -> str:
            # the body comes first, so its own problems are the ones reported
            rest = "".join(f", {json.dumps(n)}: {json.dumps(e)}" for n, e in others.items())
            return _yaml_escapes(f'{{"menus": {{{json.dumps(name)}: {body}{rest}}}}}')

        try:
            try:
                # the body goes in as text, so duplicate keys are caught (a raw tab in valid
                # JSON is whitespace, which YAML's flow style does not allow)
                menus = load_menus(document(json_text.replace("\t", " ")), file="body")
            except ConfigError as exc:
                if exc.field is not None:
                    raise
                # JSON that YAML cannot read as text: its decoded value, re-encoded
                menus = load_menus(document(json.dumps(data)), file="body")
            saved = await repo.save(tenant.id, {name: menus[name]})
        except ConfigErrors as exc:
            raise InvalidInputs(
                [InvalidInput(_body_field(name, e.field), e.reason) for e in exc.errors]
            ) from None
        except ConfigError as exc:
            raise InvalidInput(_body_field(name, exc.field), exc.reason) from None
        except InvalidInput as exc:
            raise InvalidInput(_body_field(name, exc.field), exc.reason) from None
        return saved[name], name not in stored

    async def import_menus(
        self, tenant: Tenant, menus: Mapping[str, IvrMenu]
    ) -> dict[str, StoredIvrMenu]:
        """Create or replace ``menus`` (already loaded from a file); other menus stay.
        InvalidInput when they do not fit the tenant's stored menus or routing rules."""
        return await self._store.ivr.save(tenant.id, menus)

    async def menus(self, tenant: Tenant) -> dict[str, IvrMenu]:
        """The tenant's menus by name (what ``ctc ivr export`` prints)."""
        return await self._store.ivr.all(tenant.id)
