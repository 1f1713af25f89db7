"""IVR over ARI: calls that enter ``Stasis(ctc,ivr,MENU[,TENANT])`` walk the tenant's menus.

Each call gets an :class:`AriIvrCall` task with an inbox (the FastAGI twin is
:mod:`engine.asterisk.flows.ivr_agi`, with the same names for the same jobs). ARI events
for its channel (DTMF, playback finished, recording finished, hangup) and its one timer become
:mod:`engine.domain.ivr` events; :func:`engine.domain.ivr.step` decides; the task carries
out the commands (play, stop, timers, DTMF rows, variables, lookups, hang up). The door
takes its events from the Stasis app's router (:meth:`AriIvr.subscribe`); neither the
socket's reader nor the router waits on any of this: events only go into inboxes.

A transfer rings the target into Stasis (the caller hears ringing), bridges it with the
caller when it answers, or reports busy/no answer so the caller hears the failure prompt and
the menu again; a message is a channel recording (ends at #, silence or its limit). A
transfer to a routing rule rings the attempts of its plan (:mod:`engine.domain.routing`)
one after another, each attempt's targets at once (the first to answer wins, the others are
hung up); every attempt is one ``call_transfer`` row with its outcome.

Past capacity (:mod:`engine.app.ivr_admission`) a new caller is handed back before
anything is stored: ``CTC_IVR_STATUS=OVERLOADED`` on the channel and ``continue``, so the
dialplan after ``Stasis()`` refuses the call (SIP 503); a call that fails is handed back
the same way with ``FAILED`` (a "try later" prompt; its transfer targets hung up). Each
answer's delay goes to the admission, which limits the calls in progress while Asterisk
answers slowly.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
import uuid
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

import structlog

from engine.app.ivr_admission import FAILED, OVERLOADED, STATUS_VARIABLE, IvrAdmission
from engine.app.ivr_calls import IvrCallRecord, MenuLoader, http_lookup
from engine.app.ports import ErpLookup
from engine.asterisk.flows.call_quality import LegFollower
from engine.asterisk.flows.dialing import dial_string
from engine.asterisk.links.ari import AriClient, AriConflict, AriNotFound
from engine.asterisk.links.ari_router import AriEvent, AriEventRouter, event_channel
from engine.asterisk.naming import (
    IvrStasisArgs,
    ivr_bridge_id,
    ivr_message_name,
    ivr_playback_id,
    ivr_target_channel_id,
    ivr_transfer_stasis_args,
    parse_ivr_stasis_args,
)
from engine.config.settings import CallSettings
from engine.domain.call import CallStatus
from engine.domain.event_types import CallEventType
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
    TransferredToMenu,
    step,
)
from engine.domain.routing import Attempt, attempt_outcome
from engine.domain.transfer import TransferState, state_for_unanswered
from engine.errors import AriError, CtcError, InvalidInput
from engine.lifecycle import Lifecycle, cancel_tasks
from engine.metrics import Metrics
from engine.store.records import StoredTransfer
from engine.store.repositories import Store

__all__ = ["AriIvr", "AriIvrCall"]

log = structlog.get_logger(__name__)

_MEDIA_SCHEMES = ("sound:", "recording:", "digits:", "number:", "characters:", "tone:")


def _media(prompt: str) -> str:
    # prompts are media URIs; a bare name is a sound file (we have no TTS engine yet)
    return prompt if prompt.startswith(_MEDIA_SCHEMES) else f"sound:{prompt}"


class AriIvr(Lifecycle):
    """The ARI door of the IVR: starts and routes IVR calls; owned by the Stasis app.

    Menus' lookups go through ``erp`` (the daemon owns it); ``admission`` (shared with the
    FastAGI door) says whether a new caller is taken; ``quality`` (when calls are measured)
    is told each answered caller's channel (its transfer targets' ids name their call).
    Closing it cancels the calls in progress.
    """

    def __init__(
        self,
        ari: AriClient,
        store: Store,
        load_menus: MenuLoader,
        settings: CallSettings,
        *,
        erp: ErpLookup,
        admission: IvrAdmission,
        metrics: Metrics | None = None,
        quality: LegFollower | None = None,
    ) -> None:
        self.ari = ari
        self.store = store
        self.metrics = metrics
        self.quality = quality
        self.load_menus = load_menus
        self.settings = settings
        self.erp = erp
        self.admission = admission
        self.calls_by_channel: dict[str, AriIvrCall] = {}  # the caller's and its targets'
        self._tasks: set[asyncio.Task[None]] = set()

    def subscribe(self, router: AriEventRouter) -> None:
        """Take, from ``router``, the events of IVR calls: a StasisStart into
        ``Stasis(ctc,ivr,...)`` starts one; the events of its channels go to it."""
        router.on("StasisStart", self._on_stasis_start)
        for event_type in _CALL_EVENTS:
            router.on(event_type, self._route)

    def owns(self, channel_id: str) -> bool:
        return channel_id in self.calls_by_channel

    def start_call(self, event: AriEvent) -> None:
        """Begin the IVR call that entered Stasis with ``event``, as its own task (or,
        past capacity, hand the caller back to the dialplan)."""
        channel = event.get("channel", {})
        if self.admission.admit("ari") is not None:
            channel_id = str(channel.get("id", ""))
            self._spawn(self.hand_back(channel_id, OVERLOADED), name=f"ivr-shed-{channel_id}")
            return
        args = parse_ivr_stasis_args(event.get("args") or []) or IvrStasisArgs()
        call = AriIvrCall(self, channel, args)
        self.calls_by_channel[call.channel_id] = call
        self._spawn(call.run(), name=f"ivr-{call.channel_id}")

    def _spawn(self, work: Coroutine[Any, Any, None], *, name: str) -> None:
        task = asyncio.create_task(work, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def hand_back(self, channel_id: str, status: str) -> None:
        """The caller goes on in the dialplan with CTC_IVR_STATUS=``status`` (past capacity,
        or the call failed here); hung up if that cannot be done."""
        try:
            await self.ari.set_channel_var(channel_id, STATUS_VARIABLE, status)
            await self.ari.continue_in_dialplan(channel_id)
        except _CALLER_GONE:
            pass  # the caller hung up meanwhile
        except AriError as exc:
            log.warning("ivr.hand_back_failed", channel=channel_id, error=str(exc))
            with contextlib.suppress(AriError):
                await self.ari.hangup(channel_id)

    def _on_stasis_start(self, event: AriEvent) -> bool:
        if parse_ivr_stasis_args(event.get("args") or []) is not None:
            self.start_call(event)
            return True
        return self._route(event)  # a transfer target of an IVR call answered

    def _route(self, event: AriEvent) -> bool:
        channel = event_channel(event)
        call = self.calls_by_channel.get(channel) if channel else None
        if call is None:
            return False
        call.on_ari(event)
        return True

    async def _close(self) -> None:
        await cancel_tasks(*self._tasks)


# The events of an IVR call's channels (the caller's and its transfer targets') besides
# StasisStart; any other event type is none of the IVR's business.
_CALL_EVENTS = (
    "ChannelDtmfReceived",
    "PlaybackFinished",
    "RecordingFinished",
    "RecordingFailed",
    "StasisEnd",
    "ChannelDestroyed",
)


@dataclasses.dataclass(frozen=True, slots=True)
class _TargetAnswered:
    """A transfer target's channel entered Stasis (it answered)."""

    channel: str


