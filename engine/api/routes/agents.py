"""Agent activity reported by the ERP (login, available, break, ...), and each agent's
state now (the console's agent board)."""

from __future__ import annotations

from aiohttp import web

from engine.api.endpoints import ApiRequest, json_response, router
from engine.api.models import (
    AgentActivityIn,
    AgentActivityOut,
    AgentStateListOut,
    AgentStateOut,
)
from engine.api.routes.common import API, error_responses, listing_out, use_cases
from engine.app.agents import ActivityReport

__all__ = ["agent_board", "record_agent_activity"]


@router.route(
    "POST",
    f"{API}/agent-activity",
    summary="Record an agent's activity (login, available, break, ...)",
    tags=("agents",),
    body=AgentActivityIn,
    responses={201: AgentActivityOut, **error_responses(400, 401, 404, 422)},
)
async def record_agent_activity(req: ApiRequest) -> web.StreamResponse:
    body = req.body_as(AgentActivityIn)
    report = ActivityReport(
        agent_id=body.agent_id,
        activity=body.activity,
        session_id=body.session_id,
        details=body.details,
        occurred_at=body.occurred_at,
    )
    entry = await use_cases(req).agents.record(req.require_tenant(), report)
    return json_response(AgentActivityOut.model_validate(entry, from_attributes=True), 201)


@router.route(
    "GET",
    f"{API}/agents",
    summary="Every agent's state now",
    tags=("agents",),
    responses={200: AgentStateListOut, **error_responses(401)},
)
async def agent_board(req: ApiRequest) -> web.StreamResponse:
    """Agents named by an activity report or by a session of the last 24 hours. A live
    call the engine places for the agent says `ringing` or `on_call` (source `calls`);
    otherwise the agent's newest report (source `activity`); otherwise `idle` since its
    last call ended."""
    states = await use_cases(req).agent_states.board(req.require_tenant())
    return json_response(listing_out(AgentStateListOut, AgentStateOut, states))
