"""Status callbacks from the outbox, end to end: a real Engine (or bare notifiers) over a
database of its own, and a local HTTP receiver that records what it gets."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from engine.config.settings import (
    AgiSettings,
    ApiSettings,
    AriSettings,
    CallbackSettings,
    DatabaseSettings,
    SecretsSettings,
    Settings,
)
from engine.contract import StatusCallback
from engine.daemon import Engine
from engine.devtools.databases import create_database, drop_database
from engine.domain.call import CallStatus
from engine.notifier import CallbackNotifier, verify_signature
from engine.secrets import PREFIX, Keyring
from engine.store.database import Database
from engine.store.migrations import default_migrations_dir, migrate
from engine.store.records import NewSession
from engine.store.repositories import Store
from tests.support.callbacks import Received, Receiver
from tests.support.calls import move_call, place_call
from tests.support.http import socket_api
from tests.support.net import free_port
from tests.support.tenants import new_tenant
from tests.support.waiting import eventually

C2C = "/api/v1/click-to-call"
WAIT = 20.0  # seconds any awaited condition may take before the test fails
LOOPBACK = ("127.0.0.1/32",)  # the receiver's network, which tenants must allow (netpolicy)


# -- the receiver -----------------------------------------------------------------------------


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = await Receiver().start()
    try:
        yield r
    finally:
        await r.stop()


# -- engines over a database of this module's own ----------------------------------------------


@pytest.fixture(scope="module")
async def cb_db() -> AsyncIterator[str]:
    """Not the shared database: no other engine's notifier may touch these rows."""
    url = await create_database("ctc_cb")
    try:
        await migrate(url, default_migrations_dir())
        yield url
    finally:
        await drop_database(url)


@pytest.fixture(scope="module")
async def cb_pool(cb_db: str) -> AsyncIterator[Database]:
    """The test's own look at the rows."""
    async with Database(cb_db) as db:
        yield db


FAST = {"timeout": 2.0, "backoff_initial": 0.02, "backoff_max": 0.1}


@contextlib.asynccontextmanager
async def running_engine(
    db_url: str, *, secret_key: str | None = None, **callbacks: Any
) -> AsyncIterator[Engine]:
    """An engine over ``db_url``; ``secret_key`` seals the secrets it stores (None: no key)."""
    with tempfile.TemporaryDirectory(prefix="ctc-cb-") as tmp:
        settings = Settings(
            agi=AgiSettings(enabled=False),  # port 4573 is the e2e engines'
            ari=AriSettings(enabled=False),
            database=DatabaseSettings(url=db_url),
            api=ApiSettings(socket=Path(tmp) / "engine.sock", socket_mode="0600"),
            callbacks=CallbackSettings(**{**FAST, "max_attempts": 10, **callbacks}),
            secrets=SecretsSettings(key=None if secret_key is None else SecretStr(secret_key)),
        )
        async with Engine(settings) as engine:
            await asyncio.wait_for(engine.database_ready.wait(), WAIT)
            yield engine


async def _callback_tenant(engine: Engine, url: str) -> tuple[str, str]:
    """A new tenant sending callbacks to ``url``: (slug, callback secret). The receiver
    is on 127.0.0.1, which a tenant reaches only when it allows it."""
    tenant = await new_tenant(engine.store, prefix="cb", callback_url=url, allow_cidrs=LOOPBACK)
    return tenant.slug, await engine.store.tenants.callback_secret(tenant.id)


async def _rows(db: Database, session_id: str) -> list[dict[str, Any]]:
    rows = await db.fetch(
        "SELECT o.id, e.seq, o.state, o.attempts, o.last_status, o.last_error, "
        "o.delivered_at FROM callback_outbox o JOIN call_event e ON e.id = o.event_id "
        "WHERE o.session_id = $1 ORDER BY o.id",
        uuid.UUID(session_id),
    )
    return [dict(r) for r in rows]


