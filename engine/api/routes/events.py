"""The tenant's call events as a Server-Sent Events stream (``GET /api/v1/events``)."""

from __future__ import annotations

import time

from aiohttp import web

from engine.api import sse
from engine.api.endpoints import ApiRequest, BadRequest, router
from engine.api.models import EventsQuery
from engine.api.routes.common import API, error_responses, use_cases
from engine.api.state import API_STATE
from engine.contract import StreamEventOut
from engine.domain.stream_cursor import PATTERN as CURSOR_PATTERN
from engine.domain.stream_cursor import StreamCursor
from engine.events import Subscription
from engine.store.records import CallEvent

__all__ = ["stream_events"]

_LAST_EVENT_ID = {
    "name": "Last-Event-ID",
    "required": False,
    "schema": {"type": "string", "pattern": CURSOR_PATTERN, "maxLength": 2048},
    "description": "Sent by EventSource on reconnect: the `id:` of the last message "
    "received (a stream cursor: an event id, then the distances above it of the ids sent "
    "in the last seconds, e.g. `1200,3,5`; a plain event id works too). The events the "
    "client does not have are replayed, including one that committed after a higher id was "
    "sent (takes precedence over `after`)",
}


@router.route(
    "GET",
    f"{API}/events",
    summary="Stream the tenant's call events (Server-Sent Events)",
    tags=("events",),
    query=EventsQuery,
    headers=(_LAST_EVENT_ID,),
    responses={200: StreamEventOut, **error_responses(401, 404, 422, 429, 503)},
    response_content="text/event-stream",
)
async def stream_events(req: ApiRequest) -> web.StreamResponse:
    """Each call event of the tenant as it commits, as one SSE message: `id:` the stream's
    cursor (the event id, then the ids sent above the last settled one: echo it back),
    `event:` its `event_type`, `data:` the event as JSON (the schema below). A
    `: keepalive` comment every 15 s of silence. With `Last-Event-ID` (or `after`), the
    events after that id are replayed from the database first, then the stream goes live,
    without gaps or repeats. The stream ends when the engine shuts down, after a large replay,
    or when the client falls too far behind: reconnect with `Last-Event-ID` to carry on.
    Open streams are capped per tenant and in all (`api.max_event_streams_per_tenant`,
    `api.max_event_streams`): one more is 429 `too_many_streams` with `Retry-After`."""
    tenant = req.require_tenant()
    q = req.query_as(EventsQuery)
    cursor = _last_event_id(req)
    if cursor is None and q.after is not None:
        cursor = StreamCursor(q.after)
    state = req.raw.app[API_STATE]
    streams = use_cases(req).event_stream
    target = await streams.check(tenant, q.session_id)  # 404, then 503: before a place
    try:
        state.streams.acquire(tenant.id)
    except sse.TooManyStreams as exc:
        state.metrics.event_streams_refused.labels(exc.scope).inc()
        raise BadRequest(
            429,
            "too_many_streams",
            str(exc),
            {"scope": exc.scope, "limit": exc.limit},
            headers={"Retry-After": str(sse.CAPPED_RETRY_AFTER_S)},
        ) from None
    state.metrics.event_streams.inc()
    try:
        # one more than a piece: whether the replay comes in pieces (see engine.api.sse)
        replay, sub, at = await streams.open(target, cursor, replay_limit=sse.REPLAY_LIMIT + 1)
        with req.raw.app[sse.OPEN_STREAMS].track(sub):  # closes it at the end
            return await _write(req, replay, sub, at, resumed=cursor is not None)
    finally:
        state.metrics.event_streams.dec()
        state.streams.release(tenant.id)


async def _write(
    req: ApiRequest,
    replay: list[CallEvent],
    sub: Subscription,
    cursor: StreamCursor,
    *,
    resumed: bool,
) -> web.StreamResponse:
    """One open stream: the replay, then the live events (see engine.api.sse)."""
    resp = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream; charset=utf-8",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",  # tell a fronting nginx not to buffer the stream
        }
    )
    await resp.prepare(req.raw)
    try:
        await resp.write(f"retry: {sse.RETRY_MS}\n\n".encode())  # also sends the headers
        if len(replay) > sse.REPLAY_LIMIT:
            # a large backlog comes in pieces: the client reconnects for the next one
            for event in replay[: sse.REPLAY_LIMIT]:
                await resp.write(sse.encode_event(event, cursor.sent(event.id, time.monotonic())))
        else:
            await sse.pump(
                resp.write, replay, sub, cursor, resumed=resumed, keepalive=sse.KEEPALIVE
            )
        await resp.write_eof()
    except ConnectionResetError:
        pass  # the client went away
    return resp


def _last_event_id(req: ApiRequest) -> StreamCursor | None:
    raw = req.raw.headers.get("Last-Event-ID", "").strip()
    if not raw:
        return None
    try:
        return StreamCursor.parse(raw, time.monotonic())
    except ValueError:
        raise BadRequest(
            422,
            "validation_error",
            "Last-Event-ID must be an id this stream sent",
            [
                {
                    "field": "Last-Event-ID",
                    "message": "expected a non-negative integer, or a stream cursor "
                    "(an id, then distances above it: 1200,3,5)",
                }
            ],
        ) from None
