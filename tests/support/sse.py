"""The client side of ``GET /api/v1/events`` (Server-Sent Events) over an engine's socket."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp

from engine.daemon import Engine
from tests.support.tenants import tenant_headers

__all__ = ["EVENTS", "WAIT", "Stream", "open_socket_stream", "open_stream"]

EVENTS = "/api/v1/events"
WAIT = 20.0


class Stream:
    """The client side of one SSE response: messages and comments, one block at a time."""

    def __init__(self, resp: aiohttp.ClientResponse) -> None:
        self.resp = resp

    async def block(self) -> list[str] | None:
        """The lines of the next message (up to its blank line); None at the end of stream."""
        lines: list[str] = []
        async with asyncio.timeout(WAIT):
            while True:
                raw = await self.resp.content.readline()
                if not raw:
                    return lines or None
                line = raw.decode().rstrip("\n")
                if line == "":
                    if lines:
                        return lines
                    continue
                lines.append(line)

    async def event(self) -> dict[str, Any] | None:
        """The next event (comments and ``retry:`` skipped); None at the end of stream."""
        while True:
            lines = await self.block()
            if lines is None:
                return None
            fields: dict[str, str] = {}
            for line in lines:
                if line.startswith(":"):
                    continue
                name, _, value = line.partition(": ")
                fields[name] = value
            if "data" in fields:
                data = json.loads(fields["data"])
                return {
                    "id": int(data["id"]),  # the event's id
                    "cursor": fields["id"],  # the SSE id: the stream's cursor, for Last-Event-ID
                    "event": fields["event"],
                    "data": data,
                }

    async def events(self, n: int) -> list[dict[str, Any]]:
        out = []
        for _ in range(n):
            event = await self.event()
            assert event is not None, f"stream ended after {len(out)} of {n} events"
            out.append(event)
        return out


@contextlib.asynccontextmanager
async def open_stream(
    engine: Engine,
    tenant: str,
    *,
    params: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
) -> AsyncIterator[Stream]:
    async with open_socket_stream(
        engine.settings.api.socket, tenant, params=params, headers=headers
    ) as stream:
        yield stream


@contextlib.asynccontextmanager
async def open_socket_stream(
    socket: Path,
    tenant: str,
    *,
    params: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
) -> AsyncIterator[Stream]:
    """The event stream of the engine whose API listens on the Unix socket ``socket``."""
    connector = aiohttp.UnixConnector(path=str(socket))
    async with (
        aiohttp.ClientSession(
            connector=connector, timeout=aiohttp.ClientTimeout(total=None)
        ) as session,
        session.get(
            f"http://ctc{EVENTS}",
            params=params,
            headers={**tenant_headers(tenant), **(headers or {})},
        ) as resp,
    ):
        assert resp.status == 200, await resp.text()
        assert resp.content_type == "text/event-stream"
        yield Stream(resp)