def _seqs(received: list[Received]) -> list[int]:
    return [r.json["seq"] for r in received]


def assert_in_order_per_session(requests: list[Received]) -> None:
    """No request for a session's seq N before every earlier callback of it was delivered."""
    delivered: dict[str, list[int]] = {}
    for r in requests:
        sid, seq = r.json["session_id"], r.json["seq"]
        done = delivered.setdefault(sid, [])
        assert all(seq > d for d in done), f"seq {seq} of {sid} sent after {done}"
        if r.answered == 200:
            done.append(seq)


DRIVE = (
    CallStatus.DIALING_AGENT,
    CallStatus.AGENT_ANSWERED,
    CallStatus.DIALING_CUSTOMER,
    CallStatus.CONNECTED,
    CallStatus.COMPLETED,
)


# -- tests ------------------------------------------------------------------------------------


async def test_callbacks_arrive_signed_and_in_order(
    cb_db: str, cb_pool: Database, receiver: Receiver
) -> None:
    async with running_engine(cb_db) as engine, socket_api(engine.settings.api.socket) as api:
        slug, secret = await _callback_tenant(engine, receiver.url)
        sid = await place_call(api, slug, *DRIVE)
        # the creation (queued) sends a callback too, then each status change
        await receiver.wait_for(lambda _: len(receiver.delivered(sid)) == len(DRIVE) + 1)

        got = receiver.delivered(sid)
        assert _seqs(got) == [1, 2, 3, 4, 5, 6]
        assert [r.json["status"] for r in got] == ["queued", *[s.value for s in DRIVE]]
        assert [r.json["previous_status"] for r in got] == [
            None,
            "queued",
            *[s.value for s in DRIVE[:-1]],
        ]
        assert got[0].json["event_type"] == "session.created"
        for r in got:
            # the body is the contract's model, exactly as the model writes it
            assert StatusCallback.model_validate_json(r.body).model_dump(mode="json") == r.json
            assert r.headers["Content-Type"] == "application/json"
            assert r.headers["User-Agent"].startswith("ctc-engine/")
            assert r.headers["X-CTC-Event-Id"] == str(r.json["event_id"])
            # the receiver's side of the scheme, written out independently
            parts = dict(p.split("=", 1) for p in r.headers["X-CTC-Signature"].split(","))
            expected = hmac.new(
                secret.encode(), parts["t"].encode() + b"." + r.body, hashlib.sha256
            ).hexdigest()
            assert hmac.compare_digest(parts["v1"], expected)
            assert abs(time.time() - int(parts["t"])) < 300
            wrong = hmac.new(b"not-the-secret", parts["t"].encode() + b"." + r.body, "sha256")
            assert not hmac.compare_digest(parts["v1"], wrong.hexdigest())

        async def recorded() -> bool:  # the receiver answers before the row is updated
            return all(r["state"] == "delivered" for r in await _rows(cb_pool, sid))

        await eventually(within=WAIT, check=recorded)
        rows = await _rows(cb_pool, sid)
        assert [(r["seq"], r["state"], r["attempts"], r["last_status"]) for r in rows] == [
            (seq, "delivered", 1, 200) for seq in (1, 2, 3, 4, 5, 6)
        ]
        assert all(r["delivered_at"] is not None for r in rows)
        health = engine.health.get("callbacks")
        assert health is not None
        assert (health.state, health.required) == ("up", False)
        delivered = engine.metrics.registry.get_sample_value(
            "ctc_callback_deliveries_total", {"outcome": "delivered"}
        )
        assert delivered is not None
        assert delivered >= 5


