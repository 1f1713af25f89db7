"""The checks a new call makes under a lock, in the transaction that stores it.

Why here: "may this call be placed?" has two questions that are only sound when answered
where the row is written. Two initiates to one number must not both pass a per-day attempt
limit (each would count the other's call as not yet there), and two offers to one agent (an
IVR ring group and a click-to-call) must not both take the agent. So each competing writer
takes the same transaction-scoped advisory lock (``pg_advisory_xact_lock`` on the tenant and
the number, or the tenant and the agent) before it counts or reads, and keeps it until its
insert commits: the second one counts or reads what the first wrote.

The decisions stay the caller's: the store takes the lock, reads the facts and hands them
to a pure function the caller passed (:data:`AttemptsJudge`, :data:`AgentJudge`), then
writes what it says.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any, Final, Protocol

import asyncpg

from engine.domain.call import LIVE_STATUSES
from engine.domain.compliance import Finding
from engine.store.database import Connection, returned
from engine.store.records import SESSION_COLUMNS, AgentActivity, AgentLastCall, StoredSession

__all__ = [
    "AGENT_CALLS_WINDOW",
    "AgentGuard",
    "AgentJudge",
    "AttemptsGuard",
    "AttemptsJudge",
    "CreateGuard",
    "Queryable",
    "agent_facts",
    "attempts_since",
    "lock",
]

AGENT_CALLS_WINDOW: Final = timedelta(hours=24)
"""How far back an agent's newest session is read (a live one at any age)."""

_SESSION_COLS: Final = ", ".join(SESSION_COLUMNS)
_ACTIVITY_COLUMNS: Final = (
    "id",
    "tenant_id",
    "agent_id",
    "activity",
    "session_id",
    "details",
    "occurred_at",
)
# the activity row's columns beside the session's in one result row (both have id, ...)
_ACTIVITY_PREFIX: Final = "activity_"
_LIVE: Final = [s.value for s in LIVE_STATUSES]
# both facts of an agent side by side (NULLs where it has none): one round trip, not two
_AGENT_FACTS: Final = (
    f"SELECT a.*, s.* FROM (SELECT 1) AS one "
    f"LEFT JOIN LATERAL (SELECT "
    f"{', '.join(f'{c} AS {_ACTIVITY_PREFIX}{c}' for c in _ACTIVITY_COLUMNS)} "
    f"FROM agent_activity_log WHERE tenant_id = $1 AND agent_id = $2 "
    f"ORDER BY occurred_at DESC, id DESC LIMIT 1) AS a ON true "
    f"LEFT JOIN LATERAL (SELECT {_SESSION_COLS} FROM click_to_call_session "
    f"WHERE tenant_id = $1 AND coalesce(agent_id, agent_number) = $2 "
    f"AND (created_at >= $3 OR status = ANY($4)) ORDER BY created_at DESC, id DESC LIMIT 1) "
    f"AS s ON true"
)

AttemptsJudge = Callable[[int], Finding | None]
"""Given the calls placed to the number today (counted under the lock): the refusal, if any."""

AgentJudge = Callable[[AgentActivity | None, AgentLastCall | None], str | None]
"""Given the agent's newest log row and newest session (read under the lock): the state
that keeps the agent from a new call (``"on_call"``), or None when it may take one."""


class Queryable(Protocol):
    """A connection or the pool (:class:`~engine.store.database.Database`)."""

    async def fetchval(self, query: str, *args: Any) -> Any: ...

    async def fetchrow(self, query: str, *args: Any) -> asyncpg.Record | None: ...


@dataclasses.dataclass(frozen=True, slots=True)
class AttemptsGuard:
    """Recount the calls to ``number`` since ``since`` under the number's lock."""

    number: str
    since: datetime
    judge: AttemptsJudge


@dataclasses.dataclass(frozen=True, slots=True)
class AgentGuard:
    """Take ``agent`` for the new call under the agent's lock: when ``judge`` finds it free,
    a ``ringing`` row is logged for the call (``details``); when busy, the call is refused
    (:class:`~engine.errors.AgentBusy`) if ``refuse``, else only not logged."""

    agent: str
    judge: AgentJudge
    refuse: bool
    details: Mapping[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True, slots=True)
class CreateGuard:
    """What a new session's insert decides in its transaction: ``refusal`` (known before)
    stores it ``rejected`` at once; ``attempts`` may add one; ``agent`` reserves its agent."""

    refusal: Finding | None = None
    attempts: AttemptsGuard | None = None
    agent: AgentGuard | None = None


async def lock(conn: Connection, kind: str, tenant_id: uuid.UUID, key: str) -> None:
    """Hold the transaction-scoped lock of ``kind`` (``attempts``, ``agent``) on the
    tenant's ``key`` until the transaction ends."""
    await conn.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", f"{kind}\x1f{tenant_id}\x1f{key}"
    )


async def attempts_since(q: Queryable, tenant_id: uuid.UUID, number: str, since: datetime) -> int:
    """Calls placed to ``number`` since ``since``: refused calls were never dialled, and an
    inbound call's ``customer_number`` is its caller (calls from the number are not attempts
    to reach it)."""
    count: int = await q.fetchval(
        "SELECT count(*) FROM click_to_call_session WHERE tenant_id = $1 "
        "AND customer_number = $2 AND created_at >= $3 AND status <> 'rejected' "
        "AND direction <> 'inbound'",
        tenant_id,
        number,
        since,
    )
    return count


async def agent_facts(
    q: Queryable, tenant_id: uuid.UUID, agent: str, now: datetime
) -> tuple[AgentActivity | None, AgentLastCall | None]:
    """The agent's newest ``agent_activity_log`` row and newest session (created within
    :data:`AGENT_CALLS_WINDOW` of ``now``, or still live), in one round trip."""
    row = returned(
        await q.fetchrow(_AGENT_FACTS, tenant_id, agent, now - AGENT_CALLS_WINDOW, _LIVE),
        "the agent facts query",
    )
    logged = {c: row[_ACTIVITY_PREFIX + c] for c in _ACTIVITY_COLUMNS}
    activity = AgentActivity(**logged) if logged["id"] is not None else None
    call = None
    if row["id"] is not None:
        session = StoredSession.from_row({c: row[c] for c in SESSION_COLUMNS})
        call = AgentLastCall(agent, session, 1)
    return activity, call
