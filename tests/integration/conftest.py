"""An engine running on a temporary Unix socket (and a TCP port) over a migrated database."""

from __future__ import annotations

import asyncio
import socket
import tempfile
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

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

# The key of the shared engine's stored secrets (tests may open what it sealed).
SECRET_KEY = Keyring.generate_key()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
async def engine(migrated_db: str) -> AsyncIterator[Engine]:
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


class Api:
    """Raw HTTP over the engine's Unix socket (or TCP), returning (status, json, headers)."""

    def __init__(self, session: aiohttp.ClientSession, base: str) -> None:
        self._session = session
        self._base = base

    async def call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        data: Any = None,
        params: Any = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any, dict[str, str]]:
        async with self._session.request(
            method, self._base + path, json=json, data=data, params=params, headers=headers
        ) as resp:
            body = await resp.json(content_type=None) if resp.content_length != 0 else None
            return resp.status, body, dict(resp.headers)


@pytest.fixture(scope="session")
async def unix_api(engine: Engine) -> AsyncIterator[Api]:
    connector = aiohttp.UnixConnector(path=str(engine.settings.api.socket))
    async with aiohttp.ClientSession(connector=connector) as session:
        yield Api(session, "http://ctc")


@pytest.fixture(scope="session")
async def tcp_api(engine: Engine) -> AsyncIterator[Api]:
    async with aiohttp.ClientSession() as session:
        yield Api(session, f"http://127.0.0.1:{engine.api.tcp_port}")


# The statuses that take a click-to-call from queued to connected (no Asterisk here: the API
# sets them, as an ERP driving a carrier call would).
CONNECT = ("dialing_agent", "agent_answered", "dialing_customer", "connected")


async def session_in(engine: Engine, unix_api: Api, *steps: str) -> tuple[str, str]:
    """A new tenant with one session moved through ``steps``; (tenant slug, session id)."""
    slug = f"t{uuid.uuid4().hex[:10]}"
    await engine.store.tenants.create(slug, slug.upper())
    status, s, _ = await unix_api.call(
        "POST",
        "/api/v1/click-to-call/initiate",
        json={"agent_number": "1001", "customer_number": "+14155550100"},
        headers={"X-CTC-Tenant": slug},
    )
    assert status == 202, s
    for step in steps:
        status, body, _ = await unix_api.call(
            "PATCH",
            f"/api/v1/click-to-call/sessions/{s['id']}/status",
            json={"status": step},
            headers={"X-CTC-Tenant": slug},
        )
        assert status == 200, body
    return slug, s["id"]
