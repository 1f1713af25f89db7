"""The adapter of a provider row: its carrier's module, built from the row's config and
its secrets (credentials resolved from the row, the environment or files)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from engine.domain.providers import ProviderType
from engine.errors import CarrierUnsupported
from engine.providers.base import CarrierAdapter
from engine.providers.common import ProviderRow
from engine.providers.exotel import ExotelAdapter
from engine.providers.http import resolve_credentials
from engine.providers.mcube import McubeAdapter
from engine.providers.twilio import TwilioAdapter
from engine.providers.vonage import VonageAdapter

__all__ = ["build_adapter"]


def build_adapter(
    provider_type: ProviderType,
    provider_id: uuid.UUID,
    config: Mapping[str, Any],
    credentials: Mapping[str, Any],
    webhook_secret: str | None,
) -> CarrierAdapter:
    """The adapter for one provider row (ConfigError naming what is missing)."""
    creds = resolve_credentials(f"provider {provider_id}", credentials)
    row = ProviderRow(provider_id, config, creds, webhook_secret)
    match provider_type:
        case ProviderType.TWILIO:
            return TwilioAdapter(row)
        case ProviderType.VONAGE:
            return VonageAdapter(row)
        case ProviderType.EXOTEL:
            return ExotelAdapter(row)
        case ProviderType.MCUBE:
            return McubeAdapter(row)
    raise CarrierUnsupported(provider_type.value, "not an HTTP carrier (Asterisk carries it)")
