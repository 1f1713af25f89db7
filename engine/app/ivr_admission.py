"""Whether the IVR takes one more caller; past capacity the new caller goes back to the
dialplan at once and the callers already in a menu keep the engine.

Why: both doors run every call on one event loop. Past what the host gives it, the loop
runs late, and a late engine is what callers hear: Stasis callers wait seconds for the
answer, and a FastAGI caller's key pressed between two AGI commands is dropped by Asterisk
(it executes one command at a time and reads nothing ahead: measured, a second command
written before the first's answer is not executed). A lost key keeps that caller in the
menu longer (invalid-key prompt, retries), which loads the loop further: without a limit,
200 calls/s offered on 2 cores ended with most calls failing. So capacity is judged where
it runs out, the loop's lateness when it lasts (:class:`~engine.loop_watch.LoopWatch`,
sampled every 100 ms: a single late wake-up is no overload, and refusing callers for one
turned callers away at loads the door served in full), plus an optional cap on calls in
progress (``ivr.max_calls``).

A refused caller is not a failure of the engine and stores nothing: the door hands the
channel back to the dialplan with ``CTC_IVR_STATUS=OVERLOADED`` (dialplan/extensions.conf
sends it to ``[ctc-unavailable]``: a "try later" prompt), counted in
``ctc_ivr_shed_total{door,reason}``, and the first and last refusal of an overload are
logged (not every one: logging is work the loop has no time for then).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

import structlog

from engine.config.settings import IvrSettings
from engine.metrics import IvrShedReason, Metrics

__all__ = ["FAILED", "OVERLOADED", "STATUS_VARIABLE", "IvrAdmission"]

log = structlog.get_logger(__name__)

STATUS_VARIABLE: Final = "CTC_IVR_STATUS"
"""The channel variable the dialplan reads when the engine hands a caller back."""
OVERLOADED: Final = "OVERLOADED"
"""A new caller past capacity."""
FAILED: Final = "FAILED"
"""A call that failed inside the engine (its session ends ``failed``)."""


class IvrAdmission:
    """Counts the IVR calls in progress (both doors) and refuses new ones past capacity.

    ``lag`` returns how late the event loop has been running, in seconds.
    """

    def __init__(
        self,
        settings: IvrSettings,
        *,
        lag: Callable[[], float],
        metrics: Metrics | None = None,
    ) -> None:
        self._shed_lag = settings.shed_lag_ms / 1000
        self._max_calls = settings.max_calls
        self._lag = lag
        self._metrics = metrics
        self.in_progress = 0
        self._shedding: IvrShedReason | None = None
        self._shed_count = 0

    def admit(self, door: str) -> IvrShedReason | None:
        """Take a new caller (None; :meth:`release` when its call ends), or why not."""
        reason = self._refusal()
        if reason is not None:
            self._shed(door, reason)
            return reason
        if self._shedding is not None:
            log.warning("ivr.shedding_ended", shed=self._shed_count, reason=self._shedding)
            self._shedding, self._shed_count = None, 0
        self.in_progress += 1
        if self._metrics is not None:
            self._metrics.ivr_calls.set(self.in_progress)
        return None

    def release(self) -> None:
        """An admitted call ended."""
        if self.in_progress <= 0:
            raise RuntimeError("IvrAdmission.release() without an admitted call")
        self.in_progress -= 1
        if self._metrics is not None:
            self._metrics.ivr_calls.set(self.in_progress)

    def _refusal(self) -> IvrShedReason | None:
        if self._max_calls is not None and self.in_progress >= self._max_calls:
            return "max_calls"
        if self._lag() > self._shed_lag:
            return "lagging"
        return None

    def _shed(self, door: str, reason: IvrShedReason) -> None:
        if self._metrics is not None:
            self._metrics.ivr_shed.labels(door, reason).inc()
        if self._shedding is None:
            log.warning(
                "ivr.shedding",
                reason=reason,
                in_progress=self.in_progress,
                lag_ms=round(self._lag() * 1000),
            )
        self._shedding = reason
        self._shed_count += 1
