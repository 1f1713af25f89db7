"""The asterisk-docker stack end to end: built here, a click-to-call through it, then gone.

What a PBX admin does with ``asterisk-docker/``, on this host: make the base image and the
engine's wheels (``prepare``), ``docker-compose build`` and ``up -d`` with an env file,
wait for the engine's health check (``ctc doctor``), create a tenant and a token with
``ctc`` inside the engine's container, place a click-to-call over the engine's TCP API.
The containerised Asterisk rings SIPp phones on this host (an agent, and a customer behind
the trunk) on ports the env file gave it, bridges and records them; the recording must be
in the stack's volume. ``docker-compose down`` must leave no container and no listener.

The stack uses its own ports and compose project (tests/e2e/compose_stack.py), so it runs
beside the sandbox Asterisk and other tests. A Docker engine that already runs is used as
it is; otherwise dockerd is started here and stopped by its PID at the end.
"""

from __future__ import annotations

import asyncio
import uuid
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from engine.devtools.docker_daemon import Dockerd
from engine.devtools.docker_stack import build_base_image, build_wheelhouse
from engine.devtools.sipp import SippPhone
from engine.errors import SandboxError
from engine.store.database import Database
from engine.store.repositories import Store
from tests.e2e.compose_stack import STACK_DIR, ComposeStack, StackPorts
from tests.e2e.engine_fixtures import CUSTOMER
from tests.support.ci import unavailable
from tests.support.net import free_port
from tests.support.tenants import bearer_headers
from tests.support.waiting import eventually

pytestmark = pytest.mark.e2e

PROJECT = "ctc-docker-e2e"
#: Where the base image's tarball is cached between runs (keyed by its inputs).
BASE_CACHE = Path("/var/cache/ctc/docker")
TERMINAL = {"completed", "busy", "no_answer", "failed", "canceled", "rejected"}


@pytest.fixture(scope="module")
def dockerd() -> Iterator[Dockerd]:
    """A Docker engine: the running one, or one started here and stopped at the end."""
    daemon = Dockerd()
    try:
        daemon.start()
    except SandboxError as exc:
        unavailable("Docker engine", str(exc))
    try:
        yield daemon
    finally:
        daemon.stop()


@pytest.fixture(scope="module")
def stack(dockerd: Dockerd, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ComposeStack]:
    """The stack built from this checkout and started (not yet healthy); down at the end."""
    base_image = build_base_image(BASE_CACHE)
    build_wheelhouse(STACK_DIR.parent, STACK_DIR / "engine" / "wheels")
    stack = ComposeStack(
        PROJECT, StackPorts(api=free_port()), tmp_path_factory.mktemp("stack"), base_image
    )
    stack.down()  # whatever an interrupted earlier run left
    busy = stack.ports.tcp_in_use()
    if busy:
        pytest.fail(f"the stack's ports {busy} are taken on 127.0.0.1: something else runs there")
    try:
        stack.build()
        stack.up()
        yield stack
    finally:
        stack.down()


async def test_stack_records_a_click_to_call_to_host_phones_and_down_leaves_nothing(
    stack: ComposeStack, tmp_path: Path
) -> None:
    await _healthy(stack)
    doctor = await asyncio.to_thread(stack.ctc, "doctor")
    assert all(line.startswith("ok ") for line in doctor.splitlines()), doctor
    await asyncio.to_thread(stack.ctc, "tenant", "create", "acme")
    token = (await asyncio.to_thread(stack.ctc, "token", "create", "--tenant", "acme")).strip()
    await _record_every_call(stack, "acme")

    agent_port, trunk_port = stack.ports.agents[0], stack.ports.trunk
    with (
        SippPhone("uas_answer.xml", port=agent_port, workdir=tmp_path) as agent,
        SippPhone(
            "uas_answer_then_hangup.xml", port=trunk_port, workdir=tmp_path, hold_ms=3000
        ) as customer,
    ):
        async with aiohttp.ClientSession(headers=bearer_headers(token)) as http:
            session_id = await _initiate(http, stack)
            session = await _until_recorded(http, stack, session_id)
        assert await customer.wait_async(30) == 0, customer.report()
        assert await agent.wait_async(30) == 0, agent.report()

    assert session["status"] == "completed", session
    assert session["end_reason"] == "customer hung up", session
    assert session["hangup_cause"] == 16, session
    recording = stack.volume_dir("recordings") / Path(session["recording_path"]).name
    assert await asyncio.to_thread(recording.is_file), (recording, stack.logs())
    with wave.open(str(recording)) as audio:
        seconds = audio.getnframes() / audio.getframerate()
    assert abs(seconds - 3.0) <= 1.0, seconds  # the customer talked 3 s

    await asyncio.to_thread(stack.down)
    assert await asyncio.to_thread(stack.containers) == []
    assert stack.ports.tcp_in_use() == []


async def _healthy(stack: ComposeStack) -> None:
    """Wait until every service's health check passes; fail at once on an unhealthy one."""

    async def all_healthy() -> bool:
        states = {
            service: await asyncio.to_thread(stack.health, service)
            for service in ("postgres", "asterisk", "engine")
        }
        bad = [service for service, state in states.items() if state == "unhealthy"]
        assert not bad, f"unhealthy: {bad}\n{stack.logs()}"
        return all(state == "healthy" for state in states.values())

    try:
        await eventually(all_healthy, within=240, interval=1.0, what="every service healthy")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{stack.logs()}") from None


async def _record_every_call(stack: ComposeStack, tenant_slug: str) -> None:
    """Turn recording on for the tenant, in the stack's database (no CLI does this yet)."""
    async with Database(stack.database_url, min_size=1, max_size=1) as database:
        store = Store.over(database)
        tenant = await store.tenants.by_slug(tenant_slug)
        await store.recording.set_default(tenant.id, is_enabled=True, fmt="wav")


async def _initiate(http: aiohttp.ClientSession, stack: ComposeStack) -> str:
    body = {"agent_number": "agent1", "customer_number": CUSTOMER}
    url = f"{stack.api_url}/api/v1/click-to-call/initiate"
    async with http.post(url, json=body, headers={"Idempotency-Key": str(uuid.uuid4())}) as resp:
        placed = await resp.json()
        assert resp.status == 202, placed
    return str(placed["id"])


async def _until_recorded(
    http: aiohttp.ClientSession, stack: ComposeStack, session_id: str
) -> dict[str, Any]:
    """The session once it ended and its recording is known (recording.finished)."""
    url = f"{stack.api_url}/api/v1/click-to-call/sessions/{session_id}"

    async def ended() -> dict[str, Any] | None:
        async with http.get(url) as resp:
            session: dict[str, Any] = await resp.json()
            assert resp.status == 200, session
        if session["status"] in TERMINAL and session["status"] != "completed":
            return session  # failed: the assertions that follow say how
        return session if session["status"] == "completed" and session["recording_path"] else None

    try:
        return await eventually(ended, within=60, interval=0.2, what="the call ended, recorded")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{stack.logs()}") from None
