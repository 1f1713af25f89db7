"""The engine's metrics follow Prometheus's conventions and count what they say they count."""

from __future__ import annotations

import uuid

import prometheus_client
from prometheus_client.parser import text_string_to_metric_families

from engine.domain.call import CallStatus, Direction
from engine.health import HealthReport
from engine.metrics import DOORS, Metrics
from engine.store.sessions import door_of
from tests.support.metrics import families


def _value(metrics: Metrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def test_names_follow_prometheus_conventions() -> None:
    text = prometheus_client.generate_latest(Metrics().registry).decode()
    for family in text_string_to_metric_families(text):
        assert family.name.startswith("ctc_"), family.name
        assert family.documentation, family.name
        if family.type == "counter":  # the parser strips _total from a counter's family
            assert all(s.name.endswith(("_total", "_created")) for s in family.samples), family
        if family.type == "histogram":
            assert family.name.endswith("_seconds"), family.name  # base unit
        if family.type == "gauge":
            assert not family.name.endswith("_total"), family.name
            assert not family.name.endswith(("_ms", "_milliseconds")), family.name


def test_every_series_an_alert_rates_exists_at_zero_before_its_first_event() -> None:
    metrics = Metrics()
    for door in DOORS:
        for status in CallStatus:
            assert _value(metrics, "ctc_calls_total", door=door, status=status.value) == 0
        assert _value(metrics, "ctc_calls_active", door=door) == 0
    for door in ("ari", "agi"):
        assert _value(metrics, "ctc_answer_latency_seconds_count", door=door) == 0
        assert _value(metrics, "ctc_ivr_inputs_total", door=door, outcome="timeout") == 0
        assert _value(metrics, "ctc_ivr_shed_total", door=door, reason="lagging") == 0
    assert _value(metrics, "ctc_agi_refused_total", reason="capacity") == 0
    assert _value(metrics, "ctc_callback_deliveries_total", outcome="dead") == 0
    assert (
        _value(
            metrics,
            "ctc_webhook_verification_failures_total",
            provider="twilio",
            reason="malformed",
        )
        == 0
    )
    assert _value(metrics, "ctc_originate_latency_seconds_count") == 0


def test_node_info_names_the_node_once() -> None:
    found = families(prometheus_client.generate_latest(Metrics(node="pbx-a").registry).decode())
    (info,) = found["ctc_node_info"].samples
    assert info.value == 1
    assert info.labels["node"] == "pbx-a"
    assert info.labels["version"]
    # identity is not repeated as a label on the other series (the scraper adds instance)
    assert all(
        "node" not in s.labels
        for f in found.values()
        for s in f.samples
        if f != found["ctc_node_info"]
    )


def test_a_call_counts_once_in_each_status_it_enters_and_is_active_until_it_ends() -> None:
    metrics = Metrics()
    call = uuid.uuid4()
    metrics.calls.taken(call, "ari")
    metrics.calls.entered(call, "ari", CallStatus.CONNECTED)
    assert _value(metrics, "ctc_calls_active", door="ari") == 1
    metrics.calls.entered(call, "ari", CallStatus.COMPLETED)
    assert _value(metrics, "ctc_calls_total", door="ari", status="queued") == 1
    assert _value(metrics, "ctc_calls_total", door="ari", status="connected") == 1
    assert _value(metrics, "ctc_calls_total", door="ari", status="completed") == 1
    assert _value(metrics, "ctc_calls_active", door="ari") == 0
    assert metrics.calls.live == 0


def test_a_call_adopted_from_an_earlier_process_is_counted_but_never_drives_active_negative() -> (
    None
):
    metrics = Metrics()
    metrics.calls.entered(uuid.uuid4(), "click_to_call", CallStatus.COMPLETED)
    assert _value(metrics, "ctc_calls_total", door="click_to_call", status="completed") == 1
    assert _value(metrics, "ctc_calls_active", door="click_to_call") == 0


def test_the_door_of_a_session_is_its_direction_or_its_ivr_door() -> None:
    class Session:
        def __init__(self, direction: Direction, metadata: dict[str, str]) -> None:
            self.direction = direction
            self.metadata = metadata

    def door(direction: Direction, **metadata: str) -> str:
        return door_of(Session(direction, metadata))  # type: ignore[arg-type]

    assert door(Direction.CLICK_TO_CALL) == "click_to_call"
    assert door(Direction.OUTBOUND) == "outbound"
    assert door(Direction.INBOUND, door="ari") == "ari"
    assert door(Direction.INBOUND, door="agi") == "agi"
    assert door(Direction.INBOUND, door="smoke-signals") == "other"


def test_ivr_inputs_and_answers_are_counted_per_door() -> None:
    metrics = Metrics()
    agi = metrics.ivr_doors["agi"]
    agi.input_decided("timeout")
    agi.input_decided("option")
    agi.input_decided("no-such-outcome")  # ignored, never a new series
    agi.answer.observe(0.004)
    assert _value(metrics, "ctc_ivr_inputs_total", door="agi", outcome="timeout") == 1
    assert _value(metrics, "ctc_ivr_inputs_total", door="agi", outcome="option") == 1
    assert _value(metrics, "ctc_ivr_inputs_total", door="ari", outcome="timeout") == 0
    assert _value(metrics, "ctc_answer_latency_seconds_bucket", door="agi", le="0.005") == 1
    outcomes = {
        s.labels["outcome"]
        for s in metrics.ivr_inputs.collect()[0].samples
        if s.name.endswith("_total")
    }
    assert outcomes == {"option", "invalid", "timeout", "collected"}


def test_a_webhook_for_an_unknown_provider_type_is_one_series_whatever_its_name() -> None:
    metrics = Metrics()
    metrics.webhook_failures.count("evil-" + "x" * 50, "unknown_provider")
    metrics.webhook_failures.count("nope", "unknown_provider")
    metrics.webhook_failures.count("twilio", "malformed")
    name = "ctc_webhook_verification_failures_total"
    assert _value(metrics, name, provider="unknown", reason="unknown_provider") == 2
    assert _value(metrics, name, provider="twilio", reason="malformed") == 1
    providers = {s.labels["provider"] for s in metrics.webhook_failures_total.collect()[0].samples}
    assert "nope" not in providers


def test_a_component_is_up_or_down_and_a_return_to_up_is_one_reconnect() -> None:
    metrics = Metrics()
    health = HealthReport()
    health.set("database", "up")  # reported before the metrics watched: seen at once
    metrics.watch_health(health)
    assert _value(metrics, "ctc_component_up", component="database") == 1
    health.set("ari", "starting", "connecting")
    assert _value(metrics, "ctc_component_up", component="ari") == 0
    assert _value(metrics, "ctc_component_reconnects_total", component="ari") == 0
    health.set("ari", "up", "ws://a")  # the first connection is no reconnect
    health.set("ari", "up", "ws://a (resynced)")  # a new detail is no change of state
    assert _value(metrics, "ctc_component_reconnects_total", component="ari") == 0
    health.set("ari", "down", "socket closed")
    health.set("ari", "down", "retrying")
    assert _value(metrics, "ctc_component_up", component="ari") == 0
    health.set("ari", "up", "ws://a")
    assert _value(metrics, "ctc_component_up", component="ari") == 1
    assert _value(metrics, "ctc_component_reconnects_total", component="ari") == 1


def test_backlogs_and_pool_use_are_read_when_scraped() -> None:
    class Journal:
        backlog = 0
        age = 0.0

        def backlog_age(self) -> float:
            return self.age

    class Database:
        usage = (0, 0, 0)

        def pool_usage(self) -> tuple[int, int, int]:
            return self.usage

    metrics, journal, database = Metrics(), Journal(), Database()
    metrics.watch_journal(journal)
    metrics.watch_pool(database)
    journal.backlog, journal.age = 42, 3.5
    database.usage = (9, 1, 10)
    assert _value(metrics, "ctc_journal_backlog_rows") == 42
    assert _value(metrics, "ctc_journal_backlog_age_seconds") == 3.5
    assert _value(metrics, "ctc_db_pool_connections", state="in_use") == 9
    assert _value(metrics, "ctc_db_pool_connections", state="idle") == 1
    assert _value(metrics, "ctc_db_pool_max_connections") == 10
    metrics.outbox_backlog(7, 61.0)
    assert _value(metrics, "ctc_callback_outbox_pending") == 7
    assert _value(metrics, "ctc_callback_outbox_oldest_age_seconds") == 61.0
