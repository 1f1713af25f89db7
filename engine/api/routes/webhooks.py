"""Carriers' status webhooks in (JSON or form-encoded)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from engine.api.endpoints import (
    ApiRequest,
    json_response,
    printable,
    read_form,
    read_json_object,
    router,
)
from engine.api.models import WebhookAcceptedOut
from engine.api.routes.common import API, error_responses, use_cases

__all__ = ["receive_webhook"]

# the request headers kept with a webhook (its media type, the sender, carriers' signatures)
_KEPT_HEADERS = ("Content-Type", "User-Agent", "X-Twilio-Signature", "X-Exotel-Signature")


@router.route(
    "POST",
    f"{API}/webhooks/voip/{{provider_type}}",
    summary="Receive a carrier's status webhook (JSON or form-encoded)",
    tags=("webhooks",),
    body_content={
        "application/json": {"schema": {"type": "object"}},
        "application/x-www-form-urlencoded": {"schema": {"type": "object"}},
    },
    responses={202: WebhookAcceptedOut, **error_responses(400, 401, 404)},
)
async def receive_webhook(req: ApiRequest) -> web.StreamResponse:
    """Logged as received and linked to the session with the carrier's call id."""
    intake = use_cases(req).webhooks
    # 404 before the body is read
    provider_type = intake.require_provider_type(req.raw.match_info["provider_type"])
    payload = await _webhook_payload(req.raw)
    # stored as received, except bytes that were not UTF-8 (aiohttp keeps them as surrogates)
    headers = {h: printable(req.raw.headers[h]) for h in _KEPT_HEADERS if h in req.raw.headers}
    entry = await intake.receive(req.require_tenant(), provider_type, payload, headers)
    return json_response(WebhookAcceptedOut.model_validate(entry, from_attributes=True), 202)


async def _webhook_payload(request: web.Request) -> dict[str, Any]:
    if request.content_type == "application/x-www-form-urlencoded":
        return dict(await read_form(request, what="webhook body"))
    _, payload = await read_json_object(
        request, what="webhook body (not form-encoded)", not_object_status=400
    )
    return payload
