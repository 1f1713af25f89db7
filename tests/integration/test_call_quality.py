"""The quality monitor over PostgreSQL, fed ARI events of the shapes Asterisk 22.10 sends
(recorded from the sandbox): hangup-time ``RTPAUDIOQOS*`` variables become a final row per
leg, samples read ``CHANNEL(rtcp,all)``, a leg under the floor gets one low-MOS event. The
whole path against the real Asterisk is tests/e2e/test_call_quality.py."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest

from engine.asterisk.flows.call_quality import QualityMonitor, QualityWriter
from engine.asterisk.links.ari import AriNotFound
from engine.asterisk.links.ari_router import AriEventRouter
from engine.config.settings import QualitySettings
from engine.devtools.databases import create_database, drop_database
from engine.domain.call import Direction
from engine.domain.event_types import CallEventType
from engine.errors import StoreError
from engine.store.database import Database
from engine.store.journal import CallJournal
from engine.store.migrations import default_migrations_dir, migrate
from engine.store.records import NewSession, QualityMetric, StoredSession
from engine.store.repositories import Store
from tests.support.waiting import eventually

QOS = (
    "ssrc=655906146;themssrc=1129595697;lp={lost};rxjitter=0.000000;rxcount={rx};"
    "txjitter={jitter};txcount=240;rlp=0;rtt=0.000000;rxmes=0.000000;txmes=0.000000"
)
QOS_JITTER = "minrxjitter=000.000000;maxrxjitter=000.001375;avgrxjitter=000.000336;"


class SampledAri:
    """Stands in for ARI's ``GET /channels/{id}/variable``: answers what it holds, 404
    for a channel it does not."""

    def __init__(self, values: dict[str, str]) -> None:
        self.values = values
        self.asked: list[tuple[str, str]] = []

    async def get_channel_var(self, channel: str, name: str) -> str:
        self.asked.append((channel, name))
        if channel not in self.values:
            raise AriNotFound(f"ARI GET /channels/{channel}/variable: 404 Channel not found")
        return self.values[channel]


@pytest.fixture
async def store() -> AsyncIterator[Store]:
    url = await create_database()
    try:
        await migrate(url, default_migrations_dir())
        async with Database(url, min_size=1, max_size=4) as db:
            yield Store.over(db)
    finally:
        await drop_database(url)


async def a_call(store: Store) -> StoredSession:
    tenant = await store.tenants.by_slug("default")
    session, _ = await store.sessions.create(NewSession(tenant.id, "1001", "+14155550100"))
    return session


def hangup_events(
    channel: str, *, rx: int, lost: int = 0, jitter: float = 0.000125
) -> list[dict[str, Any]]:
    ch = {"id": channel, "name": "PJSIP/agent1-00000001"}
    qos = QOS.format(rx=rx, lost=lost, jitter=f"{jitter:.6f}")
    return [
        {"type": "ChannelVarset", "variable": "RTPAUDIOQOS", "value": qos, "channel": ch},
        {
            "type": "ChannelVarset",
            "variable": "RTPAUDIOQOSJITTER",
            "value": QOS_JITTER,
            "channel": ch,
        },
        {"type": "ChannelVarset", "variable": "STASISSTATUS", "value": "SUCCESS", "channel": ch},
        {"type": "ChannelDestroyed", "cause": 16, "channel": ch},
    ]


async def test_hangup_variables_become_a_final_row_per_leg(store: Store) -> None:
    call = await a_call(store)
    monitor = QualityMonitor(
        SampledAri({}), store, QualitySettings(sample_interval=0, mos_floor=4.0)
    )
    router = AriEventRouter()
    monitor.subscribe(router)
    agent, customer = f"c2c-{call.id}-agent", f"c2c-{call.id}-customer"
    async with monitor:
        for channel in (agent, customer):
            assert router.route({"type": "StasisStart", "channel": {"id": channel}}) is False
        # someone else's channel and a variable that is not the hangup's: not taken
        assert (
            router.route(
                {
                    "type": "ChannelVarset",
                    "variable": "RTPAUDIOQOS",
                    "value": "rxcount=9",
                    "channel": {"id": "PJSIP/x-1"},
                }
            )
            is False
        )
        taken = [router.route(e) for e in hangup_events(agent, rx=250)]
        assert taken == [True, True, False, False]  # ChannelDestroyed goes on to the flows
        # the customer's leg lost a tenth of its packets: MOS under the floor
        for event in hangup_events(customer, rx=180, lost=20, jitter=0.030):
            router.route(event)

        async def finals() -> list[Any] | None:
            rows = await store.quality.for_session(call.tenant_id, call.id)
            return rows if len(rows) == 2 else None

        rows = await eventually(finals, within=10, what="two final rows")
        assert monitor.followed == 0
    by_leg = {row.leg: row for row in rows}
    good, bad = by_leg["agent"], by_leg["customer"]
    assert good.is_final
    assert (good.rx_packets, good.tx_packets, good.rx_lost_packets) == (250, 240, 0)
    assert (good.jitter_ms, good.rtt_ms, good.tx_lost_packets) == (0.125, None, None)
    assert good.mos == 4.41
    assert set(good.raw) == {"rtpaudioqos", "rtpaudioqosjitter"}
    assert bad.rx_lost_packets == 20
    assert bad.jitter_ms == 30.0
    assert bad.mos is not None
    assert bad.mos < 4.0
    events = await store.sessions.events(call.tenant_id, call.id)
    low = [e for e in events if e.event_type == CallEventType.QUALITY_LOW_MOS]
    assert [(e.payload["leg"], e.payload["final"], e.payload["mos"]) for e in low] == [
        ("customer", True, bad.mos)
    ]


async def test_a_followed_call_s_tenant_is_kept_until_its_last_final_row_is_stored(
    store: Store,
) -> None:
    call = await a_call(store)
    monitor = QualityMonitor(SampledAri({}), store, QualitySettings(sample_interval=0))
    router = AriEventRouter()
    monitor.subscribe(router)
    caller = "PJSIP/caller-00000001"  # named by Asterisk: only the flow that took it knows
    async with monitor:
        monitor.follow(caller, call.id, "caller", call.tenant_id)
        for event in hangup_events(caller, rx=250):
            router.route({**event, "channel": {"id": caller}})

        async def final() -> list[Any] | None:
            rows = await store.quality.for_session(call.tenant_id, call.id)
            return rows or None

        await eventually(final, within=10, what="the caller's final row")
        await eventually(
            lambda: monitor.writer.known_tenants == 0, within=10, what="the tenant let go"
        )


async def test_legs_that_end_as_the_monitor_closes_are_written_by_the_close(store: Store) -> None:
    call = await a_call(store)
    monitor = QualityMonitor(SampledAri({}), store, QualitySettings(sample_interval=0))
    router = AriEventRouter()
    monitor.subscribe(router)
    async with monitor:
        for channel in (f"c2c-{call.id}-agent", f"c2c-{call.id}-customer"):
            router.route({"type": "StasisStart", "channel": {"id": channel}})
            for event in hangup_events(channel, rx=250):
                router.route(event)
        # both wait for their batch (FINAL_BATCH_S): the close, right now, writes them
    rows = await store.quality.for_session(call.tenant_id, call.id)
    assert sorted(row.leg for row in rows) == ["agent", "customer"]
    assert all(row.is_final for row in rows)


async def test_a_leg_that_never_answered_and_carried_nothing_gets_no_row(store: Store) -> None:
    call = await a_call(store)
    monitor = QualityMonitor(SampledAri({}), store, QualitySettings(sample_interval=0))
    router = AriEventRouter()
    monitor.subscribe(router)
    async with monitor:
        for event in hangup_events(f"c2c-{call.id}-customer", rx=0):
            router.route(event)
    assert await store.quality.for_session(call.tenant_id, call.id) == []


async def test_samples_read_each_leg_that_is_up(store: Store) -> None:
    call = await a_call(store)
    agent, customer = f"c2c-{call.id}-agent", f"c2c-{call.id}-customer"
    ari = SampledAri({agent: QOS.format(rx=100, lost=0, jitter="0.000250")})
    monitor = QualityMonitor(ari, store, QualitySettings(sample_interval=0))
    router = AriEventRouter()
    monitor.subscribe(router)
    async with monitor:
        for channel in (agent, customer):
            router.route({"type": "StasisStart", "channel": {"id": channel}})
        # the customer's channel is gone (404) though its end was not seen: forgotten
        assert await monitor.sample() == 1
        assert monitor.followed == 1
    assert ari.asked == [(agent, "CHANNEL(rtcp,all)"), (customer, "CHANNEL(rtcp,all)")]
    rows = await store.quality.for_session(call.tenant_id, call.id)
    assert len(rows) == 1
    assert (rows[0].leg, rows[0].is_final, rows[0].rx_packets, rows[0].jitter_ms) == (
        "agent",
        False,
        100,
        0.25,
    )
    assert rows[0].raw["rtcp_all"].startswith("ssrc=")
    assert rows[0].mos == 4.41
    assert uuid.UUID(str(rows[0].session_id)) == call.id


async def test_samples_read_only_legs_up_for_at_least_the_sample_interval(store: Store) -> None:
    """A leg that came up shortly before a tick is not read at that tick: a call shorter
    than the interval costs no sample request (its final row comes from its hangup)."""
    call = await a_call(store)
    agent, customer = f"c2c-{call.id}-agent", f"c2c-{call.id}-customer"
    qos = QOS.format(rx=100, lost=0, jitter="0.000250")
    ari = SampledAri({agent: qos, customer: qos})
    now = [100.0]
    monitor = QualityMonitor(ari, store, QualitySettings(sample_interval=15), clock=lambda: now[0])
    router = AriEventRouter()
    monitor.subscribe(router)
    async with monitor:  # its sampler's first round is 15 s away: these are the test's
        router.route({"type": "StasisStart", "channel": {"id": agent}})
        now[0] = 110.0
        router.route({"type": "StasisStart", "channel": {"id": customer}})
        now[0] = 114.9
        assert await monitor.sample() == 0
        assert ari.asked == []
        now[0] = 115.0
        assert await monitor.sample() == 1
        assert ari.asked == [(agent, "CHANNEL(rtcp,all)")]
        now[0] = 125.0
        assert await monitor.sample() == 2
    rows = await store.quality.for_session(call.tenant_id, call.id)
    assert sorted(row.leg for row in rows) == ["agent", "agent", "customer"]


async def test_a_leg_that_ends_while_a_sampler_round_runs_gets_no_sample_nor_a_kept_tenant(
    store: Store,
) -> None:
    ended, lasting = await a_call(store), await a_call(store)
    short = f"c2c-{ended.id}-agent"
    long = f"c2c-{lasting.id}-agent"
    qos = QOS.format(rx=100, lost=0, jitter="0.000250")
    router = AriEventRouter()

    class HangsUpMidRound(SampledAri):
        async def get_channel_var(self, channel: str, name: str) -> str:
            if channel == long:  # asked after the short call's leg: that one hangs up now
                for event in hangup_events(short, rx=100):
                    router.route(event)
            return await super().get_channel_var(channel, name)

    monitor = QualityMonitor(
        HangsUpMidRound({short: qos, long: qos}),
        store,
        QualitySettings(sample_interval=15),
        clock=lambda: now[0],
    )
    now = [100.0]
    monitor.subscribe(router)
    async with monitor:
        for channel in (short, long):
            router.route({"type": "StasisStart", "channel": {"id": channel}})
        now[0] = 200.0
        assert await monitor.sample() == 1  # the lasting call's leg only
    short_rows = await store.quality.for_session(ended.tenant_id, ended.id)
    assert [row.is_final for row in short_rows] == [True]
    assert monitor.writer.known_tenants == 1  # the lasting call's, still followed


async def test_a_followed_channel_that_hung_up_gets_its_row_when_it_leaves_the_app(
    store: Store,
) -> None:
    """A channel that entered Stasis from the dialplan is no longer the app's after its
    StasisEnd: its ChannelDestroyed never comes, its hangup's variables did."""
    call = await a_call(store)
    monitor = QualityMonitor(SampledAri({}), store, QualitySettings(sample_interval=0))
    router = AriEventRouter()
    monitor.subscribe(router)
    caller = "1764512345.42"
    async with monitor:
        monitor.follow(caller, call.id, "caller", call.tenant_id)
        *varsets, _destroyed = hangup_events(caller, rx=300)
        for event in varsets:
            router.route(event)
        assert monitor.followed == 1
        stasis_end = {"type": "StasisEnd", "channel": {"id": caller}}
        assert router.route(stasis_end) is False  # the flows still get it
        assert monitor.followed == 0

        async def final() -> list[Any] | None:
            return await store.quality.for_session(call.tenant_id, call.id) or None

        rows = await eventually(final, within=10, what="the caller's final row")
    assert [(row.leg, row.is_final, row.rx_packets) for row in rows] == [("caller", True, 300)]


