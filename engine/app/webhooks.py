"""Carrier webhooks in: each is logged as received and linked to the tenant's session with
the carrier's call id, which each carrier puts in a field of its own."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from engine.domain.providers import ProviderType
from engine.errors import NotFound
from engine.store.records import Tenant, WebhookLogEntry
from engine.store.repositories import Store

__all__ = ["WebhookIntake"]

# Where each carrier puts its call id in a status webhook (from their documented payloads).
_CALL_ID_FIELDS: dict[ProviderType, tuple[str, ...]] = {
    ProviderType.TWILIO: ("CallSid",),
    ProviderType.EXOTEL: ("CallSid", "call_sid"),
    ProviderType.VONAGE: ("uuid", "conversation_uuid"),
    ProviderType.MCUBE: ("callid", "call_id", "CallId"),
    ProviderType.SIP_TRUNK: ("call_id",),
    ProviderType.ASTERISK: ("call_id", "uniqueid"),
}
_EVENT_FIELDS = ("CallStatus", "status", "Status", "event", "EventType")


class WebhookIntake:
    def __init__(self, store: Store) -> None:
        self._store = store

    @staticmethod
    def require_provider_type(provider_type: str) -> ProviderType:
        """The provider type named ``provider_type``; NotFound unless the engine knows it."""
        try:
            return ProviderType(provider_type)
        except ValueError:
            raise NotFound("provider type", provider_type) from None

    async def receive(
        self,
        tenant: Tenant,
        provider_type: ProviderType,
        payload: Mapping[str, Any],
        headers: Mapping[str, str],
    ) -> WebhookLogEntry:
        """Log one webhook of ``provider_type``."""
        call_id = next(
            (str(payload[f]) for f in _CALL_ID_FIELDS[provider_type] if payload.get(f)), None
        )
        event_type = next((str(payload[f]) for f in _EVENT_FIELDS if payload.get(f)), None)
        return await self._store.webhooks.record(
            tenant.id,
            provider_type,
            payload=payload,
            headers=headers,
            provider_call_id=call_id,
            event_type=event_type,
        )
