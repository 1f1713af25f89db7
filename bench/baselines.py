"""The smallest programs that do what the engine's benches drive it to do, over the same doors.

bench/ivr.py's 2-level menu over FastAGI and over ARI, and bench/originate.py's bridged
click-to-call over ARI. They do what the call needs and nothing else: no database, no state
machine, no event rows, no timers (the bench caller always keys "1" then "#"; the customer's
phone hangs up by itself). Run beside the engine on the same sandbox, they show what each
flow costs Asterisk itself and the ceiling a Python program reaches through it, so the
engine's figures can be read against them.

- ``BareAgiServer``: FastAGI on 127.0.0.1:4575 (dialplan: ``4575<number>`` from the caller).
  The same AGI commands as the engine's door: ANSWER, STREAM FILE hello-world (key 1),
  STREAM FILE beep (key #), WAIT FOR DIGIT when a prompt ends unanswered, HANGUP.
- ``BareAriApp``: the Stasis app ``ctc-bare`` (dialplan: ``4576<number>``): answer, play
  hello-world, on 1 stop it and play beep, on # hang up.
- ``BareClickToCall``: the Stasis app ``ctc-bare-c2c`` (no dialplan: its channels are
  originated straight into it): originate the agent; when the agent answers, originate the
  customer; when the customer answers, bridge both (mixing) and record the bridge; when
  either leg ends, hang up the other and destroy the bridge.
"""

from __future__ import annotations

import abc
import asyncio
import base64
import contextlib
import json
import re
import uuid
from types import TracebackType
from typing import Any, Self

import aiohttp

from engine.devtools.sandbox import ARI_PASSWORD, ARI_URL, ARI_USER
from engine.listening import LISTEN_BACKLOG

__all__ = ["BareAgiServer", "BareAriApp", "BareClickToCall"]

_RESULT = re.compile(rb"result=(-?\d+)")


class BareAgiServer:
    def __init__(self, port: int = 4575) -> None:
        self.port = port
        self._server: asyncio.Server | None = None
        self.walked = 0  # calls that reached the "#"

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(
            self._serve,
            "127.0.0.1",
            self.port,
            backlog=LISTEN_BACKLOG,  # as the engine's
        )
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
            await command("EXEC Answer ,i")
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


class _BareStasisApp(abc.ABC):
    """One Stasis app over aiohttp: one WebSocket for its events, each handled in a task."""

    app: str

    def __init__(self) -> None:
        token = base64.b64encode(f"{ARI_USER}:{ARI_PASSWORD}".encode()).decode()
        self._headers = {"Authorization": f"Basic {token}"}
        self._http: aiohttp.ClientSession | None = None
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self._handlers: set[asyncio.Task[None]] = set()

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
        for channel in self._live_channels():  # calls left in the app would stay up for good
            with contextlib.suppress(aiohttp.ClientError):
                await self._call("DELETE", f"/channels/{channel}")
        if self._http is not None:
            await self._http.close()

    @abc.abstractmethod
    def _live_channels(self) -> list[str]:
        """The channels still in the app, hung up on exit."""

    @abc.abstractmethod
    async def _on(self, event: dict[str, Any]) -> None:
        """Handle one event of the app."""

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

    async def _call(self, method: str, path: str, params: dict[str, str] | None = None) -> Any:
        assert self._http is not None
        async with self._http.request(method, ARI_URL + path, params=params) as resp:
            return await resp.json() if resp.content_type == "application/json" else None


class BareAriApp(_BareStasisApp):
    app = "ctc-bare"

    def __init__(self) -> None:
        super().__init__()
        self._menu: dict[str, str] = {}  # channel id -> "main" | "sub"
        self._playing: dict[str, str] = {}  # channel id -> playback id
        self.walked = 0

    def _live_channels(self) -> list[str]:
        return list(self._menu)

    async def _play(self, channel: str, media: str) -> None:
        playback = await self._call("POST", f"/channels/{channel}/play?media=sound:{media}")
        if isinstance(playback, dict) and "id" in playback:  # not an error: the caller is gone
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


