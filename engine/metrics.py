"""Prometheus metrics, on a registry of our own (so tests can build several engines).

One way to register: every metric is an attribute of :class:`Metrics`, made in its
constructor on its registry, named by Prometheus's conventions (base units, ``_total``
counters, ``_seconds`` durations, labels whose values are a small fixed set). Components
are handed the :class:`Metrics` (``metrics=``) and count what they do; what a component
already knows (a queue's length, a pool's use, a link's state) is read when Prometheus
scrapes, by a function given to a gauge (:meth:`Metrics.watch_journal` and the other
``watch_*`` methods) or by a health listener, so it costs nothing between scrapes.

**Hot paths.** Per-call counting goes through label children bound once, when the engine
is built (:class:`CallMetrics`, :class:`IvrDoorMetrics`, :class:`WebhookFailures`): a call
costs a dict look-up and an increment, no ``labels()`` (which builds a key and takes the
metric's lock), and keeps nothing but one dict entry while the call is active (measured: the
counting of one IVR call, 2 keys included, is ~7 µs, against 1.7-2.9 ms of engine CPU per
call in ``bench/ivr.py``). prometheus_client's increment takes a ``threading.Lock``; on the
one event-loop thread it is never contended, so it never waits.
Every labelled child that can exist is made up front, at 0, so a rate or an alert has a
series from the first scrape (Prometheus: "initialize your metrics").

**Node identity: an info metric, not a label on every series.** Which engine a series comes
from is the scraper's business: Prometheus attaches ``instance`` (and ``job``) to every
series it scrapes, and a constant label repeated on every series of the process would only
duplicate it (and clash with relabelling). So the engine says who it is once,
``ctc_node_info{node="…",version="…"} 1``, which a query joins where it wants the name
(``… * on(instance) group_left(node) ctc_node_info``). When several engines share a
database each is one target; ``node`` is the engine's ``node.name`` (default the host
name). What the engines do for each other is counted per engine in
``ctc_node_calls_total{event}`` (calls claimed from the queue, handed back from a silent
node, ended or requeued for a dead one) and ``ctc_node_commands_total{direction}``
(controls forwarded to an owner, or carried out for another engine).

Scope of what this process can see: ``ctc_calls_active`` counts the calls this process took
(a call adopted after a restart is followed, and its end counted in ``ctc_calls_total``, but
it is not active here); the callback outbox is one table for every engine on the database,
so each reports the same backlog (aggregate with ``max``, not ``sum``).
"""

from __future__ import annotations

import math
import socket
import sys
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Final, Literal, Protocol, TypeAlias, get_args

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from engine import __version__
from engine.domain.call import CallStatus
from engine.domain.ivr import DtmfOutcome
from engine.domain.providers import ProviderType
from engine.health import ComponentStatus, HealthReport

__all__ = [
    "DOORS",
    "AgiRefusal",
    "CallMetrics",
    "Door",
    "IvrDoorMetrics",
    "IvrShedReason",
    "Metrics",
    "WebhookFailures",
    "WebhookRejection",
    "count_agi_refused",
]

AgiRefusal: TypeAlias = Literal[
    "capacity", "bad_request", "unknown_script", "unknown_tenant", "unknown_menu"
]
"""The ``reason`` label values of ``ctc_agi_refused_total``."""

IvrShedReason: TypeAlias = Literal["lagging", "slow_answers", "max_calls"]
"""The ``reason`` label values of ``ctc_ivr_shed_total``."""

Door: TypeAlias = Literal["click_to_call", "ari", "agi", "outbound", "other"]
"""The ``door`` label values: how a call came to the engine. ``click_to_call``: placed
through the API; ``ari`` and ``agi``: an inbound caller in the IVR through Stasis or
FastAGI (the same values as ``ctc_ivr_shed_total``'s); ``outbound``: a carrier's outbound
call; ``other``: an inbound session whose door its metadata does not name."""
DOORS: Final[tuple[Door, ...]] = ("click_to_call", "ari", "agi", "outbound", "other")
IVR_DOORS: Final[tuple[Door, ...]] = ("ari", "agi")

