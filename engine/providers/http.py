"""The HTTP side every carrier client shares: one aiohttp session per provider, its timeout
and concurrency limit, our own retry policy, credentials from the row, env or a file, and
the one table mapping a carrier's answer to our errors.

Retry policy (why we use no carrier SDK: Twilio's retries every request when asked to,
call creation included; Vonage's HTTP adapter retries three times):

- a call creation is sent again only when the carrier provably did not process it: the
  connection was never made (nothing was sent), or the carrier answered 429 and documents
  that a 429 is never processed (Twilio: ``retry_create_on_429``). A timeout or a 5xx is
  :class:`~engine.errors.CarrierUnavailable` with ``call_may_exist``: whoever fails over
  reconciles first (:meth:`~engine.providers.base.CarrierAdapter.find`).
- every other request (query, hang-up, list) is idempotent and retried on 429, 5xx and
  transport errors, a few times with capped backoff.

Credentials are never logged and never part of an error's message.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

import aiohttp
import structlog

from engine.domain.providers import ProviderType
from engine.errors import (
    CarrierAuthFailed,
    CarrierError,
    CarrierRateLimited,
    CarrierRefused,
    CarrierUnavailable,
    ConfigError,
    describe,
)

__all__ = [
    "CarrierHttp",
    "HttpSettings",
    "Reply",
    "carrier_error",
    "resolve_credentials",
]

log = structlog.get_logger(__name__)

# The one table: a carrier's HTTP status (by class) -> our error. 429 is its own row: not
# processed; 401/403: the credentials; other 4xx: refused, nothing created; 5xx: unknown.
_ERRORS: Final[tuple[tuple[range, type[CarrierError]], ...]] = (
    (range(429, 430), CarrierRateLimited),
    (range(401, 402), CarrierAuthFailed),
    (range(403, 404), CarrierAuthFailed),
    (range(400, 500), CarrierRefused),
    (range(500, 600), CarrierUnavailable),
)


def carrier_error(provider_type: ProviderType, status: int, body: Any) -> CarrierError:
    """Our error for a carrier's non-2xx answer: the table above, with the carrier's own
    message (Twilio ``message``, Vonage RFC 7807 ``title``/``detail``, Exotel
    ``RestException.Message``) when its body has one."""
    kind: type[CarrierError] = CarrierUnavailable
    for statuses, error in _ERRORS:
        if status in statuses:
            kind = error
            break
    return kind(provider_type.value, f"HTTP {status}: {_message(body)}", status=status)


def _message(body: Any) -> str:
    if isinstance(body, Mapping):
        for inner in ("RestException", "error"):
            if isinstance(body.get(inner), Mapping):
                return _message(body[inner])
        for key in ("message", "Message", "detail", "title", "msg"):
            value = body.get(key)
            if isinstance(value, str) and value:
                return value[:200]
    if isinstance(body, str) and body.strip():
        return body.strip()[:200]
    return "no message"


def resolve_credentials(provider: str, credentials: Mapping[str, Any]) -> dict[str, str]:
    """The provider's credentials with references resolved: a value ``env:NAME`` is the
    environment variable NAME, ``file:/path`` the file's content (trailing newline
    dropped); any other value is the credential itself (stored sealed). A missing variable
    or unreadable file is a ConfigError naming the provider and field, never the value."""
    out: dict[str, str] = {}
    for name, value in credentials.items():
        text = str(value)
        if text.startswith("env:"):
            var = text[4:]
            found = os.environ.get(var)
            if not found:
                raise ConfigError(
                    f"environment variable {var} is not set", field=f"{provider}.{name}"
                )
            out[name] = found
        elif text.startswith("file:"):
            path = Path(text[5:])
            try:
                out[name] = path.read_text(encoding="utf-8").rstrip("\r\n")
            except (OSError, UnicodeDecodeError) as exc:
                raise ConfigError(
                    f"cannot read {path}: {describe(exc)}", field=f"{provider}.{name}"
                ) from None
        else:
            out[name] = text
    return out


@dataclasses.dataclass(frozen=True, slots=True)
class HttpSettings:
    """Per provider, from its row's ``config`` (``timeout_s``, ``connect_timeout_s``,
    ``max_concurrent_requests``, ``retries``)."""

    base_url: str
    timeout_s: float = 10.0
    connect_timeout_s: float = 3.0
    max_concurrent_requests: int = 10
    retries: int = 2  # extra attempts of an idempotent request
    backoff_s: float = 0.2
    retry_create_on_429: bool = False

    @classmethod
    def from_config(
        cls, config: Mapping[str, Any], *, default_base_url: str, retry_create_on_429: bool
    ) -> HttpSettings:
        def number(name: str, default: float) -> float:
            value = config.get(name, default)
            if not isinstance(value, int | float) or isinstance(value, bool) or value <= 0:
                raise ConfigError("must be a positive number", field=f"config.{name}")
            return float(value)

        retries = config.get("retries", 2)
        if not isinstance(retries, int) or isinstance(retries, bool) or retries < 0:
            raise ConfigError("must be an integer >= 0", field="config.retries")
        return cls(
            base_url=str(config.get("base_url") or default_base_url).rstrip("/"),
            timeout_s=number("timeout_s", 10.0),
            connect_timeout_s=number("connect_timeout_s", 3.0),
            max_concurrent_requests=int(number("max_concurrent_requests", 10)),
            retries=retries,
            retry_create_on_429=retry_create_on_429,
        )


@dataclasses.dataclass(frozen=True, slots=True)
class Reply:
    status: int
    body: Any  # the decoded JSON, else the text


class CarrierHttp:
    """One provider's HTTP client: bounded concurrency, its timeouts, the retry policy."""

    def __init__(
        self,
        provider_type: ProviderType,
        settings: HttpSettings,
        *,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        self._type = provider_type
        self.settings = settings
        self._own_session = session is None
        self._session = session
        self._limit = asyncio.Semaphore(settings.max_concurrent_requests)

    @classmethod
    def for_provider(
        cls,
        provider_type: ProviderType,
        config: Mapping[str, Any],
        *,
        default_base_url: str,
        retry_create_on_429: bool = False,
    ) -> CarrierHttp:
        """The client a provider row's ``config`` sets up (:meth:`HttpSettings.from_config`),
        ``default_base_url`` when the row names no ``base_url``."""
        settings = HttpSettings.from_config(
            config, default_base_url=default_base_url, retry_create_on_429=retry_create_on_429
        )
        return cls(provider_type, settings)

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        return self._session

    async def close(self) -> None:
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None

    async def request(
        self,
        method: str,
        path: str,
        *,
        headers: Mapping[str, str],
        params: Any = None,
        data: Any = None,
        json: Any = None,
        create: bool = False,
    ) -> Reply:
        """Send one request (``path`` under the base URL) and return a 2xx reply; our error
        otherwise. ``create``: a call creation (see the module's retry policy)."""
        settings = self.settings
        attempts = 1 + settings.retries
        url = f"{settings.base_url}{path}"
        last: CarrierError | None = None
        for attempt in range(attempts):
            if attempt:
                await asyncio.sleep(min(settings.backoff_s * 2 ** (attempt - 1), 2.0))
            try:
                return await self._once(method, url, headers, params, data, json)
            except CarrierRateLimited as exc:
                last = exc
                if create and not settings.retry_create_on_429:
                    raise
            except _NotSent as exc:
                last = CarrierUnavailable(self._type.value, exc.reason)
                last.call_may_exist = False  # nothing left this host
            except CarrierUnavailable as exc:
                if create:
                    raise  # sent: the call may exist, reconcile before anything else
                last = exc
            log.info(
                "carrier.retry",
                provider_type=self._type.value,
                method=method,
                path=path.split("?")[0],
                attempt=attempt + 1,
                error=str(last),
            )
        if last is None:
            raise RuntimeError(f"{self._type.value} {method} {path}: no attempt made")
        raise last

    async def _once(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        params: Any,
        data: Any,
        json: Any,
    ) -> Reply:
        timeout = aiohttp.ClientTimeout(
            total=self.settings.timeout_s, sock_connect=self.settings.connect_timeout_s
        )
        async with self._limit:
            try:
                async with self._client().request(
                    method,
                    url,
                    headers=dict(headers),
                    params=params,
                    data=data,
                    json=json,
                    timeout=timeout,
                    allow_redirects=False,
                ) as response:
                    text = await response.text()
                    body: Any = text
                    if "json" in response.content_type:
                        try:
                            body = await response.json(content_type=None)
                        except ValueError:
                            body = text
                    status = response.status
            except aiohttp.ClientConnectorError as exc:
                raise _NotSent(describe(exc)) from None
            except (TimeoutError, aiohttp.ClientError) as exc:
                raise CarrierUnavailable(self._type.value, describe(exc)) from None
        if 200 <= status < 300:
            return Reply(status, body)
        raise carrier_error(self._type, status, body)


class _NotSent(Exception):
    """The connection was never made: the request did not leave this host."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)
