"""The smallest programs that run bench/ivr.py's 2-level menu over FastAGI and over ARI.

They do what the menu needs and nothing else: no database, no state machine, no DTMF rows,
no timers (the bench caller always keys "1" then "#"). Run beside the engine's doors on the
same sandbox, they show what each door costs Asterisk itself and the ceiling a Python
program reaches through it, so the engine's figures can be read against them.

- ``BareAgiServer``: FastAGI on 127.0.0.1:4575 (dialplan: ``4575<number>`` from the caller).
  The same AGI commands as the engine's door: ANSWER, STREAM FILE hello-world (key 1),
  STREAM FILE beep (key #), WAIT FOR DIGIT when a prompt ends unanswered, HANGUP.
- ``BareAriApp``: the Stasis app ``ctc-bare`` (dialplan: ``4576<number>``): answer, play
  hello-world, on 1 stop it and play beep, on # hang up.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import re
from types import TracebackType
from typing import Any, Self

import aiohttp

from engine.devtools.sandbox import ARI_PASSWORD, ARI_URL, ARI_USER

__all__ = ["BareAgiServer", "BareAriApp"]

_RESULT = re.compile(rb"result=(-?\d+)")


class BareAgiServer:
    def __init__(self, port: int = 4575) -> None:
        self.port = port
        self._server: asyncio.Server | None = None
        self.walked = 0  # calls that reached the "#"

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async def command(line: str) -> int:
            writer.write(line.encode() + b"\n")
            await writer.drain()
            while True:
                answer = await reader.readline()
                if not answer:
                    raise ConnectionError("AGI closed")
                if answer.startswith(b"HANGUP"):
                    continue
                found = _RESULT.search(answer)
                return int(found.group(1)) if found else -1

        try:
            while (await reader.readline()).strip():  # the agi_* environment
                pass
            await command("ANSWER")
            key = await command("STREAM FILE hello-world 1")
            if key == 0:
                key = await command("WAIT FOR DIGIT 5000")
            if key == ord("1"):
                key = await command('STREAM FILE beep "#"')
                if key == 0:
                    key = await command("WAIT FOR DIGIT 5000")
                if key == ord("#"):
                    self.walked += 1
            await command("HANGUP")
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()


class BareAriApp:
    app = "ctc-bare"

    def __init__(self) -> None:
        token = base64.b64encode(f"{ARI_USER}:{ARI_PASSWORD}".encode()).decode()
        self._headers = {"Authorization": f"Basic {token}"}
        self._http: aiohttp.ClientSession | None = None
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self._menu: dict[str, str] = {}  # channel id -> "main" | "sub"
        self._playing: dict[str, str] = {}  # channel id -> playback id
        self._handlers: set[asyncio.Task[None]] = set()
        self.walked = 0

    async def __aenter__(self) -> Self:
        # at most 64 connections, as the engine's ARI client: Asterisk's HTTP server serves
        # 100 sessions (http.conf sessionlimit) and closes the ones over
        self._http = aiohttp.ClientSession(
            headers=self._headers, connector=aiohttp.TCPConnector(limit=64)
        )
        self._task = asyncio.create_task(self._events())
        await asyncio.wait_for(self._ready.wait(), 10)
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for channel in list(self._menu):  # calls left in the app would stay up for good
            with contextlib.suppress(aiohttp.ClientError):
                await self._call("DELETE", f"/channels/{channel}")
        if self._http is not None:
            await self._http.close()

    async def _events(self) -> None:
        assert self._http is not None
        ws_url = ARI_URL.replace("http", "ws", 1) + f"/events?app={self.app}"
        async with self._http.ws_connect(ws_url) as ws:
            self._ready.set()
            async for message in ws:
                if message.type is not aiohttp.WSMsgType.TEXT:
                    continue
                event = json.loads(message.data)
                task = asyncio.create_task(self._on(event))
                self._handlers.add(task)
                task.add_done_callback(self._handlers.discard)

    async def _call(self, method: str, path: str) -> Any:
        assert self._http is not None
        async with self._http.request(method, ARI_URL + path) as resp:
            return await resp.json() if resp.content_type == "application/json" else None

    async def _play(self, channel: str, media: str) -> None:
        playback = await self._call("POST", f"/channels/{channel}/play?media=sound:{media}")
        if isinstance(playback, dict):
            self._playing[channel] = playback["id"]

    async def _on(self, event: dict[str, Any]) -> None:
        kind = event["type"]
        channel = event.get("channel", {}).get("id", "")
        if kind == "StasisStart":
            self._menu[channel] = "main"
            await self._call("POST", f"/channels/{channel}/answer")
            await self._play(channel, "hello-world")
        elif kind == "ChannelDtmfReceived":
            # decided before the first await: handlers run concurrently, and a key that
            # comes while the previous one's requests are out must see the new menu
            digit, menu = event["digit"], self._menu.get(channel)
            playing = self._playing.pop(channel, None)
            if menu == "main" and digit == "1":
                self._menu[channel] = "sub"
            elif menu == "sub" and digit == "#":
                self._menu[channel] = "done"
                self.walked += 1
            if playing is not None:
                await self._call("DELETE", f"/playbacks/{playing}")
            if menu == "main" and digit == "1":
                await self._play(channel, "beep")
            elif menu == "sub" and digit == "#":
                await self._call("DELETE", f"/channels/{channel}")
        elif kind == "StasisEnd":
            self._menu.pop(channel, None)
            self._playing.pop(channel, None)