WebhookRejection: TypeAlias = Literal[
    "unknown_provider",
    "malformed",
    "missing_signature",
    "bad_signature",
    "bad_token",
    "source_refused",
    "no_secret",
]
"""The ``reason`` label values of ``ctc_webhook_verification_failures_total``: a provider
(type) the engine does not know, a body that is not JSON or a form, and the verification's
refusals (:class:`~engine.errors.WebhookRejected`'s ``reason``): no signature, a signature
or JWT that does not verify, a wrong URL token, a source outside the allowed CIDRs, a
provider with no secret to check against."""
_SIGNATURE_REASONS: Final = (
    "malformed",
    "missing_signature",
    "bad_signature",
    "bad_token",
    "source_refused",
    "no_secret",
    "unknown_provider",
)

# the IVR input outcomes: the ``outcome`` label values of ``ctc_ivr_inputs_total``
IVR_INPUT_OUTCOMES: Final = tuple(outcome.value for outcome in DtmfOutcome)

_LATENCY_BUCKETS: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)
_PAUSE_BUCKETS: Final = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)


class _Backlog(Protocol):
    """What :meth:`Metrics.watch_journal` reads (engine.store.journal.CallJournal)."""

    @property
    def backlog(self) -> int: ...

    def backlog_age(self) -> float: ...


class _Pool(Protocol):
    """What :meth:`Metrics.watch_pool` reads (engine.store.database.Database)."""

    def pool_usage(self) -> tuple[int, int, int]: ...