@dataclasses.dataclass(frozen=True, slots=True)
class _TargetEnded:
    channel: str
    cause: int | None


@dataclasses.dataclass(slots=True)
class _Transferring:
    """The transfer in progress: what is left to ring and the attempt ringing now."""

    command: Transfer
    attempts: list[Attempt]
    menu: str | None = None
    menu_rule_id: uuid.UUID | None = None
    outside_line: bool | None = None
    row: StoredTransfer | None = None  # the attempt ringing now
    outcomes: list[tuple[TransferState, int | None]] = dataclasses.field(default_factory=list)
    failed: str | None = None  # why the last attempt failed
    ringback: bool = False


class AriIvrCall:
    """One caller in the IVR over ARI."""

    def __init__(self, ivr: AriIvr, channel: Mapping[str, Any], args: IvrStasisArgs) -> None:
        self.ivr = ivr
        self.channel_id = str(channel.get("id", ""))
        caller = channel.get("caller", {}) or {}
        self.caller_number = str(caller.get("number") or "") or None
        self.dialed = str((channel.get("dialplan") or {}).get("exten") or "") or None
        self.menu = args.menu
        self.tenant_slug = args.tenant_slug
        self.inbox: asyncio.Queue[Event | _TargetAnswered | _TargetEnded | None] = asyncio.Queue()
        self.record = IvrCallRecord(ivr.store, self.channel_id, "ari", metrics=ivr.metrics)
        self.target: str | None = None  # the transfer target's channel that answered
        self.ringing: dict[str, str] = {}  # target channel -> the target it rings
        self.targets: set[str] = set()  # every target channel routed to this call
        self.transferring: _Transferring | None = None
        self._dialed = 0  # target channels originated so far (their ids count up)
        self.bridged: str | None = None  # the bridge of a transferred call
        self.state = IvrState()
        self._playback: str | None = None
        self._prompt_started = 0.0
        self._prompt_ended: float | None = None
        self._timer: asyncio.TimerHandle | None = None
        self.log = log.bind(channel=self.channel_id, menu=self.menu)

    # -- from ARI (on the dispatcher: only enqueue) ---------------------------------------------

    def on_ari(self, event: AriEvent) -> None:
        kind = str(event.get("type"))
        channel = str(event.get("channel", {}).get("id", ""))
        if channel and channel != self.channel_id:  # a transfer target's channel
            on_target = _TARGET_EVENTS.get(kind)
            if on_target is not None:
                self.inbox.put_nowait(on_target(channel, event))
            return
        on_caller = _CALLER_EVENTS.get(kind)
        if on_caller is not None:
            on_caller(self, event)

    def _on_dtmf(self, event: AriEvent) -> None:
        with contextlib.suppress(InvalidInput):
            self.inbox.put_nowait(Digit(str(event.get("digit")), self._ms_since_prompt()))

    def _on_playback_finished(self, event: AriEvent) -> None:
        if event.get("playback", {}).get("id") == self._playback:
            self._playback = None
            self._prompt_ended = time.monotonic()
            self.inbox.put_nowait(PromptFinished())

    def _on_recording_ended(self, event: AriEvent) -> None:
        duration = event.get("recording", {}).get("duration")
        self.inbox.put_nowait(RecordingDone(int(duration) * 1000 if duration else None))

    def _on_caller_gone(self, event: AriEvent) -> None:
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
            await self._release_target()
            await self.ivr.hand_back(self.channel_id, FAILED)  # the dialplan's "sorry"
            await self.record.end(CallStatus.FAILED, str(exc))
        except Exception:
            self.log.exception("ivr.crashed")
            await self._release_target()
            await self.ivr.hand_back(self.channel_id, FAILED)
            await self.record.end(CallStatus.FAILED, "internal error")
        finally:
            self.ivr.admission.release()
            self._cancel_timer()
            self.ivr.calls_by_channel.pop(self.channel_id, None)
            if self.transferring is not None and self.transferring.row is not None:
                with contextlib.suppress(Exception):  # never leave a transfer row live
                    await self.record.transfer_finished(
                        self.transferring.row, TransferState.FAILED, reason="ivr call ended"
                    )
            for channel in self.targets:
                self.ivr.calls_by_channel.pop(channel, None)

    async def _run(self) -> None:
        ivr = self.ivr
        await self.record.store_session(
            ivr.load_menus,
            tenant_slug=self.tenant_slug,
            menu=self.menu,
            caller=self.caller_number,
            dialed=self.dialed,
        )
        self.log = self.record.log
        asked = time.monotonic()
        try:
            await ivr.ari.answer(self.channel_id)
        except _CALLER_GONE:  # hung up before the answer: the session ends canceled
            await self.record.end(CallStatus.COMPLETED, "caller hung up")
            return
        ivr.admission.answered(self.record.arrived, asked)
        await self.record.answered(self.menu)
        if ivr.quality is not None:
            session = self.record.stored_session()
            ivr.quality.follow(self.channel_id, session.id, "caller", session.tenant_id)
        self.state = IvrState(variables={"caller": self.caller_number or ""})
        await self._feed(Entered(self.menu))
        while self.state.phase is not Phase.ENDED:
            got = await self.inbox.get()
            if got is None:  # the caller hung up
                await self._release_target()
                if self.transferring is not None and self.transferring.row is not None:
                    row, self.transferring = self.transferring.row, None
                    await self.record.transfer_finished(
                        row, TransferState.FAILED, reason="caller hung up"
                    )
                await self.record.end(CallStatus.COMPLETED, "caller hung up")
                return
            event = await self._on_target(got) if isinstance(got, _Target) else got
            if event is not None:
                await self._feed(event)
        if self.bridged:
            # the caller talks to the target now: the call is over when either hangs up
            while (got := await self.inbox.get()) is not None:
                if isinstance(got, _TargetEnded):
                    self.ivr.calls_by_channel.pop(got.channel, None)
                    if got.channel == self.target:
                        break  # the target hung up the transferred call
                elif isinstance(got, _TargetAnswered) and got.channel != self.target:
                    await self._hangup_target(got.channel)  # answered too late
                # keys pressed while talking to the target are not the IVR's
            await self._release_target()
            with contextlib.suppress(AriNotFound):
                await self.ivr.ari.hangup(self.channel_id)
            await self.record.end(CallStatus.COMPLETED, "transferred call ended")
            return
        await self.record.end(CallStatus.COMPLETED, "ivr hung up")

    async def _feed(self, event: Event) -> None:
        decided = step(self.record.menus().menus, self.state, event)
        self.state = decided.state
        for command in decided.commands:
            await self._do(command)

    async def _do(self, command: Any) -> None:
        ari = self.ivr.ari
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
                self.inbox.put_nowait(await http_lookup(self.ivr.erp, command, self.record))
            case Transfer():
                await self._transfer(command)
            case RecordMessage():
                await self._record_message(command)
            case Hangup():
                with contextlib.suppress(AriNotFound):
                    await ari.hangup(self.channel_id)

    async def _transfer(self, command: Transfer) -> None:
        """Start ringing the transfer's first attempt; the answer or failure of its targets
        comes back through the inbox (:meth:`_on_target`)."""
        target = command.target or ""
        plan, outside = await self.record.transfer_plan(
            command,
            self.ivr.settings.agent_ring_timeout,
            self.state.variables,
            default_region=self.ivr.settings.agent_default_region,
        )
        transferring = _Transferring(
            command,
            list(plan.attempts),
            menu=plan.menu,
            menu_rule_id=plan.menu_rule_id,
            outside_line=outside,
            failed=plan.reason,
        )
        self.transferring = transferring
        await self.record.note(CallEventType.IVR_TRANSFER_DIALING, {"target": target})
        event = await self._next_attempt()
        if event is not None:
            self.inbox.put_nowait(event)

    async def _next_attempt(self) -> Event | None:
        """Ring the next attempt (None: it rings); when none is left, how the transfer ended."""
        transferring = self.transferring
        if transferring is None:
            raise RuntimeError(f"IVR call on {self.channel_id}: next attempt without a transfer")
        session = self.record.stored_session()
        command = transferring.command
        while transferring.attempts:
            attempt = transferring.attempts.pop(0)
            row, attempt = await self.record.attempt_started(command, attempt)
            transferring.row, transferring.outcomes = row, []
            error = attempt.reason or "nothing to ring"
            for member in attempt.targets:
                self._dialed += 1
                channel = ivr_target_channel_id(session.id, self._dialed)
                self.ivr.calls_by_channel[channel] = (
                    self  # before originate: its events may come first
                )
                self.targets.add(channel)
                self.ringing[channel] = member
                endpoint = dial_string(
                    self.ivr.settings, member, outside_line=transferring.outside_line
                )
                try:
                    await self.ivr.ari.originate(
                        endpoint,
                        channel_id=channel,
                        app_args=ivr_transfer_stasis_args(),
                        caller_id=self._shown_to(member, transferring.outside_line),
                        ring_timeout=attempt.ring_timeout_s,
                    )
                except AriError as exc:
                    self.ringing.pop(channel, None)
                    error = f"originate failed: {exc}"
            if self.ringing:
                if not transferring.ringback:
                    transferring.ringback = True
                    await self._play("tone:ring")  # the caller hears ringing, not silence
                return None
            transferring.row = None
            await self.record.transfer_finished(row, TransferState.FAILED, reason=error)
            transferring.failed = error
        # nobody answered: the caller hears the failure prompt and the menu again
        self.transferring = None
        await self._stop_prompt()  # the ringing the caller heard
        if transferring.menu is not None:
            await self.record.routed_to_menu(command, transferring.menu, transferring.menu_rule_id)
            return TransferredToMenu(transferring.menu)
        return TransferFailed(transferring.failed or "failed")

    def _shown_to(self, member: str, outside_line: bool | None) -> str | None:
        """The caller ID a transfer target sees: on the trunk (as dial_string decides), the
        caller-ID profile's choice made for the transfer, if any; else the caller's."""
        outside = member.startswith("+") if outside_line is None else outside_line
        chosen = self.record.outside_caller_id
        return chosen if outside and chosen else self.caller_number

    async def _on_target(self, fact: _Target) -> Event | None:
        """A target answered or ended: the interpreter's event, if the transfer is decided."""
        transferring = self.transferring
        if isinstance(fact, _TargetEnded):
            self.ivr.calls_by_channel.pop(fact.channel, None)
            if transferring is None or self.ringing.pop(fact.channel, None) is None:
                return None  # a target we hung up, or one of an earlier attempt
            transferring.outcomes.append((state_for_unanswered(fact.cause), fact.cause))
            if self.ringing:
                return None  # others of this attempt still ring
            row, transferring.row = _ringing_row(transferring), None
            outcome = attempt_outcome(state for state, _ in transferring.outcomes)
            cause = next((c for s, c in transferring.outcomes if s is outcome), None)
            await self.record.transfer_finished(row, outcome, cause=cause)
            transferring.failed = outcome.value
            return await self._next_attempt()
        if transferring is None or fact.channel not in self.ringing:
            await self._hangup_target(fact.channel)  # answered after the transfer was decided
            return None
        # the first to answer wins: the others of this attempt stop ringing
        member = self.ringing.pop(fact.channel)
        for other in list(self.ringing):
            await self._hangup_target(other)
        self.ringing.clear()
        self.target = fact.channel
        await self._bridge_target()
        await self.record.transfer_finished(
            _ringing_row(transferring),
            TransferState.COMPLETED,
            target_channel_id=fact.channel,
            answered_by=member,
        )
        self.transferring = None
        return Transferred()

    async def _hangup_target(self, channel: str) -> None:
        with contextlib.suppress(AriError):
            await self.ivr.ari.hangup(channel)

    async def _bridge_target(self) -> None:
        if self.target is None:
            raise RuntimeError(f"IVR call on {self.channel_id}: bridging without a target")
        await self._stop_prompt()
        bridge = ivr_bridge_id(self.record.stored_session().id)
        await self.ivr.ari.create_bridge(bridge)
        await self.ivr.ari.add_to_bridge(bridge, self.channel_id, self.target)
        self.bridged = bridge
        await self.record.note(CallEventType.IVR_TRANSFERRED, {"target_channel": self.target})

    async def _release_target(self) -> None:
        for channel in [*self.ringing, *([self.target] if self.target else [])]:
            await self._hangup_target(channel)
        self.ringing.clear()
        if self.bridged is not None:
            with contextlib.suppress(AriError):
                await self.ivr.ari.destroy_bridge(self.bridged)

    async def _record_message(self, command: RecordMessage) -> None:
        """Record the caller (ends at #, silence or the limit); RecordingFinished answers."""
        name = ivr_message_name(self.record.stored_session().id, uuid.uuid4().hex[:8])
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
            await self.ivr.ari.request("POST", f"/channels/{self.channel_id}/record", params)
        except AriError as exc:
            self.log.warning("ivr.record_failed", error=str(exc))
            self.inbox.put_nowait(RecordingDone(None))
            return
        await self.record.note(CallEventType.IVR_RECORDING_MESSAGE, {"name": name})

    async def _stop_prompt(self) -> None:
        playback, self._playback = self._playback, None
        self._prompt_ended = time.monotonic()
        if playback is not None:
            with contextlib.suppress(AriNotFound):
                await self.ivr.ari.stop_playback(playback)

    async def _play(self, media: str) -> None:
        self._playback = ivr_playback_id()
        self._prompt_started = time.monotonic()
        self._prompt_ended = None
        try:
            await self.ivr.ari.play(self.channel_id, media, playback_id=self._playback)
        except _CALLER_GONE:
            self.inbox.put_nowait(None)  # the caller hung up meanwhile

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


