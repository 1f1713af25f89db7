"""Each agent's state now: the one place routing (who may be offered a call) and
``GET /api/v1/agents`` (the console's agent board) read it.

The rules are :mod:`engine.domain.agent_state`'s; the facts come from two places:

1. the agent's newest click-to-call (the engine places it, so its session says when the
   agent's phone rang, when it talked and when the call ended);
2. the agent's newest ``agent_activity_log`` row: a report (``POST /api/v1/agent-activity``)
   or a row the engine wrote when a routing rule offered the agent an IVR call
   (``ringing``, then ``on_call`` for the one who answered and ``available`` for the
   others, then ``wrap_up`` when the call ends). Engine rows carry ``{"by": "engine"}``.

The wrap-up time is the tenant's (``tenant_routing_setting.wrap_up_s``). An agent is its
``agent_id`` when the ERP sent one, else the number or endpoint dialled (``agent_number``),
which is also how a routing rule's members name agents.
"""

from __future__ import annotations

import dataclasses
import enum
import uuid
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Final

from engine.domain.agent_state import BUSY_STATES, AgentStatus, CallFact, LoggedState, agent_status
from engine.domain.call import CallStatus
from engine.store.guards import AgentGuard, AgentJudge
from engine.store.records import AgentActivity, AgentLastCall, NewActivity, Tenant
from engine.store.repositories import Store

__all__ = [
    "CALLS_WINDOW",
    "ENGINE",
    "AgentState",
    "AgentStateService",
    "StateSource",
    "agent_states",
    "busy_judge",
]

# How far back calls make an agent known to the board (reports have no limit).
CALLS_WINDOW: Final = timedelta(hours=24)
_RINGING: Final = frozenset({CallStatus.QUEUED, CallStatus.DIALING_AGENT})
ENGINE: Final = {"by": "engine"}
"""The ``details`` of the log rows the engine writes (not the ERP's reports)."""


class StateSource(enum.StrEnum):
    CALLS = "calls"  # the engine's own calls (sessions, or its rows in the log)
    ACTIVITY = "activity"  # what the ERP reported


@dataclasses.dataclass(frozen=True, slots=True)
class AgentState:
    agent: str
    state: AgentStatus
    since: datetime
    source: StateSource
    calls: int  # sessions in the last CALLS_WINDOW (or still live)
    last_session_id: uuid.UUID | None
    last_status: CallStatus | None
    last_customer: str | None
    in_state_s: float  # seconds since ``since``, when asked


def _logged(report: AgentActivity) -> LoggedState:
    by_engine = report.details.get("by") == "engine"
    return LoggedState(report.activity, report.occurred_at, report.details, by_engine)


def _call_fact(call: AgentLastCall) -> CallFact:
    session = call.session
    if not session.status.is_terminal:
        ringing = session.status in _RINGING
        at = session.created_at if ringing else (session.agent_answered_at or session.created_at)
        return CallFact(live=True, ringing=ringing, at=at)
    ended = session.ended_at or session.updated_at
    return CallFact(
        live=False, ringing=False, at=ended, answered=session.agent_answered_at is not None
    )


def agent_states(
    reports: Sequence[AgentActivity],
    calls: Sequence[AgentLastCall],
    *,
    now: datetime,
    wrap_up: timedelta,
) -> list[AgentState]:
    """Each agent the reports or calls name, with its state at ``now``, by agent."""
    reported = {report.agent_id: report for report in reports}
    last_calls = {call.agent: call for call in calls}
    out: list[AgentState] = []
    for agent in sorted(reported.keys() | last_calls.keys()):
        report, call = reported.get(agent), last_calls.get(agent)
        logged = _logged(report) if report is not None else None
        fact = _call_fact(call) if call is not None else None
        state, since = agent_status(logged, fact, now=now, wrap_up=wrap_up)
        by_call = fact is not None and (
            fact.live or (fact.answered and (logged is None or fact.at >= logged.at))
        )
        from_report = not by_call and logged is not None and not logged.by_engine
        when = since if since is not None else now
        session = call.session if call is not None else None
        out.append(
            AgentState(
                agent=agent,
                state=state,
                since=when,
                source=StateSource.ACTIVITY if from_report else StateSource.CALLS,
                calls=call.calls if call is not None else 0,
                last_session_id=session.id if session is not None else None,
                last_status=session.status if session is not None else None,
                last_customer=session.customer_number if session is not None else None,
                in_state_s=max(0.0, (now - when).total_seconds()),
            )
        )
    return out


def busy_judge(now: datetime, wrap_up: timedelta) -> AgentJudge:
    """An :data:`~engine.store.guards.AgentJudge` by this module's rules at ``now``."""

    def judge(report: AgentActivity | None, call: AgentLastCall | None) -> str | None:
        states = agent_states(
            [report] if report is not None else [],
            [call] if call is not None else [],
            now=now,
            wrap_up=wrap_up,
        )
        state = states[0].state if states else AgentStatus.AVAILABLE
        return state.value if state in BUSY_STATES else None

    return judge


