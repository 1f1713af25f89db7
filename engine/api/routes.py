"""The control API's routes. Each handler is thin: validate (done by the router), call the
service or a repository, shape the answer."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping
from typing import Any

import prometheus_client
import yaml
from aiohttp import web
from pydantic import BaseModel

from engine.api import sse
from engine.api.endpoints import (
    ApiRequest,
    BadRequest,
    Router,
    json_response,
    printable,
    read_form,
    read_json_object,
)
from engine.api.models import (
    AgentActivityIn,
    AgentActivityOut,
    DtmfIn,
    EndCallIn,
    ErrorOut,
    EventsQuery,
    HealthOut,
    InitiateIn,
    IvrMenuIn,
    IvrMenuListOut,
    IvrMenuOut,
    LegIn,
    MuteIn,
    ProviderIn,
    ProviderListOut,
    ProviderOut,
    RecordingControlIn,
    SessionDetailOut,
    SessionListOut,
    SessionListQuery,
    SessionOut,
    StatsOut,
    StatsQuery,
    StatusPatchIn,
    TransferIn,
    TransferOut,
    WebhookAcceptedOut,
)
from engine.api.state import API_STATE, METRICS_NEED_TOKEN
from engine.asterisk.flows.controls import CallControls, require_connected
from engine.contract import CallEventOut, StreamEventOut
from engine.domain.click_to_call import Leg
from engine.domain.ivr import IvrMenu
from engine.domain.phone import to_e164
from engine.domain.text import text_problem
from engine.errors import ClosedResourceError, ConfigError, InvalidInput, NotFound
from engine.events import EventBus
from engine.ivr_yaml import dump_menus, load_menus
from engine.store.ivr import StoredIvrMenu
from engine.store.providers import PROVIDER_TYPES, NewProvider
from engine.store.records import CallEvent, StoredSession
from engine.store.session_queries import SessionFilter

__all__ = ["router"]

router = Router()
API = "/api/v1"
C2C = f"{API}/click-to-call"
E = ErrorOut  # error responses share one body


def _session_out(session: StoredSession) -> SessionOut:
    return SessionOut.model_validate(session, from_attributes=True)


# -- click-to-call ----------------------------------------------------------------------------


@router.route(
    "POST",
    f"{C2C}/initiate",
    summary="Place a click-to-call",
    tags=("click-to-call",),
    body=InitiateIn,
    responses={202: SessionOut, 400: E, 401: E, 409: E, 413: E, 422: E},
)
async def initiate_call(req: ApiRequest) -> web.StreamResponse:
    """Stores a queued session and starts dialing. With `Idempotency-Key`, a repeat returns
    the first session (header `Idempotent-Replayed: true`); the same key with a different
    body is 409."""
    key = req.raw.headers.get("Idempotency-Key")
    if key is not None and (not 1 <= len(key) <= 200 or text_problem(key) is not None):
        raise BadRequest(
            422,
            "validation_error",
            "Idempotency-Key must be 1-200 characters of UTF-8 text",
            [{"field": "Idempotency-Key", "message": "expected 1-200 characters of UTF-8"}],
        )
    state = req.raw.app[API_STATE]
    session, created = await state.calls.initiate(
        req.require_tenant(), req.body_as(InitiateIn), idempotency_key=key
    )
    headers = {"Location": f"{C2C}/sessions/{session.id}"}
    if not created:
        headers["Idempotent-Replayed"] = "true"
    return json_response(_session_out(session), 202, headers)


@router.route(
    "GET",
    f"{C2C}/sessions",
    summary="List sessions (newest first, cursor pagination)",
    tags=("click-to-call",),
    query=SessionListQuery,
    responses={200: SessionListOut, 401: E, 422: E},
)
async def list_sessions(req: ApiRequest) -> web.StreamResponse:
    q = req.query_as(SessionListQuery)
    customer = to_e164(q.customer_number, field="customer_number") if q.customer_number else None
    page = await req.raw.app[API_STATE].store.sessions.find(
        req.require_tenant().id,
        SessionFilter(
            statuses=q.status,
            direction=q.direction,
            agent_id=q.agent_id,
            customer_number=customer,
            external_ref=q.external_ref,
            created_after=q.created_after,
            created_before=q.created_before,
        ),
        limit=q.limit,
        cursor=q.cursor,
    )
    return json_response(
        SessionListOut(items=[_session_out(s) for s in page.items], next_cursor=page.next_cursor)
    )


@router.route(
    "GET",
    f"{C2C}/sessions/{{session_id}}",
    summary="One session with its event timeline",
    tags=("click-to-call",),
    responses={200: SessionDetailOut, 401: E, 404: E},
)
async def get_session(req: ApiRequest) -> web.StreamResponse:
    tenant = req.require_tenant()
    sid = _session_id(req)
    store = req.raw.app[API_STATE].store
    session = await store.sessions.get(tenant.id, sid)
    events = await store.sessions.events(tenant.id, sid)
    detail = SessionDetailOut.model_validate(
        {
            **_session_out(session).model_dump(),
            "events": [CallEventOut.model_validate(e, from_attributes=True) for e in events],
        }
    )
    return json_response(detail)


@router.route(
    "PATCH",
    f"{C2C}/sessions/{{session_id}}/status",
    summary="Set a session's status (validated by the call state machine)",
    tags=("click-to-call",),
    body=StatusPatchIn,
    responses={200: SessionOut, 400: E, 401: E, 404: E, 409: E, 422: E},
)
async def patch_session_status(req: ApiRequest) -> web.StreamResponse:
    """For calls a carrier or the ERP drives; an illegal transition is 409."""
    body = req.body_as(StatusPatchIn)
    session, _ = await req.raw.app[API_STATE].calls.set_status(
        req.require_tenant(),
        _session_id(req),
        body.status,
        reason=body.reason,
        hangup_cause=body.hangup_cause,
    )
    return json_response(_session_out(session))


@router.route(
    "POST",
    f"{C2C}/sessions/{{session_id}}/end",
    summary="End a call (hangs up every leg)",
    tags=("click-to-call",),
    body=EndCallIn,
    responses={200: SessionOut, 400: E, 401: E, 404: E, 409: E, 422: E},
)
async def end_session(req: ApiRequest) -> web.StreamResponse:
    session = await req.raw.app[API_STATE].calls.end(
        req.require_tenant(), _session_id(req), reason=req.body_as(EndCallIn).reason
    )
    return json_response(_session_out(session))


_TRANSFER_RESPONSES: dict[int, type[BaseModel] | None] = {
    200: TransferOut,
    400: E,
    401: E,
    404: E,
    409: E,
    422: E,
    503: E,
}


@router.route(
    "POST",
    f"{C2C}/sessions/{{session_id}}/transfer",
    summary="Transfer a connected call: replace its agent or customer leg (blind or attended)",
    tags=("click-to-call",),
    body=TransferIn,
    responses=_TRANSFER_RESPONSES,
)
async def transfer_session(req: ApiRequest) -> web.StreamResponse:
    """Rings the target (an agent endpoint or an E.164 number). Blind: the target replaces
    the `leg` (default `agent`) when it answers. Attended: the customer hears music on hold
    and the agent consults the target; then `transfer/complete` or `transfer/cancel`. A call
    may be transferred again once a transfer ended (one in flight at a time, else 409). The
    answer is the transfer as it stands (state `initiated` while the target rings)."""
    body = req.body_as(TransferIn)
    transfer = await req.raw.app[API_STATE].calls.transfer(
        req.require_tenant(), _session_id(req), body.type, body.target, body.leg
    )
    return json_response(TransferOut.model_validate(transfer, from_attributes=True))


@router.route(
    "POST",
    f"{C2C}/sessions/{{session_id}}/transfer/complete",
    summary="Complete an attended transfer (the target replaces the transferred leg)",
    tags=("click-to-call",),
    responses=_TRANSFER_RESPONSES,
)
async def complete_transfer(req: ApiRequest) -> web.StreamResponse:
    transfer = await req.raw.app[API_STATE].calls.complete_transfer(
        req.require_tenant(), _session_id(req)
    )
    return json_response(TransferOut.model_validate(transfer, from_attributes=True))


@router.route(
    "POST",
    f"{C2C}/sessions/{{session_id}}/transfer/cancel",
    summary="Cancel an attended transfer (the target is released, the agent returns)",
    tags=("click-to-call",),
    responses=_TRANSFER_RESPONSES,
)
async def cancel_transfer(req: ApiRequest) -> web.StreamResponse:
    transfer = await req.raw.app[API_STATE].calls.cancel_transfer(
        req.require_tenant(), _session_id(req)
    )
    return json_response(TransferOut.model_validate(transfer, from_attributes=True))


# -- in-call controls (connected calls only: 409 otherwise) -----------------------------------

_CONTROL_RESPONSES: dict[int, type[BaseModel] | None] = {
    200: SessionOut,
    400: E,
    401: E,
    404: E,
    409: E,
    422: E,
    503: E,
}


async def _call_controls(req: ApiRequest) -> tuple[CallControls, uuid.UUID, uuid.UUID]:
    """The controls, tenant id and session id; 404/409 before 503 when ARI is off."""
    tenant = req.require_tenant()
    sid = _session_id(req)
    state = req.raw.app[API_STATE]
    if state.controls is None:
        await require_connected(state.store, tenant.id, sid)
        raise ClosedResourceError("in-call controls need Asterisk (ARI is not enabled)")
    return state.controls, tenant.id, sid


@router.route(
    "POST",
    f"{C2C}/sessions/{{session_id}}/hold",
    summary="Put a party on hold (it hears music; the other side stops hearing it)",
    tags=("click-to-call",),
    body=LegIn,
    responses=_CONTROL_RESPONSES,
)
async def hold_leg(req: ApiRequest) -> web.StreamResponse:
    body = req.body_as(LegIn)
    controls, tenant_id, sid = await _call_controls(req)
    session = await controls.hold(tenant_id, sid, Leg(body.leg))
    return json_response(_session_out(session))


@router.route(
    "POST",
    f"{C2C}/sessions/{{session_id}}/unhold",
    summary="Take a party off hold",
    tags=("click-to-call",),
    body=LegIn,
    responses=_CONTROL_RESPONSES,
)
async def unhold_leg(req: ApiRequest) -> web.StreamResponse:
    body = req.body_as(LegIn)
    controls, tenant_id, sid = await _call_controls(req)
    session = await controls.unhold(tenant_id, sid, Leg(body.leg))
    return json_response(_session_out(session))


@router.route(
    "POST",
    f"{C2C}/sessions/{{session_id}}/mute",
    summary="Mute a party (in: it is not heard; out: it hears nothing)",
    tags=("click-to-call",),
    body=MuteIn,
    responses=_CONTROL_RESPONSES,
)
async def mute_leg(req: ApiRequest) -> web.StreamResponse:
    body = req.body_as(MuteIn)
    controls, tenant_id, sid = await _call_controls(req)
    session = await controls.mute(tenant_id, sid, Leg(body.leg), body.direction)
    return json_response(_session_out(session))


@router.route(
    "POST",
    f"{C2C}/sessions/{{session_id}}/unmute",
    summary="Unmute a party",
    tags=("click-to-call",),
    body=MuteIn,
    responses=_CONTROL_RESPONSES,
)
async def unmute_leg(req: ApiRequest) -> web.StreamResponse:
    body = req.body_as(MuteIn)
    controls, tenant_id, sid = await _call_controls(req)
    session = await controls.mute(tenant_id, sid, Leg(body.leg), body.direction, on=False)
    return json_response(_session_out(session))


@router.route(
    "POST",
    f"{C2C}/sessions/{{session_id}}/dtmf",
    summary="Send DTMF digits to a party",
    tags=("click-to-call",),
    body=DtmfIn,
    responses=_CONTROL_RESPONSES,
)
async def send_dtmf(req: ApiRequest) -> web.StreamResponse:
    body = req.body_as(DtmfIn)
    controls, tenant_id, sid = await _call_controls(req)
    session = await controls.dtmf(tenant_id, sid, Leg(body.leg), body.digits)
    return json_response(_session_out(session))


@router.route(
    "POST",
    f"{C2C}/sessions/{{session_id}}/recording",
    summary="Pause or resume the call's recording",
    tags=("click-to-call",),
    body=RecordingControlIn,
    responses=_CONTROL_RESPONSES,
)
async def control_recording(req: ApiRequest) -> web.StreamResponse:
    """409 when the call is not being recorded."""
    body = req.body_as(RecordingControlIn)
    controls, tenant_id, sid = await _call_controls(req)
    session = await controls.recording(tenant_id, sid, body.action)
    return json_response(_session_out(session))


@router.route(
    "GET",
    f"{C2C}/stats",
    summary="Call statistics for a period",
    tags=("click-to-call",),
    query=StatsQuery,
    responses={200: StatsOut, 401: E, 422: E},
)
async def call_stats(req: ApiRequest) -> web.StreamResponse:
    q = req.query_as(StatsQuery)
    stats = await req.raw.app[API_STATE].store.sessions.stats(
        req.require_tenant().id,
        created_after=q.created_after,
        created_before=q.created_before,
        agent_id=q.agent_id,
    )
    return json_response(StatsOut.model_validate(stats, from_attributes=True))


def _session_id(req: ApiRequest) -> uuid.UUID:
    return req.path_uuid("session_id", "session")


# -- events -----------------------------------------------------------------------------------

_LAST_EVENT_ID = {
    "name": "Last-Event-ID",
    "required": False,
    "schema": {"type": "string", "pattern": "^[0-9]+$"},
    "description": "Sent by EventSource on reconnect: replay events after this id "
    "(takes precedence over `after`)",
}


@router.route(
    "GET",
    f"{API}/events",
    summary="Stream the tenant's call events (Server-Sent Events)",
    tags=("events",),
    query=EventsQuery,
    headers=(_LAST_EVENT_ID,),
    responses={200: StreamEventOut, 401: E, 404: E, 422: E, 429: E, 503: E},
    response_content="text/event-stream",
)
async def stream_events(req: ApiRequest) -> web.StreamResponse:
    """Each call event of the tenant as it commits, as one SSE message: `id:` the event id,
    `event:` its `event_type`, `data:` the event as JSON (the schema below). A
    `: keepalive` comment every 15 s of silence. With `Last-Event-ID` (or `after`), the
    events after that id are replayed from the database first, then the stream goes live,
    without gaps or repeats. The stream ends when the engine shuts down, after a large replay,
    or when the client falls too far behind: reconnect with `Last-Event-ID` to carry on.
    Open streams are capped per tenant and in all (`api.max_event_streams_per_tenant`,
    `api.max_event_streams`): one more is 429 `too_many_streams` with `Retry-After`."""
    tenant = req.require_tenant()
    q = req.query_as(EventsQuery)
    after = _last_event_id(req)
    if after is None:
        after = q.after
    state = req.raw.app[API_STATE]
    if q.session_id is not None:
        await state.store.sessions.get(tenant.id, q.session_id)  # 404 unless the tenant's
    if state.events is None:
        raise ClosedResourceError("the event stream is not available")
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
        return await _stream(req, state.events, tenant.id, q.session_id, after)
    finally:
        state.metrics.event_streams.dec()
        state.streams.release(tenant.id)


async def _stream(
    req: ApiRequest,
    events: EventBus,
    tenant_id: uuid.UUID,
    session_id: uuid.UUID | None,
    after: int | None,
) -> web.StreamResponse:
    """One open stream: subscribed first, replayed second (see engine.api.sse)."""
    store = req.raw.app[API_STATE].store
    sub = events.subscribe(tenant_id=tenant_id, session_id=session_id)
    with req.raw.app[sse.OPEN_STREAMS].track(sub):
        replay: list[CallEvent] = []
        if after is not None:
            replay = await store.sessions.events_after(
                tenant_id, after, session_id=session_id, limit=sse.REPLAY_LIMIT + 1
            )
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
                    await resp.write(sse.encode_event(event))
            else:
                await sse.pump(resp.write, replay, sub, after=after, keepalive=sse.KEEPALIVE)
            await resp.write_eof()
        except ConnectionResetError:
            pass  # the client went away
        return resp


def _last_event_id(req: ApiRequest) -> int | None:
    raw = req.raw.headers.get("Last-Event-ID", "").strip()
    if not raw:
        return None
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 18:
        raise BadRequest(
            422,
            "validation_error",
            "Last-Event-ID must be an event id this stream sent",
            [{"field": "Last-Event-ID", "message": "expected a non-negative integer"}],
        )
    return int(raw)


# -- providers --------------------------------------------------------------------------------


@router.route(
    "POST",
    f"{API}/voip-providers",
    summary="Add a VoIP provider (carrier)",
    tags=("providers",),
    body=ProviderIn,
    responses={201: ProviderOut, 400: E, 401: E, 409: E, 422: E},
)
async def create_provider(req: ApiRequest) -> web.StreamResponse:
    body = req.body_as(ProviderIn)
    provider = await req.raw.app[API_STATE].store.providers.create(
        NewProvider(tenant_id=req.require_tenant().id, **body.model_dump())
    )
    return json_response(
        ProviderOut.model_validate(provider, from_attributes=True),
        201,
        {"Location": f"{API}/voip-providers/{provider.id}"},
    )


@router.route(
    "GET",
    f"{API}/voip-providers",
    summary="List the tenant's providers",
    tags=("providers",),
    responses={200: ProviderListOut, 401: E},
)
async def list_providers(req: ApiRequest) -> web.StreamResponse:
    providers = await req.raw.app[API_STATE].store.providers.all(req.require_tenant().id)
    return json_response(
        ProviderListOut(
            items=[ProviderOut.model_validate(p, from_attributes=True) for p in providers]
        )
    )


@router.route(
    "GET",
    f"{API}/voip-providers/{{provider_id}}",
    summary="One provider (credentials are never returned)",
    tags=("providers",),
    responses={200: ProviderOut, 401: E, 404: E},
)
async def get_provider(req: ApiRequest) -> web.StreamResponse:
    pid = req.path_uuid("provider_id", "provider")
    provider = await req.raw.app[API_STATE].store.providers.get(req.require_tenant().id, pid)
    return json_response(ProviderOut.model_validate(provider, from_attributes=True))


# -- IVR menus --------------------------------------------------------------------------------

IVR = f"{API}/ivr-menus"


def _menu_entries(menus: Mapping[str, IvrMenu]) -> dict[str, Any]:
    """Menus as the plain data of their YAML entries (the shape PUT accepts)."""
    if not menus:
        return {}
    entries: dict[str, Any] = yaml.safe_load(dump_menus(menus))["menus"]
    return entries


def _menu_out(stored: StoredIvrMenu) -> IvrMenuOut:
    entry = _menu_entries({stored.menu.name: stored.menu})[stored.menu.name]
    return IvrMenuOut(
        name=stored.menu.name, version=stored.version, menu=IvrMenuIn.model_validate(entry)
    )


def _menu_field(name: str, field: str | None) -> str:
    """A problem's field relative to the PUT body (``options.1.menu``)."""
    for prefix in (f"menus.{name}", name):
        if field == prefix:
            return "name"
        if field is not None and field.startswith(prefix + "."):
            return field[len(prefix) + 1 :]
    return field or "body"


