"""IVR over ARI: calls that enter ``Stasis(ctc,ivr,MENU[,TENANT])`` walk the tenant's menus.

Each call gets an :class:`IvrCall` task with an inbox. ARI events for its channel (DTMF,
playback finished, recording finished, hangup) and its one timer become
:mod:`engine.domain.ivr` events; :func:`engine.domain.ivr.step` decides; the task carries
out the commands (play, stop, timers, DTMF rows, variables, lookups, hang up). The reader
of the ARI socket never waits on any of this: it only puts events in inboxes.

A transfer rings the target into Stasis (the caller hears ringing), bridges it with the
caller when it answers, or reports busy/no answer so the caller hears the failure prompt and
the menu again; a message is a channel recording (ends at #, silence or its limit).
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
from engine.asterisk.dialing import dial_string
from engine.asterisk.inbound import InboundCall, MenuLoader, http_lookup
from engine.config import CallSettings
from engine.domain.call import CallStatus
from engine.domain.click_to_call import status_for_unanswered
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
    Transferred,
    TransferTargetType,
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

    def __init__(
        self, ari: AriClient, store: Store, load_menus: MenuLoader, calls: CallSettings
    ) -> None:
        self._ari = ari
        self._store = store
        self._load_menus = load_menus
        self._calls = calls
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
        self.target: str | None = None  # the transfer target's channel, while there is one
        self.bridged: str | None = None  # the bridge of a transferred call
        self.state = IvrState()
        self._playback: str | None = None
        self._prompt_started = 0.0
        self._prompt_ended: float | None = None
        self._timer: asyncio.TimerHandle | None = None
        self.log = log.bind(channel=self.channel_id, menu=self.menu)

    # -- from ARI (on the dispatcher: only enqueue) ---------------------------------------------

    def on_ari(self, event: Mapping[str, Any]) -> None:
        kind = event.get("type")
        channel = str(event.get("channel", {}).get("id", ""))
        if self.target is not None and channel == self.target:
            if kind == "StasisStart":
                self.inbox.put_nowait(Transferred())
            elif kind == "ChannelDestroyed":
                cause = event.get("cause")
                if self.bridged:
                    self.inbox.put_nowait(None)  # the target hung up the transferred call
                else:
                    self.target = None
                    self.inbox.put_nowait(TransferFailed(status_for_unanswered(_int(cause)).value))
            return
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
            if self.target is not None:
                self.app.calls.pop(self.target, None)

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
                await self._release_target()
                await self.record.end(CallStatus.COMPLETED, "caller hung up")
                return
            if isinstance(event, Transferred):
                await self._bridge_target()
            elif isinstance(event, TransferFailed):
                await self._stop_prompt()  # the ringing the caller heard
            await self._feed(event)
        if self.bridged:
            # the caller talks to the target now: the call is over when either hangs up
            while await self.inbox.get() is not None:
                pass  # keys pressed while talking to the target are not the IVR's
            await self._release_target()
            with contextlib.suppress(AriNotFound):
                await self.app._ari.hangup(self.channel_id)
            await self.record.end(CallStatus.COMPLETED, "transferred call ended")
            return
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
                await self._stop_prompt()
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
                await self._transfer(command)
            case RecordMessage():
                await self._record_message(command)
            case Hangup():
                with contextlib.suppress(AriNotFound):
                    await ari.hangup(self.channel_id)

    async def _transfer(self, command: Transfer) -> None:
        """Ring the target into Stasis; its answer or failure comes back as an event."""
        calls = self.app._calls
        target = command.target or ""
        if command.target_type is TransferTargetType.ROUTING_RULE or not target:
            self.inbox.put_nowait(TransferFailed("routing-rule transfers are not available yet"))
            return
        endpoint = dial_string(
            calls, target, outside_line=command.target_type is TransferTargetType.NUMBER
        )
        assert self.record.session is not None
        self.target = f"ivr-{self.record.session.id}-target"
        self.app.calls[self.target] = self  # before originate: its events may come first
        try:
            await self.app._ari.originate(
                endpoint,
                channel_id=self.target,
                app_args="ivr-transfer",
                caller_id=self.caller_number,
                ring_timeout=calls.agent_ring_timeout,
            )
        except AriError as exc:
            self.app.calls.pop(self.target, None)
            self.target = None
            self.inbox.put_nowait(TransferFailed(f"originate failed: {exc}"))
            return
        await self._play("tone:ring")  # the caller hears ringing, not silence
        await self.record.note("ivr.transfer_dialing", {"target": target})

    async def _bridge_target(self) -> None:
        assert self.target is not None
        assert self.record.session is not None
        await self._stop_prompt()
        bridge = f"ivr-{self.record.session.id}"
        await self.app._ari.create_bridge(bridge)
        await self.app._ari.add_to_bridge(bridge, self.channel_id, self.target)
        self.bridged = bridge
        await self.record.note("ivr.transferred", {"target_channel": self.target})

    async def _release_target(self) -> None:
        if self.target is not None:
            self.app.calls.pop(self.target, None)
            with contextlib.suppress(AriError):
                await self.app._ari.hangup(self.target)
        if self.bridged is not None:
            with contextlib.suppress(AriError):
                await self.app._ari.destroy_bridge(self.bridged)

    async def _record_message(self, command: RecordMessage) -> None:
        """Record the caller (ends at #, silence or the limit); RecordingFinished answers."""
        assert self.record.session is not None
        name = f"ivr-message-{self.record.session.id}-{uuid.uuid4().hex[:8]}"
        params: dict[str, Any] = {
            "name": name,
            "format": "wav",
            "maxDurationSeconds": command.max_duration_s,
            "beep": command.beep,
            "terminateOn": "#",
            "ifExists": "overwrite",
        }
        if command.silence_s:
            params["maxSilenceSeconds"] = command.silence_s
        try:
            await self.app._ari.request("POST", f"/channels/{self.channel_id}/record", params)
        except AriError as exc:
            self.log.warning("ivr.record_failed", error=str(exc))
            self.inbox.put_nowait(RecordingDone(None))
            return
        await self.record.note("ivr.recording_message", {"name": name})

    async def _stop_prompt(self) -> None:
        playback, self._playback = self._playback, None
        self._prompt_ended = time.monotonic()
        if playback is not None:
            with contextlib.suppress(AriNotFound):
                await self.app._ari.stop_playback(playback)

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


def _int(value: Any) -> int | None:
    return int(value) if value is not None else None
