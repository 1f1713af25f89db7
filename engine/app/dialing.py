"""The one :class:`~engine.app.ports.Dialer` the call use cases talk to: it sends each
session to the backend its provider names.

A click-to-call whose provider is an HTTP carrier (Twilio, Exotel, Vonage, mCube) is placed
through the carrier (:class:`~engine.app.carrier_calls.CarrierDialer`); every other session
(no provider, ``asterisk``, ``sip_trunk``, a call an agent dialled from the desk phone) goes
through the local Asterisk (the click-to-call flow over ARI). Without ARI there is no
Asterisk dialer: such sessions are stored and driven by the ERP (``PATCH .../status``), as
with no dialer at all, while carrier sessions are still placed.

A provider's type never changes (the API has no way to change it), so the router keeps
each provider's type once read: a session's backend is then known without a query.
"""

from __future__ import annotations

import asyncio
import uuid

import structlog

from engine.app.call_end import end_in_store
from engine.app.carrier_calls import CarrierDialer
from engine.app.ports import Dialer
from engine.domain.call import Direction
from engine.domain.click_to_call import Leg
from engine.domain.providers import HTTP_CARRIERS
from engine.domain.transfer import TransferType
from engine.errors import FeatureUnavailable
from engine.store.records import StoredSession, StoredTransfer
from engine.store.repositories import Store

__all__ = ["DialerRouter"]

log = structlog.get_logger(__name__)


class DialerRouter:
    """Asterisk or a carrier, by the session's provider (see the module docstring)."""

    def __init__(self, store: Store, asterisk: Dialer | None, carriers: CarrierDialer) -> None:
        self._store = store
        self._asterisk = asterisk
        self.carriers = carriers
        self._types: dict[uuid.UUID, str] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def ready(self) -> bool:
        """The Asterisk link's readiness where there is one (calls are refused while ARI is
        down, whatever their provider); without ARI, ready."""
        return self._asterisk is None or self._asterisk.ready

    def _known(self, session: StoredSession) -> bool | None:
        """Whether a carrier carries the session; None while its provider's type is unread."""
        if session.provider_id is None or session.direction is not Direction.CLICK_TO_CALL:
            return False
        kind = self._types.get(session.provider_id)
        return None if kind is None else kind in HTTP_CARRIERS

    async def _by_carrier(self, session: StoredSession) -> bool:
        known = self._known(session)
        if known is not None:
            return known
        if session.provider_id is None:
            raise RuntimeError(f"call {session.id}: a provider type looked up without a provider")
        provider = await self._store.providers.get(session.tenant_id, session.provider_id)
        self._types[provider.id] = provider.provider_type
        return provider.provider_type in HTTP_CARRIERS

    def start_call(self, session: StoredSession) -> None:
        known = self._known(session)
        if known is None:
            task = asyncio.create_task(self._start_later(session), name=f"route-{session.id}")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        elif known:
            self.carriers.start_call(session)
        elif self._asterisk is not None:
            self._asterisk.start_call(session)

    async def _start_later(self, session: StoredSession) -> None:
        try:
            by_carrier = await self._by_carrier(session)
        except Exception:  # a background task: nobody else would hear of it
            log.exception("dialer.route_failed", call_id=str(session.id))
            return
        if by_carrier:
            self.carriers.start_call(session)
        elif self._asterisk is not None:
            self._asterisk.start_call(session)

    def writes_behind(self, provider_type: str | None) -> bool:
        """Asterisk's sessions are written behind; a carrier's are not (its webhooks may
        reach any engine, each applied in one transaction)."""
        if provider_type in HTTP_CARRIERS or self._asterisk is None:
            return False
        return self._asterisk.writes_behind(provider_type)

    def _asterisk_dialer(self) -> Dialer:
        if self._asterisk is None:
            raise FeatureUnavailable("this needs Asterisk (ARI is not enabled)")
        return self._asterisk

    async def end_call(self, session: StoredSession, reason: str) -> StoredSession:
        if await self._by_carrier(session):
            return await self.carriers.end_call(session, reason)
        if self._asterisk is not None:
            return await self._asterisk.end_call(session, reason)
        return await end_in_store(self._store, session, reason)

    async def transfer(
        self, session: StoredSession, kind: TransferType, target: str, leg: Leg
    ) -> StoredTransfer:
        if await self._by_carrier(session):
            return await self.carriers.transfer(session, kind, target, leg)
        return await self._asterisk_dialer().transfer(session, kind, target, leg)

    async def complete_transfer(self, session: StoredSession) -> StoredTransfer:
        if await self._by_carrier(session):
            return await self.carriers.complete_transfer(session)
        return await self._asterisk_dialer().complete_transfer(session)

    async def cancel_transfer(self, session: StoredSession) -> StoredTransfer:
        if await self._by_carrier(session):
            return await self.carriers.cancel_transfer(session)
        return await self._asterisk_dialer().cancel_transfer(session)

    async def drain(self) -> None:
        """Wait for the sessions being routed and placed (tests)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        await self.carriers.drain()

    async def close(self) -> None:
        """The engine stops: routing finishes, placements get a bounded grace."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        await self.carriers.close()
