"""The engine's own endpoints: health, readiness, Prometheus metrics, the OpenAPI document."""

from __future__ import annotations

import prometheus_client
from aiohttp import web

from engine.api.endpoints import (
    LOCAL_CALLER,
    ApiRequest,
    json_response,
    refuse_unauthenticated,
    router,
)
from engine.api.models import HealthOut
from engine.api.routes.common import API, error_responses
from engine.api.state import API_STATE, METRICS_NEED_TOKEN

__all__ = ["healthz", "metrics", "openapi_document", "readyz"]


def _health_out(req: ApiRequest) -> HealthOut:
    """Details (socket path, users, URLs) only for a trusted caller: the Unix socket or a
    valid token (the auth middleware sets the tenant for both); others get states only."""
    health = req.raw.app[API_STATE].health
    trusted = req.tenant is not None or req.raw.get(LOCAL_CALLER, False)
    if trusted:
        return HealthOut(status=health.overall, node=health.node, components=health.snapshot())
    return HealthOut(status=health.overall, components=health.states())


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
    responses={200: None, **error_responses(401)},
    auth=False,
    response_content="text/plain",
)
async def metrics(req: ApiRequest) -> web.StreamResponse:
    """On TCP a bearer token is needed unless `api.tcp.metrics_token_required` is false."""
    if req.raw.app[METRICS_NEED_TOKEN] and req.tenant is None:
        refuse_unauthenticated(req.raw)
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