@router.route(
    "GET",
    IVR,
    summary="List the tenant's IVR menus",
    tags=("ivr",),
    responses={200: IvrMenuListOut, 401: E},
)
async def list_ivr_menus(req: ApiRequest) -> web.StreamResponse:
    stored = await req.raw.app[API_STATE].store.ivr.stored(req.require_tenant().id)
    return json_response(IvrMenuListOut(items=[_menu_out(s) for s in stored]))


@router.route(
    "GET",
    f"{IVR}/{{name}}",
    summary="One IVR menu",
    tags=("ivr",),
    responses={200: IvrMenuOut, 401: E, 404: E},
)
async def get_ivr_menu(req: ApiRequest) -> web.StreamResponse:
    stored = await req.raw.app[API_STATE].store.ivr.get(
        req.require_tenant().id, req.raw.match_info["name"]
    )
    return json_response(_menu_out(stored))


# A character beyond the BMP escaped in JSON is a surrogate pair (backslash-u d83d,
# backslash-u de00); YAML decodes each half on its own, into two lone surrogates that
# PostgreSQL cannot store. YAML's own escape for it is one backslash-U 0001F600. An even
# number of backslashes before "u" is text (an escaped backslash), not an escape.
_SURROGATE_PAIR = re.compile(
    r"(?<!\\)((?:\\\\)*)\\u([dD][89abAB][0-9a-fA-F]{2})\\u([dD][c-fC-F][0-9a-fA-F]{2})"
)


