"""Several engines on one PostgreSQL: calls claimed from a queue by the engine with room,
dialled once; controls sent to any engine carried out by the owner; a dead node's calls
ended after the grace period; ``ctc nodes`` counting the queue.

Asterisk is not the point here (the two-sandbox e2e is): each engine's Dialer and
InCallControls are small recording stand-ins, everything else is the real code over a real
database of each test's own (claimers take every unclaimed call in it).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import cast

import pytest

from engine.app.calls import CallService, InitiateCall
from engine.app.controls import CallControlService, Hold
from engine.app.node_commands import CommandRunner
from engine.app.ports import Dialer, InCallControls, MuteDirection
from engine.claim_queue import ClaimQueue, NoLocalClaims
from engine.config.settings import (
    NodeSettings,
)
from engine.domain.call import CallStatus
from engine.domain.click_to_call import Leg
from engine.domain.event_types import CallEventType
from engine.domain.ivr import TransferTargetType
from engine.domain.providers import ProviderType
from engine.domain.transfer import TransferType
from engine.errors import Conflict, NodeUnavailable
from engine.node_failover import NodeFailover
from engine.node_link import NodeLink
from engine.store.claims import QueueCounts
from engine.store.database import Database
from engine.store.migrations import default_migrations_dir, migrate
from engine.store.records import (
    NewProvider,
    NewSession,
    NewTransfer,
    NodeBeat,
    StoredSession,
    StoredTransfer,
    Tenant,
)
from engine.store.repositories import Store
from tests.support.http import socket_api
from tests.support.nodes import node_engine
from tests.support.tenants import new_tenant, tenant_headers
from tests.support.waiting import eventually


@pytest.fixture
async def db(empty_db: str) -> str:
    await migrate(empty_db, default_migrations_dir())
    return empty_db


class RecordingDialer:
    """A Dialer that records what it was asked to start (the calls stay queued)."""

    def __init__(self, *, ready: bool = True) -> None:
        self.ready = ready
        self.started: list[uuid.UUID] = []

    def writes_behind(self, provider_type: str | None) -> bool:
        return True  # as the click-to-call flow over Asterisk

    def start_call(self, session: StoredSession) -> None:
        self.started.append(session.id)


class RecordingControls:
    """InCallControls that record holds (or refuse them, as a gone leg does)."""

    def __init__(self, refuse: str | None = None) -> None:
        self.holds: list[tuple[uuid.UUID, Leg]] = []
        self.refuse = refuse

    async def hold(self, session: StoredSession, leg: Leg) -> None:
        if self.refuse is not None:
            raise Conflict(self.refuse)
        self.holds.append((session.id, leg))

    async def unhold(self, session: StoredSession, leg: Leg) -> None: ...
    async def mute(self, session: StoredSession, leg: Leg, direction: MuteDirection) -> None: ...
    async def unmute(self, session: StoredSession, leg: Leg, direction: MuteDirection) -> None: ...
    async def send_dtmf(self, session: StoredSession, leg: Leg, digits: str) -> None: ...
    async def pause_recording(self, session: StoredSession) -> str:
        return ""

    async def resume_recording(self, session: StoredSession) -> str:
        return ""


@contextlib.asynccontextmanager
async def _store(url: str, node: str) -> AsyncIterator[Store]:
    async with Database(url, min_size=1, max_size=4, node=node) as database:
        store = Store.over(database)
        async with store.journal:
            yield store


async def _beat(store: Store, name: str, *, asterisk: str = "up", age: float = 0.0) -> None:
    await store.nodes.beat(
        NodeBeat(name, "0.1.0", f"host-{name}", 1, datetime.now(UTC), None, asterisk)
    )
    if age:
        await store.db.execute(
            "UPDATE engine_node SET heartbeat_at = now() - make_interval(secs => $2) "
            "WHERE name = $1",
            name,
            age,
        )


def _claimer(
    store: Store, dialer: RecordingDialer, name: str, *, tick: float = 1.0, **node: object
) -> ClaimQueue:
    settings = NodeSettings(name=name, claim_queue=True, **node)  # type: ignore[arg-type]
    return ClaimQueue(
        store,
        cast(Dialer, dialer),
        settings,
        start_deadline=120,
        live_calls=lambda: len(dialer.started),
        tick=tick,
    )


def _call(n: int = 0) -> InitiateCall:
    return InitiateCall(agent_number="1001", customer_number=f"+1415555{n:04d}")


async def test_a_call_initiated_on_one_engine_is_claimed_and_dialled_by_another(db: str) -> None:
    async with _store(db, "alpha") as alpha, _store(db, "beta") as beta:
        tenant = await new_tenant(alpha)
        beta_dialer = RecordingDialer()
        # beta's claimer is woken by the insert's NOTIFY only (its tick is an hour)
        async with _claimer(beta, beta_dialer, "beta", tick=3600):
            calls = CallService(alpha, queue=NoLocalClaims())  # alpha cannot dial
            session, created = await calls.initiate(tenant, _call())
            assert created
            assert session.node is None  # stored unclaimed
            await eventually(lambda: beta_dialer.started, what="beta claimed the call")
        assert beta_dialer.started == [session.id]
        await beta.journal.flush()
        stored = await alpha.sessions.get(tenant.id, session.id)
        assert stored.node == "beta"
        events = await alpha.sessions.events(tenant.id, session.id)
        claimed = [e for e in events if e.event_type == CallEventType.SESSION_CLAIMED]
        assert [e.payload["node"] for e in claimed] == ["beta"]


async def test_two_idle_engines_share_a_burst_each_call_dialled_once(db: str) -> None:
    async with _store(db, "alpha") as alpha, _store(db, "beta") as beta:
        tenant = await new_tenant(alpha)
        calls = CallService(alpha, queue=NoLocalClaims())
        ids = {(await calls.initiate(tenant, _call(n)))[0].id for n in range(20)}
        dialers = {"alpha": RecordingDialer(), "beta": RecordingDialer()}
        claimers = [
            _claimer(alpha, dialers["alpha"], "alpha", max_calls=10),
            _claimer(beta, dialers["beta"], "beta", max_calls=10),
        ]
        await asyncio.gather(*(c.claim_now() for c in claimers))
        started = dialers["alpha"].started + dialers["beta"].started
        assert sorted(started) == sorted(ids)  # every call once, none twice
        assert (len(dialers["alpha"].started), len(dialers["beta"].started)) == (10, 10)
        # claimed, not dialled (the stand-in dialer leaves them queued): counted per node
        assert await alpha.claims.counts() == QueueCounts(0, {"alpha": 10, "beta": 10})


async def test_the_least_loaded_engine_dials_its_own_calls_at_once(db: str) -> None:
    async with _store(db, "alpha") as alpha:
        tenant = await new_tenant(alpha)
        dialer = RecordingDialer()
        claimer = _claimer(alpha, dialer, "alpha", max_calls=10)
        calls = CallService(alpha, cast(Dialer, dialer), queue=claimer)
        assert claimer.take_here()  # alone: no round through the queue
        session, _ = await calls.initiate(tenant, _call(1))
        assert dialer.started == [session.id]  # before initiate returned
        assert session.node == "alpha"
        await _beat(alpha, "beta")  # an idle peer: as idle as alpha is not busier
        await claimer.housekeeping()
        assert not claimer.take_here()
        queued, _ = await calls.initiate(tenant, _call(2))
        assert queued.node is None
        assert dialer.started == [session.id]


async def test_an_engine_whose_asterisk_is_down_claims_nothing(db: str) -> None:
    async with _store(db, "alpha") as alpha:
        tenant = await new_tenant(alpha)
        await CallService(alpha, queue=NoLocalClaims()).initiate(tenant, _call())
        down = RecordingDialer(ready=False)
        assert await _claimer(alpha, down, "alpha").claim_now() == 0
        assert (await alpha.claims.counts()).unclaimed == 1


async def test_a_busier_engine_yields_to_a_less_loaded_one(db: str) -> None:
    async with _store(db, "alpha") as alpha:
        await _beat(alpha, "beta")  # idle, Asterisk up
        busy = RecordingDialer()
        busy.started = [uuid.uuid4(), uuid.uuid4()]
        claimer = _claimer(alpha, busy, "alpha", max_calls=10, claim_yield=0.05)
        await claimer.housekeeping()
        assert claimer.yield_delay() == pytest.approx(0.05)
        lone = _claimer(alpha, RecordingDialer(), "alpha", max_calls=10)
        assert lone.yield_delay() == 0  # before any peer is known: no wait


async def test_a_silent_node_s_claimed_calls_go_back_and_another_dials_them_once(db: str) -> None:
    async with _store(db, "alpha") as alpha, _store(db, "beta") as beta:
        tenant = await new_tenant(alpha)
        calls = CallService(alpha, queue=NoLocalClaims())
        session, _ = await calls.initiate(tenant, _call())
        beta_dialer = RecordingDialer()
        await _beat(alpha, "alpha")
        # alpha's claim committed, and alpha died before handing the call to its dialer
        assert [c.session.id for c in await alpha.claims.claim("alpha", 1)] == [session.id]
        beta_claimer = _claimer(beta, beta_dialer, "beta", stale_after=30)
        await beta_claimer.housekeeping()  # alpha is fresh: nothing moves
        assert await beta_claimer.claim_now() == 0
        await _beat(alpha, "alpha", age=31)
        await beta_claimer.housekeeping()
        assert beta_claimer.requeued == 1
        assert await beta_claimer.claim_now() == 1
        assert beta_dialer.started == [session.id]
        # a resync of alpha coming back cannot take it again: it is beta's
        assert not await alpha.claims.claim_one(session.id)


async def test_a_claim_handed_to_the_dialer_is_never_requeued_but_ended_after_the_grace(
    db: str,
) -> None:
    # queued in the table says nothing about the dial (the journal writes it behind): a call
    # handed to a dialer may ring already, so no other engine dials it again
    async with _store(db, "alpha") as alpha, _store(db, "beta") as beta:
        tenant = await new_tenant(alpha)
        session, _ = await CallService(alpha, queue=NoLocalClaims()).initiate(tenant, _call())
        alpha_dialer, beta_dialer = RecordingDialer(), RecordingDialer()
        await _beat(alpha, "alpha")
        assert await _claimer(alpha, alpha_dialer, "alpha").claim_now() == 1
        assert alpha_dialer.started == [session.id]
        await _beat(alpha, "alpha", age=200)
        beta_claimer = _claimer(beta, beta_dialer, "beta", stale_after=30)
        await beta_claimer.housekeeping()
        assert beta_claimer.requeued == 0
        assert await beta_claimer.claim_now() == 0
        failover = NodeFailover(beta, NodeSettings(name="beta", claim_queue=True))
        assert await failover.run_once() == 1
        assert failover.requeued == 0
        stored = await beta.sessions.get(tenant.id, session.id)  # alpha's journal is "dead"
        assert (stored.status, stored.end_reason) == (CallStatus.FAILED, "node_lost")
        assert beta_dialer.started == []


async def test_a_screened_call_is_queued_after_its_findings_are_recorded(db: str) -> None:
    async with _store(db, "alpha") as alpha:
        tenant = await new_tenant(alpha)
        await alpha.db.execute(
            "INSERT INTO call_compliance_rule (tenant_id, name, rule_type, action, "
            "max_attempts_per_day) VALUES ($1, 'one-a-day', 'max_attempts', 'warn', 1)",
            tenant.id,
        )
        calls = CallService(alpha, queue=NoLocalClaims())
        await calls.initiate(tenant, _call(1))
        session, _ = await calls.initiate(tenant, _call(1))  # over the limit: a warning
        events = await alpha.sessions.events(tenant.id, session.id)
        assert CallEventType.COMPLIANCE_WARNING in [e.event_type for e in events]
        assert (await alpha.sessions.get(tenant.id, session.id)).node is None
        assert (await alpha.claims.counts()).unclaimed == 2


# -- controls and transfers sent to any engine -------------------------------------------


async def _connected(store: Store, tenant: Tenant) -> StoredSession:
    session, _ = await store.sessions.create(NewSession(tenant.id, "1001", "+14155550100"))
    for status in (
        CallStatus.DIALING_AGENT,
        CallStatus.AGENT_ANSWERED,
        CallStatus.DIALING_CUSTOMER,
        CallStatus.CONNECTED,
    ):
        session, _ = await store.sessions.transition(tenant.id, session.id, status)
    return session


@contextlib.asynccontextmanager
async def _owner(store: Store, name: str, controls: RecordingControls) -> AsyncIterator[NodeLink]:
    """The engine ``name`` serving the commands sent to it."""
    calls = CallService(store)
    control = CallControlService(store, cast(InCallControls, controls))
    link = NodeLink(store, NodeSettings(name=name), tick=3600)
    link.serve(CommandRunner(store, calls, control).run)
    async with link:
        yield link


async def test_a_hold_sent_to_another_engine_reaches_the_owner(db: str) -> None:
    async with _store(db, "alpha") as alpha, _store(db, "beta") as beta:
        tenant = await new_tenant(alpha)
        session = await _connected(alpha, tenant)
        assert session.node == "alpha"
        owner_controls = RecordingControls()
        async with (
            _owner(alpha, "alpha", owner_controls),
            NodeLink(beta, NodeSettings(name="beta", forward_timeout=10), tick=3600) as link,
        ):
            controls = CallControlService(beta, None, owners=link)  # beta has no Asterisk
            updated = await controls.apply(tenant, session.id, Hold(Leg.AGENT))
            assert owner_controls.holds == [(session.id, Leg.AGENT)]
            assert updated.id == session.id
            events = await beta.sessions.events(tenant.id, session.id)
            assert events[-1].event_type == CallEventType.CONTROL_HOLD
            # the owner's refusal comes back as the same error
            owner_controls.refuse = "session's agent leg is gone"
            with pytest.raises(Conflict, match="agent leg is gone"):
                await controls.apply(tenant, session.id, Hold(Leg.AGENT))
            # an end too: the owner ends it
            ended = await CallService(beta, owners=link).end(tenant, session.id, reason="done")
            assert ended.status is CallStatus.COMPLETED
            assert link.forwarded == 3


class TransferringDialer(RecordingDialer):
    """The owner's Dialer: a blind transfer is stored as Asterisk's flow would store it."""

    def __init__(self, store: Store) -> None:
        super().__init__()
        self.store = store

    async def transfer(
        self, session: StoredSession, kind: TransferType, target: str, leg: Leg
    ) -> StoredTransfer:
        return await self.store.transfers.create(
            NewTransfer(
                session.tenant_id,
                session.id,
                kind,
                leg.value,
                TransferTargetType.ENDPOINT,
                target,
                f"transfer-{session.id}",
            )
        )


async def test_a_transfer_sent_to_another_engine_is_started_by_the_owner(db: str) -> None:
    async with _store(db, "alpha") as alpha, _store(db, "beta") as beta:
        tenant = await new_tenant(alpha)
        session = await _connected(alpha, tenant)
        owner_calls = CallService(alpha, cast(Dialer, TransferringDialer(alpha)))
        link_alpha = NodeLink(alpha, NodeSettings(name="alpha"), tick=3600)
        link_alpha.serve(CommandRunner(alpha, owner_calls, CallControlService(alpha)).run)
        async with (
            link_alpha,
            NodeLink(beta, NodeSettings(name="beta", forward_timeout=10), tick=3600) as link,
        ):
            calls = CallService(beta, owners=link)  # beta has no Asterisk
            transfer = await calls.transfer(
                tenant, session.id, TransferType.BLIND, "agent2", Leg.CUSTOMER
            )
        assert (transfer.session_id, transfer.target, transfer.from_leg) == (
            session.id,
            "agent2",
            "customer",
        )
        assert link_alpha.served == 1


async def test_an_owner_that_does_not_answer_is_node_unavailable_and_nothing_runs_later(
    db: str,
) -> None:
    async with _store(db, "alpha") as alpha, _store(db, "beta") as beta:
        tenant = await new_tenant(alpha)
        session = await _connected(alpha, tenant)  # alpha's, and alpha serves nothing
        settings = NodeSettings(name="beta", forward_timeout=0.3)
        async with NodeLink(beta, settings, tick=3600) as link:
            controls = CallControlService(beta, None, owners=link)
            with pytest.raises(NodeUnavailable, match=r"node alpha .* did not answer"):
                await controls.apply(tenant, session.id, Hold(Leg.AGENT))
        owner_controls = RecordingControls()
        async with _owner(alpha, "alpha", owner_controls) as owner:
            assert await owner.take_pending() == 0  # withdrawn: never carried out late
        assert owner_controls.holds == []


async def test_the_api_answers_503_node_unavailable_and_shows_the_owner(db: str) -> None:
    node = NodeSettings(name="beta", forward_timeout=0.3, claim_queue=True)
    async with node_engine(db, node) as beta, _store(db, "alpha") as alpha:
        tenant = await new_tenant(beta.store)
        session = await _connected(alpha, tenant)
        async with socket_api(beta.settings.api.socket) as api:
            path = f"/api/v1/click-to-call/sessions/{session.id}"
            status, body, _ = await api.call("GET", path, headers=tenant_headers(tenant.slug))
            assert (status, body["node"]) == (200, "alpha")
            status, body, _ = await api.call(
                "POST", f"{path}/hold", json={"leg": "agent"}, headers=tenant_headers(tenant.slug)
            )
            assert status == 503
            assert body["error"]["code"] == "node_unavailable"
            # with the claim queue on, a call initiated here is stored unclaimed (no engine
            # here can dial: ARI is off)
            status, body, _ = await api.call(
                "POST",
                "/api/v1/click-to-call/initiate",
                json={"agent_number": "1001", "customer_number": "+14155550199"},
                headers=tenant_headers(tenant.slug),
            )
            assert status in (200, 201, 202)
            assert body["node"] is None
            assert body["status"] == "queued"


# -- owner failover ----------------------------------------------------------------------


async def test_a_dead_node_s_live_calls_are_ended_once_after_the_grace_period(db: str) -> None:
    async with (
        _store(db, "alpha") as alpha,
        _store(db, "beta") as beta,
        _store(db, "gamma") as gamma,
    ):
        tenant = await new_tenant(alpha, callback_url="https://erp.example.com/cb")
        live = [await _connected(alpha, tenant) for _ in range(3)]
        await _beat(alpha, "alpha", age=60)  # silent a minute: within the grace
        survivors = [
            NodeFailover(beta, NodeSettings(name="beta", failover_after=120)),
            NodeFailover(gamma, NodeSettings(name="gamma", failover_after=120)),
        ]
        assert [await f.run_once() for f in survivors] == [0, 0]
        await _beat(alpha, "alpha", age=121)
        taken = await asyncio.gather(*(f.run_once() for f in survivors))
        assert sum(taken) == 3  # each exactly once
        for session in live:
            stored = await alpha.sessions.get(tenant.id, session.id)
            assert (stored.status, stored.end_reason) == (CallStatus.FAILED, "node_lost")
            assert stored.node in ("beta", "gamma")
            events = await alpha.sessions.events(tenant.id, session.id)
            lost = [e for e in events if e.event_type == CallEventType.SESSION_OWNER_LOST]
            assert len(lost) == 1
            payload = lost[0].payload
            assert (payload["node"], payload["ended_by"]) == ("alpha", stored.node)
            assert payload["reason"].startswith("node alpha stopped heartbeating at ")
        callbacks = await alpha.db.fetchval(
            "SELECT count(*) FROM callback_outbox o JOIN call_event e ON e.id = o.event_id "
            "WHERE e.event_type = 'session.owner_lost'"
        )
        assert callbacks == 3


async def test_a_dead_node_s_queued_calls_go_back_to_the_queue(db: str) -> None:
    async with _store(db, "alpha") as alpha, _store(db, "beta") as beta:
        tenant = await new_tenant(alpha)
        queued, _ = await CallService(alpha, queue=NoLocalClaims()).initiate(tenant, _call())
        assert len(await alpha.claims.claim("alpha", 1)) == 1  # claimed, never handed over
        await _beat(alpha, "alpha", age=200)
        failover = NodeFailover(beta, NodeSettings(name="beta", claim_queue=True))
        assert await failover.run_once() == 1
        assert failover.requeued == 1
        stored = await alpha.sessions.get(tenant.id, queued.id)
        assert (stored.status, stored.node) == (CallStatus.QUEUED, None)


async def test_a_dead_node_s_call_its_own_initiate_dialled_at_once_is_ended_not_requeued(
    db: str,
) -> None:
    async with _store(db, "alpha") as alpha, _store(db, "beta") as beta:
        tenant = await new_tenant(alpha)
        # stored as alpha's and handed to its dialer at once (no claim): it may be ringing
        dialled, _ = await alpha.sessions.create(NewSession(tenant.id, "1001", "+14155550100"))
        await _beat(alpha, "alpha", age=200)
        assert await beta.claims.requeue_stale("beta", 30) == 0
        failover = NodeFailover(beta, NodeSettings(name="beta", claim_queue=True))
        assert await failover.run_once() == 1
        assert failover.requeued == 0
        stored = await alpha.sessions.get(tenant.id, dialled.id)
        assert (stored.status, stored.end_reason) == (CallStatus.FAILED, "node_lost")


async def test_a_dead_node_s_carrier_calls_are_neither_requeued_nor_ended(db: str) -> None:
    # a carrier session stays queued while the carrier places it (until its first webhook)
    # and lives on at the carrier: requeuing it would place it twice, ending it would lie
    async with _store(db, "alpha") as alpha, _store(db, "beta") as beta:
        tenant = await new_tenant(alpha)
        carrier = await alpha.providers.create(
            NewProvider(tenant_id=tenant.id, name="tw", provider_type=ProviderType.TWILIO)
        )
        placing, _ = await alpha.sessions.create(
            NewSession(tenant.id, "+14155550101", "+14155550100", provider_id=carrier.id)
        )
        await _beat(alpha, "alpha", age=200)
        failover = NodeFailover(beta, NodeSettings(name="beta", claim_queue=True))
        assert await failover.run_once() == 0
        assert failover.requeued == 0
        stored = await alpha.sessions.get(tenant.id, placing.id)
        assert (stored.status, stored.node) == (CallStatus.QUEUED, "alpha")
        assert await beta.claims.requeue_stale("beta", 30) == 0


async def test_calls_initiated_at_once_never_take_more_than_the_engines_room(db: str) -> None:
    """initiate awaits (screening, the insert) between take_here and dialling: calls that
    arrive together must not all see the same room (e2e: eight at once on max_calls 4)."""
    async with _store(db, "alpha") as alpha:
        tenant = await new_tenant(alpha)
        dialer = RecordingDialer()
        claimer = _claimer(alpha, dialer, "alpha", max_calls=3)
        calls = CallService(alpha, cast(Dialer, dialer), queue=claimer)
        placed = await asyncio.gather(*(calls.initiate(tenant, _call(n)) for n in range(8)))
        sessions = [session for session, _ in placed]
        assert len(dialer.started) == 3
        assert sorted(s.id for s in sessions if s.node == "alpha") == sorted(dialer.started)
        assert sum(s.node is None for s in sessions) == 5  # queued for whoever has room
        assert claimer.room() == 0
