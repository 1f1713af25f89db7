"""Status callbacks to the ERP: signed HTTP POSTs from the PostgreSQL outbox.

Why an outbox: a status change and its ``callback_outbox`` row are written together (one
transaction in :mod:`engine.store.write_through`, one batch in :mod:`engine.store.journal`),
so a callback exists if and only if the change committed, and survives crashes and
restarts. :class:`CallbackNotifier` delivers the rows.

**Request.** ``POST <url>`` with the stored JSON body (:class:`engine.contract.StatusCallback`,
built when the change was written) and these headers:

- ``Content-Type: application/json``
- ``User-Agent: ctc-engine/<version>``
- ``X-CTC-Event-Id: <call_event id>``, unique per callback: de-duplicate on it, because
  delivery is at-least-once (a crash between the receiver's answer and our bookkeeping
  sends the callback again).
- ``X-CTC-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256>``: the HMAC key is the tenant's
  ``callback_secret``, the message is ``f"{t}.{raw body}"`` (the timestamp, a dot, then the
  body bytes exactly as received). The receiver recomputes it, compares in constant time
  (``hmac.compare_digest``) and rejects a timestamp more than 5 minutes from its clock, so a
  captured request cannot be replayed later. Every attempt is signed afresh. During the
  grace period of a secret rotation a second ``v1=`` made with the previous secret follows:
  a receiver accepts the request when any ``v1`` matches a secret it knows.
  :func:`verify_signature` is a reference implementation; docs/integrator/callbacks.md has
  one per language, checked against one published test vector.

**Outcome.** A 2xx answer is delivered. Anything else (another status, a redirect, which
is not followed, a refused connection, a timeout after ``callbacks.timeout``) is a failed
attempt, retried after ``min(backoff_initial * 2**(attempts-1), backoff_max)`` seconds with
±10 % jitter; after ``callbacks.max_attempts`` attempts the row is ``dead`` (logged at
error) and the session's next callback may go.

**Where.** Only where the network policy lets the tenant's requests go
(:mod:`engine.domain.netpolicy`: http(s), global addresses or the tenant's
``outbound_allow_cidrs``), checked on the URL and again on every address its host
resolves to (:mod:`engine.outbound`). A refused destination is not contacted and the row is
``dead`` at once, its ``last_error`` saying why: retrying cannot change the answer.

**Order.** One session's callbacks are delivered one at a time, in ``seq`` order: a row is
not sent while an earlier row of its session is pending (see
:mod:`engine.store.outbox`, which also explains the ``SKIP LOCKED`` claim and the lease that
let several engines share one database without sending anything twice at once).

**When.** The notifier runs a pass at start (rows left by a previous run), whenever a status
change is published on the :class:`~engine.events.EventBus`, when a retry it scheduled
falls due, and otherwise every ``poll_interval`` (rows written by other engines, leases
of crashed ones).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import heapq
import hmac
import json
import random
import time
from collections.abc import Callable
from typing import Final, Literal

import aiohttp
import structlog

from engine import __version__
from engine.config.settings import CallbackSettings
from engine.contract import EVENT_ID_HEADER, SIGNATURE_HEADER
from engine.errors import (
    CallbackDeliveryError,
    ClosedResourceError,
    DestinationRefused,
    SecretsError,
    StoreError,
    describe,
)
from engine.events import EventBus
from engine.health import HealthReport
from engine.lifecycle import Lifecycle
from engine.metrics import Metrics
from engine.outbound import OutboundHttp
from engine.store.outbox import ClaimedCallback, OutboxRepository
from engine.store.records import CallEvent

__all__ = [
    "SIGNATURE_TOLERANCE",
    "CallbackNotifier",
    "retry_delay",
    "retry_schedule",
    "sign",
    "verify_signature",
]

log = structlog.get_logger(__name__)

SIGNATURE_TOLERANCE: Final = 300.0  # seconds a receiver accepts a signature's timestamp
USER_AGENT: Final = f"ctc-engine/{__version__}"
COMPONENT: Final = "callbacks"

_HEALTH_REFRESH = 10.0  # seconds between pending counts in the health report
_ERROR_SNIPPET = 200  # bytes of a failing answer's body kept in last_error


def sign(secret: str, body: bytes, timestamp: int, *, previous: str | None = None) -> str:
    """The ``X-CTC-Signature`` value for ``body`` sent at ``timestamp`` (unix seconds).

    With ``previous`` (a rotated-out secret in its grace period) a second ``v1=`` follows,
    made with it: a receiver that still knows only the old secret finds its match."""
    message = str(timestamp).encode() + b"." + body
    digests = [hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()]
    if previous is not None and previous != secret:
        digests.append(hmac.new(previous.encode(), message, hashlib.sha256).hexdigest())
    return f"t={timestamp}," + ",".join(f"v1={digest}" for digest in digests)


def verify_signature(
    secret: str,
    body: bytes,
    header: str,
    *,
    tolerance: float = SIGNATURE_TOLERANCE,
    now: float | None = None,
) -> bool:
    """What a receiver does: recompute, compare in constant time, refuse stale timestamps."""
    timestamp: int | None = None
    candidates: list[str] = []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t" and value.isdigit():
            timestamp = int(value)
        elif key == "v1":
            candidates.append(value)
    if timestamp is None or not candidates:
        return False
    if abs((time.time() if now is None else now) - timestamp) > tolerance:
        return False
    expected = sign(secret, body, timestamp).partition(",v1=")[2]
    return any(hmac.compare_digest(expected, c) for c in candidates)


def retry_delay(
    attempts: int,
    *,
    initial: float,
    maximum: float,
    jitter: Callable[[], float] = random.random,
) -> float:
    """Seconds before the next attempt, after ``attempts`` failed ones (±10 % jitter)."""
    base = min(initial * 2.0 ** min(max(attempts - 1, 0), 62), maximum)
    return min(base * (0.9 + 0.2 * jitter()), maximum)


def retry_schedule(settings: CallbackSettings) -> list[float]:
    """The nominal seconds before each retry (jitter aside): one per failed attempt but the
    last, so ``sum()`` is the retry window a callback gets before it is ``dead`` (plus up to
    ``timeout`` per attempt)."""
    return [
        min(settings.backoff_initial * 2.0 ** min(attempt - 1, 62), settings.backoff_max)
        for attempt in range(1, settings.max_attempts)
    ]


class CallbackNotifier(Lifecycle):
    """Delivers ``callback_outbox`` rows (a :class:`~engine.lifecycle.Lifecycle`; ``close()``
    is bounded by ``close_timeout``)."""

    def __init__(
        self,
        outbox: OutboxRepository,
        settings: CallbackSettings,
        *,
        events: EventBus | None = None,
        health: HealthReport | None = None,
        metrics: Metrics | None = None,
        poll_interval: float = 1.0,
        concurrency: int = 16,
        lease_margin: float = 15.0,
        close_timeout: float = 10.0,
    ) -> None:
        self._outbox = outbox
        self._settings = settings
        self._events = events
        self._health = health
        self._metrics = metrics
        self._poll_interval = poll_interval
        self._concurrency = concurrency
        # a claimed row is not due for anyone else until the POST and its bookkeeping are done
        self._lease = settings.timeout + lease_margin
        self._close_timeout = close_timeout
        self._http: OutboundHttp | None = None
        self._runner: asyncio.Task[None] | None = None
        self._inflight: dict[asyncio.Task[None], ClaimedCallback] = {}
        self._wake = asyncio.Event()
        self._retries: list[float] = []  # loop times when retries we scheduled fall due
        self._unlisten: Callable[[], None] | None = None
        self._stopping = False
        self._healthy: bool | None = None
        self._dead = 0
        self._next_health = 0.0

    # -- lifecycle --------------------------------------------------------------------------

    async def _open(self) -> None:
        # its own sessions, not the IVR lookups': these send the engine's User-Agent, keep
        # no cookies, time out at callbacks.timeout and are limited to the concurrency
        self._http = await OutboundHttp(
            limit=self._concurrency,
            timeout=aiohttp.ClientTimeout(total=self._settings.timeout),
            headers={"User-Agent": USER_AGENT},
            cookie_jar=aiohttp.DummyCookieJar(),
        ).start()
        if self._events is not None:
            self._unlisten = self._events.add_listener(self._on_event)
        self._set_health("up", "running")
        self._wake.set()  # a first pass at once: rows left by a previous run
        self._runner = asyncio.create_task(self._run(), name="callback-notifier")
        log.info("callbacks.started", concurrency=self._concurrency, lease=self._lease)

    def wake(self) -> None:
        """Look for due rows now rather than at the next poll."""
        self._wake.set()

    async def _close(self) -> None:
        """Stop claiming; let in-flight deliveries finish within ``close_timeout``.

        Past that, or if ``close()`` itself is cancelled, in-flight deliveries are cancelled;
        their leases are given back when there is time, else they run out and the rows are
        retried then.
        """
        self._stopping = True
        self._wake.set()
        if self._unlisten is not None:
            self._unlisten()
            self._unlisten = None
        try:
            await asyncio.wait_for(self._drain(), self._close_timeout)
        except TimeoutError:
            log.warning("callbacks.close_timed_out", in_flight=len(self._inflight))
            await self._abort()
        except asyncio.CancelledError:
            self.terminate()
            raise
        finally:
            http, self._http = self._http, None
            if http is not None:
                await asyncio.shield(http.close())
        self._set_health("down", "stopped")
        log.info("callbacks.stopped")

    def terminate(self) -> None:
        """Cancel everything now, without waiting (leases run out; rows are retried then)."""
        self._stopping = True
        if self._runner is not None:
            self._runner.cancel()
        for task in self._inflight:
            task.cancel()

    async def _drain(self) -> None:
        if self._runner is not None:
            await self._runner
        while self._inflight:
            await asyncio.wait(list(self._inflight))

    async def _abort(self) -> None:
        """Cancel what is still running and give its leases back (bounded)."""
        abandoned = list(self._inflight.values())
        self.terminate()
        tasks = [t for t in (self._runner, *self._inflight) if t is not None]
        await asyncio.gather(*tasks, return_exceptions=True)
        try:
            await asyncio.wait_for(self._outbox.release(abandoned), self._close_timeout)
        except Exception as exc:  # the leases then simply run out
            log.warning("callbacks.release_failed", error=repr(exc), rows=len(abandoned))

    # -- the loop ---------------------------------------------------------------------------

    def _on_event(self, event: CallEvent) -> None:
        if event.callback_queued:  # most events have no callback to deliver
            self._wake.set()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        error_backoff = self._poll_interval
        while not self._stopping:
            self._wake.clear()  # wakes from here on are for rows the claim below may miss
            free = self._concurrency - len(self._inflight)
            if free > 0:
                try:
                    batch = await self._outbox.claim(free, lease_seconds=self._lease)
                except Exception as exc:  # the loop must outlive any one failure
                    self._set_health("down", f"cannot read the outbox: {exc}")
                    self._next_health = 0.0  # report the recovery at once
                    if isinstance(exc, StoreError | ClosedResourceError | SecretsError):
                        log.warning(
                            "callbacks.claim_failed", error=str(exc), retry_in=error_backoff
                        )
                    else:
                        log.exception("callbacks.claim_failed", retry_in=error_backoff)
                    await self._pause(error_backoff)
                    error_backoff = min(error_backoff * 2, 30.0)
                    continue
                error_backoff = self._poll_interval
                for claimed in batch:
                    task = asyncio.create_task(self._deliver(claimed))
                    self._inflight[task] = claimed
                    task.add_done_callback(self._finished)
                if loop.time() >= self._next_health:
                    await self._refresh_health()
                if len(batch) == free:
                    continue  # there may be more due
            await self._idle(loop)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._inflight.pop(task, None)
        self._wake.set()  # a slot is free, and the session's next row may be due now

    async def _idle(self, loop: asyncio.AbstractEventLoop) -> None:
        now = loop.time()
        while self._retries and self._retries[0] <= now:
            heapq.heappop(self._retries)
            self._wake.set()
        timeout = self._poll_interval
        if self._retries:
            timeout = min(timeout, self._retries[0] - now)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._wake.wait()

    async def _pause(self, seconds: float) -> None:
        """Sleep ``seconds`` unless stopping (publishes do not cut it short)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while not self._stopping and (remaining := deadline - loop.time()) > 0:
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):
                    await self._wake.wait()

    # -- one delivery -----------------------------------------------------------------------

    async def _deliver(self, claimed: ClaimedCallback) -> None:
        attempt = claimed.attempts + 1
        clog = log.bind(
            call_id=str(claimed.session_id),
            tenant_id=str(claimed.tenant_id),
            event_id=claimed.event_id,
            outbox_id=claimed.id,
            attempt=attempt,
        )
        try:
            status = await self._post(claimed)
        except CallbackDeliveryError as exc:
            await self._record_failure(claimed, clog, str(exc), exc.status, permanent=exc.permanent)
        except Exception as exc:  # a bug must not wedge the row: count it as a failed attempt
            clog.exception("callback.internal_error")
            await self._record_failure(claimed, clog, f"internal error: {exc!r}", None)
        else:
            try:
                kept = await self._outbox.mark_delivered(claimed, status=status)
            except Exception as exc:  # the row stays leased: sent again after the lease
                clog.warning("callback.bookkeeping_failed", error=repr(exc), status=status)
                return
            self._count("delivered")
            if kept:
                clog.info("callback.delivered", status=status)
            else:
                clog.warning("callback.lease_lost", status=status, outcome="delivered")

    async def _post(self, claimed: ClaimedCallback) -> int:
        """POST once; the status of a 2xx answer, else CallbackDeliveryError."""
        http = self._http
        if http is None:
            raise ClosedResourceError("CallbackNotifier is not running")
        body = _body(claimed.payload)
        headers = {
            "Content-Type": "application/json",
            EVENT_ID_HEADER: str(claimed.event_id),
            SIGNATURE_HEADER: sign(
                claimed.secret, body, int(time.time()), previous=claimed.previous_secret
            ),
        }
        try:
            async with http.request(
                claimed.policy,
                "POST",
                claimed.url,
                data=body,
                headers=headers,
                allow_redirects=False,
            ) as resp:
                if 200 <= resp.status < 300:
                    return resp.status
                status = resp.status
                snippet = (await resp.content.read(_ERROR_SNIPPET)).decode("utf-8", "replace")
        except DestinationRefused as exc:
            raise CallbackDeliveryError(f"refused by policy: {exc}", permanent=True) from exc
        except TimeoutError as exc:
            raise CallbackDeliveryError(
                f"no answer within {self._settings.timeout:g}s from {claimed.url}"
            ) from exc
        except aiohttp.ClientError as exc:
            raise CallbackDeliveryError(describe(exc)) from exc
        reason = "redirects are not followed" if 300 <= status < 400 else snippet.strip()
        raise CallbackDeliveryError(f"HTTP {status}: {reason}".rstrip(": "), status=status)

    async def _record_failure(
        self,
        claimed: ClaimedCallback,
        clog: structlog.typing.FilteringBoundLogger,
        error: str,
        status: int | None,
        *,
        permanent: bool = False,
    ) -> None:
        attempts = claimed.attempts + 1
        dead = permanent or attempts >= self._settings.max_attempts
        retry_in = (
            None
            if dead
            else retry_delay(
                attempts,
                initial=self._settings.backoff_initial,
                maximum=self._settings.backoff_max,
            )
        )
        try:
            kept = await self._outbox.mark_failed(
                claimed, error=error, status=status, retry_in=retry_in
            )
        except Exception as exc:  # the row stays leased: tried again after the lease
            clog.warning("callback.bookkeeping_failed", error=repr(exc), delivery_error=error)
            return
        if not kept:
            clog.warning("callback.lease_lost", error=error)
            return
        if retry_in is None:
            self._dead += 1
            self._count("dead")
            clog.error("callback.dead", error=error, status=status, attempts=attempts)
        else:
            self._count("retry")
            heapq.heappush(self._retries, asyncio.get_running_loop().time() + retry_in)
            clog.warning("callback.failed", error=error, status=status, retry_in=round(retry_in, 3))

    # -- reporting --------------------------------------------------------------------------

    def _count(self, outcome: str) -> None:
        if self._metrics is not None:
            self._metrics.callback_deliveries.labels(outcome).inc()

    def _set_health(self, state: Literal["up", "down"], detail: str) -> None:
        if self._healthy is False and state == "up":
            log.info("callbacks.recovered")
        self._healthy = state == "up"
        if self._health is not None:
            # not required: the engine takes calls while callbacks wait in the outbox
            self._health.set(COMPONENT, state, detail, required=False)

    async def _refresh_health(self) -> None:
        self._next_health = asyncio.get_running_loop().time() + _HEALTH_REFRESH
        try:
            backlog = await self._outbox.backlog()
        except Exception as exc:
            self._set_health("down", f"cannot read the outbox: {exc}")
            return
        if self._metrics is not None:
            self._metrics.outbox_backlog(backlog.pending, backlog.oldest_age)
        self._set_health(
            "up",
            f"pending {backlog.pending}, oldest {backlog.oldest_age:.0f} s, in flight "
            f"{len(self._inflight)}, dead since start {self._dead}",
        )


def _body(payload: dict[str, object]) -> bytes:
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
