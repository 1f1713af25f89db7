"""Fixtures for end-to-end tests: the sandbox Asterisk, SIPp phones, ARI sessions and events.

The ``sandbox`` fixture brings the sandbox up once per session and takes it down at the
end only if it started it (a sandbox someone left running for development stays up).
When it cannot start, the e2e tests are skipped on a developer machine but fail in CI
(``CI=true``), so a broken sandbox never passes silently there.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from engine.devtools.sandbox import ARI_URL, Sandbox
from engine.errors import SandboxError
from tests.e2e.helpers import AriEvents, SippPhone, ari_session

IN_CI = os.environ.get("CI") == "true"


def _unavailable(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"sandbox Asterisk unavailable: {reason}", pytrace=False)
    pytest.skip(f"sandbox Asterisk unavailable: {reason}")


@pytest.fixture(scope="session")
def sandbox() -> Iterator[Sandbox]:
    """The sandbox Asterisk, up (ARI answering) for the whole session."""
    box = Sandbox()
    try:
        started_here = not box.status().running
        box.up()
    except SandboxError as exc:
        _unavailable(str(exc))
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
    """The ``ctc`` Stasis app's event socket, connected before the test acts."""
    ws = await ari.ws_connect(f"{ARI_URL.replace('http', 'ws', 1)}/events?app=ctc")
    events = AriEvents(ws)
    try:
        yield events
    finally:
        await events.close()
