"""What several carrier adapters share: the provider row each is built from, where a
carrier sends its webhooks, the unguessable URL token and source-address allowlist of the
carriers that sign nothing, and reading a payload's fields."""

from __future__ import annotations

import dataclasses
import hmac
import ipaddress
import urllib.parse
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from engine.domain.netpolicy import Network, parse_cidr
from engine.domain.providers import ProviderType
from engine.errors import ConfigError, InvalidInput, WebhookRejected
from engine.providers.base import WebhookRequest

__all__ = ["ProviderRow", "TokenGate", "WebhookAddress", "field", "optional_field", "required"]

WEBHOOK_PATH = "/api/v1/webhooks/voip/{provider_type}/{provider_id}"


@dataclasses.dataclass(frozen=True, slots=True)
class ProviderRow:
    """A provider row as its carrier's adapter is built from it: the row's id and
    ``config``, its ``credentials`` (resolved from the row, the environment or files) and
    its ``webhook_secret`` (what a carrier that signs nothing carries as its URL token; a
    signing carrier's key)."""

    provider_id: uuid.UUID
    config: Mapping[str, Any]
    credentials: Mapping[str, str]
    webhook_secret: str | None


def required(section: str, values: Mapping[str, Any], name: str) -> str:
    """A provider row's ``values[name]`` (``section`` is ``config`` or ``credentials``) as
    text; ConfigError naming ``section.name`` when it is missing or empty."""
    value = values.get(name)
    if not value:
        raise ConfigError("is required", field=f"{section}.{name}")
    return str(value)


class WebhookAddress:
    """The URL a provider's carrier sends webhooks to: ``config.webhook_base_url`` (the
    engine as the carrier reaches it, e.g. ``https://ctc.example.com``) + the route naming
    the provider, + the query each adapter adds (the session, the leg, the token)."""

    def __init__(
        self, provider_type: ProviderType, provider_id: uuid.UUID, config: Mapping[str, Any]
    ) -> None:
        base = config.get("webhook_base_url")
        if not isinstance(base, str) or not base.startswith(("http://", "https://")):
            raise ConfigError(
                "must be the engine's URL as the carrier reaches it (http[s]://host[:port])",
                field="config.webhook_base_url",
            )
        path = WEBHOOK_PATH.format(provider_type=provider_type.value, provider_id=provider_id)
        self.url = base.rstrip("/") + path

    def with_query(self, **query: str) -> str:
        return f"{self.url}?{urllib.parse.urlencode(query)}" if query else self.url


class TokenGate:
    """Exotel and mCube sign nothing: their webhook URL carries ``token`` (the provider's
    webhook secret, unguessable), compared in constant time, and the sender's address may
    be limited to ``config.webhook_allow_cidrs``."""

    def __init__(
        self, provider_type: ProviderType, token: str | None, config: Mapping[str, Any]
    ) -> None:
        self._type = provider_type
        self._token = token
        cidrs = config.get("webhook_allow_cidrs") or []
        if not isinstance(cidrs, list):
            raise ConfigError("must be a list of CIDRs", field="config.webhook_allow_cidrs")
        self._allow: tuple[Network, ...] = tuple(
            parse_cidr(str(c), field="config.webhook_allow_cidrs") for c in cidrs
        )

    @property
    def token(self) -> str:
        if not self._token:
            raise ConfigError(
                "the provider needs a webhook_secret: its webhooks carry it as their token",
                field="webhook_secret",
            )
        return self._token

    def check(self, request: WebhookRequest) -> None:
        given = request.query.get("token", "")
        expected = self._token or ""
        # compared even when unset, so the time taken says nothing
        same = hmac.compare_digest(given.encode(), expected.encode())
        if not expected or not same:
            raise WebhookRejected(self._type.value, "bad_token", "missing or wrong URL token")
        if self._allow:
            try:
                source = ipaddress.ip_address(request.remote or "")
            except ValueError:
                source = None
            if source is None or not any(source in net for net in self._allow):
                raise WebhookRejected(
                    self._type.value, "source_refused", f"source {request.remote} not allowed"
                )


def optional_field(payload: Mapping[str, object], *names: str) -> str | None:
    for name in names:
        value = payload.get(name)
        if value is not None and str(value) != "":
            return str(value)
    return None


def field(payload: Mapping[str, object], *names: str) -> str:
    """The first of ``names`` present in ``payload``; InvalidInput naming it otherwise."""
    found = optional_field(payload, *names)
    if found is None:
        raise InvalidInput(names[0], "missing from the webhook")
    return found


def sequence_int(value: str | None, name: str) -> int | None:
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise InvalidInput(name, f"not an integer: {value[:40]!r}") from None


def params_of(values: Mapping[str, Sequence[str]]) -> dict[str, tuple[str, ...]]:
    return {k: tuple(v) for k, v in values.items()}