def _yaml_escapes(json_text: str) -> str:
    """JSON text that YAML reads as the same strings (surrogate pairs as one \\U escape)."""

    def one(match: re.Match[str]) -> str:
        high, low = int(match[2], 16), int(match[3], 16)
        code = 0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00)
        return f"{match[1]}\\U{code:08X}"

    return _SURROGATE_PAIR.sub(one, json_text)


@router.route(
    "PUT",
    f"{IVR}/{{name}}",
    summary="Create or replace one IVR menu",
    tags=("ivr",),
    body_content={"application/json": {"schema": {"$ref": "#/components/schemas/IvrMenuIn"}}},
    responses={200: IvrMenuOut, 201: IvrMenuOut, 400: E, 401: E, 413: E, 422: E},
)
async def put_ivr_menu(req: ApiRequest) -> web.StreamResponse:
    """The body is one menu as in a menus YAML file (`ctc ivr import`), validated by the same
    loader: unknown or duplicate keys, invalid digits, fields an action needs, and target
    menus (checked against the tenant's other menus) are 422 naming the field. Replacing a
    menu bumps its `version`; 201 when it is new."""
    tenant = req.require_tenant()
    name = req.raw.match_info["name"]
    text, data = await read_json_object(req.raw)  # 400 unless JSON, 422 unless an object
    repo = req.raw.app[API_STATE].store.ivr
    stored = await repo.all(tenant.id)
    others = _menu_entries({n: m for n, m in stored.items() if n != name})

    def document(body: str) -> str:
        # the body comes first, so its own problems are the ones reported
        rest = "".join(f", {json.dumps(n)}: {json.dumps(e)}" for n, e in others.items())
        return _yaml_escapes(f'{{"menus": {{{json.dumps(name)}: {body}{rest}}}}}')

    try:
        try:
            # the body goes in as text, so duplicate keys are caught (a raw tab in valid
            # JSON is whitespace, which YAML's flow style does not allow)
            menus = load_menus(document(text.replace("\t", " ")), file="body")
        except ConfigError as exc:
            if exc.field is not None:
                raise
            menus = load_menus(document(json.dumps(data)), file="body")  # JSON YAML can't read
        saved = await repo.save(tenant.id, {name: menus[name]})
    except ConfigError as exc:
        raise InvalidInput(_menu_field(name, exc.field), exc.reason) from None
    except InvalidInput as exc:
        raise InvalidInput(_menu_field(name, exc.field), exc.reason) from None
    created = name not in stored
    return json_response(
        _menu_out(saved[name]), 201 if created else 200, {"Location": f"{IVR}/{name}"}
    )


