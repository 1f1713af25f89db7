"""Call quality per click-to-call leg: Asterisk's RTCP figures, an E-model MOS, an alert.

Where the figures come from, and what each costs:

- **At hangup**, chan_pjsip sets ``RTPAUDIOQOS`` (and ``…JITTER``, ``…LOSS``, ``…RTT``)
  on every RTP channel. ARI delivers each as a ``ChannelVarset`` event to the app the
  channel belongs to, before its ``ChannelDestroyed`` (measured on Asterisk 22.10), so the
  final row of every leg, whichever side hung up, costs no request: the events arrive on
  the socket the engine reads anyway (today they were dropped unread). The row is queued
  at the leg's ``StasisEnd`` once they came (a channel that entered from the dialplan, an
  IVR caller's or an agent's own, is no longer the app's then: its ``ChannelDestroyed``
  never comes), else at its ``ChannelDestroyed``. AMI's ``VarSet``
  and ``RTCPSent``/``RTCPReceived`` events stay disabled (``dialplan/manager.conf``):
  they would carry every variable and every RTCP report of every channel on the PBX.
- **During the call**, every ``quality.sample_interval`` seconds, each leg that has been
  up for at least that interval is read with
  ``GET /channels/{id}/variable?variable=CHANNEL(rtcp,all)``: one ARI request per leg
  (1-2 ms on the sandbox), made one after the other by one task so a PBX with many calls
  gets a steady trickle, never a burst. A leg up for less would say little its final row
  does not (it comes at hangup, for free): a call shorter than the interval costs no
  request, a longer one its first sample one to two intervals after it came up (the first
  tick at which it has been up a whole interval).

Asterisk's own naming in these strings is from the point of view of its RTCP reports:
``txjitter`` is the jitter Asterisk measured on the stream it *receives* from the phone
(``CHANNEL(rtcp,all_jitter)`` calls the same figure ``rxjitter``), ``rxjitter`` the
jitter the phone's RTCP reports on the stream it receives; ``lp`` is what Asterisk lost
receiving, ``rlp`` what the phone reports lost; ``rtt`` is known only from the phone's
RTCP reports. Only what is known is stored; a phone that sends no RTCP (SIPp) leaves the
round-trip time and the far side's loss NULL, a leg that sent no RTP gets no MOS.

A leg whose MOS (from a sample or its final figures) is below ``quality.mos_floor`` gets
one ``quality.low_mos`` call event per leg. Which channels are followed: those whose id
names their call (:mod:`engine.asterisk.naming`: a click-to-call's legs and transfer
targets, an ARI IVR call's transfer targets, leg ``target``), and those a flow hands over
with :meth:`QualityMonitor.follow` because Asterisk named them (an ARI IVR caller's
channel, leg ``caller``; the agent's own channel of a call dialled from ``[ctc-agents]``,
leg ``agent``). The FastAGI door has no event socket: it reads its legs itself
(:mod:`engine.asterisk.flows.ivr_agi`) and stores them through :class:`QualityWriter`.

Final rows are written behind, together: :class:`QualityWriter` gathers the legs that end
within :data:`FINAL_BATCH_S` of the first and writes them in one multi-row ``INSERT`` (one
round trip per leg had been ~4 % of the engine's CPU per bridged call, py-spy under
``bench/originate.py``), for both doors: the ARI monitor's legs and the FastAGI door's
callers. On close, batches being written get a bounded grace, the ones not yet due are
written then, and what cannot be written is counted (``QualityWriter.lost``) and logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Protocol

import structlog

from engine.asterisk.links.ari import AriClient, AriNotFound
from engine.asterisk.links.ari_router import AriEvent, AriEventRouter
from engine.asterisk.naming import IdKind, parse_id
from engine.config.settings import QualitySettings
from engine.domain.event_types import CallEventType
from engine.domain.quality import LegFigures, leg_mos
from engine.errors import AriError, CtcError
from engine.lifecycle import Lifecycle, cancel_tasks
from engine.periodic import Periodic
from engine.store.records import QualityMetric
from engine.store.repositories import Store

__all__ = [
    "FINAL_VARIABLES",
    "LegFollower",
    "QualityMonitor",
    "QualityWriter",
    "figures_of",
    "parse_rtcp",
]

log = structlog.get_logger(__name__)

#: The channel variables chan_pjsip sets at hangup, as ``ChannelVarset`` events.
FINAL_VARIABLES = frozenset(
    {"RTPAUDIOQOS", "RTPAUDIOQOSJITTER", "RTPAUDIOQOSLOSS", "RTPAUDIOQOSRTT", "RTPAUDIOQOSMES"}
)
_SAMPLE = "CHANNEL(rtcp,all)"
# the channel ids that name their call (a leg channel's leg is in its id; the others are
# transfer targets)
_NAMED = frozenset({IdKind.LEG_CHANNEL, IdKind.TARGET_CHANNEL, IdKind.IVR_TARGET_CHANNEL})

#: How long a leg's final row waits for other legs' to be written with them (seconds): at
#: 20 calls ending a second, a quarter of a second makes batches of ~10 rows.
FINAL_BATCH_S = 0.25
# how long close waits for batches being written before cancelling them
_CLOSE_GRACE_S = 2.0


def parse_rtcp(value: str) -> dict[str, float]:
    """``"ssrc=1;lp=0;rxjitter=0.000125;…"`` (Asterisk's quality strings, also the padded
    ``all_jitter`` form) as numbers by key; fields that are not numbers are left out."""
    figures: dict[str, float] = {}
    for part in value.split(";"):
        key, sep, number = part.partition("=")
        if not sep:
            continue
        with contextlib.suppress(ValueError):
            figures[key.strip()] = float(number)
    return figures


def _count(figures: Mapping[str, float], key: str) -> int | None:
    value = figures.get(key)
    return None if value is None or value < 0 else int(value)


def figures_of(quality: Mapping[str, float]) -> LegFigures:
    """A leg's figures from Asterisk's ``all`` quality string (seconds become ms). A
    round-trip time of 0 means no RTCP report came from the phone: unknown; so is the
    far side's loss then."""
    rtt = quality.get("rtt")
    rtt_known = rtt is not None and rtt > 0
    jitter = quality.get("txjitter")
    return LegFigures(
        rx_packets=_count(quality, "rxcount"),
        rx_lost_packets=_count(quality, "lp"),
        tx_packets=_count(quality, "txcount"),
        tx_lost_packets=_count(quality, "rlp") if rtt_known else None,
        jitter_ms=None if jitter is None else round(jitter * 1000.0, 3),
        rtt_ms=round(rtt * 1000.0, 3) if rtt is not None and rtt_known else None,
    )


