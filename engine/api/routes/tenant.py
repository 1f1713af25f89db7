"""The tenant a token acts for: what the console shows beside its title, and how an
integrator checks a token without touching a call."""

from __future__ import annotations

from aiohttp import web

from engine.api.endpoints import ApiRequest, json_response, router
from engine.api.models import TenantOut
from engine.api.routes.common import API, error_responses

__all__ = ["current_tenant"]


@router.route(
    "GET",
    f"{API}/tenant",
    summary="The tenant this token acts for",
    tags=("tenant",),
    responses={200: TenantOut, **error_responses(401)},
)
async def current_tenant(req: ApiRequest) -> web.StreamResponse:
    tenant = req.require_tenant()
    return json_response(TenantOut(slug=tenant.slug, name=tenant.name))
