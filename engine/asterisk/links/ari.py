"""The ARI link: REST calls over one HTTP session, events over one WebSocket.

A thin client over aiohttp rather than aioari: aioari builds its API from the swagger at
connect time (untyped, and it must be rebuilt after every reconnect), never reports a
dropped socket to its user, and hides the raw event stream we need for ordered, per-call
dispatch. What we need of ARI is a dozen REST calls and one event stream, so we own them.

``AriClient`` does REST; every non-2xx answer becomes :class:`~engine.errors.AriError`
(``AriNotFound`` for 404, which callers often expect: the channel is already gone).
Both classes have the engine's lifecycle (:mod:`engine.lifecycle`): the client's HTTP
session exists while it is open, the link's task runs while it is open.

``AriEventLink`` keeps the event WebSocket up: it retries until Asterisk answers and is
booted ("Asterisk not booted" counts as down), reconnects with capped backoff when the socket
drops, and after every (re)connect calls ``on_connected`` — the resync hook — because
Asterisk does not replay events missed while the socket was down. The reader only parses
and enqueues: Asterisk drops a WebSocket consumer that is slow to read
(``websocket_write_timeout``), so no handler ever runs on the reader: the Stasis app's
dispatcher routes the events (:mod:`engine.asterisk.links.ari_router`).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import random
from collections.abc import Callable, Collection, Coroutine, Mapping
from typing import Any

import aiohttp
import structlog

from engine import json_text
from engine.errors import AriError, describe
from engine.health import HealthReport
from engine.lifecycle import Lifecycle, cancel_tasks

__all__ = ["AriClient", "AriConflict", "AriEventLink", "AriNotFound", "basic_auth"]

log = structlog.get_logger(__name__)


class AriNotFound(AriError):
    """ARI answered 404: the channel, bridge or recording does not exist (any more)."""


class AriConflict(AriError):
    """ARI answered 409: e.g. a bridge with that id exists already, or a recording of that
    name is in progress (what a restarted engine meets when it redoes a step)."""


_STATUS_ERRORS: dict[int, type[AriError]] = {404: AriNotFound, 409: AriConflict}


def basic_auth(username: str, password: str) -> str:
    # aiohttp >= 3.14 deprecates auth=BasicAuth(...): we send the header ourselves
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


def _params(values: Mapping[str, Any]) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in values.items():
        if value is None:
            continue
        out[key] = ("true" if value else "false") if isinstance(value, bool) else str(value)
    return out


class AriClient(Lifecycle):
    """REST calls to ARI over one aiohttp session (open while the client is)."""

    def __init__(
        self,
        base_url: str,
        username: str,
        password: str,
        *,
        app: str = "ctc",
        timeout: float = 10.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        if not self.base_url.endswith("/ari"):
            self.base_url += "/ari"
        self.app = app
        self._auth = basic_auth(username, password)
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        """The HTTP session; ClosedResourceError unless the client is open."""
        self.require_open("used")
        if self._session is None:  # only while _open runs
            raise RuntimeError("AriClient is open without its HTTP session")
        return self._session

    async def _open(self) -> None:
        self._session = aiohttp.ClientSession(
            timeout=self._timeout,
            headers={"Authorization": self._auth},
            connector=aiohttp.TCPConnector(limit=64),
        )

    async def _close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await asyncio.shield(session.close())

    def events_url(self, *, subscribe_all: bool = False) -> str:
        ws = "ws" + self.base_url[4:] if self.base_url.startswith("http") else self.base_url
        return f"{ws}/events?app={self.app}&subscribeAll={'true' if subscribe_all else 'false'}"

    @property
    def auth_header(self) -> str:
        return self._auth

    async def request(
        self,
        method: str,
        path: str,
        params: Mapping[str, Any] | None = None,
        body: Any = None,
    ) -> Any:
        """Call ARI; return the decoded JSON (None for 204); raise AriError on failure."""
        url = f"{self.base_url}{path}"
        try:
            async with self.session.request(
                method, url, params=_params(params or {}), json=body
            ) as resp:
                text = await resp.text()
                status = resp.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise AriError(f"ARI {method} {path}: {describe(exc)}") from exc
        if status >= 400:
            message = text
            with contextlib.suppress(ValueError, AttributeError):
                message = json_text.loads(text).get("message", text)
            cls = _STATUS_ERRORS.get(status, AriError)
            raise cls(f"ARI {method} {path}: {status} {message}".strip())
        return json_text.loads(text) if text else None

    # -- the calls the engine makes -----------------------------------------------------------

    async def asterisk_info(self) -> dict[str, Any]:
        info: dict[str, Any] = await self.request("GET", "/asterisk/info")
        return info

    async def originate(
        self,
        endpoint: str,
        *,
        channel_id: str,
        app_args: str,
        caller_id: str | None = None,
        ring_timeout: int = 30,
        variables: Mapping[str, str] | None = None,
        other_channel_id: str | None = None,
    ) -> dict[str, Any]:
        params = {
            "endpoint": endpoint,
            "app": self.app,
            "appArgs": app_args,
            "callerId": caller_id,
            "timeout": ring_timeout,
            "otherChannelId": other_channel_id,
        }
        body = {"variables": dict(variables)} if variables else None
        channel: dict[str, Any] = await self.request(
            "POST", f"/channels/{channel_id}", params, body
        )
        return channel

    async def hangup(self, channel_id: str, reason: str = "normal") -> None:
        await self.request("DELETE", f"/channels/{channel_id}", {"reason": reason})

    async def answer(self, channel_id: str) -> None:
        await self.request("POST", f"/channels/{channel_id}/answer")

    async def continue_in_dialplan(self, channel_id: str) -> None:
        """Leave Stasis: the channel goes on at the dialplan's next priority."""
        await self.request("POST", f"/channels/{channel_id}/continue")

    async def ring(self, channel_id: str) -> None:
        await self.request("POST", f"/channels/{channel_id}/ring")

    async def play(self, channel_id: str, media: str, *, playback_id: str) -> None:
        await self.request("POST", f"/channels/{channel_id}/play/{playback_id}", {"media": media})

    async def play_on_bridge(self, bridge_id: str, media: str, *, playback_id: str) -> None:
        """Play ``media`` to every channel in the bridge."""
        await self.request("POST", f"/bridges/{bridge_id}/play/{playback_id}", {"media": media})

    async def stop_playback(self, playback_id: str) -> None:
        await self.request("DELETE", f"/playbacks/{playback_id}")

    async def create_bridge(self, bridge_id: str, bridge_type: str = "mixing") -> None:
        await self.request("POST", f"/bridges/{bridge_id}", {"type": bridge_type})

    async def add_to_bridge(self, bridge_id: str, *channel_ids: str) -> None:
        await self.request(
            "POST", f"/bridges/{bridge_id}/addChannel", {"channel": ",".join(channel_ids)}
        )

    async def bridge(self, bridge_id: str) -> dict[str, Any]:
        found: dict[str, Any] = await self.request("GET", f"/bridges/{bridge_id}")
        return found

    async def live_recording(self, name: str) -> dict[str, Any]:
        found: dict[str, Any] = await self.request("GET", f"/recordings/live/{name}")
        return found

    async def stop_recording(self, name: str) -> None:
        """Stop a live recording and keep its file."""
        await self.request("POST", f"/recordings/live/{name}/stop")

    async def stored_recording(self, name: str) -> dict[str, Any]:
        found: dict[str, Any] = await self.request("GET", f"/recordings/stored/{name}")
        return found

    async def destroy_bridge(self, bridge_id: str) -> None:
        await self.request("DELETE", f"/bridges/{bridge_id}")

    async def record_bridge(
        self,
        bridge_id: str,
        name: str,
        *,
        fmt: str = "wav",
        max_duration: int = 0,
        beep: bool = False,
    ) -> dict[str, Any]:
        rec: dict[str, Any] = await self.request(
            "POST",
            f"/bridges/{bridge_id}/record",
            {
                "name": name,
                "format": fmt,
                "maxDurationSeconds": max_duration,
                "beep": beep,
                "ifExists": "overwrite",
                "terminateOn": "none",
            },
        )
        return rec

    async def channels(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = await self.request("GET", "/channels")
        return found

    async def bridges(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = await self.request("GET", "/bridges")
        return found

    async def get_channel_var(self, channel_id: str, name: str) -> str:
        """A channel variable or dialplan function's value (``CHANNEL(rtcp,all)``)."""
        found = await self.request("GET", f"/channels/{channel_id}/variable", {"variable": name})
        return str((found or {}).get("value", ""))

    async def filter_events(self, allowed: Collection[str] | None) -> None:
        """Have Asterisk send the app only the events of ``allowed`` types (None: every
        event again); the app's filter holds until it is set again."""
        body: dict[str, Any] = {}
        if allowed is not None:
            body["allowed"] = [{"type": event_type} for event_type in sorted(allowed)]
        await self.request("PUT", f"/applications/{self.app}/eventFilter", body=body)

    async def set_channel_var(self, channel_id: str, name: str, value: str) -> None:
        await self.request(
            "POST", f"/channels/{channel_id}/variable", {"variable": name, "value": value}
        )


EventHandler = Callable[[dict[str, Any]], None]
ConnectedHook = Callable[[], Coroutine[Any, Any, None]]


class AriEventLink(Lifecycle):
    """Keeps the ARI event WebSocket connected and hands every event to ``on_event``.

    ``on_event`` is called on the reader: it must only enqueue (it is synchronous so it
    cannot await). ``on_connected`` runs as its own task after each (re)connect. The
    client must be open while the link is.
    """

    def __init__(
        self,
        client: AriClient,
        *,
        on_event: EventHandler,
        on_connected: ConnectedHook | None = None,
        health: HealthReport | None = None,
        backoff_initial: float = 0.2,
        backoff_max: float = 5.0,
        heartbeat: float = 10.0,
        url: str | None = None,
    ) -> None:
        self._client = client
        self._on_event = on_event
        self._on_connected = on_connected
        self._health = health
        self._backoff_initial = backoff_initial
        self._backoff_max = backoff_max
        self._heartbeat = heartbeat
        self._url = url or client.events_url()
        self._task: asyncio.Task[None] | None = None
        self._resync: asyncio.Task[None] | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self.connected = asyncio.Event()
        self.connections = 0  # how many times the socket came up (1 + reconnects)

    async def _open(self) -> None:
        self._report("starting", "connecting")
        self._task = asyncio.create_task(self._run(), name="ari-events")

    async def _close(self) -> None:
        task, self._task = self._task, None
        await cancel_tasks(task, self._resync)
        self.connected.clear()

    async def drop(self) -> None:
        """Close the current socket (the link reconnects): for tests and operators."""
        if self._ws is not None:
            await self._ws.close()

    def _report(self, state: str, detail: str) -> None:
        if self._health is not None:
            self._health.set("ari", state, detail)  # type: ignore[arg-type]

    async def _run(self) -> None:
        delay = self._backoff_initial
        while True:
            try:
                await self._wait_booted()
                async with self._client.session.ws_connect(
                    self._url, heartbeat=self._heartbeat, max_msg_size=0
                ) as ws:
                    self._ws = ws
                    self.connections += 1
                    delay = self._backoff_initial
                    log.info("ari.connected", url=self._url, connections=self.connections)
                    self._report("up", self._url)
                    self.connected.set()
                    if self._on_connected is not None:
                        if self._resync is not None:
                            # a resync still running judges by an older connection's view
                            self._resync.cancel()
                        self._resync = asyncio.create_task(self._on_connected(), name="ari-resync")
                    await self._read(ws)
                log.warning("ari.disconnected", url=self._url)
            except asyncio.CancelledError:
                raise
            except (aiohttp.ClientError, AriError, OSError, TimeoutError) as exc:
                log.warning("ari.unreachable", error=describe(exc), retry_in=delay)
            finally:
                self._ws = None
                self.connected.clear()
            self._report("down", "event socket disconnected; reconnecting")
            await asyncio.sleep(delay * (0.8 + 0.4 * random.random()))
            delay = min(delay * 2, self._backoff_max)

    async def _wait_booted(self) -> None:
        # "Asterisk not booted" is a 503 with that message: not up yet
        await self._client.asterisk_info()

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for msg in ws:
            if msg.type is aiohttp.WSMsgType.TEXT:
                try:
                    event = json_text.loads(msg.data)
                except ValueError:
                    log.warning("ari.bad_event", data=str(msg.data)[:200])
                    continue
                if isinstance(event, dict):
                    self._on_event(event)
            elif msg.type in (aiohttp.WSMsgType.ERROR, aiohttp.WSMsgType.CLOSE):
                break