async def test_a_failing_receiver_is_retried_and_order_holds(
    cb_db: str, cb_pool: Database, receiver: Receiver
) -> None:
    receiver.fail_next = 3
    async with running_engine(cb_db) as engine, socket_api(engine.settings.api.socket) as api:
        slug, _ = await _callback_tenant(engine, receiver.url)
        sid = await place_call(
            api, slug, CallStatus.DIALING_AGENT, CallStatus.AGENT_ANSWERED, CallStatus.CANCELED
        )
        await receiver.wait_for(lambda _: len(receiver.delivered(sid)) == 4)

    mine = [r for r in receiver.requests if r.json["session_id"] == sid]
    assert [(r.json["seq"], r.answered) for r in mine] == [
        (1, 500),
        (1, 500),
        (1, 500),
        (1, 200),
        (2, 200),
        (3, 200),
        (4, 200),
    ]
    assert_in_order_per_session(mine)
    rows = await _rows(cb_pool, sid)
    assert [(r["seq"], r["state"], r["attempts"]) for r in rows] == [
        (1, "delivered", 4),
        (2, "delivered", 1),
        (3, "delivered", 1),
        (4, "delivered", 1),
    ]


async def test_an_unreachable_receiver_is_retried_until_it_is_back(
    cb_db: str, cb_pool: Database
) -> None:
    port = free_port()
    late = Receiver(port)
    async with running_engine(cb_db) as engine, socket_api(engine.settings.api.socket) as api:
        slug, _ = await _callback_tenant(engine, late.url)  # nothing listens there yet
        sid = await place_call(api, slug, CallStatus.DIALING_AGENT, CallStatus.CANCELED)

        async def refused_twice() -> bool:
            rows = await _rows(cb_pool, sid)
            return rows[0]["attempts"] >= 2

        await eventually(within=WAIT, check=refused_twice)
        rows = await _rows(cb_pool, sid)
        assert rows[0]["state"] == "pending"
        assert rows[0]["last_status"] is None
        assert "connect" in rows[0]["last_error"].lower()
        assert rows[1]["attempts"] == 0  # held back behind the first: in order per call

        await late.start()
        try:
            await late.wait_for(lambda _: len(late.delivered(sid)) == 3)
        finally:
            await late.stop()
    assert _seqs(late.requests) == [1, 2, 3]
    rows = await _rows(cb_pool, sid)
    assert [r["state"] for r in rows] == ["delivered"] * 3
    assert rows[0]["attempts"] >= 3


async def test_exhausted_attempts_make_the_row_dead_and_the_next_one_goes(
    cb_db: str, cb_pool: Database, receiver: Receiver
) -> None:
    receiver.fail_next = 3
    async with (
        running_engine(cb_db, max_attempts=3) as engine,
        socket_api(engine.settings.api.socket) as api,
    ):
        slug, _ = await _callback_tenant(engine, receiver.url)
        sid = await place_call(api, slug, CallStatus.DIALING_AGENT, CallStatus.CANCELED)
        await receiver.wait_for(lambda _: len(receiver.delivered(sid)) == 2)
        dead = engine.metrics.registry.get_sample_value(
            "ctc_callback_deliveries_total", {"outcome": "dead"}
        )
        assert dead == 1

    assert [(r.json["seq"], r.answered) for r in receiver.requests] == [
        (1, 500),
        (1, 500),
        (1, 500),
        (2, 200),
        (3, 200),
    ]
    rows = await _rows(cb_pool, sid)
    assert [(r["seq"], r["state"], r["attempts"], r["last_status"]) for r in rows] == [
        (1, "dead", 3, 500),
        (2, "delivered", 1, 200),
        (3, "delivered", 1, 200),
    ]
    assert rows[0]["last_error"] == "HTTP 500: nope"


