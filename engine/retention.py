"""The engine's periodic retention prune: a long-lived component over
:class:`~engine.app.retention.RetentionService`.

It runs a prune ``first_delay`` seconds after it starts (not at once: a restarting engine
first takes its calls back), then every ``retention.interval`` seconds, one run at a time.
With nothing configured to expire (every ``retention.*_days`` null) it runs nothing and
says so in health.

Health (component ``retention``, never required for readiness: calls do not need it):
``up`` with what the last run deleted, ``down`` with the error of a failed run (the
database away, a statement refused); the next interval tries again. Metrics:
``ctc_retention_pruned_total{kind}`` after every batch, ``ctc_retention_runs_total
{outcome}``, the end time and duration of the last completed run.

Closing cancels a run in progress: the batch in flight rolls back (what earlier batches
committed stays deleted) and the next run, in this engine or the next, starts again from
the oldest rows. Close is bounded by that cancellation.
"""

from __future__ import annotations

import time
from typing import Final

import structlog

from engine.app.retention import PruneKind, PruneReport, RetentionService
from engine.errors import describe
from engine.health import HealthReport
from engine.metrics import Metrics
from engine.periodic import Periodic

__all__ = ["COMPONENT", "RetentionPruner"]

log = structlog.get_logger(__name__)

COMPONENT: Final = "retention"
_FIRST_DELAY: Final = 60.0  # seconds after start before the first run


class RetentionPruner(Periodic):
    def __init__(
        self,
        service: RetentionService,
        *,
        interval: float,
        health: HealthReport,
        metrics: Metrics,
        first_delay: float = _FIRST_DELAY,
    ) -> None:
        super().__init__("retention", interval=interval, first_delay=first_delay)
        self._service = service
        self._health = health
        self._metrics = metrics
        self.runs = 0  # completed or failed, for tests and the health detail
        service.on_pruned = self._count

    async def _open(self) -> None:
        if self._service.policy.keeps_everything:
            self._health.set(COMPONENT, "up", "retention keeps everything", required=False)
            return
        # up, not starting: nothing is wrong while the first run waits (and "starting"
        # would show the whole engine degraded for that minute)
        detail = f"first prune {self._first_delay:g} s after start"
        self._health.set(COMPONENT, "up", detail, required=False)
        await super()._open()

    async def run_once(self) -> PruneReport | None:
        """One prune now; its outcome goes to health, metrics and the log (None: failed)."""
        started = time.time()
        try:
            report = await self._service.prune()
        except Exception as exc:  # any failure: reported, and the next interval tries again
            self.runs += 1
            self._metrics.retention_runs.labels("failed").inc()
            detail = f"last prune failed: {describe(exc)}"
            self._health.set(COMPONENT, "down", detail, required=False)
            log.error("retention.failed", error=describe(exc))
            return None
        self.runs += 1
        self._metrics.retention_runs.labels("ok").inc()
        self._metrics.retention_last_run.set(time.time())
        self._metrics.retention_last_duration.set(report.seconds)
        self._health.set(COMPONENT, "up", _summary(report, started), required=False)
        return report

    def _count(self, kind: PruneKind, count: int) -> None:
        self._metrics.retention_pruned.labels(kind).inc(count)


def _summary(report: PruneReport, started: float) -> str:
    when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started))
    return (
        f"last prune {when}: {report.call_events} events, {report.delivered_callbacks}"
        f" delivered callbacks, {report.count('recordings')} recordings"
        f" in {report.seconds:.1f} s"
    )
