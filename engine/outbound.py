"""HTTP sessions that only reach the addresses an :class:`OutboundPolicy` allows.

Why here: :mod:`engine.domain.netpolicy` says which addresses are refused; this is where
the rule meets the network, after DNS, so a name that resolves to ``127.0.0.1`` (or is
changed to, between the URL's check and the request) is refused like the address itself.
Both senders of requests built from tenant data use it: the status callback notifier
(:mod:`engine.notifier`, with its own :class:`OutboundHttp`: its sessions send the
engine's User-Agent, keep no cookies and have its concurrency as their limit) and the IVR
lookup (:func:`engine.app.ivr_calls.http_lookup`, through :class:`HttpErpLookup`, the
:class:`~engine.app.ports.ErpLookup` port over the daemon's one lookup
:class:`OutboundHttp`).

Each distinct policy gets its own :class:`aiohttp.ClientSession` (most tenants share the
empty one), whose connector enforces the policy twice:

- its resolver drops every resolved address the policy refuses, and raises
  :class:`DestinationRefused` when none is left — that is the error a caller sees, with
  the name, the address and why; and since aiohttp caches what the resolver returned, per
  connector, the cache holds allowed addresses only;
- its socket factory refuses to open a socket to a refused address, whatever led there
  (an address literal in the URL or in a redirect skips the resolver): the guarantee that
  nothing else can bypass.

Senders go through :meth:`OutboundHttp.request`, which checks the URL first with
:meth:`OutboundPolicy.url_refusal` (scheme, address literal), so the common refusals are
plain messages rather than connection errors, and turns a refusal found in aiohttp's error
chain into :class:`DestinationRefused` too: one refusal, whichever check caught it, the
same in both senders.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

from engine.domain.ivr import HttpLookup, LookupResult
from engine.domain.netpolicy import OutboundPolicy
from engine.errors import DestinationRefused
from engine.lifecycle import Lifecycle

__all__ = [
    "DestinationRefused",
    "GuardedResolver",
    "HttpErpLookup",
    "OutboundHttp",
    "refused_by_policy",
]


class GuardedResolver(AbstractResolver):
    """aiohttp's default resolver, keeping only the addresses ``policy`` allows."""

    def __init__(self, policy: OutboundPolicy, inner: AbstractResolver | None = None) -> None:
        self._policy = policy
        self._inner = inner if inner is not None else aiohttp.DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        resolved = await self._inner.resolve(host, port, family)
        kept = [r for r in resolved if self._policy.refusal(r["host"]) is None]
        if not kept and resolved:
            reason = self._policy.refusal(resolved[0]["host"])
            raise DestinationRefused(f"{host}: {reason}")
        return kept

    async def close(self) -> None:
        await self._inner.close()


def _socket_factory(policy: OutboundPolicy) -> Any:
    def make(addr_info: tuple[Any, Any, int, str, tuple[Any, ...]]) -> socket.socket:
        family, kind, proto, _, address = addr_info
        reason = policy.refusal(str(address[0]))
        if reason is not None:
            raise DestinationRefused(f"connection refused by policy: {reason}")
        return socket.socket(family=family, type=kind, proto=proto)

    return make


def refused_by_policy(exc: BaseException) -> DestinationRefused | None:
    """The DestinationRefused behind an aiohttp error (or ``exc`` itself), if any."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, DestinationRefused):
            return current
        seen.add(id(current))
        nested = getattr(current, "os_error", None)
        current = nested if isinstance(nested, BaseException) else current.__cause__
    return None


class OutboundHttp(Lifecycle):
    """One :class:`aiohttp.ClientSession` per policy, created on first use while open, with
    the keyword arguments given here (timeout, headers...); ``limit`` is each connector's
    connection limit. Closing it closes them all; using it before :meth:`start` or after
    :meth:`close` raises :class:`~engine.errors.ClosedResourceError` (no pool is created
    behind its owner's back). Closing is bounded by aiohttp's session close."""

    def __init__(self, *, limit: int = 100, **session_options: Any) -> None:
        self._limit = limit
        self._options = session_options
        self._sessions: dict[OutboundPolicy, aiohttp.ClientSession] = {}

    def session(self, policy: OutboundPolicy) -> aiohttp.ClientSession:
        """The session for ``policy`` (made on first use); ClosedResourceError unless open."""
        self.require_open()
        found = self._sessions.get(policy)
        if found is None or found.closed:
            connector = aiohttp.TCPConnector(
                limit=self._limit,
                resolver=GuardedResolver(policy),
                socket_factory=_socket_factory(policy),
            )
            found = self._sessions[policy] = aiohttp.ClientSession(
                connector=connector, **self._options
            )
        return found

    @contextlib.asynccontextmanager
    async def request(
        self, policy: OutboundPolicy, method: str, url: str, **options: Any
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """``async with http.request(policy, "POST", url, json=...) as response:``, on
        :meth:`session`; ``options`` are aiohttp's.

        :class:`DestinationRefused` (its message: why) when ``policy`` refuses the URL,
        before anything is sent, or an address it resolved to or led to; aiohttp's other
        errors (``ClientError``, ``TimeoutError``) as they are.
        """
        refusal = policy.url_refusal(url)
        if refusal is not None:
            raise DestinationRefused(refusal)
        try:
            async with self.session(policy).request(method, url, **options) as response:
                yield response
        except (aiohttp.ClientError, DestinationRefused) as exc:
            refused = refused_by_policy(exc)
            if refused is None or refused is exc:
                raise
            raise DestinationRefused(str(refused)) from exc

    async def _close(self) -> None:
        sessions, self._sessions = list(self._sessions.values()), {}
        for session in sessions:
            await session.close()


class HttpErpLookup:
    """The IVR's :class:`~engine.app.ports.ErpLookup` over an :class:`OutboundHttp` (owned
    by whoever built it: the daemon): one HTTP request per lookup.

    The request: ``GET url?params`` (``POST``: ``params`` as a JSON body), answered within
    the lookup's ``timeout_ms``. The answer's body (stripped, at most 200 characters) is
    the value; a status >= 400, no answer in time, a connection error or a destination the
    policy refuses is ``ok=False`` with why.
    """

    def __init__(self, http: OutboundHttp) -> None:
        self._http = http

    async def ask(self, lookup: HttpLookup, policy: OutboundPolicy) -> LookupResult:
        timeout = aiohttp.ClientTimeout(total=lookup.timeout_ms / 1000)
        if lookup.method == "POST":
            method, options = "POST", {"json": dict(lookup.params)}
        else:
            method, options = "GET", {"params": dict(lookup.params)}
        try:
            async with self._http.request(
                policy, method, lookup.url, timeout=timeout, **options
            ) as resp:
                text = (await resp.text(errors="replace")).strip()  # not UTF-8: still an answer
                if resp.status >= 400:
                    return LookupResult(ok=False, error=f"HTTP {resp.status}")
                return LookupResult(ok=True, value=text[:200])
        except DestinationRefused as exc:
            return LookupResult(ok=False, error=f"refused by policy: {exc}")
        except TimeoutError:  # aiohttp's timeouts are TimeoutErrors too, with no message
            return LookupResult(ok=False, error=f"timed out after {lookup.timeout_ms} ms")
        except aiohttp.ClientError as exc:  # also InvalidURL
            return LookupResult(ok=False, error=str(exc) or type(exc).__name__)
