"""The customer leg through sip_trunk providers against a stand-in ARI and a real database:
which trunks are candidates and in which order, and the failover the flow carries out on a
trunk's answer (engine/asterisk/flows/trunks.py, click_to_call.py). The real SIP answers
are exercised end to end in tests/e2e/test_sip_trunks.py."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

from engine.app.provider_breakers import ProviderBreakers
from engine.asterisk.flows.stasis import StasisApp
from engine.asterisk.flows.trunks import TrunkRoutes
from engine.asterisk.links.ari import AriClient
from engine.asterisk.naming import leg_channel_id
from engine.config.settings import CallSettings
from engine.domain.call import CallStatus
from engine.domain.click_to_call import Leg
from engine.domain.failover import AttemptOutcome
from engine.domain.providers import ProviderType
from engine.store.records import NewProvider, NewSession, StoredSession
from engine.store.repositories import Store
from tests.integration.test_stasis_app import WITHIN, FakeAri, _status, ari, store

__all__ = ["ari", "store"]  # the fixtures, shared with test_stasis_app

NUMBER = "+4930123456"


async def _trunk(
    store: Store, tenant_id: uuid.UUID, name: str, priority: int, **config: Any
) -> uuid.UUID:
    provider = await store.providers.create(
        NewProvider(
            tenant_id=tenant_id,
            name=name,
            provider_type=ProviderType.SIP_TRUNK,
            priority=priority,
            config=config,
        )
    )
    return provider.id


async def _session(store: Store, tenant_id: uuid.UUID, provider_id: uuid.UUID) -> StoredSession:
    session, _ = await store.sessions.create(
        NewSession(
            tenant_id=tenant_id,
            agent_number="1001",
            customer_number=NUMBER,
            provider_id=provider_id,
        )
    )
    return session


@contextlib.asynccontextmanager
async def _customer_ringing(
    store: Store, ari: FakeAri, session: StoredSession
) -> AsyncIterator[str]:
    """The Stasis app running with ``session``'s agent answered: the resync dials the queued
    call's agent, the agent answers, the customer leg is originated. Yields its channel."""
    agent, customer = (leg_channel_id(session.id, leg) for leg in (Leg.AGENT, Leg.CUSTOMER))
    async with (
        AriClient(ari.url, "u", "p") as client,
        StasisApp(client, store, CallSettings()) as app,
    ):
        async with asyncio.timeout(WITHIN):
            await app.resync.completed.wait()
        await ari.until(lambda: ("POST", f"/channels/{agent}") in ari.requests)
        await ari.send({"type": "StasisStart", "channel": {"id": agent}, "args": ["c2c"]})
        await _status(store, session.id, CallStatus.DIALING_CUSTOMER)
        yield customer


async def _attempts(store: Store, session_id: uuid.UUID) -> list[tuple[str, str]]:
    await store.journal.flush()  # a call's events are written behind
    rows = await store.db.fetch(
        "SELECT payload FROM call_event WHERE session_id = $1 "
        "AND event_type = 'provider.attempt' ORDER BY seq",
        session_id,
    )
    return [(r["payload"]["provider"], r["payload"]["outcome"]) for r in rows]


async def test_candidates_are_the_sessions_trunk_then_the_others_by_priority_skipping_unfit(
    store: Store,
) -> None:
    tenant = await store.tenants.create("t-trunks", "Trunks")
    own = await _trunk(store, tenant.id, "own", 50, endpoint="trunk-own")
    await _trunk(store, tenant.id, "late", 30, endpoint="trunk-late")
    await _trunk(store, tenant.id, "early", 10, endpoint="trunk-early", strip_digits=1)
    await _trunk(store, tenant.id, "india-only", 5, endpoint="trunk-in", match_prefixes=["+91"])
    await _trunk(store, tenant.id, "broken", 5, endpoint="PJSIP/{number}@x")  # stored raw
    await store.providers.create(
        NewProvider(
            tenant_id=tenant.id,
            name="off",
            provider_type=ProviderType.SIP_TRUNK,
            is_active=False,
            priority=1,
            config={"endpoint": "trunk-off"},
        )
    )
    await store.providers.create(
        NewProvider(tenant_id=tenant.id, name="pbx", provider_type=ProviderType.ASTERISK)
    )
    routes = TrunkRoutes(store, pick=lambda: 0.0)
    session = await _session(store, tenant.id, own)
    first = await routes.first(session)
    assert first is not None
    seen = [(first.provider.name, first.config.dial_string(NUMBER))]
    while (following := routes.conclude(session.id, AttemptOutcome.TRUNK_UNAVAILABLE)) is not None:
        seen.append((following.provider.name, following.config.dial_string(NUMBER)))
    assert seen == [
        ("own", f"PJSIP/{NUMBER}@trunk-own"),
        ("early", f"PJSIP/{NUMBER[1:]}@trunk-early"),
        ("late", f"PJSIP/{NUMBER}@trunk-late"),
    ]