async def test_a_followed_channel_that_leaves_the_app_without_hanging_up_is_still_followed(
    store: Store,
) -> None:
    call = await a_call(store)
    monitor = QualityMonitor(SampledAri({}), store, QualitySettings(sample_interval=0))
    router = AriEventRouter()
    monitor.subscribe(router)
    async with monitor:
        monitor.follow("1764512345.43", call.id, "agent", call.tenant_id)
        router.route({"type": "StasisEnd", "channel": {"id": "1764512345.43"}})
        assert monitor.followed == 1  # back in the dialplan: its end is not known yet


async def test_channels_named_by_asterisk_are_followed_when_a_flow_hands_them_over(
    store: Store,
) -> None:
    """An IVR caller's channel and an agent's own phone carry Asterisk's ids: the flow that
    took them says whose leg they are; an IVR transfer target's id names its call."""
    call = await a_call(store)
    monitor = QualityMonitor(SampledAri({}), store, QualitySettings(sample_interval=0))
    router = AriEventRouter()
    monitor.subscribe(router)
    caller, target = "1764512345.42", f"ivr-{call.id}-target-1"
    async with monitor:
        # before a flow hands it over, Asterisk's id is no one's: its variables pass by
        assert [router.route(e) for e in hangup_events("1764512345.7", rx=50)] == [False] * 4
        monitor.follow(caller, call.id, "caller", call.tenant_id)
        router.route({"type": "StasisStart", "channel": {"id": target}})
        assert monitor.followed == 2
        for event in [*hangup_events(target, rx=120), *hangup_events(caller, rx=300)]:
            router.route(event)

        async def finals() -> list[Any] | None:
            rows = await store.quality.for_session(call.tenant_id, call.id)
            return rows if len(rows) == 2 else None

        rows = await eventually(finals, within=10, what="the caller's and the target's rows")
        assert monitor.followed == 0
    by_leg = {row.leg: row for row in rows}
    assert (by_leg["caller"].channel_id, by_leg["caller"].rx_packets) == (caller, 300)
    assert (by_leg["target"].channel_id, by_leg["target"].rx_packets) == (target, 120)
    assert all(row.is_final and row.mos == 4.41 for row in rows)