@router.route(
    "DELETE",
    f"{IVR}/{{name}}",
    summary="Delete an IVR menu",
    tags=("ivr",),
    responses={204: None, 401: E, 404: E, 409: E},
)
async def delete_ivr_menu(req: ApiRequest) -> web.StreamResponse:
    """409 while another menu, a routing rule or call history refers to it."""
    await req.raw.app[API_STATE].store.ivr.delete(
        req.require_tenant().id, req.raw.match_info["name"]
    )
    return json_response(None, 204)


# -- webhooks and agent activity --------------------------------------------------------------

# Where each carrier puts its call id in a status webhook (from their documented payloads).
_CALL_ID_FIELDS = {
    "twilio": ("CallSid",),
    "exotel": ("CallSid", "call_sid"),
    "vonage": ("uuid", "conversation_uuid"),
    "mcube": ("callid", "call_id", "CallId"),
    "sip_trunk": ("call_id",),
    "asterisk": ("call_id", "uniqueid"),
}
_EVENT_FIELDS = ("CallStatus", "status", "Status", "event", "EventType")


@router.route(
    "POST",
    f"{API}/webhooks/voip/{{provider_type}}",
    summary="Receive a carrier's status webhook (JSON or form-encoded)",
    tags=("webhooks",),
    body_content={
        "application/json": {"schema": {"type": "object"}},
        "application/x-www-form-urlencoded": {"schema": {"type": "object"}},
    },
    responses={202: WebhookAcceptedOut, 400: E, 401: E, 404: E},
)
async def receive_webhook(req: ApiRequest) -> web.StreamResponse:
    """Logged as received and linked to the session with the carrier's call id."""
    provider_type = req.raw.match_info["provider_type"]
    if provider_type not in PROVIDER_TYPES:
        raise NotFound("provider type", provider_type)
    payload = await _webhook_payload(req.raw)
    call_id = next(
        (str(payload[f]) for f in _CALL_ID_FIELDS[provider_type] if payload.get(f)), None
    )
    event_type = next((str(payload[f]) for f in _EVENT_FIELDS if payload.get(f)), None)
    keep = ("Content-Type", "User-Agent", "X-Twilio-Signature", "X-Exotel-Signature")
    # stored as received, except bytes that were not UTF-8 (aiohttp keeps them as surrogates)
    headers = {h: printable(req.raw.headers[h]) for h in keep if h in req.raw.headers}
    entry = await req.raw.app[API_STATE].store.webhooks.record(
        req.require_tenant().id,
        provider_type,
        payload=payload,
        headers=headers,
        provider_call_id=call_id,
        event_type=event_type,
    )
    return json_response(WebhookAcceptedOut.model_validate(entry, from_attributes=True), 202)


