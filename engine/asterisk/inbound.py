"""What both IVR doors (ARI Stasis and FastAGI) record about an inbound call.

The session row (direction ``inbound``), its status changes, one ``call_dtmf_interaction``
row plus a ``call_event`` per key decision, and the ERP lookups a menu makes. The doors
differ only in how they play prompts and hear keys; this is the part they share.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import structlog

from engine.domain.call import CallStatus, Direction
from engine.domain.ivr import HttpLookup, LookupResult, MenuBook, RecordDtmf
from engine.domain.phone import to_e164
from engine.errors import InvalidInput, NotFound
from engine.store import Store
from engine.store.sessions import NewSession, StoredSession

__all__ = ["InboundCall", "MenuLoader", "http_lookup"]

# The tenant's menus with their stored ids (Store.ivr.book).
MenuLoader = Callable[[uuid.UUID], Awaitable[MenuBook]]


class InboundCall:
    def __init__(self, store: Store, channel_id: str, door: str) -> None:
        self.store = store
        self.channel_id = channel_id
        self.door = door
        self.session: StoredSession | None = None
        self.book: MenuBook | None = None
        self.log: Any = structlog.get_logger(__name__).bind(channel=channel_id, door=door)

    async def open(
        self,
        load_menus: MenuLoader,
        *,
        tenant_slug: str,
        menu: str,
        caller: str | None,
        dialed: str | None,
    ) -> MenuBook:
        """Store the queued session and load the tenant's menus; raise if ``menu`` is unknown."""
        tenant = await self.store.tenants.by_slug(tenant_slug)
        customer = None
        if caller:
            with contextlib.suppress(InvalidInput):
                customer = to_e164(caller, field="caller")
        self.session, _ = await self.store.sessions.create(
            NewSession(
                tenant_id=tenant.id,
                direction=Direction.INBOUND,
                agent_number=None,
                customer_number=customer,
                caller_number=caller,
                dialed_number=dialed,
                ivr_menu=menu,
                metadata={"channel_id": self.channel_id, "door": self.door},
            )
        )
        self.log = self.log.bind(call_id=str(self.session.id), tenant_id=str(tenant.id))
        self.book = book = await load_menus(tenant.id)
        if menu not in book.menus:
            raise NotFound("IVR menu", menu)
        return book

    async def answered(self, menu: str) -> None:
        assert self.session is not None
        self.session, _ = await self.store.sessions.transition(
            self.session.tenant_id,
            self.session.id,
            CallStatus.CONNECTED,
            event_type="ivr.answered",
            payload={"menu": menu, "channel_id": self.channel_id},
        )
        self.log.info("ivr.entered", menu=menu)

    async def note(self, event_type: str, payload: dict[str, Any]) -> None:
        """A telephony fact of this call as a ``call_event``."""
        assert self.session is not None
        await self.store.sessions.append_event(
            self.session.tenant_id, self.session.id, event_type, payload=payload
        )

    async def record_dtmf(self, row: RecordDtmf) -> None:
        assert self.session is not None
        assert self.book is not None
        menu_id, version = self.book.menu_ids[row.menu]
        option_id = self.book.option_ids.get((row.menu, row.option)) if row.option else None
        await self.store.dtmf.record(
            self.session.tenant_id,
            self.session.id,
            menu_id=menu_id,
            menu_version=version,
            option_id=option_id,
            digit=row.digit or None,
            input_value=row.value,
            outcome=row.outcome.value,
            attempt=row.attempt,
            ms_since_prompt=row.ms_since_prompt,
            channel_id=self.channel_id,
        )
        await self.store.sessions.append_event(
            self.session.tenant_id,
            self.session.id,
            "ivr.dtmf",
            payload={
                "menu": row.menu,
                "digit": row.digit,
                "outcome": row.outcome.value,
                "option": row.option,
                "value": row.value,
                "ms_since_prompt": row.ms_since_prompt,
            },
        )

    async def end(self, status: CallStatus, reason: str) -> None:
        """Finish the session (connected → ``status``; never answered → canceled)."""
        if self.session is None:
            return
        current = await self.store.sessions.by_id(self.session.id)
        if current is None or current.status.is_terminal:
            return
        if status is not CallStatus.FAILED and current.status is not CallStatus.CONNECTED:
            status = CallStatus.CANCELED
        await self.store.sessions.transition(
            current.tenant_id,
            current.id,
            status,
            event_type="ivr.ended",
            payload={"reason": reason},
            changes={"end_reason": reason},
        )
        self.log.info("ivr.ended", status=status.value, reason=reason)


async def http_lookup(http: aiohttp.ClientSession, lookup: HttpLookup) -> LookupResult:
    """Ask the ERP; any failure is ``ok=False`` (the menu then plays its failure prompt)."""
    timeout = aiohttp.ClientTimeout(total=lookup.timeout_ms / 1000)
    try:
        if lookup.method == "POST":
            request = http.post(lookup.url, json=dict(lookup.params), timeout=timeout)
        else:
            request = http.get(lookup.url, params=dict(lookup.params), timeout=timeout)
        async with request as resp:
            text = (await resp.text()).strip()
            if resp.status >= 400:
                return LookupResult(ok=False, error=f"HTTP {resp.status}")
            return LookupResult(ok=True, value=text[:200])
    except (aiohttp.ClientError, TimeoutError) as exc:
        return LookupResult(ok=False, error=str(exc) or type(exc).__name__)