class CountedAdds:
    """Wraps the store's ``quality.add``: the size of every batch written."""

    def __init__(self, store: Store) -> None:
        self.batches: list[int] = []
        self._add = store.quality.add
        store.quality.add = self.add  # type: ignore[method-assign]

    async def add(self, rows: Sequence[QualityMetric]) -> list[QualityMetric]:
        self.batches.append(len(rows))
        return await self._add(rows)


async def test_fastagi_callers_final_rows_that_come_together_are_written_in_one_statement(
    store: Store,
) -> None:
    """The FastAGI door stores each measured caller's final row through store_final: one
    row per caller with media, none for a caller without; the rows that come within the
    batch window go in one INSERT."""
    calls = [await a_call(store) for _ in range(3)]
    adds = CountedAdds(store)
    async with QualityWriter(store, QualitySettings(sample_interval=0)) as writer:
        for call in calls:  # no read between the three: they are queued in one batch window
            writer.know_tenant(call.id, call.tenant_id)
        stored = [
            await writer.store_final(
                f"PJSIP/caller-{i}",
                call.id,
                "caller",
                QOS.format(rx=rx, lost=0, jitter="0") if rx else "ssrc=1;rxcount=0;txcount=0",
                raw={"channel(rtcp,all)": "..."},
            )
            for i, (call, rx) in enumerate(zip(calls, (250, 120, 0), strict=True))
        ]
        assert stored == [True, True, False]  # the last says no media flowed

        async def written() -> list[int] | None:
            return adds.batches or None

        assert await eventually(written, within=10, what="the batch") == [2]
    for call, expected in zip(calls, ([250], [120], []), strict=True):
        rows = await store.quality.for_session(call.tenant_id, call.id)
        assert [(row.leg, row.is_final, row.rx_packets) for row in rows] == [
            ("caller", True, rx) for rx in expected
        ]
    assert writer.lost == 0


