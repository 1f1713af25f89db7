"""IVR over FastAGI: ``AGI(agi://HOST:4573/ivr/MENU?tenant=SLUG)`` runs the same pure
interpreter as the Stasis door (:mod:`engine.asterisk.flows.ivr_ari`; the same names for
the same jobs: :class:`AgiIvr` is the door, :class:`AgiIvrCall` one caller).

The call is answered raw (``EXEC Answer ,i``, as ARI answers): AGI's ``ANSWER`` would wait
for the caller's first media frame, and a first key that ended that wait could be over
before the next command ran. AGI is one command at a time, so the loop is simple: carry out
a step's commands; a prompt is played with ``STREAM FILE`` and its escape digits (the
caller barges in by pressing a key), an armed timer becomes ``WAIT FOR DIGIT``; whichever
answer comes back is the next event. A key pressed while no command runs is lost (Asterisk
reads nothing ahead either), so waits are folded into the command before them where
Asterisk allows: a prompt and its input wait are one ``GET OPTION``, and the rest of a
multi-digit input (an account number ending in ``#``, a fixed-length code) is one ``GET
DATA`` instead of a ``WAIT FOR DIGIT`` per key; its digits then reach the interpreter one
by one, as if typed between commands. A transfer is ``Dial`` from the caller's channel
(``DIALSTATUS`` says whether it was answered); a message is ``RECORD FILE``.

Quality (with ``quality``: the engine measures calls): FastAGI has no event socket, so
this door reads the caller's leg itself, ``GET VARIABLE CHANNEL(rtcp,all)`` when the IVR
is over and the caller's channel is still up (after the menus, or after a transferred
call's ``Dial`` returned): one final row, leg ``caller``. What this door cannot measure,
and the Stasis door does (:mod:`engine.asterisk.flows.call_quality`): a caller who hangs
up first (AGI learns of it when the channel is gone), samples during the call (the AGI
connection is busy running ``Dial`` or a prompt), and the transfer target's leg, which
is ``Dial``'s own channel: chan_pjsip leaves its figures on the caller as
``RTPAUDIOQOSBRIDGED`` only while both are still bridged at its hangup, which after
``Dial`` they no longer are (measured on Asterisk 22: never set).

A request for an unknown tenant or menu is refused before any session is stored (a log
line, ``ctc_agi_refused_total{reason=...}``, and the channel is hung up): such requests
are not calls the engine took, and a peer sending them must not fill the call history.
Only those two are refusals: anything else found missing on the way is a failure (the
server logs it, Asterisk goes on with the dialplan), never counted as one of them. Past
capacity (:mod:`engine.app.ivr_admission`) a new caller is handed back before anything is
stored: ``SET VARIABLE CTC_IVR_STATUS OVERLOADED`` and the connection closes, so the
dialplan after ``AGI()`` refuses the call (SIP 503); a call that fails is handed back the
same way with ``FAILED`` (a "try later" prompt). Each answer's delay goes to the admission,
which limits the calls in progress while Asterisk answers slowly. A
call whose Asterisk stops answering (:class:`~engine.asterisk.links.agi_server.AgiTimeout`) ends
``failed`` with that reason, like any other failed command.
"""

from __future__ import annotations

import collections
import contextlib
import time
from datetime import UTC, datetime, timedelta

from engine.app.ivr_admission import FAILED, OVERLOADED, STATUS_VARIABLE, IvrAdmission
from engine.app.ivr_calls import IvrCallRecord, MenuLoader, http_lookup
from engine.app.ports import ErpLookup
from engine.asterisk.flows.call_quality import QualityWriter
from engine.asterisk.flows.dialing import dial_string
from engine.asterisk.links.agi_protocol import AgiCommandError, AgiHangup
from engine.asterisk.links.agi_server import AgiChannel
from engine.asterisk.naming import ivr_message_name
from engine.config.settings import CallSettings
from engine.domain.call import CallStatus
from engine.domain.event_types import CallEventType
from engine.domain.ivr import (
    CancelTimer,
    Command,
    Digit,
    Entered,
    Event,
    Hangup,
    HttpLookup,
    InputMode,
    IvrState,
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
    Transferred,
    TransferredToMenu,
    step,
)
from engine.domain.transfer import TransferState, state_for_unanswered
from engine.errors import AgiError, CtcError, NotFound
from engine.lifecycle import Lifecycle
from engine.metrics import AgiRefusal, Metrics, count_agi_refused
from engine.store.records import StoredTransfer
from engine.store.repositories import Store

