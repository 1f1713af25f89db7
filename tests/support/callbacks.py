"""An ERP's callback endpoint on 127.0.0.1: it records what the engine's notifier sends.

Shared by the callback tests (integration) and the click-to-call tests that check a real
call's callbacks (e2e).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Callable
from typing import Any

from aiohttp import web

__all__ = ["Received", "Receiver"]


@dataclasses.dataclass(frozen=True)
class Received:
    headers: dict[str, str]
    body: bytes
    answered: int

    @property
    def json(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.body)
        return data


class Receiver:
    """An ERP endpoint on 127.0.0.1 that records every request and answers ``fail`` with
    500 for the next ``fail_next`` requests (or all of them while ``always_fail``)."""

    def __init__(self, port: int = 0) -> None:
        self.requests: list[Received] = []
        self.fail_next = 0
        self.always_fail = False
        self._port = port
        self._changed = asyncio.Condition()
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._port}/hook"

    async def start(self) -> Receiver:
        app = web.Application()
        app.router.add_post("/hook", self._hook)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self._port)
        await site.start()
        self._port = int(self._runner.addresses[0][1])
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _hook(self, request: web.Request) -> web.Response:
        status = 200
        if self.always_fail or self.fail_next > 0:
            self.fail_next = max(0, self.fail_next - 1)
            status = 500
        body = await request.read()
        async with self._changed:
            self.requests.append(Received(dict(request.headers), body, status))
            self._changed.notify_all()
        return web.Response(status=status, text="nope" if status >= 400 else "ok")

    def delivered(self, session_id: str | None = None) -> list[Received]:
        return [
            r
            for r in self.requests
            if r.answered == 200 and (session_id is None or r.json["session_id"] == session_id)
        ]

    async def wait_for(
        self, predicate: Callable[[list[Received]], bool], within: float = 20.0
    ) -> None:
        """Wait until ``predicate`` holds for the requests received so far."""
        async with asyncio.timeout(within), self._changed:
            await self._changed.wait_for(lambda: predicate(self.requests))
