"""Engines sharing one database register as nodes: heartbeat, owner of sessions, ``ctc nodes``."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from engine.config.settings import NodeSettings
from engine.daemon import Engine
from engine.health import HealthReport
from engine.node_heartbeat import NodeHeartbeat
from engine.store.database import Database
from engine.store.migrations import default_migrations_dir, migrate
from engine.store.records import NewSession
from engine.store.repositories import Store
from tests.support.calls import place_call
from tests.support.cli import cli_environment, run_ctc
from tests.support.http import Api
from tests.support.tenants import new_tenant
from tests.support.waiting import eventually


@pytest.fixture
async def nodes_db(empty_db: str) -> AsyncIterator[str]:
    """A database of its own: these tests count every node in it."""
    await migrate(empty_db, default_migrations_dir())
    return empty_db


def _heartbeat(
    db: Database, name: str, process: tuple[str, int], health: HealthReport | None = None
) -> NodeHeartbeat:
    """A heartbeat whose loop beats once at start; tests beat it again with beat_once()."""
    return NodeHeartbeat(
        Store.over(db).nodes,
        NodeSettings(name=name, heartbeat_interval=3600, stale_after=7200),
        health=health or HealthReport(node=name),
        asterisk_enabled=True,
        process=process,
    )


async def test_the_running_engine_registers_its_node_and_beats(api_engine: Engine) -> None:
    name = api_engine.settings.node.name
    # other engines of this test run share the name (and process): beat now, then read
    assert await api_engine.heartbeat.beat_once()
    node = await api_engine.store.nodes.get(name)
    assert node is not None
    assert (node.version, node.pid, node.asterisk) == ("0.1.0", os.getpid(), "disabled")
    assert node.stopped_at is None
    assert api_engine.health.get("node") is not None


async def test_a_session_created_through_the_api_says_which_node_created_it(
    api_engine: Engine, unix_api: Api
) -> None:
    tenant = await new_tenant(api_engine.store)
    session_id = await place_call(unix_api, tenant.slug)
    node = await api_engine.db.fetchval(
        "SELECT node FROM click_to_call_session WHERE id = $1", uuid.UUID(session_id)
    )
    assert node == api_engine.settings.node.name


async def test_healthz_names_the_node_to_a_trusted_caller_only(
    api_engine: Engine, unix_api: Api, tcp_api: Api
) -> None:
    status, body, _ = await unix_api.call("GET", "/healthz")
    assert status == 200
    assert body["node"] == api_engine.settings.node.name
    status, body, _ = await tcp_api.call("GET", "/healthz")
    assert status == 200
    assert body.get("node") is None


async def test_a_name_held_by_another_live_engine_is_not_taken_until_it_stops(
    nodes_db: str,
) -> None:
    async with Database(nodes_db, min_size=1, max_size=2) as db:
        holder = _heartbeat(db, "pbx1", ("host-a", 100))
        claimant_health = HealthReport(node="pbx1")
        claimant = _heartbeat(db, "pbx1", ("host-b", 200), claimant_health)
        async with holder:
            assert await holder.beat_once()
            async with claimant:
                assert not await claimant.beat_once()
                status = claimant_health.get("node")
                assert status is not None
                assert status.state == "down"
                assert "taken by another engine (host host-a, pid 100)" in status.detail
                row = await Store.over(db).nodes.get("pbx1")
                assert row is not None
                assert (row.host, row.pid) == ("host-a", 100)

                await holder.close()  # a graceful stop marks the row stopped
                assert await claimant.beat_once()
                row = await Store.over(db).nodes.get("pbx1")
                assert row is not None
                assert (row.host, row.pid) == ("host-b", 200)
                assert row.stopped_at is None


async def test_ctc_nodes_lists_every_node_with_its_state_and_live_calls(
    nodes_db: str, tmp_path: Path
) -> None:
    async with Database(nodes_db, min_size=1, max_size=2, node="alpha") as alpha_db:
        store = Store.over(alpha_db)
        tenant = await new_tenant(store)
        for _ in range(2):  # two live calls created by alpha (the pool names the node)
            await store.sessions.create(NewSession(tenant.id, "1001", "+14155550100"))
        # and one in the claim queue, no node's yet
        await store.sessions.create(NewSession(tenant.id, "1001", "+14155550101", unclaimed=True))
        async with _heartbeat(alpha_db, "alpha", ("host-a", 1)) as alpha:
            assert await alpha.beat_once()
            async with _heartbeat(alpha_db, "beta", ("host-b", 2)) as beta:
                assert await beta.beat_once()
            async with _heartbeat(alpha_db, "gamma", ("host-c", 3)) as gamma:
                assert await gamma.beat_once()
            conn = await asyncpg.connect(nodes_db)
            try:  # gamma died without stopping an hour ago
                await conn.execute(
                    "UPDATE engine_node SET stopped_at = NULL, "
                    "heartbeat_at = now() - interval '1 hour' WHERE name = 'gamma'"
                )
            finally:
                await conn.close()

            env = cli_environment(nodes_db, tmp_path)
            code, out, err = await run_ctc("nodes", "--json", env=env)
            assert code == 0, err
            listed = {n["node"]: n for n in map(json.loads, out.splitlines())}
            assert {name: n["state"] for name, n in listed.items()} == {
                "alpha": "alive",
                "beta": "stopped",
                "gamma": "stale",
            }
            assert listed["alpha"]["live_calls"] == 2
            assert listed["beta"]["live_calls"] == 0
            assert listed["gamma"]["heartbeat_age_s"] >= 3600

            code, out, err = await run_ctc("nodes", env=env)
            assert code == 0, err
            lines = out.splitlines()
            assert lines[0].split()[:4] == ["NODE", "STATE", "LAST", "BEAT"]
            assert [line.split()[:2] for line in lines[1:-1]] == [
                ["alpha", "alive"],
                ["beta", "stopped"],
                ["gamma", "stale"],
            ]
            # the claim queue: alpha's two are queued and its own, not dialled; one no one's
            assert lines[-1] == "queued, not claimed by any node: 1"
            assert (listed["alpha"]["claimed_calls"], listed["alpha"]["unclaimed_calls"]) == (2, 1)


async def test_ctc_nodes_says_when_no_node_has_registered(nodes_db: str, tmp_path: Path) -> None:
    code, out, err = await run_ctc("nodes", env=cli_environment(nodes_db, tmp_path))
    assert code == 0, err
    assert "no node has registered" in out


async def test_an_engine_resyncs_only_its_own_live_calls_and_those_no_node_claims(
    nodes_db: str,
) -> None:
    async with (
        Database(nodes_db, min_size=1, max_size=2, node="alpha") as alpha_db,
        Database(nodes_db, min_size=1, max_size=2, node="beta") as beta_db,
        Database(nodes_db, min_size=1, max_size=2) as tool_db,
    ):
        alpha, beta, tool = Store.over(alpha_db), Store.over(beta_db), Store.over(tool_db)
        tenant = await new_tenant(alpha)
        new = NewSession(tenant.id, "1001", "+14155550100")
        mine, _ = await alpha.sessions.create(new)
        theirs, _ = await beta.sessions.create(new)
        unclaimed, _ = await tool.sessions.create(new)
        assert {s.id for s in await alpha.sessions.live()} == {mine.id, unclaimed.id}
        assert {s.id for s in await beta.sessions.live()} == {theirs.id, unclaimed.id}


async def test_the_asterisk_link_coming_up_is_beaten_at_once(nodes_db: str) -> None:
    health = HealthReport(node="pbx2")
    async with (
        Database(nodes_db, min_size=1, max_size=2) as db,
        _heartbeat(db, "pbx2", ("host-a", 100), health) as heartbeat,
    ):
        nodes = Store.over(db).nodes
        await eventually(lambda: heartbeat.beats >= 1, what="the first beat, at start")
        row = await nodes.get("pbx2")
        assert row is not None
        assert row.asterisk == "unknown"  # the link not up yet
        health.set("ari", "up", "connected")  # the next interval is an hour away

        async def link_up() -> bool:
            row = await nodes.get("pbx2")
            return row is not None and row.asterisk == "up"

        await eventually(link_up, what="a beat saying the link is up")
