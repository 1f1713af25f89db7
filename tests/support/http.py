"""Raw HTTP to an engine's control API, the way an ERP sends it.

Tests read status, body and headers as they are on the wire (the engine's own client
would turn errors into exceptions). :func:`socket_api` opens one over the engine's Unix
socket; the integration layer's ``unix_api`` and ``tcp_api`` fixtures share one per run.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp

__all__ = ["Api", "socket_api"]


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


@contextlib.asynccontextmanager
async def socket_api(socket: Path) -> AsyncIterator[Api]:
    """An :class:`Api` over the Unix socket at ``socket`` (``http://ctc`` as the host)."""
    connector = aiohttp.UnixConnector(path=str(socket))
    async with aiohttp.ClientSession(connector=connector) as session:
        yield Api(session, "http://ctc")