async def _webhook_payload(request: web.Request) -> dict[str, Any]:
    if request.content_type == "application/x-www-form-urlencoded":
        return dict(await read_form(request, what="webhook body"))
    _, payload = await read_json_object(
        request, what="webhook body (not form-encoded)", not_object_status=400
    )
    return payload


@router.route(
    "POST",
    f"{API}/agent-activity",
    summary="Record an agent's activity (login, available, break, ...)",
    tags=("agents",),
    body=AgentActivityIn,
    responses={201: AgentActivityOut, 400: E, 401: E, 404: E, 422: E},
)
async def record_agent_activity(req: ApiRequest) -> web.StreamResponse:
    body = req.body_as(AgentActivityIn)
    entry = await req.raw.app[API_STATE].store.activity.record(
        req.require_tenant().id,
        body.agent_id,
        body.activity,
        session_id=body.session_id,
        details=body.details,
        occurred_at=body.occurred_at,
    )
    return json_response(AgentActivityOut.model_validate(entry, from_attributes=True), 201)


# -- operations -------------------------------------------------------------------------------


def _health_out(req: ApiRequest) -> HealthOut:
    """Details (socket path, users, URLs) only for a trusted caller: the Unix socket or a
    valid token (the auth middleware sets the tenant for both); others get states only."""
    health = req.raw.app[API_STATE].health
    components = health.snapshot() if req.tenant is not None else health.states()
    return HealthOut(status=health.overall, components=components)


