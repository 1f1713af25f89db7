"""The integration layer's engine: a real :class:`~engine.daemon.Engine` without Asterisk.

``api_engine`` serves its API on a temporary Unix socket and a TCP port over the run's
migrated database, with ARI and FastAGI off: the API stores calls, nothing dials them.
``cli_env`` is the environment of a ``ctc`` subprocess over the same database.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from pydantic import SecretStr

from engine.config.settings import (
    AgiSettings,
    ApiSettings,
    AriSettings,
    DatabaseSettings,
    SecretsSettings,
    Settings,
    TcpSettings,
)
from engine.daemon import Engine
from engine.secrets import Keyring
from tests.support.carriers import exotel, mcube, twilio, vonage  # noqa: F401  (fixtures)
from tests.support.cli import cli_environment
from tests.support.http import Api, socket_api
from tests.support.net import free_port

# The key of the shared engine's stored secrets (tests may open what it sealed).
SECRET_KEY = Keyring.generate_key()


@pytest.fixture(scope="session")
async def api_engine(migrated_db: str) -> AsyncIterator[Engine]:
    """One engine for the run: its API on a Unix socket and TCP, no Asterisk."""
    with tempfile.TemporaryDirectory(prefix="ctc-test-") as tmp:
        settings = Settings(
            agi=AgiSettings(enabled=False),  # port 4573 is the e2e engines'
            # no Asterisk here: the API stores calls, nothing dials them
            ari=AriSettings(enabled=False),
            database=DatabaseSettings(url=migrated_db),
            api=ApiSettings(
                socket=Path(tmp) / "engine.sock",
                socket_mode="0600",
                max_body_bytes=16384,
                tcp=TcpSettings(enabled=True, host="127.0.0.1", port=free_port()),
            ),
            secrets=SecretsSettings(key=SecretStr(SECRET_KEY)),
        )
        async with Engine(settings) as running:
            await asyncio.wait_for(running.database_ready.wait(), 30)
            yield running


@pytest.fixture(scope="session")
async def unix_api(api_engine: Engine) -> AsyncIterator[Api]:
    async with socket_api(api_engine.settings.api.socket) as api:
        yield api


@pytest.fixture(scope="session")
async def tcp_api(api_engine: Engine) -> AsyncIterator[Api]:
    async with aiohttp.ClientSession() as session:
        yield Api(session, f"http://127.0.0.1:{api_engine.api.tcp_port}")


@pytest.fixture
def cli_env(migrated_db: str, tmp_path: Path) -> dict[str, str]:
    """The environment of a ``ctc`` subprocess over the run's database, without Asterisk."""
    return cli_environment(migrated_db, tmp_path)
