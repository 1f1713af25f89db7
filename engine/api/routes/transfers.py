"""Transfers of a connected call: start one (blind or attended), complete or cancel an
attended one."""

from __future__ import annotations

from aiohttp import web
from pydantic import BaseModel

from engine.api.endpoints import ApiRequest, json_response, router
from engine.api.models import TransferIn, TransferOut
from engine.api.routes.common import C2C, error_responses, path_session_id, use_cases
from engine.domain.click_to_call import Leg
from engine.domain.transfer import TransferType
from engine.store.records import StoredTransfer

__all__ = ["cancel_transfer", "complete_transfer", "transfer_session"]

_RESPONSES: dict[int, type[BaseModel] | None] = {
    200: TransferOut,
    **error_responses(400, 401, 403, 404, 409, 422, 503),
}


def _transfer_out(transfer: StoredTransfer) -> web.Response:
    return json_response(TransferOut.model_validate(transfer, from_attributes=True))


@router.route(
    "POST",
    f"{C2C}/sessions/{{session_id}}/transfer",
    summary="Transfer a connected call: replace its agent or customer leg (blind or attended)",
    tags=("click-to-call",),
    body=TransferIn,
    responses=_RESPONSES,
)
async def transfer_session(req: ApiRequest) -> web.StreamResponse:
    """Rings the target (an agent endpoint or an E.164 number). Blind: the target replaces
    the `leg` (default `agent`) when it answers. Attended: the customer hears music on hold
    and the agent consults the target; then `transfer/complete` or `transfer/cancel`. A call
    may be transferred again once a transfer ended (one in flight at a time, else 409). The
    answer is the transfer as it stands (state `initiated` while the target rings)."""
    body = req.body_as(TransferIn)
    transfer = await use_cases(req).calls.transfer(
        req.require_tenant(),
        path_session_id(req),
        TransferType(body.type),
        body.target,
        Leg(body.leg),
    )
    return _transfer_out(transfer)


@router.route(
    "POST",
    f"{C2C}/sessions/{{session_id}}/transfer/complete",
    summary="Complete an attended transfer (the target replaces the transferred leg)",
    tags=("click-to-call",),
    responses=_RESPONSES,
)
async def complete_transfer(req: ApiRequest) -> web.StreamResponse:
    calls = use_cases(req).calls
    return _transfer_out(await calls.complete_transfer(req.require_tenant(), path_session_id(req)))


@router.route(
    "POST",
    f"{C2C}/sessions/{{session_id}}/transfer/cancel",
    summary="Cancel an attended transfer (the target is released, the agent returns)",
    tags=("click-to-call",),
    responses=_RESPONSES,
)
async def cancel_transfer(req: ApiRequest) -> web.StreamResponse:
    calls = use_cases(req).calls
    return _transfer_out(await calls.cancel_transfer(req.require_tenant(), path_session_id(req)))
