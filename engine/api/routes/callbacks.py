"""The tenant's status callbacks as the outbox holds them: which failed, and sending them
again (``ctc callbacks`` is the admin's view of every tenant's)."""

from __future__ import annotations

from aiohttp import web

from engine.api.endpoints import ApiRequest, json_response, router
from engine.api.models import CallbackListOut, CallbackListQuery, CallbackOut, CallbackReplayIn
from engine.api.routes.common import API, error_responses, listing_out, use_cases

__all__ = ["list_callbacks", "replay_callbacks"]


@router.route(
    "GET",
    f"{API}/callbacks",
    summary="The tenant's status callbacks, newest first",
    tags=("callbacks",),
    query=CallbackListQuery,
    responses={200: CallbackListOut, **error_responses(401)},
)
async def list_callbacks(req: ApiRequest) -> web.StreamResponse:
    """`state=dead` lists the callbacks whose retries are exhausted."""
    query = req.query_as(CallbackListQuery)
    rows = await use_cases(req).callbacks.listing(
        req.require_tenant(), states=query.state, session_id=query.session_id, limit=query.limit
    )
    return json_response(listing_out(CallbackListOut, CallbackOut, rows))


@router.route(
    "POST",
    f"{API}/callbacks/replay",
    summary="Send callbacks again",
    tags=("callbacks",),
    body=CallbackReplayIn,
    responses={200: CallbackListOut, **error_responses(401)},
)
async def replay_callbacks(req: ApiRequest) -> web.StreamResponse:
    """`ids` (dead or delivered callbacks of the tenant) or `all_failed`: they become
    pending with a fresh attempt count and are sent within a second, in order per call, with
    the same `X-CTC-Event-Id` and a fresh signature. The answer lists the rows queued again
    (an id that is unknown, another tenant's or still pending is not among them)."""
    body = req.body_as(CallbackReplayIn)
    rows = await use_cases(req).callbacks.replay(
        req.require_tenant(), body.ids, all_dead=body.all_failed
    )
    return json_response(listing_out(CallbackListOut, CallbackOut, rows))