__all__ = ["AgiIvr", "AgiIvrCall"]

_KEYS = "0123456789*#"
_QUALITY = "CHANNEL(rtcp,all)"  # the caller's RTP figures so far
# keys one GET DATA collects at most when the menu sets no input length
_GET_DATA_MAX = 64


def _collect_limit(book: MenuBook, state: IvrState) -> int | None:
    """How many keys one ``GET DATA`` may collect for the input in progress, or None when
    it cannot stand for the interpreter's keys and timer: ``GET DATA`` ends at ``#`` only,
    and the interpreter must see every key (so a fixed-length input asks for what is left,
    an input ending in ``#`` for one key more than may still come: reaching it is too long).
    """
    if state.phase is not Phase.COLLECTING or not state.stack:
        return None
    menu = book.menus[state.stack[-1]]
    left = (menu.input_length or _GET_DATA_MAX) - len(state.buffer)
    if menu.input_mode is InputMode.FIXED_LENGTH:
        return left if left > 0 else None
    if menu.input_mode is InputMode.UNTIL_TERMINATOR and menu.terminator == "#":
        return left + 1 if left >= 0 else None
    return None


# Dial's DIALSTATUS -> the Q.850 cause it stands for (busy, no answer, congestion,
# subscriber absent); CANCEL (the caller hung up) has none.
_DIALSTATUS_CAUSE = {"BUSY": 17, "NOANSWER": 19, "CONGESTION": 34, "CHANUNAVAIL": 20}

# what IvrCallRecord.store_session finds missing (NotFound.what) -> the refusal it is counted as
_REFUSED_WHEN_MISSING: dict[str, AgiRefusal] = {
    "tenant": "unknown_tenant",
    "IVR menu": "unknown_menu",
}


class AgiIvr(Lifecycle):
    """The FastAGI door of the IVR: :meth:`run_call` is the server's handler for
    ``ivr/MENU`` scripts; menus' lookups go through ``erp`` (the daemon owns it), and
    ``admission`` (shared with the Stasis door) says whether a new caller is taken."""

    def __init__(
        self,
        store: Store,
        load_menus: MenuLoader,
        settings: CallSettings,
        *,
        erp: ErpLookup,
        admission: IvrAdmission,
        metrics: Metrics | None = None,
        quality: QualityWriter | None = None,
    ) -> None:
        self.store = store
        self.quality = quality
        self.load_menus = load_menus
        self.settings = settings
        self.erp = erp
        self.admission = admission
        self._metrics = metrics

    async def run_call(self, channel: AgiChannel) -> None:
        """Run the IVR call on ``channel`` to its end (the FastAGI server's handler)."""
        request = channel.request
        parts = request.script.strip("/").split("/")
        if len(parts) != 2 or parts[0] != "ivr" or not parts[1]:
            channel.log.warning("agi.unknown_script", script=request.script)
            count_agi_refused(self._metrics, "unknown_script")
            await channel.hangup()
            return
        if self.admission.admit("agi") is not None:
            await channel.set_variable(STATUS_VARIABLE, OVERLOADED)
            return  # the server closes the connection: Asterisk goes on after AGI()
        try:
            await self._serve(channel, parts[1])
        finally:
            self.admission.release()

    async def _serve(self, channel: AgiChannel, menu: str) -> None:
        request = channel.request
        record = IvrCallRecord(
            self.store, request.uniqueid or request.channel, "agi", metrics=self._metrics
        )
        call = AgiIvrCall(self, channel, record, menu)
        try:
            await call.store_session(tenant_slug=request.query.get("tenant", "default"))
        except NotFound as exc:  # nothing is stored for it
            reason = _REFUSED_WHEN_MISSING.get(exc.what)
            if reason is None:  # not a request naming what does not exist: a failure
                raise
            channel.log.warning("agi.refused", reason=reason, error=str(exc))
            count_agi_refused(self._metrics, reason)
            await channel.verbose(f"ctc: {exc}")
            await channel.hangup()
            return
        try:
            await call.run()
        except AgiHangup:
            await record.end(CallStatus.COMPLETED, "caller hung up")
        except CtcError as exc:
            record.log.error("ivr.failed", error=str(exc))
            await record.end(CallStatus.FAILED, str(exc))
            with contextlib.suppress(AgiError):  # the dialplan's "sorry, try later"
                await channel.set_variable(STATUS_VARIABLE, FAILED)
            raise