async def test_a_callback_the_network_policy_refuses_is_never_sent_and_dead_at_once(
    cb_db: str, cb_pool: Database, receiver: Receiver
) -> None:
    # a name passes when the URL is accepted; what it resolves to is refused when sending
    url = receiver.url.replace("127.0.0.1", "localhost")
    async with (
        running_engine(cb_db, max_attempts=10) as engine,
        socket_api(engine.settings.api.socket) as api,
    ):
        slug = f"cb{uuid.uuid4().hex[:10]}"
        await engine.store.tenants.create(slug, slug, url)  # no allowance for loopback
        sid = await place_call(api, slug, CallStatus.DIALING_AGENT, CallStatus.CANCELED)

        async def all_dead() -> bool:
            rows = await _rows(cb_pool, sid)
            return len(rows) == 3 and all(r["state"] == "dead" for r in rows)

        await eventually(within=WAIT, check=all_dead)
        dead = engine.metrics.registry.get_sample_value(
            "ctc_callback_deliveries_total", {"outcome": "dead"}
        )
        assert dead == 3
    rows = await _rows(cb_pool, sid)
    assert [(r["seq"], r["attempts"], r["last_status"]) for r in rows] == [
        (1, 1, None),
        (2, 1, None),
        (3, 1, None),
    ]
    for row in rows:
        assert row["last_error"].startswith("refused by policy: localhost: "), row
        assert "is a loopback address" in row["last_error"]
    assert receiver.requests == []


async def test_pending_callbacks_survive_an_engine_restart(
    cb_db: str, cb_pool: Database, receiver: Receiver
) -> None:
    receiver.always_fail = True
    async with running_engine(cb_db) as first, socket_api(first.settings.api.socket) as api:
        slug, _ = await _callback_tenant(first, receiver.url)
        sid = await place_call(
            api, slug, CallStatus.DIALING_AGENT, CallStatus.AGENT_ANSWERED, CallStatus.CANCELED
        )
        await receiver.wait_for(lambda reqs: sum(r.json["session_id"] == sid for r in reqs) >= 2)
    # stopped with every row still pending
    rows = await _rows(cb_pool, sid)
    assert [r["state"] for r in rows] == ["pending"] * 4
    tried = rows[0]["attempts"]
    assert tried >= 2

    receiver.always_fail = False
    async with running_engine(cb_db):
        await receiver.wait_for(lambda _: len(receiver.delivered(sid)) == 4)
    assert _seqs(receiver.delivered(sid)) == [1, 2, 3, 4]
    assert_in_order_per_session(receiver.requests)
    rows = await _rows(cb_pool, sid)
    assert [r["state"] for r in rows] == ["delivered"] * 4
    assert rows[0]["attempts"] == tried + 1  # counted across the restart


async def test_two_notifiers_on_one_database_never_send_twice(
    cb_pool: Database, receiver: Receiver
) -> None:
    sessions, steps = (
        12,
        (
            CallStatus.DIALING_AGENT,
            CallStatus.AGENT_ANSWERED,
            CallStatus.DIALING_CUSTOMER,
            CallStatus.CANCELED,
        ),
    )
    settings = CallbackSettings(**FAST, max_attempts=10)
    store = Store.over(cb_pool)  # no bus: only polling finds the rows, as for other engines
    slug = f"cb{uuid.uuid4().hex[:10]}"
    tenant = await store.tenants.create(slug, slug, receiver.url, allow_cidrs=LOOPBACK)
    notifiers = [
        CallbackNotifier(store.outbox, settings, poll_interval=0.01, concurrency=4)
        for _ in range(2)
    ]
    async with notifiers[0], notifiers[1]:

        async def drive() -> None:
            session, _ = await store.sessions.create(NewSession(tenant.id, "1001", "+14155550100"))
            for target in steps:
                await store.sessions.transition(tenant.id, session.id, target)

        await asyncio.gather(*(drive() for _ in range(sessions)))
        await receiver.wait_for(lambda reqs: len(reqs) >= sessions * len(steps))
    # both closed: anything still in flight has arrived

    ids = [r.json["event_id"] for r in receiver.requests]
    assert len(ids) == sessions * len(steps)
    assert len(set(ids)) == len(ids), "a callback was delivered twice"
    assert_in_order_per_session(receiver.requests)
    by_session: dict[str, list[int]] = {}
    for r in receiver.requests:
        by_session.setdefault(r.json["session_id"], []).append(r.json["seq"])
    assert all(seqs == [2, 3, 4, 5] for seqs in by_session.values())
    assert len(by_session) == sessions


