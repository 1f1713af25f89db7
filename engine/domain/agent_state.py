"""An agent's state: the one answer to "may this agent be offered a call now?".

Six states. ``available`` is the only one a routing rule offers a call to; ``ringing``,
``on_call`` and ``wrap_up`` are set by calls, ``break`` and ``offline`` by the agent (its
ERP, ``POST /api/v1/agent-activity``, which may also say ``available`` or ``wrap_up``).
Calls move an agent ``available → ringing`` (offered), ``→ on_call`` (answered), and when
the call ends ``→ wrap_up`` for the tenant's wrap-up time ``→ available`` (a wrap-up of 0
goes straight back). An offer nobody answered puts the agent back to ``available``.

Two facts decide the state, newest first:

* the agent's live click-to-call, if any (``ringing`` while its leg is dialled, else
  ``on_call``), and the end of its last answered click-to-call (then ``wrap_up``);
* its newest ``agent_activity_log`` row: a report, or a row the engine wrote for an IVR
  transfer's offer (``ringing``, ``on_call``, ``wrap_up``, ``available``).

A wrap-up ends by itself: its row carries ``until`` (or the tenant's wrap-up time from the
row's time), after which the agent is ``available`` since then; no row has to be written
at that moment, and the log still tells the whole story (the occupancy below reads it).
A ``ringing`` row older than :data:`RING_LIMIT` is over too (an engine that stopped
mid-offer must not keep an agent from calls), and so is a click-to-call still dialling its
agent after that long (one the ERP drives by ``PATCH .../status`` and left queued). An
agent never heard of is ``available``: rules work before the ERP reports anything.

The log's older vocabulary stays readable: ``login`` is ``available``, ``logout`` is
``offline``, ``busy`` (on a call the engine does not see) is ``on_call``.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any, Final

__all__ = [
    "BUSY_STATES",
    "RING_LIMIT",
    "AgentStatus",
    "CallFact",
    "LoggedState",
    "agent_status",
    "occupancy",
    "status_of",
]

RING_LIMIT: Final = timedelta(seconds=600)
"""The longest an offer rings (a rule's ``ring_timeout_s`` is at most 600 s)."""


class AgentStatus(enum.StrEnum):
    AVAILABLE = "available"
    RINGING = "ringing"
    ON_CALL = "on_call"
    WRAP_UP = "wrap_up"
    BREAK = "break"
    OFFLINE = "offline"


BUSY_STATES: Final = frozenset({AgentStatus.RINGING, AgentStatus.ON_CALL, AgentStatus.WRAP_UP})
"""Working on a call: counted as occupied, never offered another."""

_LEGACY: Final[Mapping[str, AgentStatus]] = {
    "login": AgentStatus.AVAILABLE,
    "logout": AgentStatus.OFFLINE,
    "busy": AgentStatus.ON_CALL,
}


def status_of(activity: str) -> AgentStatus:
    """The state an ``agent_activity_log.activity`` value stands for."""
    return _LEGACY.get(activity) or AgentStatus(activity)


@dataclasses.dataclass(frozen=True, slots=True)
class LoggedState:
    """An agent's newest ``agent_activity_log`` row."""

    activity: str
    at: datetime
    details: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    by_engine: bool = False  # written by the engine (a call), not reported by the ERP


@dataclasses.dataclass(frozen=True, slots=True)
class CallFact:
    """An agent's newest click-to-call: live (``ringing`` or talking since ``at``), or
    ended at ``at`` (``answered``: it talked, so a wrap-up follows)."""

    live: bool
    ringing: bool
    at: datetime
    answered: bool = False


def _wrap_up_end(logged: LoggedState, wrap_up: timedelta) -> datetime:
    until = logged.details.get("until")
    if isinstance(until, str):
        try:
            return datetime.fromisoformat(until)
        except ValueError:
            pass
    return logged.at + wrap_up


def agent_status(
    logged: LoggedState | None,
    call: CallFact | None,
    *,
    now: datetime,
    wrap_up: timedelta,
) -> tuple[AgentStatus, datetime | None]:
    """The agent's state now and since when (None: never heard of), by the module's rules."""
    if call is not None and call.live and not (call.ringing and now >= call.at + RING_LIMIT):
        return (AgentStatus.RINGING if call.ringing else AgentStatus.ON_CALL), call.at
    if call is not None and call.answered and (logged is None or call.at >= logged.at):
        end = call.at + wrap_up
        if now < end:
            return AgentStatus.WRAP_UP, call.at
        return AgentStatus.AVAILABLE, end
    if call is not None and logged is not None and logged.by_engine and call.at >= logged.at:
        # the engine's row is older than the call's unanswered end (it may be that call's
        # ringing, its available not written yet): the end decides
        return AgentStatus.AVAILABLE, call.at
    if logged is None:  # never reported: available (since its last call, if any)
        return AgentStatus.AVAILABLE, call.at if call is not None else None
    status = status_of(logged.activity)
    if status is AgentStatus.WRAP_UP:
        end = _wrap_up_end(logged, wrap_up)
        if now >= end:
            return AgentStatus.AVAILABLE, end
    elif status is AgentStatus.RINGING and now >= logged.at + RING_LIMIT:
        return AgentStatus.AVAILABLE, logged.at + RING_LIMIT
    return status, logged.at


def occupancy(
    log: Iterable[LoggedState], start: datetime, end: datetime, *, wrap_up: timedelta
) -> float | None:
    """The share of its staffed time (not ``break``/``offline``) the agent spent on calls
    (``ringing``, ``on_call``, ``wrap_up``) between ``start`` and ``end``, from its log
    rows in time order (the state before the first row in the window is the last row
    before it, else ``offline``); None when it was never staffed."""
    rows = sorted(log, key=lambda r: r.at)
    # the timeline: (from, state); a wrap-up row adds the available that ends it
    points: list[tuple[datetime, AgentStatus]] = []
    for i, row in enumerate(rows):
        status = status_of(row.activity)
        points.append((row.at, status))
        if status is AgentStatus.WRAP_UP:
            ends = _wrap_up_end(row, wrap_up)
            following = rows[i + 1].at if i + 1 < len(rows) else None
            if following is None or ends < following:
                points.append((ends, AgentStatus.AVAILABLE))
    staffed = busy = 0.0
    current = AgentStatus.OFFLINE
    cursor = start
    for at, status in [*points, (end, AgentStatus.OFFLINE)]:
        if at > cursor:
            span = (min(at, end) - cursor).total_seconds()
            if current not in (AgentStatus.BREAK, AgentStatus.OFFLINE):
                staffed += span
                if current in BUSY_STATES:
                    busy += span
            cursor = min(at, end)
        if at >= end:
            break
        current = status
    return busy / staffed if staffed > 0 else None
