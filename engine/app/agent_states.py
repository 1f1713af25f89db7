"""Where each agent is now, for the console's agent board.

Two sources, in this order of trust:

1. a live click-to-call the engine is placing for the agent: it says *ringing* (the
   agent's phone is being dialled) or *on_call*, whatever the agent last reported —
   the engine sees that call happen;
2. otherwise the agent's newest report to ``POST /api/v1/agent-activity`` (login,
   available, break, ...);
3. an agent who never reported but had calls in the last day is *idle* since its last
   call ended (the event log is all we know of it).

An agent is its ``agent_id`` when the ERP sent one, else the number or endpoint dialled
(``agent_number``), so reports (keyed by ``agent_id``) and calls meet when the ERP sends
the same id in both.
"""

from __future__ import annotations

import dataclasses
import enum
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Final

from engine.domain.call import CallStatus
from engine.store.records import AgentActivity, AgentLastCall, Tenant
from engine.store.repositories import Store

__all__ = ["CALLS_WINDOW", "AgentState", "AgentStateService", "StateSource", "agent_states"]

# How far back calls make an agent known to the board (reports have no limit).
CALLS_WINDOW: Final = timedelta(hours=24)
_RINGING: Final = frozenset({CallStatus.QUEUED, CallStatus.DIALING_AGENT})


class StateSource(enum.StrEnum):
    CALLS = "calls"  # the engine's own sessions (and their events)
    ACTIVITY = "activity"  # what the ERP reported


@dataclasses.dataclass(frozen=True, slots=True)
class AgentState:
    agent: str
    state: str  # ringing, on_call, idle, or a reported activity (available, break, ...)
    since: datetime
    source: StateSource
    calls: int  # sessions in the last CALLS_WINDOW (or still live)
    last_session_id: uuid.UUID | None
    last_status: CallStatus | None
    last_customer: str | None


def agent_states(
    reports: Sequence[AgentActivity], calls: Sequence[AgentLastCall]
) -> list[AgentState]:
    """Each agent's state by the rules of the module docstring, by agent."""
    reported = {report.agent_id: report for report in reports}
    last_calls = {call.agent: call for call in calls}
    return [
        _state_of(agent, reported.get(agent), last_calls.get(agent))
        for agent in sorted(reported.keys() | last_calls.keys())
    ]


def _state_of(agent: str, report: AgentActivity | None, call: AgentLastCall | None) -> AgentState:
    """One agent's state from its newest report and its newest call (one at least)."""
    session = call.session if call is not None else None
    state: str
    since: datetime | None
    if session is not None and not session.status.is_terminal:
        ringing = session.status in _RINGING
        state = "ringing" if ringing else "on_call"
        since = session.created_at if ringing else session.agent_answered_at
        source = StateSource.CALLS
    elif report is not None:
        state, since, source = report.activity, report.occurred_at, StateSource.ACTIVITY
    else:
        state, since, source = "idle", None, StateSource.CALLS
    if since is None and session is not None:
        since = session.ended_at or session.updated_at
    return AgentState(
        agent=agent,
        state=state,
        since=since if since is not None else datetime.now(UTC),
        source=source,
        calls=call.calls if call is not None else 0,
        last_session_id=session.id if session is not None else None,
        last_status=session.status if session is not None else None,
        last_customer=session.customer_number if session is not None else None,
    )


class AgentStateService:
    def __init__(self, store: Store, clock: Callable[[], datetime] | None = None) -> None:
        self._store = store
        self._clock = clock or (lambda: datetime.now(UTC))

    async def board(self, tenant: Tenant) -> list[AgentState]:
        """Every agent the tenant's reports or recent calls name, with its state now."""
        reports = await self._store.activity.latest_per_agent(tenant.id)
        calls = await self._store.sessions.last_call_per_agent(
            tenant.id, self._clock() - CALLS_WINDOW
        )
        return agent_states(reports, calls)