_Target = _TargetAnswered | _TargetEnded

# What ARI answers a request on a caller's channel that is hanging up: 404 once it is gone,
# 409 "Channel not in Stasis application" while it leaves (its StasisEnd is on the way)
_CALLER_GONE = (AriNotFound, AriConflict)


def _ringing_row(transferring: _Transferring) -> StoredTransfer:
    """The row of the attempt ringing now (a target of it answered or ended)."""
    if transferring.row is None:
        raise RuntimeError("IVR transfer: a target of no ringing attempt answered or ended")
    return transferring.row


def _int(value: Any) -> int | None:
    return int(value) if value is not None else None


# What each event on the caller's channel does (on the dispatcher: only enqueue).
_CALLER_EVENTS: dict[str, Callable[[AriIvrCall, AriEvent], None]] = {
    "ChannelDtmfReceived": AriIvrCall._on_dtmf,
    "PlaybackFinished": AriIvrCall._on_playback_finished,
    "RecordingFinished": AriIvrCall._on_recording_ended,
    "RecordingFailed": AriIvrCall._on_recording_ended,
    "StasisEnd": AriIvrCall._on_caller_gone,
    "ChannelDestroyed": AriIvrCall._on_caller_gone,
}

# What an event on a transfer target's channel tells the call.
_TARGET_EVENTS: dict[str, Callable[[str, AriEvent], _Target]] = {
    "StasisStart": lambda channel, _: _TargetAnswered(channel),
    "ChannelDestroyed": lambda channel, event: _TargetEnded(channel, _int(event.get("cause"))),
}
