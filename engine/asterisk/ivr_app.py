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
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import aiohttp
import structlog

from engine.asterisk.ari import AriClient, AriNotFound
from engine.domain.call import CallStatus, Direction
from engine.domain.ivr import (
    CancelTimer,
    Digit,
    Entered,
    Event,
    Hangup,
    HttpLookup,
    IvrState,
    LookupResult,
    MenuBook,
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
from engine.domain.phone import to_e164
from engine.errors import AriError, CtcError, InvalidInput, NotFound
from engine.store import Store
from engine.store.sessions import NewSession, StoredSession

__all__ = ["IvrApp", "MenuLoader"]

log = structlog.get_logger(__name__)

_MEDIA_SCHEMES = ("sound:", "recording:", "digits:", "number:", "characters:", "tone:")


MenuLoader = Callable[[uuid.UUID], Awaitable[MenuBook]]


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
        self.session: StoredSession | None = None
        self.book: MenuBook | None = None
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
            await self._end(CallStatus.FAILED, str(exc))
        except Exception:
            self.log.exception("ivr.crashed")
            with contextlib.suppress(AriError):
                await self.app._ari.hangup(self.channel_id)
            await self._end(CallStatus.FAILED, "internal error")
        finally:
            self._cancel_timer()
            self.app.calls.pop(self.channel_id, None)

    async def _run(self) -> None:
        store = self.app._store
        tenant = await store.tenants.by_slug(self.tenant_slug)
        customer = None
        if self.caller_number:
            with contextlib.suppress(InvalidInput):
                customer = to_e164(self.caller_number, field="caller")
        self.session, _ = await store.sessions.create(
            NewSession(
                tenant_id=tenant.id,
                direction=Direction.INBOUND,
                agent_number=None,
                customer_number=customer,
                caller_number=self.caller_number,
                dialed_number=self.dialed,
                ivr_menu=self.menu,
                metadata={"channel_id": self.channel_id},
            )
        )
        self.log = self.log.bind(call_id=str(self.session.id), tenant_id=str(tenant.id))
        self.book = await self.app._load_menus(tenant.id)
        if self.menu not in self.book.menus:
            raise NotFound("IVR menu", self.menu)
        await self.app._ari.answer(self.channel_id)
        self.session, _ = await store.sessions.transition(
            tenant.id,
            self.session.id,
            CallStatus.CONNECTED,
            event_type="ivr.answered",
            payload={"menu": self.menu, "channel_id": self.channel_id},
        )
        self.log.info("ivr.entered")
        self.state = IvrState(variables={"caller": self.caller_number or ""})
        await self._feed(Entered(self.menu))
        while self.state.phase is not Phase.ENDED:
            event = await self.inbox.get()
            if event is None:  # the caller hung up
                await self._end(CallStatus.COMPLETED, "caller hung up")
                return
            await self._feed(event)
        await self._end(CallStatus.COMPLETED, "ivr hung up")

    async def _feed(self, event: Event) -> None:
        assert self.book is not None
        decided = step(self.book.menus, self.state, event)
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
                await self._record_dtmf(command)
            case SetVariable(name=name, value=value):
                with contextlib.suppress(AriNotFound):
                    await ari.set_channel_var(self.channel_id, name, value)
            case HttpLookup():
                self.inbox.put_nowait(await self._lookup(command))
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

    async def _record_dtmf(self, row: RecordDtmf) -> None:
        assert self.session is not None
        assert self.book is not None
        menu_id, version = self.book.menu_ids[row.menu]
        option_id = self.book.option_ids.get((row.menu, row.option)) if row.option else None
        store = self.app._store
        await store.dtmf.record(
            self.session.tenant_id,
            self.session.id,
            menu_id=menu_id,
            menu_version=version,
            option_id=option_id,
            digit=row.digit or None,
            input_value=row.value,
            outcome=row.outcome.value,
            attempt=row.attempt,
            ms_since_prompt=row.ms_since_prompt,
            channel_id=self.channel_id,
        )
        await store.sessions.append_event(
            self.session.tenant_id,
            self.session.id,
            "ivr.dtmf",
            payload={
                "menu": row.menu,
                "digit": row.digit,
                "outcome": row.outcome.value,
                "option": row.option,
                "value": row.value,
                "ms_since_prompt": row.ms_since_prompt,
            },
        )

    async def _lookup(self, lookup: HttpLookup) -> LookupResult:
        timeout = aiohttp.ClientTimeout(total=lookup.timeout_ms / 1000)
        try:
            if lookup.method == "POST":
                request = self.app.http.post(lookup.url, json=dict(lookup.params), timeout=timeout)
            else:
                request = self.app.http.get(lookup.url, params=dict(lookup.params), timeout=timeout)
            async with request as resp:
                text = (await resp.text()).strip()
                if resp.status >= 400:
                    return LookupResult(ok=False, error=f"HTTP {resp.status}")
                return LookupResult(ok=True, value=text[:200])
        except (aiohttp.ClientError, TimeoutError) as exc:
            return LookupResult(ok=False, error=str(exc) or type(exc).__name__)

    async def _end(self, status: CallStatus, reason: str) -> None:
        session = self.session
        if session is None:
            return
        store = self.app._store
        current = await store.sessions.by_id(session.id)
        if current is None or current.status.is_terminal:
            return
        target = status if current.status is CallStatus.CONNECTED else CallStatus.CANCELED
        if status is CallStatus.FAILED:
            target = CallStatus.FAILED
        await store.sessions.transition(
            session.tenant_id,
            session.id,
            target,
            event_type="ivr.ended",
            payload={"reason": reason},
            changes={"end_reason": reason},
        )
        self.log.info("ivr.ended", status=target.value, reason=reason)