async def test_a_final_row_of_a_call_the_journal_has_not_written_yet_waits_for_its_session(
    store: Store,
) -> None:
    """An IVR call is born in the journal and written behind: a caller's final row may come
    before the session's first batch (under load it did, and its foreign key refused it)."""
    tenant = await store.tenants.by_slug("default")
    # its first batch 0.5 s after the call is born; the row is written at the writer's
    # close, at once
    journal = CallJournal(store.db, interval=0.5)
    store = dataclasses.replace(store, journal=journal)
    async with journal:
        session, _ = journal.take(
            NewSession(tenant.id, None, None, direction=Direction.INBOUND, ivr_menu="main")
        )
        writer = QualityWriter(store, QualitySettings(sample_interval=0))
        writer.know_tenant(session.id, tenant.id)
        async with writer:
            assert await writer.store_final(
                "PJSIP/caller-1",
                session.id,
                "caller",
                QOS.format(rx=250, lost=0, jitter="0"),
                raw={},
            )
        assert writer.lost == 0
        rows = await store.quality.for_session(tenant.id, session.id)
        assert [(row.leg, row.rx_packets) for row in rows] == [("caller", 250)]


async def test_final_rows_queued_at_close_are_written_and_those_after_it_counted_lost(
    store: Store,
) -> None:
    call = await a_call(store)
    writer = QualityWriter(store, QualitySettings(sample_interval=0))
    async with writer:
        # waits for its batch (FINAL_BATCH_S): the close, right now, writes it
        assert await writer.store_final(
            "PJSIP/a-1", call.id, "caller", QOS.format(rx=250, lost=0, jitter="0"), raw={}
        )
    assert len(await store.quality.for_session(call.tenant_id, call.id)) == 1
    assert await writer.store_final(
        "PJSIP/a-2", call.id, "caller", QOS.format(rx=250, lost=0, jitter="0"), raw={}
    )
    assert len(await store.quality.for_session(call.tenant_id, call.id)) == 1
    assert writer.lost == 1
    assert writer.known_tenants == 0  # a FastAGI caller's tenant is read for its row, not kept