class Metrics:
    def __init__(self, *, node: str | None = None) -> None:
        self.registry = CollectorRegistry()
        registry = self.registry
        self.node_info = Gauge(
            "ctc_node_info",
            "Which engine this is (always 1): join on instance for the node name",
            ["node", "version", "python"],
            registry=registry,
        )
        self.node_info.labels(
            node or socket.gethostname(),
            __version__,
            f"{sys.version_info.major}.{sys.version_info.minor}.{sys.version_info.micro}",
        ).set(1)
        self.http_requests = Counter(
            "ctc_http_requests_total",
            "Control API requests by route and status",
            ["method", "route", "status"],
            registry=registry,
        )
        self.http_latency = Histogram(
            "ctc_http_request_seconds",
            "Control API request latency",
            ["method", "route"],
            registry=registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
        )
        self.event_streams = Gauge(
            "ctc_event_streams",
            "Open GET /api/v1/events streams",
            registry=registry,
        )
        self.event_streams_refused = Counter(
            "ctc_event_streams_refused_total",
            "Event streams refused (429) by the cap reached (tenant or global)",
            ["scope"],
            registry=registry,
        )
        self.calls_initiated = Counter(
            "ctc_calls_initiated_total",
            "Click-to-call sessions created",
            ["tenant"],
            registry=registry,
        )
        # -- calls ---------------------------------------------------------------------------
        self.calls_entered = Counter(
            "ctc_calls_total",
            "Calls that entered each status, by door: a call counts once in every status it "
            "passes through (queued: calls taken; completed, busy, no_answer, failed, "
            "canceled, rejected: how they ended)",
            ["door", "status"],
            registry=registry,
        )
        self.calls_active = Gauge(
            "ctc_calls_active",
            "Calls this process took that have not ended, by door",
            ["door"],
            registry=registry,
        )
        self.calls = CallMetrics(self.calls_entered, self.calls_active)
        self.originate_latency = Histogram(
            "ctc_originate_latency_seconds",
            "Click-to-call: from the API accepting the call to Asterisk accepting the "
            "originate of the agent's leg (ARI POST /channels answered)",
            registry=registry,
            buckets=_LATENCY_BUCKETS,
        )
        self.answer_latency = Histogram(
            "ctc_answer_latency_seconds",
            "IVR: from the caller reaching the engine (StasisStart handled, AGI request "
            "read) to the call answered (the answer's reply came: ARI's answer request, AGI's "
            "EXEC Answer with its i option; both are raw answers), by door",
            ["door"],
            registry=registry,
            buckets=_LATENCY_BUCKETS,
        )
        self.ivr_inputs = Counter(
            "ctc_ivr_inputs_total",
            "IVR input decisions by door and outcome (option: a key chose an option; "
            "invalid: a key no option has; timeout: no key in time; collected: digits "
            "gathered)",
            ["door", "outcome"],
            registry=registry,
        )
        self.ivr_doors: dict[str, IvrDoorMetrics] = {
            door: IvrDoorMetrics(door, self.answer_latency, self.ivr_inputs) for door in IVR_DOORS
        }
        self.ivr_calls = Gauge(
            "ctc_ivr_calls",
            "IVR calls in progress, both doors (Stasis and FastAGI)",
            registry=registry,
        )
        self.ivr_shed = Counter(
            "ctc_ivr_shed_total",
            "New IVR callers handed back to the dialplan past capacity (CTC_IVR_STATUS="
            "OVERLOADED), by door and reason (lagging: the event loop ran later than "
            "ivr.shed_lag_ms; slow_answers: the calls in progress reached the limit set "
            "while Asterisk answered slower than ivr.shed_answer_ms; max_calls: "
            "ivr.max_calls calls in progress)",
            ["door", "reason"],
            registry=registry,
        )
        self.ivr_call_limit = Gauge(
            "ctc_ivr_call_limit",
            "The most IVR calls in progress the engine takes, set when Asterisk answered "
            "slower than ivr.shed_answer_ms (+Inf until then)",
            registry=registry,
        )
        self.ivr_call_limit.set(math.inf)
        _initialise(
            self.ivr_shed, ((door, why) for door in IVR_DOORS for why in get_args(IvrShedReason))
        )
        self.agi_refused = Counter(
            "ctc_agi_refused_total",
            "FastAGI connections or requests refused, by reason (capacity: past "
            "agi.max_connections; bad_request; unknown_script; unknown_tenant; unknown_menu)",
            ["reason"],
            registry=registry,
        )
        _initialise(self.agi_refused, ((reason,) for reason in get_args(AgiRefusal)))
        # -- links and components ------------------------------------------------------------
        self.component_up = Gauge(
            "ctc_component_up",
            "1 when a component reports up (api, database, journal, callbacks; the links "
            "to Asterisk: ari, ami, agi), 0 when down or starting; a component the engine "
            "does not run (e.g. ari disabled) has no series",
            ["component"],
            registry=registry,
        )
        self.component_reconnects = Counter(
            "ctc_component_reconnects_total",
            "Times a component came back up after being down (a link's reconnect)",
            ["component"],
            registry=registry,
        )
        # -- write-behind and the outbox -----------------------------------------------------
        self.journal_backlog = Gauge(
            "ctc_journal_backlog_rows",
            "Rows of live calls queued in memory for PostgreSQL (written behind)",
            registry=registry,
        )
        self.journal_backlog_age = Gauge(
            "ctc_journal_backlog_age_seconds",
            "Age of the oldest row not yet written by the journal (0: nothing waiting)",
            registry=registry,
        )
        self.outbox_pending = Gauge(
            "ctc_callback_outbox_pending",
            "Status callbacks waiting for delivery (shared by every engine on the database; "
            "read every 10 s)",
            registry=registry,
        )
        self.outbox_oldest_age = Gauge(
            "ctc_callback_outbox_oldest_age_seconds",
            "Age of the oldest status callback waiting for delivery (0: none)",
            registry=registry,
        )
        self.callback_deliveries = Counter(
            "ctc_callback_deliveries_total",
            "Status callback delivery attempts by outcome (delivered, retry, dead)",
            ["outcome"],
            registry=registry,
        )
        _initialise(self.callback_deliveries, (("delivered",), ("retry",), ("dead",)))
        # -- carriers' webhooks --------------------------------------------------------------
        self.webhook_failures_total = Counter(
            "ctc_webhook_verification_failures_total",
            "Carrier webhooks refused, by provider type and reason (unknown_provider; "
            "malformed: not JSON or a form; missing_signature, bad_signature, bad_token, "
            "source_refused, no_secret: verification failed)",
            ["provider", "reason"],
            registry=registry,
        )
        self.webhook_failures = WebhookFailures(self.webhook_failures_total)
        # -- the process: event loop, garbage collector, database pool -----------------------
        self.loop_lag = Histogram(
            "ctc_event_loop_lag_seconds",
            "How late the event loop ran a timer that was due (sampled every 100 ms)",
            registry=registry,
            buckets=_PAUSE_BUCKETS,
        )
        self.gc_pause = Histogram(
            "ctc_gc_pause_seconds",
            "Pauses of Python's cyclic garbage collector, by generation",
            ["generation"],
            registry=registry,
            buckets=_PAUSE_BUCKETS,
        )
        for generation in ("0", "1", "2"):  # engine/loop_watch.py observes these
            self.gc_pause.labels(generation)
        self.retention_pruned = Counter(
            "ctc_retention_pruned_total",
            "Rows and files the retention prune deleted, by kind (call_events, "
            "delivered_callbacks, recordings, expired_list_entries)",
            ["kind"],
            registry=registry,
        )
        self.retention_runs = Counter(
            "ctc_retention_runs_total",
            "Retention prune runs by outcome (ok, failed)",
            ["outcome"],
            registry=registry,
        )
        self.retention_last_run = Gauge(
            "ctc_retention_last_success_timestamp_seconds",
            "When the last retention prune that completed ended (unix time; 0: none yet)",
            registry=registry,
        )
        self.retention_last_duration = Gauge(
            "ctc_retention_last_duration_seconds",
            "How long the last completed retention prune took",
            registry=registry,
        )
        self.db_pool_connections = Gauge(
            "ctc_db_pool_connections",
            "PostgreSQL pool connections by state (in_use: borrowed; idle: open, free)",
            ["state"],
            registry=registry,
        )
        self.db_pool_max = Gauge(
            "ctc_db_pool_max_connections",
            "The pool's limit (database.max_size): in_use at this limit means callers wait",
            registry=registry,
        )

    # -- values read when scraped ------------------------------------------------------------

    def watch_health(self, health: HealthReport) -> None:
        """``ctc_component_up`` and ``ctc_component_reconnects_total`` follow ``health``."""
        watcher = _ComponentWatch(self.component_up, self.component_reconnects)
        health.add_listener(watcher.changed)

    def watch_journal(self, journal: _Backlog) -> None:
        """The write-behind journal's backlog, read at each scrape."""
        self.journal_backlog.set_function(lambda: journal.backlog)
        self.journal_backlog_age.set_function(journal.backlog_age)

    def watch_pool(self, database: _Pool) -> None:
        """The database pool's use, read at each scrape ((0, 0, 0) before it connects)."""
        self.db_pool_connections.labels("in_use").set_function(lambda: database.pool_usage()[0])
        self.db_pool_connections.labels("idle").set_function(lambda: database.pool_usage()[1])
        self.db_pool_max.set_function(lambda: database.pool_usage()[2])

    def watch_nodes(self, counts: Callable[[], Mapping[str, int]]) -> None:
        """What this engine did for the others (``counts``: name -> total so far, read at
        each scrape: ``claimed``, ``requeued``, ``owner_lost``, ``failover_requeued``,
        ``forwarded``, ``served``)."""
        self.registry.register(_NodeCollector(counts))

    def outbox_backlog(self, pending: int, oldest_age: float) -> None:
        """The callback outbox's backlog, as the notifier last read it."""
        self.outbox_pending.set(pending)
        self.outbox_oldest_age.set(oldest_age)


