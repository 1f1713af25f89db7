"""Click-to-call sessions: place a call, list and read sessions, set a status, end a call,
download a recording, and the tenant's call statistics (totals, and per minute)."""

from __future__ import annotations

from aiohttp import web

from engine.api.endpoints import ApiRequest, BadRequest, json_response, router
from engine.api.models import (
    CallActivityOut,
    CallActivityQuery,
    EndCallIn,
    InitiateIn,
    QualityListOut,
    QualityMetricOut,
    SessionDetailOut,
    SessionListOut,
    SessionListQuery,
    SessionOut,
    StatsOut,
    StatsQuery,
    StatusPatchIn,
    TranscriptOut,
)
from engine.api.routes.common import (
    C2C,
    error_responses,
    path_session_id,
    session_out,
    stats_out,
    use_cases,
)
from engine.app.calls import InitiateCall
from engine.contract import CallEventOut
from engine.domain.text import text_problem
from engine.store.records import SessionFilter

__all__ = [
    "call_activity",
    "call_stats",
    "end_session",
    "get_session",
    "initiate_call",
    "initiate_call_of",
    "list_sessions",
    "patch_session_status",
    "session_quality",
    "session_recording",
    "session_transcript",
]


def initiate_call_of(body: InitiateIn) -> InitiateCall:
    """The use case's request for a validated body (same field names and values, so the
    request fingerprint behind Idempotency-Key is the body's)."""
    return InitiateCall(
        agent_number=body.agent_number,
        customer_number=body.customer_number,
        default_region=body.default_region,
        caller_id=body.caller_id,
        provider_id=body.provider_id,
        agent_id=body.agent_id,
        external_ref=body.external_ref,
        callback_url=str(body.callback_url) if body.callback_url else None,
        metadata=body.metadata,
    )


@router.route(
    "POST",
    f"{C2C}/initiate",
    summary="Place a click-to-call",
    tags=("click-to-call",),
    body=InitiateIn,
    responses={202: SessionOut, **error_responses(400, 401, 403, 409, 413, 422)},
)
async def initiate_call(req: ApiRequest) -> web.StreamResponse:
    """Stores a queued session and starts dialing. With `Idempotency-Key`, a repeat returns
    the first session (header `Idempotent-Replayed: true`); the same key with a different
    body is 409. A call the tenant's compliance rules or lists refuse is stored `rejected`
    (never dialled) and answered 403 `call_rejected`, its details naming the rule, the
    reason and the session."""
    key = req.raw.headers.get("Idempotency-Key")
    if key is not None and (not 1 <= len(key) <= 200 or text_problem(key) is not None):
        raise BadRequest(
            422,
            "validation_error",
            "Idempotency-Key must be 1-200 characters of UTF-8 text",
            [{"field": "Idempotency-Key", "message": "expected 1-200 characters of UTF-8"}],
        )
    session, created = await use_cases(req).calls.initiate(
        req.require_tenant(), initiate_call_of(req.body_as(InitiateIn)), idempotency_key=key
    )
    headers = {"Location": f"{C2C}/sessions/{session.id}"}
    if not created:
        headers["Idempotent-Replayed"] = "true"
    return json_response(session_out(session), 202, headers)


@router.route(
    "GET",
    f"{C2C}/sessions",
    summary="List sessions (newest first, cursor pagination)",
    tags=("click-to-call",),
    query=SessionListQuery,
    responses={200: SessionListOut, **error_responses(401, 422)},
)
async def list_sessions(req: ApiRequest) -> web.StreamResponse:
    q = req.query_as(SessionListQuery)
    filters = SessionFilter(
        statuses=q.status,
        direction=q.direction,
        agent_id=q.agent_id,
        customer_number=q.customer_number,
        external_ref=q.external_ref,
        created_after=q.created_after,
        created_before=q.created_before,
    )
    page = await use_cases(req).calls.find(
        req.require_tenant(), filters, limit=q.limit, cursor=q.cursor
    )
    return json_response(
        SessionListOut(items=[session_out(s) for s in page.items], next_cursor=page.next_cursor)
    )


@router.route(
    "GET",
    f"{C2C}/sessions/{{session_id}}",
    summary="One session with its event timeline",
    tags=("click-to-call",),
    responses={200: SessionDetailOut, **error_responses(401, 404)},
)
async def get_session(req: ApiRequest) -> web.StreamResponse:
    detail = await use_cases(req).calls.detail(req.require_tenant(), path_session_id(req))
    return json_response(
        SessionDetailOut.model_validate(
            {
                **session_out(detail.session).model_dump(),
                "events": [
                    CallEventOut.model_validate(e, from_attributes=True) for e in detail.events
                ],
                "events_pruned": detail.events_pruned,
            }
        )
    )


