"""The tenant a token acts for: what the console shows beside its title, how an integrator
checks a token without touching a call, and what the ERP administers itself: its callback
URL, its callback signing secret (rotated with a grace period) and its API tokens.

What stays the PBX admin's (``ctc tenant``): creating tenants and the private networks a
tenant's callbacks may reach (``--allow-cidr``): a token must not widen its own reach.
"""

from __future__ import annotations

from aiohttp import web

from engine.api.endpoints import ApiRequest, json_response, router
from engine.api.models import (
    IssuedTokenOut,
    SecretRotationIn,
    SecretRotationOut,
    TenantOut,
    TenantUpdateIn,
    TokenIn,
    TokenListOut,
    TokenOut,
)
from engine.api.routes.common import API, error_responses, listing_out, use_cases
from engine.store.records import Tenant

__all__ = [
    "create_token",
    "current_tenant",
    "list_tokens",
    "revoke_token",
    "rotate_callback_secret",
    "update_tenant",
]


def _tenant_out(tenant: Tenant) -> TenantOut:
    return TenantOut(slug=tenant.slug, name=tenant.name, callback_url=tenant.callback_url)


@router.route(
    "GET",
    f"{API}/tenant",
    summary="The tenant this token acts for",
    tags=("tenant",),
    responses={200: TenantOut, **error_responses(401)},
)
async def current_tenant(req: ApiRequest) -> web.StreamResponse:
    return json_response(_tenant_out(req.require_tenant()))


@router.route(
    "PATCH",
    f"{API}/tenant",
    summary="Change the tenant's callback URL",
    tags=("tenant",),
    body=TenantUpdateIn,
    responses={200: TenantOut, **error_responses(401)},
)
async def update_tenant(req: ApiRequest) -> web.StreamResponse:
    """422 naming `callback_url` for a URL the tenant's network policy refuses (loopback,
    private networks unless the admin allowed them)."""
    body = req.body_as(TenantUpdateIn)
    url = "" if body.callback_url is None else str(body.callback_url)
    updated = await use_cases(req).tenants.update(req.require_tenant().slug, callback_url=url)
    return json_response(_tenant_out(updated))


@router.route(
    "POST",
    f"{API}/tenant/callback-secret",
    summary="Rotate the tenant's callback signing secret",
    tags=("tenant",),
    body=SecretRotationIn,
    responses={200: SecretRotationOut, **error_responses(401)},
)
async def rotate_callback_secret(req: ApiRequest) -> web.StreamResponse:
    """A new HMAC key for the tenant's callbacks, shown once in this answer. Until
    `previous_valid_until` every callback carries two `v1=` signatures, one per secret."""
    body = req.body_as(SecretRotationIn)
    rotation = await use_cases(req).tenants.rotate_callback_secret(
        req.require_tenant().slug, grace_seconds=body.grace_seconds
    )
    return json_response(
        SecretRotationOut(
            callback_secret=rotation.callback_secret,
            previous_valid_until=rotation.previous_valid_until,
        )
    )


@router.route(
    "GET",
    f"{API}/tokens",
    summary="The tenant's API tokens",
    tags=("tenant",),
    responses={200: TokenListOut, **error_responses(401)},
)
async def list_tokens(req: ApiRequest) -> web.StreamResponse:
    """Newest first, revoked ones too; never the tokens themselves (only their prefix)."""
    tokens = await use_cases(req).tenants.tokens(req.require_tenant())
    return json_response(listing_out(TokenListOut, TokenOut, tokens))


@router.route(
    "POST",
    f"{API}/tokens",
    summary="Create an API token for the tenant",
    tags=("tenant",),
    body=TokenIn,
    responses={201: IssuedTokenOut, **error_responses(401)},
)
async def create_token(req: ApiRequest) -> web.StreamResponse:
    """The token is in this answer only; only its hash is kept. To replace a token:
    create one, switch to it, revoke the old one."""
    tenant = req.require_tenant()
    issued = await use_cases(req).tenants.issue_token(tenant.slug, req.body_as(TokenIn).name)
    return json_response(IssuedTokenOut(id=issued.id, token=issued.token), 201)


@router.route(
    "DELETE",
    f"{API}/tokens/{{token_id}}",
    summary="Revoke one of the tenant's API tokens",
    tags=("tenant",),
    responses={200: TokenOut, **error_responses(401, 404)},
)
async def revoke_token(req: ApiRequest) -> web.StreamResponse:
    """Revoking the token the request presents is allowed (the next request is 401); other
    engines refuse it within 5 seconds."""
    token_id = req.path_uuid("token_id", "api token")
    info = await use_cases(req).tenants.revoke_token(req.require_tenant(), token_id)
    return json_response(TokenOut.model_validate(info, from_attributes=True))