async def test_a_batch_the_database_refuses_is_counted_lost(store: Store) -> None:
    call = await a_call(store)
    monitor = QualityMonitor(SampledAri({}), store, QualitySettings(sample_interval=0))
    router = AriEventRouter()
    monitor.subscribe(router)

    async def refused(rows: Sequence[QualityMetric]) -> list[QualityMetric]:
        raise StoreError("the database is away")

    store.quality.add = refused  # type: ignore[method-assign]
    async with monitor:
        for channel in (f"c2c-{call.id}-agent", f"c2c-{call.id}-customer"):
            router.route({"type": "StasisStart", "channel": {"id": channel}})
            for event in hangup_events(channel, rx=250):
                router.route(event)
        await eventually(lambda: monitor.writer.lost == 2, within=10, what="two rows lost")
        assert monitor.writer.known_tenants == 0


async def test_a_call_postgresql_refuses_costs_its_batch_only_its_own_rows(store: Store) -> None:
    """A batch mixes calls: one whose session is gone (deleted meanwhile) is refused by its
    foreign key, and the others' rows are still stored."""
    kept, gone = await a_call(store), await a_call(store)
    await store.db.execute("DELETE FROM click_to_call_session WHERE id = $1", gone.id)
    writer = QualityWriter(store, QualitySettings(sample_interval=0))
    async with writer:
        for call in (kept, gone):
            writer.know_tenant(call.id, call.tenant_id)
            assert await writer.store_final(
                f"PJSIP/caller-{call.id}",
                call.id,
                "caller",
                QOS.format(rx=250, lost=0, jitter="0"),
                raw={},
            )
    assert [row.rx_packets for row in await store.quality.for_session(kept.tenant_id, kept.id)] == [
        250
    ]
    assert writer.lost == 1
