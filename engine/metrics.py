"""Prometheus metrics, on a registry of our own (so tests can build several engines)."""

from __future__ import annotations

from typing import Literal, TypeAlias

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["AgiRefusal", "IvrShedReason", "Metrics", "count_agi_refused"]

AgiRefusal: TypeAlias = Literal[
    "capacity", "bad_request", "unknown_script", "unknown_tenant", "unknown_menu"
]
"""The ``reason`` label values of ``ctc_agi_refused_total``."""

IvrShedReason: TypeAlias = Literal["lagging", "max_calls"]
"""The ``reason`` label values of ``ctc_ivr_shed_total``."""


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.http_requests = Counter(
            "ctc_http_requests_total",
            "Control API requests by route and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.http_latency = Histogram(
            "ctc_http_request_seconds",
            "Control API request latency",
            ["method", "route"],
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
        )
        self.event_streams = Gauge(
            "ctc_event_streams",
            "Open GET /api/v1/events streams",
            registry=self.registry,
        )
        self.event_streams_refused = Counter(
            "ctc_event_streams_refused_total",
            "Event streams refused (429) by the cap reached (tenant or global)",
            ["scope"],
            registry=self.registry,
        )
        self.calls_initiated = Counter(
            "ctc_calls_initiated_total",
            "Click-to-call sessions created",
            ["tenant"],
            registry=self.registry,
        )
        self.callback_deliveries = Counter(
            "ctc_callback_deliveries_total",
            "Status callback delivery attempts by outcome (delivered, retry, dead)",
            ["outcome"],
            registry=self.registry,
        )
        self.ivr_calls = Gauge(
            "ctc_ivr_calls",
            "IVR calls in progress, both doors (Stasis and FastAGI)",
            registry=self.registry,
        )
        self.ivr_shed = Counter(
            "ctc_ivr_shed_total",
            "New IVR callers handed back to the dialplan past capacity (CTC_IVR_STATUS="
            "OVERLOADED), by door and reason (lagging: the event loop ran later than "
            "ivr.shed_lag_ms; max_calls: ivr.max_calls calls in progress)",
            ["door", "reason"],
            registry=self.registry,
        )
        self.agi_refused = Counter(
            "ctc_agi_refused_total",
            "FastAGI connections or requests refused, by reason (capacity: past "
            "agi.max_connections; bad_request; unknown_script; unknown_tenant; unknown_menu)",
            ["reason"],
            registry=self.registry,
        )
        self.loop_lag = Histogram(
            "ctc_event_loop_lag_seconds",
            "How late the event loop ran a timer that was due (sampled every 100 ms)",
            registry=self.registry,
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
        )
        self.gc_pause = Histogram(
            "ctc_gc_pause_seconds",
            "Pauses of Python's cyclic garbage collector, by generation",
            ["generation"],
            registry=self.registry,
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
        )
        self.retention_pruned = Counter(
            "ctc_retention_pruned_total",
            "Rows and files the retention prune deleted, by kind (call_events, "
            "delivered_callbacks, recordings)",
            ["kind"],
            registry=self.registry,
        )
        self.retention_runs = Counter(
            "ctc_retention_runs_total",
            "Retention prune runs by outcome (ok, failed)",
            ["outcome"],
            registry=self.registry,
        )
        self.retention_last_run = Gauge(
            "ctc_retention_last_success_timestamp_seconds",
            "When the last retention prune that completed ended (unix time; 0: none yet)",
            registry=self.registry,
        )
        self.retention_last_duration = Gauge(
            "ctc_retention_last_duration_seconds",
            "How long the last completed retention prune took",
            registry=self.registry,
        )
        self.component_up = Gauge(
            "ctc_component_up",
            "1 when a component reports up",
            ["component"],
            registry=self.registry,
        )


def count_agi_refused(metrics: Metrics | None, reason: AgiRefusal) -> None:
    """One FastAGI connection or request refused (the server's and the IVR's, one counter);
    nothing without metrics."""
    if metrics is not None:
        metrics.agi_refused.labels(reason).inc()
