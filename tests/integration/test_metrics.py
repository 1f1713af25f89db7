"""``/metrics`` of a running engine (no Asterisk): Prometheus can parse it, it serves every
metric the sample alert rules and Grafana dashboard in ``config/`` use, and what it counts
follows what the engine does (calls taken and ended, webhooks refused, the database pool)."""

from __future__ import annotations

import uuid

import pytest

from engine.daemon import Engine
from tests.support.calls import initiate_body
from tests.support.http import Api
from tests.support.metrics import (
    dashboard_exprs,
    families,
    rule_exprs,
    sample,
    scrape,
    selectors,
)
from tests.support.tenants import new_tenant, tenant_headers

C2C = "/api/v1/click-to-call"

# made by Prometheus for each target it scrapes, not by the engine
SCRAPER_METRICS = {"up"}


async def test_metrics_parse_as_prometheus_text_with_help_and_type_for_every_family(
    api_engine: Engine,
) -> None:
    text = await scrape(api_engine)
    found = families(text)  # raises on a line the text format does not allow
    ours = {family.name for family in found.values()}
    assert ours, text[:500]
    assert all(name.startswith("ctc_") for name in ours), sorted(ours)
    for family in found.values():
        assert family.documentation, family.name
        assert family.type in {"counter", "gauge", "histogram", "info"}, family
    node = found["ctc_node_info"].samples
    assert len(node) == 1
    assert node[0].value == 1.0
    assert node[0].labels["node"]


@pytest.mark.parametrize(
    ("where", "exprs"),
    [
        ("config/alerts.rules.yml", rule_exprs()),
        ("config/grafana-dashboard.json", dashboard_exprs()),
    ],
    ids=["alert-rules", "dashboard"],
)
async def test_every_metric_and_label_the_config_uses_is_served(
    api_engine: Engine, unix_api: Api, where: str, exprs: dict[str, str]
) -> None:
    await unix_api.call("GET", "/healthz")  # an API request is observed before the scrape
    found = families(await scrape(api_engine))
    missing: list[str] = []
    for place, expr in exprs.items():
        names = list(selectors(expr))
        assert names or set(expr.split("{")[0].split()) & SCRAPER_METRICS, (place, expr)
        for name, labels in names:
            family = found.get(name)
            if family is None:
                missing.append(f"{place}: {name}")
                continue
            served = {label for one in family.samples for label in one.labels}
            unknown = labels - served - {"instance", "job"}  # target labels: the scraper's
            if unknown:
                missing.append(f"{place}: {name} has no label {sorted(unknown)}")
    assert missing == [], f"{where} names what /metrics does not serve"


async def test_a_click_to_call_taken_and_ended_is_counted_by_door_and_status(
    api_engine: Engine, unix_api: Api
) -> None:
    door = {"door": "click_to_call"}
    queued = sample(api_engine, "ctc_calls_total", status="queued", **door)
    canceled = sample(api_engine, "ctc_calls_total", status="canceled", **door)
    active = sample(api_engine, "ctc_calls_active", **door)
    t = (await new_tenant(api_engine.store)).slug
    status, body, _ = await unix_api.call(
        "POST", f"{C2C}/initiate", json=initiate_body(), headers=tenant_headers(t)
    )
    assert status == 202, body
    assert sample(api_engine, "ctc_calls_total", status="queued", **door) == queued + 1
    assert sample(api_engine, "ctc_calls_active", **door) == active + 1
    # the same request again (Idempotency-Key) is not a second call
    status, _, _ = await unix_api.call(
        "POST",
        f"{C2C}/initiate",
        json=initiate_body(),
        headers=tenant_headers(t, **{"Idempotency-Key": "once"}),
    )
    status, _, _ = await unix_api.call(
        "POST",
        f"{C2C}/initiate",
        json=initiate_body(),
        headers=tenant_headers(t, **{"Idempotency-Key": "once"}),
    )
    assert sample(api_engine, "ctc_calls_total", status="queued", **door) == queued + 2
    status, ended, _ = await unix_api.call(
        "POST", f"{C2C}/sessions/{body['id']}/end", json={}, headers=tenant_headers(t)
    )
    assert status == 200, ended
    assert ended["status"] == "canceled"
    assert sample(api_engine, "ctc_calls_total", status="canceled", **door) == canceled + 1
    assert sample(api_engine, "ctc_calls_active", **door) == active + 1  # the keyed one


async def test_refused_webhooks_are_counted_by_provider_and_reason(
    api_engine: Engine, unix_api: Api
) -> None:
    t = (await new_tenant(api_engine.store)).slug
    name = "ctc_webhook_verification_failures_total"
    unknown = sample(api_engine, name, provider="unknown", reason="unknown_provider")
    malformed = sample(api_engine, name, provider="twilio", reason="malformed")
    status, _, _ = await unix_api.call(
        "POST",
        f"/api/v1/webhooks/voip/nobody-{uuid.uuid4().hex[:6]}",
        json={},
        headers=tenant_headers(t),
    )
    assert status == 404
    status, _, _ = await unix_api.call(
        "POST",
        "/api/v1/webhooks/voip/twilio",
        data=b"{not json",
        headers=tenant_headers(t, **{"Content-Type": "application/json"}),
    )
    assert status == 400
    unverified = sample(api_engine, name, provider="twilio", reason="unknown_provider")
    status, _, _ = await unix_api.call(
        "POST", "/api/v1/webhooks/voip/twilio", json={"CallSid": "CA1"}, headers=tenant_headers(t)
    )
    assert status == 401  # the tenant has no Twilio provider to verify it against
    assert sample(api_engine, name, provider="unknown", reason="unknown_provider") == unknown + 1
    assert sample(api_engine, name, provider="twilio", reason="malformed") == malformed + 1
    assert sample(api_engine, name, provider="twilio", reason="unknown_provider") == unverified + 1


async def test_database_pool_use_is_read_when_scraped(api_engine: Engine) -> None:
    found = families(await scrape(api_engine))
    limit = [s.value for s in found["ctc_db_pool_max_connections"].samples]
    assert limit == [float(api_engine.settings.database.max_size)]
    by_state = {s.labels["state"]: s.value for s in found["ctc_db_pool_connections"].samples}
    assert set(by_state) == {"in_use", "idle"}
    assert 0 <= by_state["in_use"] <= limit[0]
    assert by_state["in_use"] + by_state["idle"] >= api_engine.settings.database.min_size


async def test_components_report_up_and_the_journal_has_no_backlog_at_rest(
    api_engine: Engine,
) -> None:
    await api_engine.store.journal.flush()
    assert sample(api_engine, "ctc_component_up", component="database") == 1
    assert sample(api_engine, "ctc_component_up", component="api") == 1
    assert sample(api_engine, "ctc_journal_backlog_rows") == api_engine.store.journal.backlog
    assert sample(api_engine, "ctc_journal_backlog_age_seconds") == 0