async def test_callback_secrets_are_stored_encrypted_and_callbacks_still_verify(
    receiver: Receiver,
) -> None:
    url = await create_database("ctc_cb_sec")  # rotation below touches every tenant
    try:
        await migrate(url, default_migrations_dir())
        async with running_engine(url) as engine:  # no key: as before an upgrade
            old_slug, old_secret = await _callback_tenant(engine, receiver.url)
        async with (
            Database(url) as db,
            running_engine(url, secret_key=Keyring.generate_key()) as engine,
            socket_api(engine.settings.api.socket) as api,
        ):

            async def stored(slug: str) -> str:
                value: str = await db.fetchval(
                    "SELECT callback_secret FROM tenant WHERE slug = $1", slug
                )
                return value

            slug, secret = await _callback_tenant(engine, receiver.url)
            assert (await stored(slug)).startswith(PREFIX)
            assert secret not in await stored(slug)
            assert await stored(old_slug) == old_secret  # plaintext until rotated

            async def signed_with(slug: str, secret: str) -> None:
                sid = await place_call(api, slug, CallStatus.DIALING_AGENT)
                await receiver.wait_for(lambda _: len(receiver.delivered(sid)) == 1)
                (got,) = receiver.delivered(sid)
                assert verify_signature(secret, got.body, got.headers["X-CTC-Signature"])
                assert not verify_signature(
                    "not-the-secret", got.body, got.headers["X-CTC-Signature"]
                )

            await signed_with(slug, secret)
            await signed_with(old_slug, old_secret)

            resealed = await engine.store.secrets.rotate()
            assert resealed["tenant.callback_secret"] == 2  # default + the old tenant
            assert (await stored(old_slug)).startswith(PREFIX)
            assert old_secret not in await stored(old_slug)
            await signed_with(old_slug, old_secret)  # the same key, now sealed
    finally:
        await drop_database(url)


async def test_a_secret_no_configured_key_opens_kills_only_its_rows_and_names_the_key(
    receiver: Receiver,
) -> None:
    url = await create_database("ctc_cb_key")  # a dead row of its own must not leak elsewhere
    try:
        await migrate(url, default_migrations_dir())
        key, removed_key = Keyring.generate_key(), Keyring.generate_key()
        removed_id = Keyring((removed_key,)).primary_id
        assert removed_id is not None
        async with Database(url) as db:
            store = Store.over(db, keyring=Keyring((key,)))
            # sealed under a key this engine no longer has (removed, or rotated elsewhere)
            lost = Store.over(db, keyring=Keyring((removed_key,)))
            good = await store.tenants.create("good", "good", receiver.url, allow_cidrs=LOOPBACK)
            bad = await lost.tenants.create("bad", "bad", receiver.url, allow_cidrs=LOOPBACK)

            async def call(tenant_id: uuid.UUID) -> str:
                session, _ = await store.sessions.create(
                    NewSession(tenant_id, "1001", "+14155550100")
                )
                await store.sessions.transition(tenant_id, session.id, CallStatus.DIALING_AGENT)
                return str(session.id)

            bad_sid = await call(bad.id)  # first: both rows land in one claimed batch
            good_sid = await call(good.id)
            notifier = CallbackNotifier(
                store.outbox, CallbackSettings(**FAST, max_attempts=10), poll_interval=0.01
            )
            async with notifier:
                await receiver.wait_for(lambda _: len(receiver.delivered(good_sid)) == 1)

                async def bad_is_dead() -> bool:
                    return [r["state"] for r in await _rows(db, bad_sid)] == ["dead"]

                await eventually(within=WAIT, check=bad_is_dead)
            assert receiver.delivered(bad_sid) == []
            (row,) = await _rows(db, bad_sid)
            assert row["attempts"] == 1
            assert row["last_status"] is None
            assert row["last_error"].startswith(f"cannot sign: callback_secret of tenant {bad.id}")
            assert f"encrypted with key {removed_id}, which is not configured" in row["last_error"]
            assert [r["state"] for r in await _rows(db, good_sid)] == ["delivered"]
    finally:
        await drop_database(url)