class BareClickToCall(_BareStasisApp):
    """Bridged click-to-calls: ``await place(agent_endpoint, customer_endpoint)`` starts one;
    ``completed`` counts the calls that were bridged and recorded, whose legs both ended and
    whose recording's end (``RecordingFinished`` or ``RecordingFailed``) arrived: the facts
    the engine waits for too. With ``record`` false the calls are not recorded and a call is
    complete when both legs ended."""

    app = "ctc-bare-c2c"

    def __init__(self, recording_format: str = "wav", *, record: bool = True) -> None:
        super().__init__()
        self._format = recording_format
        self._record = record
        self._run = uuid.uuid4().hex[:8]
        self._placed = 0
        self._customer_endpoint: dict[str, str] = {}  # call id -> customer endpoint
        self._up: dict[str, set[str]] = {}  # call id -> its legs in the app
        self._bridged: set[str] = set()
        self._hung_up: set[str] = set()  # bridged calls whose legs both ended
        self._recorded: set[str] = set()  # bridged calls whose recording ended
        self.recordings: list[str] = []  # names of the recordings made (one per call)
        self.completed = 0
        self._progress = asyncio.Condition()  # notified as calls complete

    def _live_channels(self) -> list[str]:
        return [f"{call}-{leg}" for call, legs in self._up.items() for leg in legs]

    async def completion(self, calls: int) -> None:
        """Wait until ``calls`` calls completed."""
        async with self._progress:
            await self._progress.wait_for(lambda: self.completed >= calls)

    def incomplete(self) -> tuple[list[str], list[str]]:
        """Of the bridged calls not completed: those still waiting for a leg's end, and those
        waiting for their recording's end."""
        return sorted(self._bridged - self._hung_up), sorted(self._bridged - self._recorded)

    async def recording_state(self, name: str) -> str:
        """What ARI says of recording ``name``: live (its state), stored, or neither."""
        live = await self._call("GET", f"/recordings/live/{name}")
        if isinstance(live, dict) and "state" in live:
            return f"live: {live['state']}"
        stored = await self._call("GET", f"/recordings/stored/{name}")
        return "stored" if isinstance(stored, dict) and "name" in stored else "unknown"

    async def place(self, agent_endpoint: str, customer_endpoint: str) -> None:
        self._placed += 1
        call = f"bare-{self._run}-{self._placed}"
        self._customer_endpoint[call] = customer_endpoint
        await self._originate(call, "agent", agent_endpoint)

    async def _originate(self, call: str, leg: str, endpoint: str) -> None:
        params = {"endpoint": endpoint, "app": self.app, "timeout": "30"}
        await self._call("POST", f"/channels/{call}-{leg}", params)

    async def _on(self, event: dict[str, Any]) -> None:
        kind = event["type"]
        call, _, leg = event.get("channel", {}).get("id", "").rpartition("-")
        if kind == "StasisStart":
            self._up.setdefault(call, set()).add(leg)
            if leg == "agent":
                await self._originate(call, "customer", self._customer_endpoint.pop(call))
            elif leg == "customer":
                await self._bridge_and_record(call)
        elif kind == "StasisEnd":
            await self._end(call, leg)
        elif kind in ("RecordingFinished", "RecordingFailed"):
            await self._settle(event["recording"]["name"], self._recorded)

    async def _bridge_and_record(self, call: str) -> None:
        await self._call("POST", f"/bridges/{call}", {"type": "mixing"})
        await self._call(
            "POST", f"/bridges/{call}/addChannel", {"channel": f"{call}-agent,{call}-customer"}
        )
        self._bridged.add(call)
        if not self._record:
            self._recorded.add(call)  # no recording to wait for
            return
        recording = {"name": call, "format": self._format, "ifExists": "overwrite"}
        await self._call("POST", f"/bridges/{call}/record", recording)
        self.recordings.append(call)

    async def _end(self, call: str, leg: str) -> None:
        legs = self._up.get(call, set())
        legs.discard(leg)
        if legs:  # the first leg to end: hang up the other, the call is over
            other = legs.pop()
            await self._call("DELETE", f"/channels/{call}-{other}")
            await self._call("DELETE", f"/bridges/{call}")
            return
        self._up.pop(call, None)
        await self._settle(call, self._hung_up)

    async def _settle(self, call: str, facts: set[str]) -> None:
        """One of a bridged call's two last facts arrived; the second completes it."""
        if call not in self._bridged:
            return
        facts.add(call)
        if call in self._hung_up and call in self._recorded:
            self._bridged.discard(call)
            async with self._progress:
                self.completed += 1
                self._progress.notify_all()