class AgentStateService:
    def __init__(self, store: Store, clock: Callable[[], datetime] | None = None) -> None:
        self._store = store
        self._clock = clock or (lambda: datetime.now(UTC))

    async def board(self, tenant: Tenant) -> list[AgentState]:
        """Every agent the tenant's log or recent calls name, with its state now."""
        return await self._states(tenant.id)

    async def unavailable(self, tenant_id: uuid.UUID, agents: Iterable[str]) -> dict[str, str]:
        """Of ``agents``, those that may not be offered a call now, with their state."""
        wanted = set(agents)
        if not wanted:
            return {}
        return {
            s.agent: s.state.value
            for s in await self._states(tenant_id)
            if s.agent in wanted and s.state is not AgentStatus.AVAILABLE
        }

    async def _states(self, tenant_id: uuid.UUID) -> list[AgentState]:
        now = self._clock()
        settings = await self._store.routing.settings(tenant_id)
        reports = await self._store.activity.latest_per_agent(tenant_id)
        calls = await self._store.sessions.last_call_per_agent(tenant_id, now - CALLS_WINDOW)
        return agent_states(reports, calls, now=now, wrap_up=timedelta(seconds=settings.wrap_up_s))

    # -- what calls do to agents (rows in the log, ``{"by": "engine"}``) --------------------

    async def judge(self, tenant_id: uuid.UUID) -> AgentJudge:
        """The test a reservation applies to an agent's facts read under its lock: the
        agent's state now (the tenant's wrap-up time), busy unless ``available``, ``break``
        or ``offline`` (an agent on a break may still be rung by a click-to-call it placed;
        a routing rule leaves it out before, by :meth:`unavailable`)."""
        settings = await self._store.routing.settings(tenant_id)
        return busy_judge(self._clock(), timedelta(seconds=settings.wrap_up_s))

    async def call_guard(self, tenant_id: uuid.UUID, agent: str, *, refuse: bool) -> AgentGuard:
        """The reservation of ``agent`` for a new outbound call (a click-to-call): taken in
        the call's insert (:mod:`engine.store.guards`); a busy agent refuses the call when
        ``refuse`` (the ERP named it by ``agent_id``), else it is only not logged."""
        return AgentGuard(agent, await self.judge(tenant_id), refuse, ENGINE)

    async def offered(
        self, tenant_id: uuid.UUID, agents: Iterable[str], session_id: uuid.UUID
    ) -> tuple[list[str], dict[str, str]]:
        """A routing rule offers the call ``session_id`` to ``agents``: each is reserved
        atomically (``available → ringing`` under the agent's lock, so an IVR group and a
        click-to-call never both take one agent). The agents reserved, in order, and those
        that were not, with the state that kept them."""
        judge = await self.judge(tenant_id)
        taken: list[str] = []
        kept: dict[str, str] = {}
        for agent in agents:
            busy = await self._store.activity.reserve(
                tenant_id, agent, session_id, judge, details=ENGINE
            )
            if busy is None:
                taken.append(agent)
            else:
                kept[agent] = busy
        return taken, kept

    async def not_answered(
        self, tenant_id: uuid.UUID, agents: Iterable[str], session_id: uuid.UUID
    ) -> None:
        """The offer to ``agents`` ended unanswered (or another answered): available again."""
        await self.log([self.available_row(tenant_id, agent, session_id) for agent in agents])

    async def answered(
        self,
        tenant_id: uuid.UUID,
        agent: str,
        session_id: uuid.UUID,
        at: datetime | None = None,
    ) -> None:
        await self.log([self.on_call_row(tenant_id, agent, session_id, at)])

    async def call_ended(self, tenant_id: uuid.UUID, agent: str, session_id: uuid.UUID) -> None:
        await self.log([await self.ended_row(tenant_id, agent, session_id)])

    async def log(self, rows: Sequence[NewActivity]) -> None:
        """Write the rows the methods below make, in one statement."""
        await self._store.activity.record_many(rows)

    def available_row(
        self, tenant_id: uuid.UUID, agent: str, session_id: uuid.UUID, at: datetime | None = None
    ) -> NewActivity:
        return _row(tenant_id, agent, AgentStatus.AVAILABLE, session_id, at=at)

    def on_call_row(
        self, tenant_id: uuid.UUID, agent: str, session_id: uuid.UUID, at: datetime | None = None
    ) -> NewActivity:
        return _row(tenant_id, agent, AgentStatus.ON_CALL, session_id, at=at)

    async def ended_row(
        self, tenant_id: uuid.UUID, agent: str, session_id: uuid.UUID, at: datetime | None = None
    ) -> NewActivity:
        """The agent's call ended (``at``, else now): wrap-up for the tenant's time from
        then, or available at once when the tenant has none."""
        now = at or self._clock()
        settings = await self._store.routing.settings(tenant_id)
        if settings.wrap_up_s <= 0:
            return _row(tenant_id, agent, AgentStatus.AVAILABLE, session_id, at=now)
        until = now + timedelta(seconds=settings.wrap_up_s)
        return _row(
            tenant_id, agent, AgentStatus.WRAP_UP, session_id, at=now, until=until.isoformat()
        )


def _row(
    tenant_id: uuid.UUID,
    agent: str,
    status: AgentStatus,
    session_id: uuid.UUID,
    *,
    at: datetime | None = None,
    until: str | None = None,
) -> NewActivity:
    details: dict[str, str] = dict(ENGINE)
    if until is not None:
        details["until"] = until
    return NewActivity(tenant_id, agent, status.value, session_id, details, at)