# -- the integrator's administration: secret rotation, replay, tokens ---------------------------


def _signatures(received: Received) -> list[str]:
    header = received.headers["X-CTC-Signature"]
    return [p.partition("=")[2] for p in header.split(",") if p.startswith("v1=")]


async def test_a_rotated_secret_and_the_previous_one_both_verify_during_the_grace_period(
    cb_db: str, receiver: Receiver
) -> None:
    async with running_engine(cb_db) as engine, socket_api(engine.settings.api.socket) as api:
        slug = f"cb{uuid.uuid4().hex[:10]}"
        created = await engine.use_cases.tenants.create(
            slug, slug, receiver.url, allow_cidrs=LOOPBACK
        )
        old = created.callback_secret
        assert old == await engine.store.tenants.callback_secret(created.tenant.id)
        sid = await place_call(api, slug, CallStatus.DIALING_AGENT)
        await receiver.wait_for(lambda _: len(receiver.delivered(sid)) == 2)
        assert all(len(_signatures(r)) == 1 for r in receiver.delivered(sid))

        status, rotated, _ = await api.call(
            "POST",
            "/api/v1/tenant/callback-secret",
            json={"grace_seconds": 3600},
            headers={"X-CTC-Tenant": slug},
        )
        assert status == 200, rotated
        new = rotated["callback_secret"]
        assert new != old
        assert rotated["previous_valid_until"] is not None
        await move_call(api, slug, sid, CallStatus.AGENT_ANSWERED)
        await receiver.wait_for(lambda _: len(receiver.delivered(sid)) == 3)
        during = receiver.delivered(sid)[-1]
        assert len(_signatures(during)) == 2
        header = during.headers["X-CTC-Signature"]
        # a receiver that knows either secret accepts it; one that knows neither does not
        assert verify_signature(new, during.body, header)
        assert verify_signature(old, during.body, header)
        assert not verify_signature("not-the-secret", during.body, header)

        # rotating with no grace: only the newest secret signs from now on
        newest = await engine.use_cases.tenants.rotate_callback_secret(slug, grace_seconds=0)
        assert newest.previous_valid_until is None
        await move_call(api, slug, sid, CallStatus.CANCELED)
        await receiver.wait_for(lambda _: len(receiver.delivered(sid)) == 4)
        after = receiver.delivered(sid)[-1]
        assert len(_signatures(after)) == 1
        assert verify_signature(
            newest.callback_secret, after.body, after.headers["X-CTC-Signature"]
        )
        assert not verify_signature(new, after.body, after.headers["X-CTC-Signature"])
        assert not verify_signature(old, after.body, after.headers["X-CTC-Signature"])


