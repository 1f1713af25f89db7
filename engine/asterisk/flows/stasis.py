"""The ``ctc`` Stasis application: one ARI event socket serving every call flow over ARI.

ARI events arrive on the link's reader and are only queued there: Asterisk drops a
WebSocket consumer that is slow to read (``websocket_write_timeout``). One dispatcher task
takes them from the queue and routes each by its type through one table
(:class:`~engine.asterisk.links.ari_router.AriEventRouter`): IVR calls
(:class:`~engine.asterisk.flows.ivr_ari.AriIvr`) are asked first, then click-to-calls
(:class:`~engine.asterisk.flows.click_to_call.ClickToCall`), then the agents' own calls
(:class:`~engine.asterisk.flows.agent_door.AgentDoor`, ``Stasis(ctc,agent,...)``). None
waits on the dispatcher: they hand the event to their call's task.

After every (re)connect of the socket the app's event filter is set to the types the table
routes (``PUT /applications/{app}/eventFilter``): of the 66 events a bridged, recorded
click-to-call brings, 15 (``Dial``, ``ChannelStateChange``, ``ChannelConnectedLine``,
bridge entries and exits, ``BridgeDestroyed``, ``PlaybackStarted``, ``RecordingStarted``)
went to no handler, and were read, decoded, queued and dispatched for nothing; the close
sets it back to every event. Then the resync runs
(:class:`~engine.asterisk.flows.resync.Resync`), and now and then the records Asterisk's
hangup handler keeps for ended calls are deleted.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import structlog

from engine.app.ivr_admission import IvrAdmission
from engine.app.ivr_calls import MenuLoader
from engine.app.ports import ErpLookup
from engine.app.provider_breakers import ProviderBreakers
from engine.asterisk.flows.agent_door import AgentDoor
from engine.asterisk.flows.call_quality import QualityMonitor
from engine.asterisk.flows.click_to_call import ClickToCall
from engine.asterisk.flows.hangup_records import HangupRecords
from engine.asterisk.flows.ivr_ari import AriIvr
from engine.asterisk.flows.resync import Resync
from engine.asterisk.links.ari import AriClient, AriEventLink, AriNotFound
from engine.asterisk.links.ari_router import AriEventRouter
from engine.config.settings import CallSettings, QualitySettings
from engine.errors import AriError
from engine.health import HealthReport
from engine.lifecycle import Lifecycle, cancel_tasks
from engine.metrics import Metrics
from engine.periodic import Periodic
from engine.store.repositories import Store

__all__ = ["StasisApp"]

log = structlog.get_logger(__name__)

# How often the records Asterisk's hangup handler keeps for ended calls are deleted.
_RECORD_SWEEP_INTERVAL = 300.0
# how long setting the app's event filter may take (the resync after a connect waits for it)
FILTER_TIMEOUT_S = 5.0


class StasisApp(Lifecycle):
    """The event link, its dispatcher and the flows it feeds.

    ``click_to_call`` is the API's Dialer; ``ivr`` is None without menus to load (with
    them, ``erp`` is what the IVR's lookups ask and ``admission`` its capacity);
    ``resync`` tells how many resyncs ran. Closing stops the link first (no new events),
    then the dispatcher and the sweeper, then the flows.
    """

    def __init__(
        self,
        ari: AriClient,
        store: Store,
        settings: CallSettings,
        *,
        health: HealthReport | None = None,
        recording_dir: str = "/var/spool/asterisk/recording",
        menus: MenuLoader | None = None,
        erp: ErpLookup | None = None,
        admission: IvrAdmission | None = None,
        hangup_records: HangupRecords | None = None,
        metrics: Metrics | None = None,
        quality: QualitySettings | None = None,
        breakers: ProviderBreakers | None = None,
    ) -> None:
        self._store = store
        self._records = hangup_records or HangupRecords(None)
        self._queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._dispatcher: asyncio.Task[None] | None = None
        self._sweeper = _RecordSweeper(self._records, store)
        self._ari = ari
        self.link = AriEventLink(
            ari, on_event=self._queue.put_nowait, on_connected=self._resync, health=health
        )
        self.click_to_call = ClickToCall(
            ari,
            store,
            settings,
            connected=self.link.connected,
            recording_dir=recording_dir,
            leg_variables=self._records.leg_variables,
            metrics=metrics,
            breakers=breakers,
        )
        self.resync = Resync(ari, store, settings, self.click_to_call, self._records)
        # every leg's RTCP figures and MOS (None: quality.enabled is false)
        self.quality: QualityMonitor | None = (
            QualityMonitor(ari, store, quality) if quality is not None else None
        )
        # inbound callers in Stasis(ctc,ivr,MENU): only when menus can be loaded
        self.ivr: AriIvr | None = None
        if menus is not None:
            if erp is None or admission is None:
                raise ValueError(
                    "StasisApp: an IVR (menus=...) needs erp=... for its lookups and "
                    "admission=... for its capacity"
                )
            self.ivr = AriIvr(
                ari,
                store,
                menus,
                settings,
                erp=erp,
                admission=admission,
                metrics=metrics,
                quality=self.quality,
            )
        self.router = AriEventRouter()
        if self.quality is not None:
            # first: it only observes (an IVR call's and a click-to-call's channels alike),
            # and takes no event a flow needs
            self.quality.subscribe(self.router)
        if self.ivr is not None:
            self.ivr.subscribe(self.router)  # then: an IVR call's events are its own
        self.click_to_call.subscribe(self.router)
        # agents' own calls become click-to-calls: the daemon hands the door the use cases
        self.agent_door = AgentDoor(ari, settings, quality=self.quality)
        self.agent_door.subscribe(self.router)

    async def _open(self) -> None:
        if self.ivr is not None:
            await self.ivr.start()
        await self.click_to_call.start()
        if self.quality is not None:
            await self.quality.start()
        await self.agent_door.start()
        self._dispatcher = asyncio.create_task(self._dispatch(), name="stasis-dispatch")
        await self._sweeper.start()
        await self.link.start()

    async def _close(self) -> None:
        await self.link.close()  # no new events, no resync running
        # Asterisk keeps the filter on its app object, which outlives this socket while a
        # channel is still the app's: whoever connects to the app next (a tool, an older
        # engine) would get only our types
        await self._filter_events(unfiltered=True)
        dispatcher, self._dispatcher = self._dispatcher, None
        await cancel_tasks(dispatcher)
        await self._sweeper.close()
        # nothing routes to the flows any more: their calls in progress are cancelled
        if self.ivr is not None:
            await self.ivr.close()
        await self.agent_door.close()
        await self.click_to_call.close()
        if self.quality is not None:
            await self.quality.close()

    async def _resync(self) -> None:
        await self._filter_events()
        await self.resync.run()

    async def _filter_events(self, *, unfiltered: bool = False) -> None:
        """Only the events some flow takes (``unfiltered``: every event again); if Asterisk
        refuses, or takes longer than FILTER_TIMEOUT_S (the resync waits for this), it
        sends them all, each routed to none, as before."""
        try:
            async with asyncio.timeout(FILTER_TIMEOUT_S):
                await self._ari.filter_events(None if unfiltered else self.router.event_types)
        except AriNotFound:
            # no such app in Asterisk: at close, it went with our socket (no channel kept
            # it), and its filter with it
            if not unfiltered:
                log.warning("stasis.events_unfiltered", error="the app is not registered")
        except (AriError, TimeoutError) as exc:
            log.warning("stasis.events_unfiltered", error=str(exc) or repr(exc))

    async def _dispatch(self) -> None:
        while True:
            event = await self._queue.get()
            try:
                self.router.route(event)
            except Exception:  # a bug in a handler: logged, the next event is routed
                log.exception("stasis.route_failed", ari_event=event.get("type"))


class _RecordSweeper(Periodic):
    """Deletes, every ``_RECORD_SWEEP_INTERVAL`` seconds (the first an interval after
    start), what the hangup handler recorded for calls that are over. A failed sweep (the
    database or AMI away) is logged and the next one catches up."""

    def __init__(self, records: HangupRecords, store: Store) -> None:
        super().__init__("record_sweep", interval=_RECORD_SWEEP_INTERVAL)
        self._records = records
        self._store = store

    async def run_once(self) -> int:
        """One sweep now; how many sessions' records it deleted."""
        swept = await self._records.sweep(self._live_ids)
        if swept:
            log.info("stasis.records_swept", sessions=swept)
        return swept

    async def _live_ids(self) -> set[uuid.UUID]:
        return {s.id for s in await self._store.sessions.live()}
