"""Carriers' status webhooks in (JSON or form-encoded).

A webhook refused here (an unknown provider type, a body that is neither JSON nor a form,
nor within the size limit) is counted in ``ctc_webhook_verification_failures_total``: a
carrier misconfigured, or someone probing the endpoint. Webhooks are not signed yet; the
carriers issue adds the signature check and its reasons to the same counter. A request
without a valid token is refused (401) before this handler, by the API's authentication.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from engine.api.endpoints import (
    ApiRequest,
    BadRequest,
    json_response,
    printable,
    read_form,
    read_json_object,
    router,
)
from engine.api.models import WebhookAcceptedOut
from engine.api.routes.common import API, error_responses, use_cases
from engine.api.state import API_STATE
from engine.errors import NotFound

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
    failures = req.raw.app[API_STATE].metrics.webhook_failures
    name = req.raw.match_info["provider_type"]
    try:  # 404 before the body is read
        provider_type = intake.require_provider_type(name)
    except NotFound:
        failures.count(name, "unknown_provider")
        raise
    try:
        payload = await _webhook_payload(req.raw)
    except (BadRequest, web.HTTPRequestEntityTooLarge):
        failures.count(provider_type.value, "malformed")
        raise
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