_NODE_CALL_EVENTS: Final = ("claimed", "requeued", "owner_lost", "failover_requeued")
_NODE_COMMANDS: Final = {"forwarded": "sent", "served": "carried_out"}


class _NodeCollector(Collector):
    """``ctc_node_calls_total`` and ``ctc_node_commands_total``, read from the node
    components' own counts at each scrape (:meth:`Metrics.watch_nodes`)."""

    def __init__(self, counts: Callable[[], Mapping[str, int]]) -> None:
        self._counts = counts

    def collect(self) -> Iterator[Metric]:
        counts = self._counts()
        calls = CounterMetricFamily(
            "ctc_node_calls",
            "Calls this engine claimed from the queue, handed back from a silent node, or "
            "ended (owner_lost) or requeued for a dead node",
            labels=["event"],
        )
        for event in _NODE_CALL_EVENTS:
            calls.add_metric([event], counts.get(event, 0))
        yield calls
        commands = CounterMetricFamily(
            "ctc_node_commands",
            "Controls and transfers sent to the engine that owns the call, or carried out "
            "here for another engine",
            labels=["direction"],
        )
        for key, direction in _NODE_COMMANDS.items():
            commands.add_metric([direction], counts.get(key, 0))
        yield commands

    def describe(self) -> Iterator[Metric]:
        return iter(())


