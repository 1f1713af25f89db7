"""Wiring and lifecycle of the long-running engine (``ctc run``).

Start order: the API comes up first (so ``/healthz`` answers while the database is still
being reached), the database connects in the background with capped backoff, and the
health report says what is up. Stop order is the reverse, each step bounded.
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import structlog

from engine.api.server import ApiServer, openapi_document
from engine.api.sse import StreamLimits
from engine.api.state import ApiState
from engine.app.agent_calls import AgentCallRecorder
from engine.app.billing import BillingRecorder, BillingService
from engine.app.carrier_calls import RESUME_AFTER, CarrierDialer
from engine.app.dialing import DialerRouter
from engine.app.ivr_admission import IvrAdmission
from engine.app.node_commands import CommandRunner
from engine.app.ports import CallQueue
from engine.app.provider_breakers import ProviderBreakers
from engine.app.retention import RetentionService
from engine.app.stats import StatsCompactor
from engine.app.use_cases import UseCases
from engine.asterisk.flows.call_quality import QualityWriter
from engine.asterisk.flows.controls import CallControls
from engine.asterisk.flows.hangup_records import HangupRecords
from engine.asterisk.flows.ivr_agi import AgiIvr
from engine.asterisk.flows.stasis import StasisApp
from engine.asterisk.links.agi_server import AgiServer
from engine.asterisk.links.ami import AmiLink
from engine.asterisk.links.ari import AriClient
from engine.asterisk.links.restart_watch import RestartWatch
from engine.asterisk.recording_files import SpoolRecordingFiles
from engine.claim_queue import ClaimQueue, NoLocalClaims
from engine.config.settings import Settings, exposure_warnings
from engine.errors import CtcError
from engine.events import EventBus
from engine.health import HealthReport
from engine.lifecycle import Lifecycle, cancel_tasks
from engine.listening import LISTEN_BACKLOG, backlog_cap
from engine.loop_watch import LoopWatch, settle_heap
from engine.metrics import Metrics
from engine.node_failover import NodeFailover
from engine.node_heartbeat import NodeHeartbeat
from engine.node_link import NodeLink
from engine.notifier import CallbackNotifier
from engine.outbound import HttpErpLookup, OutboundHttp
from engine.providers.directory import CarrierDirectory
from engine.retention import RetentionPruner
from engine.store.database import ConnectRetry, Database
from engine.store.event_feed import CallEventFeed
from engine.store.migrations import default_migrations_dir, migration_status
from engine.store.repositories import Store
from engine.transcription import transcriber_from_settings
from engine.transcription.worker import TranscriptWorker

__all__ = ["Engine", "run_until_signalled"]

log = structlog.get_logger(__name__)


class Engine(Lifecycle):
    """The daemon's one wiring root: builds every component from the settings, starts them
    in dependency order and closes them in reverse (``async with Engine(settings):``).

    Failure policy: the control API comes up first and stays up; PostgreSQL is connected
    in the background (health says ``database down`` until it answers); Asterisk's links
    start once the schema is current, and a link that cannot start is reported in health
    rather than stopping the engine.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        db = settings.database
        node = settings.node.name
        self.health = HealthReport(node=node)
        self.metrics = Metrics(node=node)
        self.db = Database(
            db.url,
            min_size=db.min_size,
            max_size=db.max_size,
            command_timeout=db.command_timeout,
            retry=ConnectRetry(on_failure=self._database_unreachable),
            node=node,  # the sessions this engine creates say so (their `node` column)
        )
        self.events = EventBus()
        self.store = Store.over(self.db, events=self.events, keyring=settings.secrets.keyring())
        self.store.journal.health = self.health
        self.health.set("journal", "up", "live calls written behind", required=False)
        # what /metrics reads when scraped, and the calls counted where sessions change
        self.metrics.watch_health(self.health)
        self.metrics.watch_journal(self.store.journal)
        self.metrics.watch_pool(self.db)
        self.store.sessions.calls = self.metrics.calls
        self.notifier = CallbackNotifier(
            self.store.outbox,
            settings.callbacks,
            events=self.events,
            health=self.health,
            metrics=self.metrics,
        )
        # a billing line per charged leg of each click-to-call, once its end is committed
        self.billing = BillingRecorder(BillingService(self.store), self.events)
        # the stats rollup's appended rows, folded every stats.compact_interval
        self.stats_compactor = StatsCompactor(self.store, interval=settings.stats.compact_interval)
        # outbound calls' agents in the activity log: on_call at the answer, wrap-up at the end
        self.agent_calls = AgentCallRecorder(self.store, self.events)
        # old call events, delivered callbacks and recordings, pruned every retention.interval
        self.retention = RetentionPruner(
            RetentionService.from_settings(
                self.store.retention,
                settings.retention,
                SpoolRecordingFiles(settings.ari.recording_dir),
            ),
            interval=settings.retention.interval,
            health=self.health,
            metrics=self.metrics,
        )
        # recorded calls of tenants that turned transcripts on, transcribed offline in
        # low-priority worker processes (None: transcripts.enabled is false)
        self.transcripts: TranscriptWorker | None = (
            TranscriptWorker(
                self.store,
                transcriber_from_settings(settings.transcripts),
                settings.transcripts,
                health=self.health,
            )
            if settings.transcripts.enabled
            else None
        )
        # the IVR doors' ERP lookups: one set of HTTP sessions (one per tenant network
        # policy), opened before the doors and closed after them
        self.lookup_http = OutboundHttp()
        erp = HttpErpLookup(self.lookup_http)
        self.ami: AmiLink | None = None
        if settings.ari.enabled and settings.ami.enabled:
            if settings.ami.password is None:
                self.health.set("ami", "down", "ami.password is not set", required=False)
            else:
                # only the events the engine listens to (the restart watch's): with "on"
                # every call, CDR and dialplan event of every call on the PBX crosses the
                # socket to be parsed and dropped (~25% of the engine's loop CPU in
                # bench/originate.py while an IVR bench ran on the same Asterisk; py-spy)
                self.ami = AmiLink.from_settings(
                    settings.ami, health=self.health, events=RestartWatch.EVENTS
                )
        # this engine's row among the engines sharing the database (`ctc nodes`)
        self.heartbeat = NodeHeartbeat(
            self.store.nodes,
            settings.node,
            health=self.health,
            asterisk_enabled=settings.ari.enabled,
        )
        # the call events other engines on the database commit, on this engine's bus
        self.event_feed = CallEventFeed(self.db, self.events, node=node)
        self.loop_watch = LoopWatch(self.metrics)
        # both IVR doors' capacity: one count of calls in progress, one measure of lateness
        self.ivr_admission = IvrAdmission(
            settings.ivr, lag=lambda: self.loop_watch.sustained_lag, metrics=self.metrics
        )
        self.ari: AriClient | None = None
        self.stasis: StasisApp | None = None
        # one circuit breaker per provider (carriers and SIP trunks alike), in the health report
        self.breakers = ProviderBreakers(self.health)
        if settings.ari.enabled:
            ari = settings.ari
            password = ari.password.get_secret_value() if ari.password else ""
            self.ari = AriClient(ari.url, ari.username, password, app=ari.app)
            self.stasis = StasisApp(
                self.ari,
                self.store,
                settings.calls,
                health=self.health,
                recording_dir=str(ari.recording_dir),
                menus=self.store.ivr.book,
                erp=erp,
                admission=self.ivr_admission,
                hangup_records=HangupRecords(self.ami, settings.calls.hangup_handler),
                metrics=self.metrics,
                quality=settings.quality if settings.quality.enabled else None,
                breakers=self.breakers,
            )
        # Asterisk restarted (AMI's FullyBooted says so): the ARI link reconnects and resyncs
        self.restart_watch: RestartWatch | None = None
        if self.ami is not None and self.stasis is not None:
            self.restart_watch = RestartWatch(on_restart=self.stasis.link.drop)
            self.restart_watch.watch(self.ami)
        # the carriers' adapters: their webhooks verified and their status queried
        self.carriers = CarrierDirectory()
        # click-to-calls through a carrier (with failover), the others over Asterisk
        self.carrier_dialer = CarrierDialer(self.store, self.carriers, self.breakers)
        self.dialer = DialerRouter(
            self.store,
            self.stasis.click_to_call if self.stasis is not None else None,
            self.carrier_dialer,
        )
        # several engines on the database: controls sent to the engine that owns a call,
        # the live calls of a dead engine ended, and (node.claim_queue) initiated calls
        # claimed by whichever engine has room
        self.node_link = NodeLink(self.store, settings.node)
        self.failover = NodeFailover(
            self.store, settings.node, interval=settings.node.heartbeat_interval
        )
        self.claim_queue: ClaimQueue | None = None
        queue: CallQueue | None = None
        if settings.node.claim_queue:
            queue = NoLocalClaims()  # stored for the other engines: this one cannot dial
            if self.stasis is not None:
                queue = self.claim_queue = ClaimQueue(
                    self.store,
                    self.dialer,
                    settings.node,
                    start_deadline=settings.calls.queued_start_deadline,
                    live_calls=self.store.journal.live_count,
                )
        self.use_cases = UseCases.over(
            self.store,
            carriers=self.carriers,
            dialer=self.dialer,
            controls=CallControls(self.ari) if self.ari is not None else None,
            events=self.events,
            recording_dir=settings.ari.recording_dir if settings.ari.enabled else None,
            queue=queue,
            owners=self.node_link,
        )
        self.node_link.serve(
            CommandRunner(self.store, self.use_cases.calls, self.use_cases.controls).run
        )
        self.metrics.watch_nodes(self._node_counts)
        if self.stasis is not None:  # agents' own calls go through the same call use cases
            self.stasis.agent_door.serve(self.use_cases.calls)
        # FastAGI: the admin's dialplan sends callers to AGI(agi://HOST:PORT/ivr/MENU); its
        # callers' final quality rows are written behind, in batches, by its own writer
        self.agi_quality = (
            QualityWriter(self.store, settings.quality) if settings.quality.enabled else None
        )
        self.agi_ivr = AgiIvr(
            self.store,
            self.store.ivr.book,
            settings.calls,
            erp=erp,
            admission=self.ivr_admission,
            metrics=self.metrics,
            quality=self.agi_quality,
        )
        self.agi: AgiServer | None = (
            AgiServer.from_settings(
                settings.agi, self.agi_ivr.run_call, health=self.health, metrics=self.metrics
            )
            if settings.agi.enabled
            else None
        )
        self.state = ApiState(
            use_cases=self.use_cases,
            database=self.db,
            health=self.health,
            metrics=self.metrics,
            openapi=openapi_document(),
            streams=StreamLimits(
                per_tenant=settings.api.max_event_streams_per_tenant,
                total=settings.api.max_event_streams,
            ),
        )
        api = settings.api
        self.api = ApiServer(
            self.state,
            socket_path=api.socket,
            socket_mode=api.socket_mode,
            tcp=(api.tcp.host, api.tcp.port) if api.tcp.enabled else None,
            max_body_bytes=api.max_body_bytes,
            metrics_token_required=api.tcp.metrics_token_required,
        )
        self._tasks: list[asyncio.Task[None]] = []
        self.database_ready = asyncio.Event()

    def _node_counts(self) -> dict[str, int]:
        """What this engine did for the others (``ctc_node_*_total``)."""
        claims = self.claim_queue
        return {
            "claimed": 0 if claims is None else claims.claimed,
            "requeued": 0 if claims is None else claims.requeued,
            "owner_lost": self.failover.ended,
            "failover_requeued": self.failover.requeued,
            "forwarded": self.node_link.forwarded,
            "served": self.node_link.served,
        }

    async def _open(self) -> None:
        for warning in exposure_warnings(self.settings):
            log.warning("config.exposure", warning=warning)
        if (cap := backlog_cap()) is not None:
            log.warning(
                "listen.backlog_capped",
                somaxconn=cap,
                wanted=LISTEN_BACKLOG,
                hint="a burst of callers or API clients past it waits 1 s or fails: "
                f"sysctl net.core.somaxconn={LISTEN_BACKLOG}",
            )
        self.health.set("database", "starting", "connecting")
        self.health.set("api", "starting")
        await self.events.start()
        await self.store.journal.start()
        await self.lookup_http.start()  # before the IVR doors that use it
        if self.ari is not None:
            await self.ari.start()  # its HTTP session: the API's in-call controls use it
        await self.api.start()  # a failure here closes what started (Lifecycle)
        self.health.set("api", "up", str(self.settings.api.socket))
        await self.loop_watch.start()
        self._tasks.append(asyncio.create_task(self._connect_database(), name="db-connect"))
        log.info("engine.started")

    def _database_unreachable(self, error: CtcError, retry_in: float) -> None:
        self.health.set("database", "down", str(error))
        log.warning("database.unreachable", error=str(error), retry_in=retry_in)

    async def _connect_database(self) -> None:
        await self.db.start()  # tries again with capped backoff until PostgreSQL answers
        migrations_dir = self.settings.database.migrations_dir or default_migrations_dir()
        try:
            status = await migration_status(self.db.url, Path(migrations_dir))
        except CtcError as exc:
            self.health.set("database", "down", f"cannot read migrations: {exc}")
            return
        if status.pending or status.changed:
            detail = (
                f"{len(status.pending)} migration(s) pending: run `ctc db migrate`"
                if status.pending
                else "an applied migration changed on disk"
            )
            self.health.set("database", "down", detail)
            log.error("database.schema_not_current", detail=detail)
            return
        self.health.set("database", "up")
        await self.notifier.start()  # first delivers what a previous run left in the outbox
        # before anything that writes events (forwarded controls, failover, the doors): they
        # hear every call's end and every outbound call's answer
        await self.billing.start()
        await self.agent_calls.start()
        await self.retention.start()  # its first prune comes a minute later
        await self.stats_compactor.start()
        await self.heartbeat.start()
        await self.node_link.start()  # controls other engines send for this one's calls
        await self.failover.start()  # its first look comes an interval later
        await self.event_feed.start()  # other engines' events from now on (SSE, notifier)
        if self.transcripts is not None:
            await self.transcripts.start()  # first takes what a previous run left queued
        self.database_ready.set()
        log.info("database.connected")
        # carrier placements a previous run was cut off in: found at the carrier or placed
        self._tasks.append(asyncio.create_task(self._resume_placements(), name="carrier-resume"))
        if self.ami is not None:
            # before ARI: the first resync reads Asterisk's hangup records over AMI
            await self.ami.start()
        if self.stasis is not None:
            # after the database: the first thing the ARI link does is resync against it
            await self.stasis.start()
        if self.claim_queue is not None:  # after the link: it claims only while ARI is up
            await self.claim_queue.start()
        if self.agi is not None:
            if self.agi_quality is not None:
                await self.agi_quality.start()
            await self.agi_ivr.start()
            try:
                await self.agi.start()
            except CtcError as exc:  # e.g. the port is taken: the rest of the engine runs
                log.error("agi.unavailable", error=str(exc))
                self.health.set("agi", "down", str(exc), required=False)

    async def _resume_placements(self) -> None:
        """Once a cut-off placement is older than any this engine has in flight untracked
        (RESUME_AFTER), find or place its call."""
        await asyncio.sleep(RESUME_AFTER.total_seconds())
        try:
            await self.carrier_dialer.resume()
        except CtcError as exc:  # e.g. the database went away: the next start tries again
            log.error("carrier.resume_unavailable", error=str(exc))

    async def _close(self) -> None:
        """Stop in reverse order of start; each component's close is bounded and a no-op
        for one that never started."""
        await cancel_tasks(*self._tasks)
        await self.loop_watch.close()
        await self.api.close()  # ends open event streams
        if self.agi is not None:
            await self.agi.close()
            await self.agi_ivr.close()
            if self.agi_quality is not None:  # after the door: its last callers' rows
                await self.agi_quality.close()
        if self.claim_queue is not None:
            await self.claim_queue.close()  # claims nothing more: the doors are closing
        # after the API and the claimer (no new call), before the flows it routes to;
        # placements through carriers get a bounded grace
        await self.dialer.close()
        if self.ami is not None:
            await self.ami.close()  # first: its FullyBooted hook (restart_watch) uses the ARI link
        if self.stasis is not None:
            await self.stasis.close()
        if self.ari is not None:
            await self.ari.close()
        await self.lookup_http.close()  # after the IVR doors: no lookup is in flight
        await self.carriers.close()  # after the API: no webhook is in flight
        await self.node_link.close()  # after the API: no forwarded control is awaited
        await self.failover.close()
        await self.store.journal.close()  # live calls' last rows (written behind)
        await self.billing.close()  # after the journal: the last ends are charged
        await self.agent_calls.close()  # the same: the last ends are logged
        await self.retention.close()  # a batch in flight rolls back
        await self.stats_compactor.close()
        await self.heartbeat.close()  # marks this node stopped
        await self.event_feed.close()
        if self.transcripts is not None:
            await self.transcripts.close()  # a decode cut off is taken up after its lease
        await self.notifier.close()  # after what writes events, before the database
        await self.events.close()
        await self.db.close()
        log.info("engine.stopped")


async def run_until_signalled(settings: Settings) -> None:
    """Run the engine until SIGTERM or SIGINT, then shut down gracefully."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        async with Engine(settings):
            settle_heap()  # the process's start-up heap, now complete, out of the GC's way
            await stop.wait()
            log.info("engine.stopping")
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
