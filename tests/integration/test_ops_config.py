"""What an admin installs from ``config/`` is checked by the tools that will read it: the alert
rules by Prometheus's ``promtool`` (they parse, and each alert fires on the series it
watches and not on healthy ones), the Grafana dashboard by its structure, and the systemd
unit by ``systemd-analyze verify`` (scripts/bootstrap installs both tools)."""

from __future__ import annotations

import asyncio
import configparser
import json
import shutil
from pathlib import Path
from typing import Any

import yaml

from tests.support.ci import unavailable
from tests.support.metrics import CONFIG, selectors

RULES = CONFIG / "alerts.rules.yml"
DASHBOARD = CONFIG / "grafana-dashboard.json"
UNIT = CONFIG / "ctc-engine.service"

ENGINE = {"instance": "pbx1:8470", "job": "ctc-engine"}


async def _run(*argv: str) -> tuple[int, str]:
    """Run a tool; its exit status and its output (stdout and stderr together)."""
    tool = shutil.which(argv[0])
    if tool is None:
        unavailable(argv[0], "not installed (scripts/bootstrap installs it)")
    process = await asyncio.create_subprocess_exec(
        tool,
        *argv[1:],
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(process.communicate(), 60)
    return process.returncode or 0, out.decode(errors="replace")


def _alerts() -> list[dict[str, Any]]:
    document = yaml.safe_load(RULES.read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


# -- alert rules ------------------------------------------------------------------------------


async def test_the_alert_rules_pass_promtool() -> None:
    status, out = await _run("promtool", "check", "rules", str(RULES))
    assert status == 0, out
    assert f"SUCCESS: {len(_alerts())} rules found" in out, out


def test_every_alert_waits_has_a_severity_and_tells_an_admin_what_to_do() -> None:
    alerts = _alerts()
    names = [rule["alert"] for rule in alerts]
    assert len(names) == len(set(names)), names
    for rule in alerts:
        name = rule["alert"]
        assert "for" in rule, name
        assert rule["labels"]["severity"] in {"critical", "warning"}, name
        summary = rule["annotations"]["summary"]
        description = rule["annotations"]["description"]
        assert 10 < len(summary) < 140, (name, summary)
        assert len(description) > 60, (name, description)
        if name != "CtcEngineDown":  # `up` is the scraper's
            assert list(selectors(str(rule["expr"]))), name


def _series(name: str, values: str, **labels: str) -> dict[str, str]:
    matchers = ",".join(f'{k}="{v}"' for k, v in {**labels, **ENGINE}.items())
    return {"series": f"{name}{{{matchers}}}", "values": values}


def _buckets(name: str, slow_share: float, minutes: int, **labels: str) -> list[dict[str, str]]:
    """A histogram observed 100 times a minute, ``slow_share`` of them at 0.5 s (the rest
    at 5 ms)."""
    per_minute = 100
    slow = round(per_minute * slow_share)
    fast = per_minute - slow
    series = []
    for le, step in (("0.005", fast), ("0.1", fast), ("0.5", per_minute), ("+Inf", per_minute)):
        series.append(_series(f"{name}_bucket", f"0+{step}x{minutes}", le=le, **labels))
    series.append(_series(f"{name}_count", f"0+{per_minute}x{minutes}", **labels))
    return series


def _fires(alert: str, at: str, **labels: str) -> dict[str, Any]:
    severity = next(r["labels"]["severity"] for r in _alerts() if r["alert"] == alert)
    expected = {**labels, "severity": severity}
    return {"eval_time": at, "alertname": alert, "exp_alerts": [{"exp_labels": expected}]}


def _quiet(alert: str, at: str) -> dict[str, Any]:
    return {"eval_time": at, "alertname": alert, "exp_alerts": []}


# Each case: input series (one sample a minute) and what the alerts must say at given times.
_CASES: list[dict[str, Any]] = [
    {  # a link down for more than its `for:` fires; the one that stays up does not
        "input_series": [
            _series("ctc_component_up", "1 1 0 0 0 0", component="ari"),
            _series("ctc_component_up", "1 1 1 1 1 1", component="database"),
        ],
        "alert_rule_test": [
            _quiet("CtcAriLinkDown", "2m"),
            _fires("CtcAriLinkDown", "4m", component="ari", **ENGINE),
            _quiet("CtcDatabaseDown", "5m"),
        ],
    },
    {  # 5 % of IVR answers at 0.5 s: p99 over 100 ms; 0 % slow stays quiet
        "input_series": [
            *_buckets("ctc_answer_latency_seconds", 0.05, 15, door="ari"),
            *_buckets("ctc_answer_latency_seconds", 0.0, 15, door="agi"),
        ],
        "alert_rule_test": [
            _quiet("CtcAnswerLatencyHigh", "5m"),
            _fires("CtcAnswerLatencyHigh", "12m", door="ari", instance=ENGINE["instance"]),
        ],
    },
    {
        "input_series": _buckets("ctc_event_loop_lag_seconds", 0.05, 15),
        "alert_rule_test": [
            _fires("CtcEventLoopLagging", "12m", instance=ENGINE["instance"]),
        ],
    },
    {  # rows waiting 30 s for PostgreSQL
        "input_series": [_series("ctc_journal_backlog_age_seconds", "0 0 30 90 150 210")],
        "alert_rule_test": [
            _quiet("CtcJournalBacklog", "2m"),
            _fires("CtcJournalBacklog", "4m", **ENGINE),
        ],
    },
    {  # every connection in use for minutes; half in use is fine
        "input_series": [
            _series("ctc_db_pool_connections", "10x10", state="in_use"),
            _series("ctc_db_pool_max_connections", "10x10"),
            _series("ctc_db_pool_connections", "5x10", state="in_use", node="b"),
            _series("ctc_db_pool_max_connections", "10x10", node="b"),
        ],
        "alert_rule_test": [
            _fires("CtcDatabasePoolExhausted", "5m", **ENGINE),
        ],
    },
    {  # 50 more pending callbacks a minute from 150
        "input_series": [_series("ctc_callback_outbox_pending", "150+50x40")],
        "alert_rule_test": [
            _quiet("CtcCallbackOutboxGrowing", "10m"),
            _fires("CtcCallbackOutboxGrowing", "35m", job=ENGINE["job"]),
        ],
    },
    {
        "input_series": [_series("ctc_callback_outbox_oldest_age_seconds", "0+120x20")],
        "alert_rule_test": [
            _quiet("CtcCallbackOutboxStale", "5m"),
            _fires("CtcCallbackOutboxStale", "15m", job=ENGINE["job"]),
        ],
    },
    {  # two refused a minute: 30 in 15 minutes
        "input_series": [
            _series(
                "ctc_webhook_verification_failures_total",
                "0+2x20",
                provider="twilio",
                reason="malformed",
            ),
            _series(
                "ctc_webhook_verification_failures_total",
                "0x20",
                provider="unknown",
                reason="unknown_provider",
            ),
        ],
        "alert_rule_test": [
            _fires(
                "CtcWebhookVerificationFailures",
                "18m",
                provider="twilio",
                reason="malformed",
                instance=ENGINE["instance"],
            ),
        ],
    },
    {
        "input_series": [
            _series("ctc_ivr_shed_total", "0+5x20", door="agi", reason="lagging"),
            _series("ctc_ivr_shed_total", "0x20", door="ari", reason="lagging"),
        ],
        "alert_rule_test": [
            _fires(
                "CtcIvrShedding", "15m", door="agi", reason="lagging", instance=ENGINE["instance"]
            ),
        ],
    },
    {  # a third of the click-to-calls taken fail
        "input_series": [
            _series("ctc_calls_total", "0+30x40", door="click_to_call", status="queued"),
            _series("ctc_calls_total", "0+10x40", door="click_to_call", status="failed"),
            _series("ctc_calls_total", "0+30x40", door="ari", status="queued"),
            _series("ctc_calls_total", "0x40", door="ari", status="failed"),
        ],
        "alert_rule_test": [
            _fires("CtcCallsFailing", "30m", door="click_to_call", instance=ENGINE["instance"]),
        ],
    },
    {  # the ARI link came back 5 times within a few minutes
        "input_series": [
            _series("ctc_component_reconnects_total", "0 1 2 3 4 5 5 5", component="ari")
        ],
        "alert_rule_test": [
            _quiet("CtcLinkFlapping", "2m"),
            _fires("CtcLinkFlapping", "6m", component="ari", **ENGINE),
        ],
    },
]


async def test_each_alert_fires_on_the_series_it_watches_and_not_on_healthy_ones(
    tmp_path: Path,
) -> None:
    # the annotations are checked above and by `promtool check rules`; promtool's unit
    # tests compare them verbatim, so the rules under test here are the same without them
    document = yaml.safe_load(RULES.read_text())
    for group in document["groups"]:
        for rule in group["rules"]:
            rule.pop("annotations", None)
    rules = tmp_path / "rules.yml"
    rules.write_text(yaml.safe_dump(document))
    cases = [{"interval": "1m", **case} for case in _CASES]
    spec = tmp_path / "alerts_test.yml"
    spec.write_text(
        yaml.safe_dump({"rule_files": [str(rules)], "evaluation_interval": "1m", "tests": cases})
    )
    status, out = await _run("promtool", "test", "rules", str(spec))
    assert status == 0, out


# -- Grafana dashboard ------------------------------------------------------------------------


def test_the_dashboard_is_importable_and_every_panel_asks_the_chosen_prometheus() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "ctc-engine"
    assert dashboard["title"]
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    panels = dashboard["panels"]
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids)), ids
    queried = [panel for panel in panels if panel["type"] != "row"]
    assert len(queried) >= 15
    for panel in queried:
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["targets"], panel["title"]
        grid = panel["gridPos"]
        assert grid["x"] >= 0, panel["title"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        for target in panel["targets"]:
            assert 'instance=~"$instance"' in target["expr"], (panel["title"], target["expr"])


# -- systemd unit -----------------------------------------------------------------------------


def _unit() -> configparser.ConfigParser:
    """The unit as systemd reads its keys (repeatable keys keep the last value here)."""
    parser = configparser.ConfigParser(
        strict=False, interpolation=None, comment_prefixes=("#", ";")
    )
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(UNIT.read_text())
    return parser


async def test_the_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    # verify checks that ExecStart's programs exist: point them at this machine's python
    # and `true`, under the unit's own name (verify also checks the file name)
    text = UNIT.read_text()
    python = shutil.which("python3") or "/usr/bin/python3"
    text = text.replace("/opt/ctc-engine/.venv/bin/ctc", f"{python} -c pass")
    unit = tmp_path / UNIT.name
    unit.write_text(text)
    status, out = await _run("systemd-analyze", "verify", "--man=no", str(unit))
    assert status == 0, out
    assert out.strip() == "", out  # no warning either (an unknown key is only a warning)


def test_the_engine_gets_its_own_cpu_share_above_asterisk_and_stops_within_its_bound() -> None:
    service = _unit()["Service"]
    # its own cgroup (every service has one) weighted above Asterisk's default (100)
    assert int(service["CPUWeight"]) > 100
    assert int(service["Nice"]) < 0
    assert service["Slice"].endswith(".slice")
    assert int(service["LimitNOFILE"]) >= 65536
    assert service["Restart"] == "on-failure"
    # SIGTERM: the engine's bounded shutdown (each component's close, ~10 s) fits
    assert 20 <= int(service["TimeoutStopSec"]) <= 60
    assert service["KillMode"] == "mixed"
    # ProtectSystem=strict: the socket's directory and the recording spool (retention
    # deletes old recordings there) are the only places it may write
    assert service["ProtectSystem"] == "strict"
    assert service["ReadWritePaths"].split() == ["/run/ctc", "-/var/spool/asterisk/recording"]
