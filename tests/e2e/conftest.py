"""Fixtures for end-to-end tests: the sandbox Asterisk, SIPp phones, ARI sessions and events,
and the two engines wired to the sandbox.

The ``sandbox`` fixture brings the sandbox up once per session and takes it down at the
end only if it started it (a sandbox someone left running for development stays up).
When it cannot start, the e2e tests are skipped on a developer machine but fail in CI
(``CI=true``), so a broken sandbox never passes silently there.

``c2c_engine`` places click-to-calls as the Stasis app ``ctc-e2e``; ``ivr_engine`` answers
the dialplan's inbound doors (``Stasis(ctc,ivr,…)`` and ``AGI(agi://127.0.0.1:4573/…)``).
A test that needs other settings (ring timeouts, ARI through a proxy) starts its own with
:func:`~tests.e2e.engine_fixtures.running_engine`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest

from engine.daemon import Engine
from engine.devtools.sandbox import ARI_URL, Sandbox
from engine.errors import SandboxError
from tests.e2e.engine_fixtures import running_engine
from tests.e2e.helpers import AriEvents, SippPhone, ari_session
from tests.support.ci import unavailable


@pytest.fixture(scope="session")
def sandbox() -> Iterator[Sandbox]:
    """The sandbox Asterisk, up (ARI answering) for the whole session."""
    box = Sandbox()
    try:
        started_here = not box.status().running
        box.up()
    except SandboxError as exc:
        unavailable("sandbox Asterisk", str(exc))
    try:
        yield box
    finally:
        if started_here:
            box.down()


@pytest.fixture
def sipp_phone(sandbox: Sandbox, tmp_path: Path) -> Iterator[Callable[..., SippPhone]]:
    """Factory: ``with sipp_phone("uas_answer.xml", port=5071) as phone: ...``.

    Every phone made is stopped at the end of the test, even if the test forgot.
    """
    made: list[SippPhone] = []

    def make(scenario: str, *, port: int, **kwargs: Any) -> SippPhone:
        phone = SippPhone(scenario, port=port, workdir=tmp_path / "sipp", **kwargs)
        made.append(phone)
        return phone

    yield make
    for phone in made:
        phone.stop()


@pytest.fixture
async def ari(sandbox: Sandbox) -> AsyncIterator[aiohttp.ClientSession]:
    """An aiohttp session authenticated as the sandbox ARI user."""
    async with ari_session() as session:
        yield session


@pytest.fixture
async def ari_events(ari: aiohttp.ClientSession) -> AsyncIterator[AriEvents]:
    """The ``ctc`` Stasis app's event socket, connected before the test acts, with every
    event type (an engine's filter may still be on the app: Asterisk keeps it while a
    channel is the app's)."""
    ws = await ari.ws_connect(f"{ARI_URL.replace('http', 'ws', 1)}/events?app=ctc")
    async with ari.put(f"{ARI_URL}/applications/ctc/eventFilter", json={}) as resp:
        resp.raise_for_status()
    events = AriEvents(ws)
    try:
        yield events
    finally:
        await events.close()


@pytest.fixture
async def db(migrated_db: str) -> AsyncIterator[asyncpg.Connection]:
    """A connection to the test's database, for reading what the engines wrote."""
    conn = await asyncpg.connect(migrated_db)
    try:
        yield conn
    finally:
        await conn.close()


@pytest.fixture
async def c2c_engine(migrated_db: str, sandbox: Sandbox, tmp_path: Path) -> AsyncIterator[Engine]:
    """An engine placing click-to-calls through the sandbox (Stasis app ``ctc-e2e``, no
    FastAGI), resynced and ready."""
    async with running_engine(migrated_db, sandbox, tmp_path) as running:
        yield running


@pytest.fixture
async def ivr_engine(migrated_db: str, sandbox: Sandbox, tmp_path: Path) -> AsyncIterator[Engine]:
    """An engine answering inbound callers: the dialplan sends them to ``Stasis(ctc,ivr,…)``
    and ``AGI(agi://127.0.0.1:4573/…)``, so this engine is the ``ctc`` app with FastAGI on."""
    async with running_engine(migrated_db, sandbox, tmp_path, app="ctc", agi=True) as running:
        yield running
