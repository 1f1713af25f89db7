"""Reading an engine's metrics the way Prometheus does, and what config/ asks of them.

:func:`scrape` fetches ``GET /metrics`` over the engine's Unix socket and parses it with
prometheus_client's text-format parser (which refuses a malformed line);
:func:`sample` reads one value from the engine's registry (0 for a series not there yet, so a
test compares before and after). :func:`selectors` finds the engine metrics (``ctc_*``) and
the label names a PromQL expression uses, for the alert rules (``config/alerts.rules.yml``)
and the dashboard (``config/grafana-dashboard.json``), whose expressions :func:`rule_exprs`
and :func:`dashboard_exprs` list.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from engine.daemon import Engine

__all__ = [
    "CONFIG",
    "dashboard_exprs",
    "families",
    "rule_exprs",
    "sample",
    "scrape",
    "selectors",
]

CONFIG = Path(__file__).resolve().parents[2] / "config"

# a metric name of ours, then its optional label matchers: ctc_x{a="b", c=~"d"}
_SELECTOR = re.compile(r"\b(ctc_[a-z0-9_]+)\b(\{[^}]*\})?")
_MATCHER = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)")


async def scrape(engine: Engine) -> str:
    """The engine's ``/metrics`` text, over its Unix socket."""
    connector = aiohttp.UnixConnector(path=str(engine.settings.api.socket))
    async with (
        aiohttp.ClientSession(connector=connector) as session,
        session.get("http://ctc/metrics") as resp,
    ):
        assert resp.status == 200, await resp.text()
        assert resp.content_type == "text/plain"
        return await resp.text()


def families(text: str) -> dict[str, Metric]:
    """The metric families of a scrape by the names of their samples (``x_total``,
    ``x_bucket``, ...) and by family name; the parser raises on a malformed line."""
    found: dict[str, Metric] = {}
    for family in text_string_to_metric_families(text):
        found[family.name] = family
        for one in family.samples:
            found[one.name] = family
    return found


def sample(engine: Engine, name: str, **labels: str) -> float:
    """One sample's value in the engine's registry; 0 when the series does not exist."""
    value = engine.metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


def selectors(expr: str) -> Iterator[tuple[str, set[str]]]:
    """Each engine metric ``expr`` names, with the label names its matchers use."""
    for match in _SELECTOR.finditer(expr):
        matchers = match.group(2) or ""
        yield match.group(1), {m.group(1) for m in _MATCHER.finditer(matchers)}


def rule_exprs(path: Path = CONFIG / "alerts.rules.yml") -> dict[str, str]:
    """Each alert's expression, by the alert's name."""
    document = yaml.safe_load(path.read_text())
    return {
        rule["alert"]: str(rule["expr"])
        for group in document["groups"]
        for rule in group["rules"]
        if "alert" in rule
    }


def dashboard_exprs(path: Path = CONFIG / "grafana-dashboard.json") -> dict[str, str]:
    """Each query of the dashboard (its panels' targets and its template variables), by
    where it is (``panel title/refId``, ``$variable``)."""
    dashboard: dict[str, Any] = json.loads(path.read_text())
    found: dict[str, str] = {}
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            found[f"{panel['title']}/{target['refId']}"] = target["expr"]
    for variable in dashboard.get("templating", {}).get("list", []):
        query = variable.get("query")
        if isinstance(query, dict):
            found[f"${variable['name']}"] = query["query"]
    return found
