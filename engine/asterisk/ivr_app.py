"""IVR over ARI: calls that enter ``Stasis(ctc,ivr,MENU[,TENANT])`` walk the tenant's menus.

Each call gets an :class:`IvrCall` task with an inbox. ARI events for its channel (DTMF,
playback finished, recording finished, hangup) and its one timer become
:mod:`engine.domain.ivr` events; :func:`engine.domain.ivr.step` decides; the task carries
out the commands (play, stop, timers, DTMF rows, variables, lookups, hang up). The reader
of the ARI socket never waits on any of this: it only puts events in inboxes.

Not yet carried out here: transfers (answered ``TransferFailed``, so the caller hears the
failure prompt and the menu again — never silence) and message recording into a mailbox.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Mapping
from typing import Any

import aiohttp
import structlog

from engine.asterisk.ari import AriClient, AriNotFound
from engine.asterisk.inbound import InboundCall, MenuLoader, http_lookup
from engine.domain.call import CallStatus
from engine.domain.ivr import (
    CancelTimer,
    Digit,
    Entered,
    Event,
    Hangup,
    HttpLookup,
    IvrState,
    Phase,
    Play,
    PromptFinished,
    RecordDtmf,
    RecordingDone,
    RecordMessage,
    SayDigits,
    SayNumber,
    SetVariable,
    StartInputTimer,
    StartInterDigitTimer,
    StopPrompt,
    Timeout,
    Transfer,
    TransferFailed,
    step,
)
from engine.errors import AriError, CtcError, InvalidInput
from engine.store import Store

__all__ = ["IvrApp"]

log = structlog.get_logger(__name__)

_MEDIA_SCHEMES = ("sound:", "recording:", "digits:", "number:", "characters:", "tone:")


def _media(prompt: str) -> str:
    # prompts are media URIs; a bare name is a sound file (we have no TTS engine yet)
    return prompt if prompt.startswith(_MEDIA_SCHEMES) else f"sound:{prompt}"


class IvrApp:
    """Starts and routes IVR calls; owned by the Stasis app."""

    def __init__(self, ari: AriClient, store: Store, load_menus: MenuLoader) -> None:
        self._ari = ari
        self._store = store
        self._load_menus = load_menus
        self.calls: dict[str, IvrCall] = {}  # channel id -> call
        self._tasks: set[asyncio.Task[None]] = set()
        self._http: aiohttp.ClientSession | None = None

    def owns(self, channel_id: str) -> bool:
        return channel_id in self.calls

    def start(self, event: Mapping[str, Any]) -> None:
        channel = event.get("channel", {})
        args = list(event.get("args", []))
        call = IvrCall(self, channel, args)
        self.calls[call.channel_id] = call
        task = asyncio.create_task(call.run(), name=f"ivr-{call.channel_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def route(self, channel_id: str, event: Mapping[str, Any]) -> None:
        call = self.calls.get(channel_id)
        if call is not None:
            call.on_ari(event)

    @property
    def http(self) -> aiohttp.ClientSession:
        if self._http is None:
            self._http = aiohttp.ClientSession()
        return self._http

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._http is not None:
            await self._http.close()


class IvrCall:
    """One caller in the IVR."""

    def __init__(self, app: IvrApp, channel: Mapping[str, Any], args: list[str]) -> None:
        self.app = app
        self.channel_id = str(channel.get("id", ""))
        caller = channel.get("caller", {}) or {}
        self.caller_number = str(caller.get("number") or "") or None
        self.dialed = str((channel.get("dialplan") or {}).get("exten") or "") or None
        self.menu = args[1] if len(args) > 1 else "main"
        self.tenant_slug = args[2] if len(args) > 2 else "default"
        self.inbox: asyncio.Queue[Event | None] = asyncio.Queue()
        self.record = InboundCall(app._store, self.channel_id, "ari")
        self.state = IvrState()
        self._playback: str | None = None
        self._prompt_started = 0.0
        self._prompt_ended: float | None = None
        self._timer: asyncio.TimerHandle | None = None
        self.log = log.bind(channel=self.channel_id, menu=self.menu)

    # -- from ARI (on the dispatcher: only enqueue) ---------------------------------------------

    def on_ari(self, event: Mapping[str, Any]) -> None:
        kind = event.get("type")
        if kind == "ChannelDtmfReceived":
            with contextlib.suppress(InvalidInput):
                self.inbox.put_nowait(Digit(str(event.get("digit")), self._ms_since_prompt()))
        elif kind == "PlaybackFinished":
            if event.get("playback", {}).get("id") == self._playback:
                self._playback = None
                self._prompt_ended = time.monotonic()
                self.inbox.put_nowait(PromptFinished())
        elif kind in ("RecordingFinished", "RecordingFailed"):
            duration = event.get("recording", {}).get("duration")
            self.inbox.put_nowait(RecordingDone(int(duration) * 1000 if duration else None))
        elif kind in ("StasisEnd", "ChannelDestroyed"):
            self.inbox.put_nowait(None)

    def _ms_since_prompt(self) -> int:
        since = self._prompt_ended if self._prompt_ended is not None else self._prompt_started
        return max(0, round((time.monotonic() - since) * 1000))

    # -- the call -------------------------------------------------------------------------------

    async def run(self) -> None:
        try:
            await self._run()
        except CtcError as exc:
            self.log.error("ivr.failed", error=str(exc))
            with contextlib.suppress(AriError):
                await self.app._ari.hangup(self.channel_id)
            await self.record.end(CallStatus.FAILED, str(exc))
        except Exception:
            self.log.exception("ivr.crashed")
            with contextlib.suppress(AriError):
                await self.app._ari.hangup(self.channel_id)
            await self.record.end(CallStatus.FAILED, "internal error")
        finally:
            self._cancel_timer()
            self.app.calls.pop(self.channel_id, None)

    async def _run(self) -> None:
        app = self.app
        await self.record.open(
            app._load_menus,
            tenant_slug=self.tenant_slug,
            menu=self.menu,
            caller=self.caller_number,
            dialed=self.dialed,
        )
        self.log = self.record.log
        await app._ari.answer(self.channel_id)
        await self.record.answered(self.menu)
        self.state = IvrState(variables={"caller": self.caller_number or ""})
        await self._feed(Entered(self.menu))
        while self.state.phase is not Phase.ENDED:
            event = await self.inbox.get()
            if event is None:  # the caller hung up
                await self.record.end(CallStatus.COMPLETED, "caller hung up")
                return
            await self._feed(event)
        await self.record.end(CallStatus.COMPLETED, "ivr hung up")

    async def _feed(self, event: Event) -> None:
        assert self.record.book is not None
        decided = step(self.record.book.menus, self.state, event)
        self.state = decided.state
        for command in decided.commands:
            await self._do(command)

    async def _do(self, command: Any) -> None:
        ari = self.app._ari
        match command:
            case Play(media=media):
                await self._play(_media(media))
            case SayDigits(value=value):
                await self._play(f"digits:{value}")
            case SayNumber(value=value):
                await self._play(f"number:{value}")
            case StopPrompt():
                playback, self._playback = self._playback, None
                self._prompt_ended = time.monotonic()
                if playback is not None:
                    with contextlib.suppress(AriNotFound):
                        await ari.stop_playback(playback)
            case StartInputTimer(ms=ms) | StartInterDigitTimer(ms=ms):
                self._arm(ms)
            case CancelTimer():
                self._cancel_timer()
            case RecordDtmf():
                await self.record.record_dtmf(command)
            case SetVariable(name=name, value=value):
                with contextlib.suppress(AriNotFound):
                    await ari.set_channel_var(self.channel_id, name, value)
            case HttpLookup():
                self.inbox.put_nowait(await http_lookup(self.app.http, command))
            case Transfer():
                self.inbox.put_nowait(TransferFailed("transfers are not available yet"))
            case RecordMessage():
                self.inbox.put_nowait(RecordingDone(None))
            case Hangup():
                with contextlib.suppress(AriNotFound):
                    await ari.hangup(self.channel_id)

    async def _play(self, media: str) -> None:
        self._playback = f"ivr-{uuid.uuid4()}"
        self._prompt_started = time.monotonic()
        self._prompt_ended = None
        try:
            await self.app._ari.play(self.channel_id, media, playback_id=self._playback)
        except AriNotFound:
            self.inbox.put_nowait(None)  # the channel is gone

    def _arm(self, ms: int) -> None:
        self._cancel_timer()
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(
            ms / 1000, lambda: self.inbox.put_nowait(Timeout(self._ms_since_prompt()))
        )

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