class CallMetrics:
    """``ctc_calls_total`` and ``ctc_calls_active``, fed by the session repository.

    ``active`` counts only sessions :meth:`taken` by this process, so a call adopted after
    a restart never drives it below zero.
    """

    def __init__(self, entered: Counter, active: Gauge) -> None:
        self._entered = {
            (door, status.value): entered.labels(door, status.value)
            for door in DOORS
            for status in CallStatus
        }
        self._active = {door: active.labels(door) for door in DOORS}
        self._live: dict[uuid.UUID, Door] = {}

    def taken(self, session_id: uuid.UUID, door: Door) -> None:
        """A new session (queued) this process created."""
        self._live[session_id] = door
        self._active[door].inc()
        self._entered[door, CallStatus.QUEUED.value].inc()

    def entered(self, session_id: uuid.UUID, door: Door, status: CallStatus) -> None:
        """A session moved to ``status``."""
        self._entered[door, status.value].inc()
        if status.is_terminal and self._live.pop(session_id, None) is not None:
            self._active[door].dec()

    @property
    def live(self) -> int:
        """Sessions taken here and not ended (what ``ctc_calls_active`` sums to)."""
        return len(self._live)


class IvrDoorMetrics:
    """One IVR door's answer latency and input outcomes, bound once."""

    def __init__(self, door: Door, answer: Histogram, inputs: Counter) -> None:
        self.answer = answer.labels(door)
        self._inputs = {outcome: inputs.labels(door, outcome) for outcome in IVR_INPUT_OUTCOMES}

    def input_decided(self, outcome: str) -> None:
        child = self._inputs.get(outcome)
        if child is not None:
            child.inc()


class WebhookFailures:
    """``ctc_webhook_verification_failures_total``, bound once per provider and reason."""

    UNKNOWN: Final = "unknown"  # the provider label of an unknown provider type

    def __init__(self, counter: Counter) -> None:
        self._children = {
            (provider.value, reason): counter.labels(provider.value, reason)
            for provider in ProviderType
            for reason in _SIGNATURE_REASONS
        }
        self._children[self.UNKNOWN, "unknown_provider"] = counter.labels(
            self.UNKNOWN, "unknown_provider"
        )

    def count(self, provider: str, reason: WebhookRejection | str) -> None:
        child = self._children.get((provider, reason))
        if child is None:  # a provider type the engine does not know: never its own series
            child = self._children[self.UNKNOWN, "unknown_provider"]
        child.inc()


class _ComponentWatch:
    """A health listener: each component's up/down, and its returns to up."""

    def __init__(self, up: Gauge, reconnects: Counter) -> None:
        self._up = up
        self._reconnects = reconnects
        self._was_up: set[str] = set()

    def changed(self, name: str, status: ComponentStatus) -> None:
        """``name`` entered ``status`` (the report calls this on a change of state only)."""
        is_up = status.state == "up"
        self._up.labels(name).set(1 if is_up else 0)
        returns = self._reconnects.labels(name)  # a series at 0 from the first report
        if is_up:
            if name in self._was_up:
                returns.inc()
            self._was_up.add(name)


def _initialise(counter: Counter, label_sets: Iterable[tuple[str, ...]]) -> None:
    """Make each child at 0, so its series exists before the first event."""
    for labels in label_sets:
        counter.labels(*labels)


def count_agi_refused(metrics: Metrics | None, reason: AgiRefusal) -> None:
    """One FastAGI connection or request refused (the server's and the IVR's, one counter);
    nothing without metrics."""
    if metrics is not None:
        metrics.agi_refused.labels(reason).inc()