class AgiIvrCall:
    """One caller in the IVR over FastAGI."""

    def __init__(self, ivr: AgiIvr, channel: AgiChannel, record: IvrCallRecord, menu: str) -> None:
        self.ivr = ivr
        self.channel = channel
        self.record = record
        self.menu = menu
        self.state = IvrState()
        self.timer_ms: int | None = None
        # events a command produced beyond the one it returned (GET OPTION: the prompt
        # ended, then a key or the timeout; GET DATA: keys), taken before anything else
        # is awaited
        self.ahead: collections.deque[Event] = collections.deque()
        self.transferred = False  # a transfer was answered (the call ends with it)
        self.prompt_mark = time.monotonic()

    def _ms(self) -> int:
        return max(0, round((time.monotonic() - self.prompt_mark) * 1000))

    async def store_session(self, *, tenant_slug: str) -> None:
        """Store the call's session (NotFound, and nothing stored, for an unknown menu)."""
        request = self.channel.request
        await self.record.store_session(
            self.ivr.load_menus,
            tenant_slug=tenant_slug,
            menu=self.menu,
            caller=request.callerid,
            dialed=request.dnid or request.extension,
        )

    async def run(self) -> None:
        request = self.channel.request
        book = self.record.menus()
        # a raw answer (AgiChannel.answer): the first prompt's command follows at once, so
        # a key pressed after the answer waits only on the engine's own turnaround
        asked = time.monotonic()
        await self.channel.answer()
        self.ivr.admission.answered(self.record.arrived, asked)
        await self.record.answered(self.menu)
        self.state = IvrState(variables={"caller": request.callerid or ""})
        event: Event | None = Entered(self.menu)
        while event is not None:
            decided = step(book.menus, self.state, event)
            self.state = decided.state
            event = None
            last = len(decided.commands) - 1
            for i, command in enumerate(decided.commands):
                outcome = await self._do(command, last=i == last)
                event = event or outcome
            if self.state.phase is Phase.ENDED:
                break
            if event is None and self.ahead:
                # the command already waited for it: the armed timer is spent
                event, self.timer_ms = self.ahead.popleft(), None
            elif event is None and self.timer_ms is not None:
                ms, self.timer_ms = self.timer_ms, None
                event = await self._wait_for_input(book, ms)
        # as over ARI: a transferred call is over when Dial returns
        reason = "transferred call ended" if self.transferred else "ivr hung up"
        await self._measure_caller()
        await self.record.end(CallStatus.COMPLETED, reason)

    async def _measure_caller(self) -> None:
        """Queue the caller's end-of-call figures (``CHANNEL(rtcp,all)``) for the quality
        writer's next batch, when the engine measures calls and the channel is still there
        to read. The row, and a ``quality.low_mos`` event it may bring, are written with
        that batch (within ``FINAL_BATCH_S``), so after the call's end: as over ARI, where a
        leg's figures come with its hangup."""
        quality = self.ivr.quality
        if quality is None:
            return
        try:
            value = await self.channel.get_variable(_QUALITY)
        except AgiError as exc:  # e.g. the caller hung up meanwhile: nothing to read
            self.record.log.info("ivr.quality_unread", error=str(exc))
            return
        if value:
            session = self.record.stored_session()
            await quality.store_final(
                self.record.channel_id, session.id, "caller", value, raw={_QUALITY.lower(): value}
            )

    async def _do(self, command: Command, *, last: bool = False) -> Event | None:
        """Carry out one command; the event it produced (a prompt's end, a key, a result).

        ``last``: nothing follows it in this step, so a prompt may also wait for the key.
        """
        match command:
            case Play(media=media):
                return await self._play(media, wait_ms=self._input_wait() if last else None)
            case SayDigits(value=value):
                return await self._said(await self.channel.say_digits(value, _KEYS))
            case SayNumber(value=value):
                return await self._said(await self.channel.say_number(int(value), _KEYS))
            case StartInputTimer(ms=ms) | StartInterDigitTimer(ms=ms):
                self.timer_ms = ms
            case CancelTimer():
                self.timer_ms = None
            case StopPrompt():
                self.prompt_mark = time.monotonic()  # AGI already stopped it at the key
            case RecordDtmf():
                await self.record.record_dtmf(command)
            case SetVariable(name=name, value=value):
                await self.channel.set_variable(name, value)
            case HttpLookup():
                return await http_lookup(self.ivr.erp, command, self.record)
            case Transfer():
                return await self._transfer(command)
            case RecordMessage():
                return await self._record_message(command)
            case Hangup():
                await self.channel.hangup()
        return None

    async def _transfer(self, command: Transfer) -> Event:
        """Dial the target(s) from the caller's channel, one ``call_transfer`` row per
        attempt; Dial returns when that call is over (or was not answered)."""
        calls = self.ivr.settings
        target = command.target or ""
        plan, outside = await self.record.transfer_plan(
            command,
            calls.agent_ring_timeout,
            self.state.variables,
            default_region=calls.agent_default_region,
        )
        await self.record.note(CallEventType.IVR_TRANSFER_DIALING, {"target": target})
        failed: str | None = plan.reason
        for attempt in plan.attempts:
            row, attempt = await self.record.attempt_started(command, attempt)
            if not attempt.targets:  # the rule could not ring anyone (e.g. a provider)
                await self.record.transfer_finished(
                    row, TransferState.FAILED, reason=attempt.reason
                )
                failed = attempt.reason
                continue
            dial = "&".join(dial_string(calls, t, outside_line=outside) for t in attempt.targets)
            on_trunk = all(
                t.startswith("+") if outside is None else outside for t in attempt.targets
            )
            state = await self._dial(row, dial, attempt.ring_timeout_s, outside=on_trunk)
            if state is TransferState.COMPLETED:
                self.transferred = True
                await self.record.note(CallEventType.IVR_TRANSFERRED, {"target": row.target})
                return Transferred()
            failed = state.value
        if plan.menu is not None:
            await self.record.routed_to_menu(command, plan.menu, plan.menu_rule_id)
            return TransferredToMenu(plan.menu)
        return TransferFailed(failed or "failed")

    async def _dial(
        self, row: StoredTransfer, dial: str, timeout_s: int, *, outside: bool = False
    ) -> TransferState:
        """``Dial(dial,timeout_s)``; the outcome, stored on ``row``."""
        talked = peer = None
        try:
            # not limited: Dial returns when the call it made is over
            # f(x): an outside leg presents the caller-ID profile's choice, if one was made
            # (only when every target is on the trunk: f() applies to all of them)
            shown = self.record.outside_caller_id if outside else None
            options = (f"f({shown})",) if shown else ()
            await self.channel.exec("Dial", dial, str(timeout_s), *options, wait=None)
            status = (await self.channel.get_variable("DIALSTATUS") or "").upper()
            if status == "ANSWER":  # Dial returned: the transferred call is over
                talked = await self.channel.get_variable("ANSWEREDTIME")
                peer = await self.channel.get_variable("DIALEDPEERNAME")
        except AgiHangup:
            await self.record.transfer_finished(row, TransferState.FAILED, reason="caller hung up")
            raise
        if status == "ANSWER":
            seconds = float(talked) if talked and talked.replace(".", "", 1).isdigit() else 0.0
            await self.record.transfer_finished(
                row,
                TransferState.COMPLETED,
                target_channel_id=peer,
                answered_at=datetime.now(UTC) - timedelta(seconds=seconds),
            )
            return TransferState.COMPLETED
        # DIALSTATUS names the dialled side's Q.850 cause; the one rule reads it
        cause = _DIALSTATUS_CAUSE.get(status)
        state = state_for_unanswered(cause)
        reason = "caller hung up" if status == "CANCEL" else f"DIALSTATUS {status or '?'}"
        await self.record.transfer_finished(
            row, state, cause=cause, reason=None if cause in (17, 19) else reason
        )
        return state

    async def _record_message(self, command: RecordMessage) -> Event:
        name = ivr_message_name(self.record.channel_id, str(int(time.time())))
        silence = f"s={command.silence_s}" if command.silence_s else ""
        args: list[str | int] = [name, "wav", "#", command.max_duration_s * 1000]
        if command.beep:
            args.append("BEEP")
        if silence:
            args.append(silence)
        started = time.monotonic()
        await self.channel.command("RECORD FILE", *args, wait=command.max_duration_s)
        await self.record.note(CallEventType.IVR_RECORDING_MESSAGE, {"name": name})
        return RecordingDone(round((time.monotonic() - started) * 1000))

    def _input_wait(self) -> int | None:
        """The input timer the menu arms when the prompt now starting ends, if that is all
        it does then (asked of the pure interpreter, nothing is carried out)."""
        then = step(self.record.menus().menus, self.state, PromptFinished()).commands
        if len(then) == 1 and isinstance(then[0], StartInputTimer):
            return then[0].ms
        return None

    async def _play(self, media: str, *, wait_ms: int | None = None) -> Event:
        self.prompt_mark = time.monotonic()
        scheme, _, name = media.partition(":") if ":" in media else ("sound", "", media)
        if scheme == "digits":
            return await self._said(await self.channel.say_digits(name, _KEYS))
        if scheme == "number" and name.lstrip("-").isdigit():
            return await self._said(await self.channel.say_number(int(name), _KEYS))
        if scheme != "sound":
            return PromptFinished()  # tones and recordings have no AGI player here
        try:
            if wait_ms is not None:
                return await self._play_then_wait(name, wait_ms)
            played = await self.channel.stream_file(name, _KEYS)
        except AgiCommandError:
            self.record.log.warning("ivr.prompt_missing", prompt=media)
            return PromptFinished()
        return await self._said(played.digit)

    async def _play_then_wait(self, name: str, wait_ms: int) -> Event:
        """Prompt and input wait as one GET OPTION; the interpreter still sees its usual
        events (a key during the prompt, or the prompt's end and then a key or silence)."""
        started = self.prompt_mark
        played = await self.channel.get_option(name, _KEYS, wait_ms)
        now = time.monotonic()
        # endpos counts 8 kHz samples for the stock prompts; a key within 100 ms of the
        # prompt's end counts as a barge-in (the interpreter decides the same either way)
        prompt_end = min(now, started + played.endpos / 8000)
        if played.digit is not None and now - prompt_end < 0.1:
            return Digit(played.digit, self._ms())  # barged in: ms from the prompt's start
        self.prompt_mark = prompt_end
        after = round((now - prompt_end) * 1000)
        self.ahead.append(Digit(played.digit, after) if played.digit else Timeout(after))
        return PromptFinished()

    async def _wait_for_input(self, book: MenuBook, ms: int) -> Event:
        """The next key within ``ms``, or the timeout; the rest of a multi-digit input
        Asterisk can collect in one command (:func:`_collect_limit`) is collected with it,
        its keys queued in :attr:`ahead`."""
        limit = _collect_limit(book, self.state)
        if limit is None:
            digit = await self.channel.wait_for_digit(ms)
            return Digit(digit, self._ms()) if digit else Timeout(self._ms())
        collected = await self.channel.get_data("", ms, limit)
        at = self._ms()  # GET DATA does not say when each key came: when it returned
        events: list[Event] = [Digit(d, at) for d in collected.digits]
        if collected.timed_out:
            events.append(Timeout(at))
        elif len(collected.digits) < limit:
            events.append(Digit("#", at))  # it ended at the # it leaves out
        self.ahead.extend(events[1:])
        return events[0]

    async def _said(self, digit: str | None) -> Event:
        if digit is None:
            self.prompt_mark = time.monotonic()
            return PromptFinished()
        return Digit(digit, self._ms())