class _Leg:
    """One followed channel: its call, its role, since when it is up (the monitor's
    clock; None: not up yet), what its hangup told so far."""

    __slots__ = ("alerted", "final", "leg", "session_id", "up_since")

    def __init__(self, session_id: uuid.UUID, leg: str) -> None:
        self.session_id = session_id
        self.leg = leg
        self.up_since: float | None = None
        self.alerted = False
        self.final: dict[str, str] = {}

    @property
    def up(self) -> bool:
        return self.up_since is not None

    def came_up(self, now: float) -> None:
        if self.up_since is None:
            self.up_since = now


class LegFollower(Protocol):
    """What a call flow tells the quality monitor about a channel Asterisk named."""

    def follow(
        self, channel_id: str, session_id: uuid.UUID, leg: str, tenant_id: uuid.UUID
    ) -> None: ...


#: One leg's measure to store: (channel, leg state, figures by key, raw strings).
Measured = tuple[str, _Leg, Mapping[str, float], Mapping[str, Any]]
#: A final row waiting for its batch: its measure, and its tenant when already known.
_Final = tuple[Measured, "uuid.UUID | None"]


class QualityWriter(Lifecycle):
    """Turns figures into quality rows (with their MOS) and low-MOS events; shared by the
    ARI monitor and the FastAGI door. Final rows are queued (:meth:`queue_final`) and
    written in batches while the writer is open; samples are written at once. A failure to
    store is logged: the figures are lost (counted in ``lost`` for final rows), the call
    is not touched."""

    def __init__(self, store: Store, settings: QualitySettings) -> None:
        self._store = store
        self._settings = settings
        self._tenants: dict[uuid.UUID, uuid.UUID] = {}
        self._finals: list[_Final] = []  # final rows waiting for their batch
        self._finals_due: asyncio.Task[None] | None = None  # writes them
        self._writing: set[asyncio.Task[None]] = set()  # batches being written
        self._unwritten: dict[uuid.UUID, int] = {}  # a session's final rows not written yet
        self._released: set[uuid.UUID] = set()  # tenants to forget once those are written
        self.lost = 0  # final rows that could not be written (logged)

    def know_tenant(self, session_id: uuid.UUID, tenant_id: uuid.UUID) -> None:
        self._tenants[session_id] = tenant_id

    def release(self, session_id: uuid.UUID) -> None:
        """Nothing more of the session is followed: forget its tenant, once its final
        rows are written."""
        if session_id in self._unwritten:
            self._released.add(session_id)
        else:
            self._tenants.pop(session_id, None)

    @property
    def known_tenants(self) -> int:
        """How many calls' tenants it holds: the calls whose legs are followed or whose
        rows are being written, no more."""
        return len(self._tenants)

    async def _tenant(self, session_id: uuid.UUID, *, keep: bool = True) -> uuid.UUID | None:
        """The session's tenant; read once and kept (``keep``: until :meth:`release`)."""
        tenant = self._tenants.get(session_id)
        if tenant is None:
            session = await self._store.sessions.by_id(session_id)
            if session is None:
                return None
            tenant = session.tenant_id
            if keep:
                self._tenants[session_id] = tenant
        return tenant

    def _row(
        self,
        tenant: uuid.UUID,
        channel: str,
        leg: _Leg,
        quality: Mapping[str, float],
        *,
        final: bool,
        raw: Mapping[str, Any],
    ) -> QualityMetric:
        figures = figures_of(quality)
        return QualityMetric(
            tenant_id=tenant,
            session_id=leg.session_id,
            channel_id=channel,
            leg=leg.leg,
            sampled_at=datetime.now(UTC),
            is_final=final,
            rx_packets=figures.rx_packets,
            tx_packets=figures.tx_packets,
            rx_lost_packets=figures.rx_lost_packets,
            tx_lost_packets=figures.tx_lost_packets,
            jitter_ms=figures.jitter_ms,
            rtt_ms=figures.rtt_ms,
            mos=leg_mos(figures, bpl=self._settings.packet_loss_robustness),
            raw=raw,
        )

    async def store_final(
        self,
        channel: str,
        session_id: uuid.UUID,
        leg: str,
        quality: str,
        *,
        raw: Mapping[str, Any],
    ) -> bool:
        """Queue a leg's end-of-call figures (Asterisk's ``all`` quality string) for the
        next batch; False when they say no media flowed (nothing stored). A leg the writer
        does not follow: its tenant is read now and not kept."""
        figures = parse_rtcp(quality)
        if not figures.get("rxcount") and not figures.get("txcount"):
            return False
        try:
            tenant = await self._tenant(session_id, keep=False)
        except CtcError as exc:  # e.g. the database is away: these figures are lost
            self._lost(1, exc)
            return True
        if tenant is not None:
            self.queue_final(channel, _Leg(session_id, leg), figures, raw, tenant=tenant)
        return True

    def queue_final(
        self,
        channel: str,
        leg: _Leg,
        quality: Mapping[str, float],
        raw: Mapping[str, Any],
        *,
        tenant: uuid.UUID | None = None,
    ) -> None:
        """Write the leg's final row with the others that come within FINAL_BATCH_S (no
        waiting: the ARI dispatcher calls this). ``tenant``: known to the caller."""
        if not self.is_open:
            self._lost(1, "the quality writer is closed")
            return
        self._finals.append(((channel, leg, quality, raw), tenant))
        self._unwritten[leg.session_id] = self._unwritten.get(leg.session_id, 0) + 1
        if self._finals_due is None:
            due = asyncio.get_running_loop().create_task(
                self._write_finals(wait=True), name="quality-finals"
            )
            self._finals_due = due
            self._writing.add(due)
            due.add_done_callback(self._writing.discard)

    async def _write_finals(self, *, wait: bool) -> None:
        if wait:
            await asyncio.sleep(FINAL_BATCH_S)
            self._finals_due = None
        finals, self._finals = self._finals, []
        stored = 0
        try:
            stored = await self._store_rows(finals, final=True)
        finally:  # also when the close cuts the write off: up to these rows are lost
            self._written([measured[1].session_id for measured, _ in finals])
            if stored < len(finals):
                self._lost(len(finals) - stored)

    def _written(self, sessions: list[uuid.UUID]) -> None:
        for session_id in sessions:
            left = self._unwritten.pop(session_id, 1) - 1
            if left > 0:
                self._unwritten[session_id] = left
            elif session_id in self._released:
                self._released.discard(session_id)
                self._tenants.pop(session_id, None)

    def _lost(self, rows: int, why: object = "not stored") -> None:
        self.lost += rows
        log.error("quality.finals_lost", rows=rows, error=str(why))

    async def _close(self) -> None:
        due, self._finals_due = self._finals_due, None
        await cancel_tasks(due)  # its batch, not taken yet, is written below
        if self._writing:  # batches being written: a row and its low-MOS event belong together
            await asyncio.wait(self._writing, timeout=_CLOSE_GRACE_S)
        await cancel_tasks(*self._writing)  # cut off: their rows are counted lost
        if self._finals:  # the legs that ended last: their batch was not due yet
            # bounded like the batches above: cut off, its rows are counted lost
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_CLOSE_GRACE_S):
                    await self._write_finals(wait=False)

    async def store(self, measured: list[Measured], *, final: bool) -> None:
        """Write ``measured`` now, in one statement (the samples of a sampler round)."""
        await self._store_rows([(m, None) for m in measured], final=final)

    async def _store_rows(self, measured: list[_Final], *, final: bool) -> int:
        """Write the rows and their low-MOS events; how many were done with (stored, or of
        a call that is gone: nothing to keep them for), 0 when the write failed; the rows
        of a session PostgreSQL refused are not done with."""
        try:
            rows: list[tuple[_Leg, QualityMetric]] = []
            for (channel, leg, quality, raw), known in measured:
                tenant = known or await self._tenant(leg.session_id)
                if tenant is not None:
                    row = self._row(tenant, channel, leg, quality, final=final, raw=raw)
                    rows.append((leg, row))
            # a session born in the journal may still wait for its first batch: its row
            # must be in PostgreSQL before a row that refers to it
            await self._store.journal.created({row.session_id for _, row in rows})
            stored = await self._store.quality.add([row for _, row in rows])
        except CtcError as exc:  # e.g. the database is away: these figures are lost
            log.warning("quality.not_stored", final=final, error=str(exc))
            return 0
        except Exception:  # a bug: logged, the caller goes on
            log.exception("quality.store_crashed")
            return 0
        kept = {id(row) for row in stored}
        for leg, row in rows:
            if id(row) not in kept:
                continue
            try:
                await self._alert(leg, row)
            except CtcError as exc:
                log.warning("quality.alert_not_stored", call_id=str(row.session_id), error=str(exc))
            except Exception:
                log.exception("quality.alert_crashed")
        return len(measured) - (len(rows) - len(stored))

    async def _alert(self, leg: _Leg, row: QualityMetric) -> None:
        floor = self._settings.mos_floor
        if row.mos is None or row.mos >= floor or leg.alerted:
            return
        leg.alerted = True
        await self._store.sessions.append_event(
            row.tenant_id,
            row.session_id,
            CallEventType.QUALITY_LOW_MOS,
            payload={
                "leg": row.leg,
                "channel_id": row.channel_id,
                "mos": row.mos,
                "mos_floor": floor,
                "final": row.is_final,
                "jitter_ms": row.jitter_ms,
                "rtt_ms": row.rtt_ms,
                "rx_packets": row.rx_packets,
                "rx_lost_packets": row.rx_lost_packets,
            },
        )
        log.warning(
            "quality.low_mos", call_id=str(row.session_id), leg=row.leg, mos=row.mos, floor=floor
        )