async def test_dead_callbacks_are_listed_and_replayed_in_order(
    cb_db: str, cb_pool: Database, receiver: Receiver
) -> None:
    receiver.always_fail = True
    async with (
        running_engine(cb_db, max_attempts=2) as engine,
        socket_api(engine.settings.api.socket) as api,
    ):
        slug, secret = await _callback_tenant(engine, receiver.url)
        headers = {"X-CTC-Tenant": slug}
        sid = await place_call(api, slug, CallStatus.DIALING_AGENT, CallStatus.CANCELED)

        async def all_dead() -> bool:
            rows = await _rows(cb_pool, sid)
            return len(rows) == 3 and all(r["state"] == "dead" for r in rows)

        await eventually(within=WAIT, check=all_dead)
        status, listed, _ = await api.call(
            "GET", "/api/v1/callbacks", params={"state": "dead"}, headers=headers
        )
        assert status == 200, listed
        dead = [c for c in listed["items"] if c["session_id"] == sid]
        assert [c["event_type"] for c in dead] == [  # newest first
            "status.changed",
            "status.changed",
            "session.created",
        ]
        assert all(c["attempts"] == 2 and c["last_status"] == 500 for c in dead)
        # another tenant sees none of them, and cannot replay them
        other = await new_tenant(engine.store)
        status, theirs, _ = await api.call(
            "POST",
            "/api/v1/callbacks/replay",
            json={"all_failed": True},
            headers={"X-CTC-Tenant": other.slug},
        )
        assert (status, theirs["items"]) == (200, [])

        receiver.always_fail = False
        first_two = sorted(c["id"] for c in dead)[:2]
        status, replayed, _ = await api.call(
            "POST", "/api/v1/callbacks/replay", json={"ids": first_two}, headers=headers
        )
        assert status == 200, replayed
        assert [c["id"] for c in replayed["items"]] == first_two
        assert all(c["state"] == "pending" and c["attempts"] == 0 for c in replayed["items"])
        await receiver.wait_for(lambda _: len(receiver.delivered(sid)) == 2)
        status, replayed, _ = await api.call(
            "POST", "/api/v1/callbacks/replay", json={"all_failed": True}, headers=headers
        )
        assert len(replayed["items"]) == 1
        await receiver.wait_for(lambda _: len(receiver.delivered(sid)) == 3)

    delivered = receiver.delivered(sid)
    assert _seqs(delivered) == [1, 2, 3]  # in order, as the first time
    for r in delivered:  # the same event ids, signed afresh
        assert r.headers["X-CTC-Event-Id"] == str(r.json["event_id"])
        assert verify_signature(secret, r.body, r.headers["X-CTC-Signature"])
    rows = await _rows(cb_pool, sid)
    assert [(r["state"], r["attempts"]) for r in rows] == [("delivered", 1)] * 3


async def test_a_tenant_manages_its_callback_url_and_tokens_over_the_api(
    cb_db: str, receiver: Receiver
) -> None:
    async with running_engine(cb_db) as engine, socket_api(engine.settings.api.socket) as api:
        slug, _ = await _callback_tenant(engine, receiver.url)
        headers = {"X-CTC-Tenant": slug}
        status, body, _ = await api.call(
            "PATCH", "/api/v1/tenant", json={"callback_url": None}, headers=headers
        )
        assert (status, body["callback_url"]) == (200, None)
        status, body, _ = await api.call(
            "PATCH",
            "/api/v1/tenant",
            json={"callback_url": "http://10.1.2.3/hook"},  # a network it may not reach
            headers=headers,
        )
        assert status == 422, body
        assert body["error"]["details"][0]["field"] == "callback_url"
        status, body, _ = await api.call(
            "PATCH", "/api/v1/tenant", json={"callback_url": receiver.url}, headers=headers
        )
        assert (status, body["callback_url"]) == (200, receiver.url)

        status, issued, _ = await api.call(
            "POST", "/api/v1/tokens", json={"name": "erp-prod"}, headers=headers
        )
        assert status == 201, issued
        assert (await engine.store.tenants.by_token(issued["token"])) is not None
        status, listed, _ = await api.call("GET", "/api/v1/tokens", headers=headers)
        assert [(t["id"], t["name"], t["revoked_at"]) for t in listed["items"]] == [
            (issued["id"], "erp-prod", None)
        ]
        assert issued["token"].startswith(listed["items"][0]["prefix"])
        assert "token" not in listed["items"][0]
        other = await new_tenant(engine.store)
        status, _, _ = await api.call(
            "DELETE", f"/api/v1/tokens/{issued['id']}", headers={"X-CTC-Tenant": other.slug}
        )
        assert status == 404  # another tenant's token is not there for it
        status, revoked, _ = await api.call(
            "DELETE", f"/api/v1/tokens/{issued['id']}", headers=headers
        )
        assert status == 200
        assert revoked["revoked_at"] is not None
        assert await engine.store.tenants.by_token(issued["token"]) is None