@router.route(
    "GET",
    "/healthz",
    summary="Health of every component",
    tags=("ops",),
    responses={200: HealthOut},
    auth=False,
)
async def healthz(req: ApiRequest) -> web.StreamResponse:
    """Without a token on TCP: each component's state only; its detail needs a token."""
    return json_response(_health_out(req))


@router.route(
    "GET",
    "/readyz",
    summary="Ready to take calls (database reachable)",
    tags=("ops",),
    responses={200: HealthOut, 503: HealthOut},
    auth=False,
)
async def readyz(req: ApiRequest) -> web.StreamResponse:
    """Without a token on TCP: each component's state only; its detail needs a token."""
    state = req.raw.app[API_STATE]
    await state.check_database()
    return json_response(_health_out(req), 200 if state.health.ready else 503)


@router.route(
    "GET",
    "/metrics",
    summary="Prometheus metrics",
    tags=("ops",),
    responses={200: None, 401: E},
    auth=False,
    response_content="text/plain",
)
async def metrics(req: ApiRequest) -> web.StreamResponse:
    """On TCP a bearer token is needed unless `api.tcp.metrics_token_required` is false."""
    if req.raw.app[METRICS_NEED_TOKEN] and req.tenant is None:
        raise BadRequest(401, "unauthorized", "missing or invalid bearer token")
    registry = req.raw.app[API_STATE].metrics.registry
    resp = web.Response(body=prometheus_client.generate_latest(registry))
    resp.content_type = "text/plain"
    resp.charset = "utf-8"
    return resp


@router.route(
    "GET",
    f"{API}/openapi.json",
    summary="This document",
    tags=("ops",),
    responses={200: None},
    auth=False,
)
async def openapi_document(req: ApiRequest) -> web.StreamResponse:
    return web.json_response(req.raw.app[API_STATE].openapi)