@router.route(
    "PATCH",
    f"{C2C}/sessions/{{session_id}}/status",
    summary="Set a session's status (validated by the call state machine)",
    tags=("click-to-call",),
    body=StatusPatchIn,
    responses={200: SessionOut, **error_responses(400, 401, 404, 409, 422)},
)
async def patch_session_status(req: ApiRequest) -> web.StreamResponse:
    """For calls a carrier or the ERP drives; an illegal transition is 409."""
    body = req.body_as(StatusPatchIn)
    session, _ = await use_cases(req).calls.set_status(
        req.require_tenant(),
        path_session_id(req),
        body.status,
        reason=body.reason,
        hangup_cause=body.hangup_cause,
    )
    return json_response(session_out(session))


@router.route(
    "POST",
    f"{C2C}/sessions/{{session_id}}/end",
    summary="End a call (hangs up every leg)",
    tags=("click-to-call",),
    body=EndCallIn,
    responses={200: SessionOut, **error_responses(400, 401, 404, 409, 422)},
)
async def end_session(req: ApiRequest) -> web.StreamResponse:
    session = await use_cases(req).calls.end(
        req.require_tenant(), path_session_id(req), reason=req.body_as(EndCallIn).reason
    )
    return json_response(session_out(session))


@router.route(
    "GET",
    f"{C2C}/stats",
    summary="Call statistics for a period",
    tags=("click-to-call",),
    query=StatsQuery,
    responses={200: StatsOut, **error_responses(401, 422)},
)
async def call_stats(req: ApiRequest) -> web.StreamResponse:
    """Counts by status, the answer rate (ASR, `connect_rate`) and the average ring and talk
    times (ACD, `avg_talk_ms`) of the sessions created in the period, and the same figures
    by agent, provider, direction and hour or day (`bucket`) in the tenant's time zone
    (`timezone` overrides it); the cost of their billing lines per currency and the
    average MOS of their legs."""
    q = req.query_as(StatsQuery)
    report = await use_cases(req).stats.report(
        req.require_tenant(),
        created_after=q.created_after,
        created_before=q.created_before,
        agent_id=q.agent_id,
        timezone=q.timezone,
        bucket=q.bucket,
    )
    return json_response(stats_out(report, q.bucket))


@router.route(
    "GET",
    f"{C2C}/stats/activity",
    summary="Calls per minute, answer rate and ring times of the last minutes",
    tags=("click-to-call",),
    query=CallActivityQuery,
    responses={200: CallActivityOut, **error_responses(401, 422)},
)
async def call_activity(req: ApiRequest) -> web.StreamResponse:
    """Every minute of the window (the current one last) with the sessions created in it,
    how many the customer answered and how many are decided (answered, or ended without an
    answer); `answer_rate` is answered over decided, so calls still ringing count neither
    way; `ring_times` counts the window's sessions by how long they rang."""
    activity = await use_cases(req).call_activity.last_minutes(
        req.require_tenant(), req.query_as(CallActivityQuery).minutes
    )
    return json_response(CallActivityOut.model_validate(activity, from_attributes=True))


@router.route(
    "GET",
    f"{C2C}/sessions/{{session_id}}/recording",
    summary="Download or play a session's recording",
    tags=("click-to-call",),
    responses={200: None, **error_responses(401, 404, 409)},
    response_content="audio/wav",
)
async def session_recording(req: ApiRequest) -> web.StreamResponse:
    """The audio file Asterisk recorded (WAV unless the tenant's recording policy chose
    another format; `Content-Type` says which). Range requests are honoured, so a player
    can seek. 404 when the session has no recording on this engine's host, 409 while the
    call is live."""
    found = await use_cases(req).recordings.file(req.require_tenant(), path_session_id(req))
    return web.FileResponse(
        found.path,
        headers={
            "Content-Type": found.media_type,
            "Content-Disposition": f'inline; filename="{found.filename}"',
            "Cache-Control": "private, no-store",
        },
    )


@router.route(
    "GET",
    f"{C2C}/sessions/{{session_id}}/transcript",
    summary="A recorded call's transcript, with word timings",
    tags=("click-to-call",),
    responses={200: TranscriptOut, **error_responses(401, 404)},
)
async def session_transcript(req: ApiRequest) -> web.StreamResponse:
    """Made offline on the engine's host once the recording ended, for tenants that turned
    transcripts on (`ctc transcripts enable SLUG`). `state` says where it is: `queued`,
    `running`, `completed` (with `text` and `words`) or `failed` (`last_error`). 404 when
    none was queued for the session."""
    found = await use_cases(req).transcripts.of_session(req.require_tenant(), path_session_id(req))
    return json_response(TranscriptOut.model_validate(found, from_attributes=True))


@router.route(
    "GET",
    f"{C2C}/sessions/{{session_id}}/quality",
    summary="A call's quality per leg: RTCP figures and MOS",
    tags=("click-to-call",),
    responses={200: QualityListOut, **error_responses(401, 404)},
)
async def session_quality(req: ApiRequest) -> web.StreamResponse:
    """Samples taken while the legs were up and each leg's final figures from Asterisk's
    hangup (`is_final`), oldest first; figures not known (no RTCP reports from the phone,
    no RTP at all) are null."""
    rows = await use_cases(req).quality.of_session(req.require_tenant(), path_session_id(req))
    return json_response(
        QualityListOut(
            items=[QualityMetricOut.model_validate(row, from_attributes=True) for row in rows]
        )
    )
