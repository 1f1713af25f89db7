"""An engine of its own as one node among several on a test database (no Asterisk)."""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

from engine.config.settings import (
    AgiSettings,
    ApiSettings,
    AriSettings,
    DatabaseSettings,
    NodeSettings,
    Settings,
)
from engine.daemon import Engine

__all__ = ["node_engine"]


@contextlib.asynccontextmanager
async def node_engine(db_url: str, node: NodeSettings) -> AsyncIterator[Engine]:
    """An engine named ``node.name`` over ``db_url``, without Asterisk, its socket of its
    own; yielded once its database is up."""
    with tempfile.TemporaryDirectory(prefix="ctc-node-") as tmp:
        settings = Settings(
            node=node,
            agi=AgiSettings(enabled=False),
            ari=AriSettings(enabled=False),
            database=DatabaseSettings(url=db_url),
            api=ApiSettings(socket=Path(tmp) / "engine.sock", socket_mode="0600"),
        )
        async with Engine(settings) as engine:
            await asyncio.wait_for(engine.database_ready.wait(), 30)
            yield engine