class QualityMonitor(Lifecycle):
    """Follows the channels of calls on the Stasis app's router; writes their quality
    rows and low-MOS events in the background (never on the event dispatcher)."""

    def __init__(
        self,
        ari: AriClient,
        store: Store,
        settings: QualitySettings,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ari = ari
        self._settings = settings
        self._clock = clock
        self.writer = QualityWriter(store, settings)
        self._legs: dict[str, _Leg] = {}
        self._legs_of: dict[uuid.UUID, int] = {}  # how many of a session's legs are followed
        interval = settings.sample_interval
        self._sampler = _Sampler(self.sample, interval) if interval > 0 else None

    def subscribe(self, router: AriEventRouter) -> None:
        """Observe channels going up and ending (never taking those events: the call
        flows after this one still get them), and take the hangup-time variables."""
        router.on("StasisStart", self._on_up)
        router.on("ChannelVarset", self._on_varset)
        router.on("StasisEnd", self._on_stasis_end)
        router.on("ChannelDestroyed", self._on_destroyed)

    async def _open(self) -> None:
        await self.writer.start()
        if self._sampler is not None:
            await self._sampler.start()

    async def _close(self) -> None:
        if self._sampler is not None:
            await self._sampler.close()
        await self.writer.close()  # the last legs' rows, waiting for their batch

    @property
    def followed(self) -> int:
        """How many channels are followed now."""
        return len(self._legs)

    def follow(
        self, channel_id: str, session_id: uuid.UUID, leg: str, tenant_id: uuid.UUID
    ) -> None:
        """Follow ``channel_id``, which is up, as ``leg`` of the session: a channel whose
        id Asterisk chose (an IVR caller's, an agent's own phone), so only the flow that
        took it knows its call."""
        found = self._legs.get(channel_id)
        if found is None:
            found = self._add(channel_id, _Leg(session_id, leg))
        found.came_up(self._clock())
        self.writer.know_tenant(session_id, tenant_id)

    # -- events (on the dispatcher: no waiting) -------------------------------------------------

    def _leg(self, channel: str) -> _Leg | None:
        found = self._legs.get(channel)
        if found is not None:
            return found
        parsed = parse_id(channel)
        if parsed is None or parsed.kind not in _NAMED:
            return None
        return self._add(
            channel, _Leg(parsed.session_id, parsed.leg.value if parsed.leg else "target")
        )

    def _add(self, channel: str, leg: _Leg) -> _Leg:
        self._legs[channel] = leg
        self._legs_of[leg.session_id] = self._legs_of.get(leg.session_id, 0) + 1
        return leg

    def _on_up(self, event: AriEvent) -> bool:
        leg = self._leg(str(event.get("channel", {}).get("id", "")))
        if leg is not None:
            leg.came_up(self._clock())
        return False

    def _on_varset(self, event: AriEvent) -> bool:
        variable = str(event.get("variable", ""))
        if variable not in FINAL_VARIABLES:
            return False
        leg = self._leg(str(event.get("channel", {}).get("id", "")))
        if leg is None:
            return False
        leg.final[variable] = str(event.get("value", ""))
        return True

    def _on_stasis_end(self, event: AriEvent) -> bool:
        """A channel that hung up leaves the app with its hangup's variables told: its end
        is known. One that entered from the dialplan (an IVR caller's, an agent's own) is
        no longer the app's after this: its ChannelDestroyed never comes."""
        channel = str(event.get("channel", {}).get("id", ""))
        leg = self._legs.get(channel)
        if leg is not None and "RTPAUDIOQOS" in leg.final:
            self._forget(channel)
        return False

    def _on_destroyed(self, event: AriEvent) -> bool:
        self._forget(str(event.get("channel", {}).get("id", "")))
        return False

    def _forget(self, channel: str) -> None:
        """The channel is gone: write what its hangup told, and stop following it."""
        leg = self._legs.pop(channel, None)
        if leg is None:
            return
        if "RTPAUDIOQOS" in leg.final:
            self._queue_final(channel, leg)
        left = self._legs_of.pop(leg.session_id, 1) - 1
        if left > 0:
            self._legs_of[leg.session_id] = left
        else:
            self.writer.release(leg.session_id)  # once its final rows are stored

    # -- rows -------------------------------------------------------------------------------------

    def _queue_final(self, channel: str, leg: _Leg) -> None:
        """The leg's final row, written with the others that end within FINAL_BATCH_S."""
        quality = parse_rtcp(leg.final["RTPAUDIOQOS"])
        if not leg.up and not quality.get("rxcount"):
            return  # a leg that never answered and carried no media: nothing to say
        raw = {name.lower(): value for name, value in sorted(leg.final.items())}
        self.writer.queue_final(channel, leg, quality, raw)

    # -- samples ----------------------------------------------------------------------------------

    async def sample(self) -> int:
        """Read and store every leg up for at least ``sample_interval`` now; how many were
        stored."""
        measured: list[Measured] = []
        # up since this or earlier: a leg's first sample comes an interval after it came up
        latest = self._clock() - self._settings.sample_interval
        for channel, leg in list(self._legs.items()):
            if leg.up_since is None or leg.up_since > latest:
                continue
            try:
                value = await self._ari.get_channel_var(channel, _SAMPLE)
            except AriNotFound:
                # gone, and its ChannelDestroyed not handled yet: still queued (its
                # hangup's variables, if queued too, follow it anew) or missed while the
                # event link was down. Either way it is not followed any longer.
                self._forget(channel)
                continue
            except AriError as exc:
                log.warning("quality.sample_failed", channel=channel, error=str(exc))
                continue
            figures = parse_rtcp(value)
            if "rxcount" not in figures:
                continue  # not answered yet (an agent's own phone is followed from its dial)
            measured.append((channel, leg, figures, {"rtcp_all": value}))
        # a leg that ended while the round asked ARI about the others is no longer followed:
        # its final row says more, and storing its sample would read its call's tenant back
        # after the writer let it go, and keep it
        measured = [m for m in measured if self._legs.get(m[0]) is m[1]]
        if measured:
            await self.writer.store(measured, final=False)
        return len(measured)


class _Sampler(Periodic):
    """Runs :meth:`QualityMonitor.sample` every ``quality.sample_interval`` seconds, the
    first an interval after start; a failed round is logged and the next one samples again."""

    def __init__(self, sample: Callable[[], Awaitable[int]], interval: float) -> None:
        super().__init__("quality_sampler", interval=interval)
        self._sample = sample

    async def run_once(self) -> int:
        return await self._sample()
