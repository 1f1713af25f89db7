"""VoIP providers (carriers): add, list, read one (credentials are never returned), change
one, remove one (deleted when unused, else disabled), test one's credentials against its
carrier."""

from __future__ import annotations

from aiohttp import web

from engine.api.endpoints import ApiRequest, json_response, router
from engine.api.models import (
    ProviderIn,
    ProviderListOut,
    ProviderOut,
    ProviderPatchIn,
    ProviderRemovedOut,
    ProviderTestOut,
)
from engine.api.routes.common import API, error_responses, use_cases
from engine.app.providers import AddProvider
from engine.store.records import ProviderChanges, StoredProvider

__all__ = [
    "create_provider",
    "get_provider",
    "list_providers",
    "remove_provider",
    "test_provider",
    "update_provider",
]


def _provider_out(provider: StoredProvider) -> ProviderOut:
    return ProviderOut.model_validate(provider, from_attributes=True)


@router.route(
    "POST",
    f"{API}/voip-providers",
    summary="Add a VoIP provider (carrier)",
    tags=("providers",),
    body=ProviderIn,
    responses={201: ProviderOut, **error_responses(400, 401, 409, 422)},
)
async def create_provider(req: ApiRequest) -> web.StreamResponse:
    body = req.body_as(ProviderIn)
    request = AddProvider(
        name=body.name,
        provider_type=body.provider_type,
        is_active=body.is_active,
        is_default=body.is_default,
        priority=body.priority,
        weight=body.weight,
        max_concurrent_calls=body.max_concurrent_calls,
        calls_per_second=body.calls_per_second,
        config=body.config,
        credentials=body.credentials,
        webhook_secret=body.webhook_secret,
    )
    provider = await use_cases(req).providers.create(req.require_tenant(), request)
    return json_response(
        _provider_out(provider), 201, {"Location": f"{API}/voip-providers/{provider.id}"}
    )


@router.route(
    "GET",
    f"{API}/voip-providers",
    summary="List the tenant's providers",
    tags=("providers",),
    responses={200: ProviderListOut, **error_responses(401)},
)
async def list_providers(req: ApiRequest) -> web.StreamResponse:
    providers = await use_cases(req).providers.all(req.require_tenant())
    return json_response(ProviderListOut(items=[_provider_out(p) for p in providers]))


@router.route(
    "GET",
    f"{API}/voip-providers/{{provider_id}}",
    summary="One provider (credentials are never returned)",
    tags=("providers",),
    responses={200: ProviderOut, **error_responses(401, 404)},
)
async def get_provider(req: ApiRequest) -> web.StreamResponse:
    provider_id = req.path_uuid("provider_id", "provider")
    provider = await use_cases(req).providers.get(req.require_tenant(), provider_id)
    return json_response(_provider_out(provider))


@router.route(
    "PATCH",
    f"{API}/voip-providers/{{provider_id}}",
    summary="Change a provider: priority, weight, default, active, limits, config, credentials",
    tags=("providers",),
    body=ProviderPatchIn,
    responses={200: ProviderOut, **error_responses(400, 401, 404, 422)},
)
async def update_provider(req: ApiRequest) -> web.StreamResponse:
    provider_id = req.path_uuid("provider_id", "provider")
    body = req.body_as(ProviderPatchIn)
    changes = ProviderChanges(
        priority=body.priority,
        weight=body.weight,
        is_default=body.is_default,
        is_active=body.is_active,
        max_concurrent_calls=body.max_concurrent_calls,
        config=body.config,
        credentials=body.credentials,
        webhook_secret=body.webhook_secret,
    )
    provider = await use_cases(req).providers.update(req.require_tenant(), provider_id, changes)
    return json_response(_provider_out(provider))


@router.route(
    "DELETE",
    f"{API}/voip-providers/{{provider_id}}",
    summary="Remove a provider: deleted when nothing names it, else disabled",
    tags=("providers",),
    responses={200: ProviderRemovedOut, **error_responses(401, 404)},
)
async def remove_provider(req: ApiRequest) -> web.StreamResponse:
    provider_id = req.path_uuid("provider_id", "provider")
    deleted = await use_cases(req).providers.remove(req.require_tenant(), provider_id)
    return json_response(
        ProviderRemovedOut(id=provider_id, outcome="deleted" if deleted else "disabled")
    )


@router.route(
    "POST",
    f"{API}/voip-providers/{{provider_id}}/test",
    summary="Check the provider's credentials with its carrier (no call is placed)",
    tags=("providers",),
    responses={200: ProviderTestOut, **error_responses(401, 404, 503)},
)
async def test_provider(req: ApiRequest) -> web.StreamResponse:
    """ok, refused (the carrier refused the credentials), unsupported (no check without a
    call, e.g. mCube), unreachable, or misconfigured (the row lacks a setting, named)."""
    provider_id = req.path_uuid("provider_id", "provider")
    check = await use_cases(req).providers.check_credentials(req.require_tenant(), provider_id)
    return json_response(ProviderTestOut(outcome=check.outcome.value, detail=check.detail))
