"""Carriers' status webhooks in (JSON or form-encoded), verified before anything is done.

Two doors:

- ``POST /webhooks/voip/{provider_type}/{provider_id}``: the URL a carrier is given
  (:class:`~engine.providers.common.WebhookAddress`). No tenant token: the provider in the
  URL decides the tenant, and the webhook must verify against that provider's carrier.
- ``POST /webhooks/voip/{provider_type}`` (the seed's path), with a tenant's token: the
  webhook must verify against one of the tenant's providers of that type.

A webhook that does not verify is ``401`` and logged as unverified; a refused one (an
unknown provider, a body that is neither JSON nor a form nor within the size limit, a
failed verification) is counted in ``ctc_webhook_verification_failures_total``. A replay
(the carrier's own dedupe key seen before) is ``202``, logged and changes nothing.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

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
from engine.app.webhooks import WebhookOutcome
from engine.domain.providers import ProviderType
from engine.errors import NotFound, WebhookRejected
from engine.providers.base import WebhookRequest

__all__ = ["receive_provider_webhook", "receive_webhook"]

# the request headers kept with a webhook (its media type, the sender, Twilio's signature)
_KEPT_HEADERS = ("Content-Type", "User-Agent", "X-Twilio-Signature")
_BODY = {
    "application/json": {"schema": {"type": "object"}},
    "application/x-www-form-urlencoded": {"schema": {"type": "object"}},
}


@router.route(
    "POST",
    f"{API}/webhooks/voip/{{provider_type}}",
    summary="Receive a carrier's status webhook for the tenant (JSON or form-encoded)",
    tags=("webhooks",),
    body_content=_BODY,
    responses={202: WebhookAcceptedOut, **error_responses(400, 401, 404)},
)
async def receive_webhook(req: ApiRequest) -> web.StreamResponse:
    """Verified against the tenant's providers of that type, then logged and applied to
    the session with the carrier's call id."""
    intake = use_cases(req).webhooks
    provider_type = _provider_type(req)
    request, headers = await _webhook_request(req, provider_type)
    try:
        outcome = await intake.receive_for_tenant(
            req.require_tenant(), provider_type, request, headers
        )
    except WebhookRejected as exc:
        raise _refused(req, provider_type, exc) from None
    return _accepted(outcome)


@router.route(
    "POST",
    f"{API}/webhooks/voip/{{provider_type}}/{{provider_id}}",
    summary="Receive a carrier's status webhook for one provider (no tenant token)",
    tags=("webhooks",),
    body_content=_BODY,
    # 503: the database is away, or the provider is misconfigured (the carrier retries)
    responses={202: WebhookAcceptedOut, **error_responses(400, 401, 404, 503)},
    auth=False,
    foreign_authorization=True,
)
async def receive_provider_webhook(req: ApiRequest) -> web.StreamResponse:
    """The carrier's URL: verified (Twilio signature, Vonage JWT, Exotel/mCube URL token and
    sources), deduplicated, logged, and applied to the provider's session with that call id
    without moving it backwards. 401 when it does not verify."""
    intake = use_cases(req).webhooks
    provider_type = _provider_type(req)
    failures = req.raw.app[API_STATE].metrics.webhook_failures
    try:
        provider = await intake.provider(provider_type, req.path_uuid("provider_id", "provider"))
    except NotFound:
        failures.count(provider_type.value, "unknown_provider")
        raise
    request, headers = await _webhook_request(req, provider_type)
    try:
        outcome = await intake.receive(provider, request, headers)
    except WebhookRejected as exc:
        raise _refused(req, provider_type, exc) from None
    return _accepted(outcome)


def _provider_type(req: ApiRequest) -> ProviderType:
    name = req.raw.match_info["provider_type"]
    try:  # 404 before the body is read
        return use_cases(req).webhooks.require_provider_type(name)
    except NotFound:
        req.raw.app[API_STATE].metrics.webhook_failures.count(name, "unknown_provider")
        raise


def _refused(req: ApiRequest, provider_type: ProviderType, exc: WebhookRejected) -> BadRequest:
    req.raw.app[API_STATE].metrics.webhook_failures.count(provider_type.value, exc.reason)
    return BadRequest(401, "unauthorized", "webhook verification failed", {"reason": exc.reason})


def _accepted(outcome: WebhookOutcome) -> web.Response:
    return json_response(
        WebhookAcceptedOut.model_validate(outcome.entry, from_attributes=True), 202
    )


async def _webhook_request(
    req: ApiRequest, provider_type: ProviderType
) -> tuple[WebhookRequest, dict[str, str]]:
    """The webhook as verification reads it."""
    raw = req.raw
    failures = raw.app[API_STATE].metrics.webhook_failures
    try:
        payload, params = await _webhook_payload(raw)
    except (BadRequest, web.HTTPRequestEntityTooLarge):
        failures.count(provider_type.value, "malformed")
        raise
    body = await raw.read()
    headers = {h: printable(raw.headers[h]) for h in _KEPT_HEADERS if h in raw.headers}
    request = WebhookRequest(
        url=str(raw.url),
        path_qs=raw.raw_path,
        headers=dict(raw.headers.items()),
        body=body,
        params=params,
        payload=payload,
        remote=raw.remote,
        query=dict(raw.query.items()),
    )
    return request, headers


async def _webhook_payload(
    request: web.Request,
) -> tuple[dict[str, Any], dict[str, tuple[str, ...]]]:
    if request.content_type == "application/x-www-form-urlencoded":
        form = dict(await read_form(request, what="webhook body"))
        text = (await request.read()).decode("utf-8")
        params: dict[str, list[str]] = {}
        for key, value in parse_qsl(text, keep_blank_values=True):
            params.setdefault(key, []).append(value)
        return form, {k: tuple(v) for k, v in params.items()}
    _, payload = await read_json_object(
        request, what="webhook body (not form-encoded)", not_object_status=400
    )
    return payload, {}