async def test_busy_no_answer_and_a_reject_never_fail_over(store: Store) -> None:
    tenant = await store.tenants.create("t-stop", "Stop")
    own = await _trunk(store, tenant.id, "own", 10, endpoint="a")
    await _trunk(store, tenant.id, "other", 20, endpoint="b")
    routes = TrunkRoutes(store)
    for outcome in (AttemptOutcome.BUSY, AttemptOutcome.NO_ANSWER, AttemptOutcome.DECLINED):
        session = await _session(store, tenant.id, own)
        assert await routes.first(session) is not None
        assert routes.conclude(session.id, outcome) is None


async def test_an_open_breaker_skips_its_trunk_until_its_pause_is_over(store: Store) -> None:
    tenant = await store.tenants.create("t-breaker", "Breaker")
    own = await _trunk(
        store, tenant.id, "own", 10, endpoint="a", breaker_failures=1, breaker_reset_s=30
    )
    await _trunk(store, tenant.id, "other", 20, endpoint="b")
    now = [0.0]
    routes = TrunkRoutes(store, breakers=ProviderBreakers(clock=lambda: now[0]))
    session = await _session(store, tenant.id, own)
    assert (await routes.first(session)).provider.name == "own"  # type: ignore[union-attr]
    nxt = routes.conclude(session.id, AttemptOutcome.TRUNK_UNAVAILABLE)  # opens "own"
    assert nxt is not None
    assert nxt.provider.name == "other"
    routes.conclude(session.id, AttemptOutcome.CREATED)

    later = await _session(store, tenant.id, own)
    now[0] = 10.0
    assert (await routes.first(later)).provider.name == "other"  # type: ignore[union-attr]
    routes.forget(later.id)
    now[0] = 31.0  # half-open: one trial goes to "own" again
    again = await _session(store, tenant.id, own)
    assert (await routes.first(again)).provider.name == "own"  # type: ignore[union-attr]


async def test_a_refused_originate_and_a_503_fail_over_and_the_third_trunk_connects(
    store: Store, ari: FakeAri
) -> None:
    tenant = await store.tenants.create("t-failover", "Failover")
    own = await _trunk(store, tenant.id, "gone", 10, endpoint="nosuch")
    await _trunk(store, tenant.id, "full", 20, endpoint="trunk-b")
    await _trunk(store, tenant.id, "spare", 30, endpoint="trunk-c", strip_digits=1)
    ari.refused_endpoints.add(f"PJSIP/{NUMBER}@nosuch")
    session = await _session(store, tenant.id, own)
    async with _customer_ringing(store, ari, session) as customer:
        await ari.until(lambda: f"PJSIP/{NUMBER}@trunk-b" in ari.originated)
        await ari.send(
            {
                "type": "ChannelDestroyed",
                "channel": {"id": customer},
                "cause": 34,
                "cause_txt": "Circuit/channel congestion",
                "tech_cause": 503,
            }
        )
        await ari.until(lambda: f"PJSIP/{NUMBER[1:]}@trunk-c" in ari.originated)
        await ari.send({"type": "StasisStart", "channel": {"id": customer}, "args": ["c2c"]})
        await _status(store, session.id, CallStatus.CONNECTED)
        # the agent dialled once, the customer on each trunk in turn
        assert ari.originated == [
            "PJSIP/1001",
            f"PJSIP/{NUMBER}@nosuch",
            f"PJSIP/{NUMBER}@trunk-b",
            f"PJSIP/{NUMBER[1:]}@trunk-c",
        ]
        assert await _attempts(store, session.id) == [
            ("gone", "not_sent"),
            ("full", "trunk_unavailable"),
            ("spare", "created"),
        ]


async def test_the_last_trunk_unavailable_ends_the_call_failed(store: Store, ari: FakeAri) -> None:
    tenant = await store.tenants.create("t-none-left", "None left")
    own = await _trunk(store, tenant.id, "only", 10, endpoint="trunk-a")
    session = await _session(store, tenant.id, own)
    async with _customer_ringing(store, ari, session) as customer:
        destroyed = {"type": "ChannelDestroyed", "channel": {"id": customer}}
        await ari.send({**destroyed, "cause": 34, "tech_cause": 503})
        await _status(store, session.id, CallStatus.FAILED)
        assert await _attempts(store, session.id) == [("only", "trunk_unavailable")]
        ended = await store.sessions.by_id(session.id)
        assert ended is not None
        assert ended.hangup_cause == 34
