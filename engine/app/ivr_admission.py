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

The loop is not always what runs out. On a host the engine shares with Asterisk (and
PostgreSQL), Asterisk falls behind first: at 160-200 calls/s on 2 cores the engine's loop
kept time while Asterisk's answer to a new caller took seconds and type-ahead callers
failed by the hundred (bench/ivr.py). So the admission also follows Asterisk, by the one
request every call makes first and that costs Asterisk the same each time: the answer.
:class:`CallLimit` keeps a limit on the calls in progress, additive increase and
multiplicative decrease on the median of the last answers' delays (the engine's answer
request to Asterisk's reply, nothing of the engine's own work before it): slower than
``ivr.shed_answer_ms``, the limit is cut towards what Asterisk answered in time; in time
while the limit binds, it grows again, and once the load is well below it, it goes. A cut
waits for the answers of callers taken after the previous cut (those before it cannot show
its effect), so one slow spell is one cut, not a collapse to the floor. Far past capacity
the refused callers alone keep Asterisk busy (each still costs it an INVITE, the door's
hand-back and a 503), and the limit then falls far and serves few (bench/ivr.py, FastAGI
at 300 calls/s on 2 cores: 34 a second, none failed, where the bare AGI server served 139
and failed 109; another run failed 168 with the first cut late). Holding the limit once
cuts stopped making the answers faster served more (94-128 a second) but let 47-115
callers in the menus fail.

A refused caller is not a failure of the engine and stores nothing: the door hands the
channel back to the dialplan with ``CTC_IVR_STATUS=OVERLOADED`` (dialplan/extensions.conf
sends it to ``[ctc-unavailable]``: a SIP 503 at once, which costs Asterisk least), counted in
``ctc_ivr_shed_total{door,reason}``, and the first and last refusal of an overload are
logged (not every one: logging is work the loop has no time for then; an overload ends
after :data:`SHEDDING_QUIET` without a refusal).
"""

from __future__ import annotations

import collections
import math
import statistics
import time
from collections.abc import Callable
from typing import Final

import structlog

from engine.config.settings import IvrSettings
from engine.metrics import IvrShedReason, Metrics

__all__ = ["FAILED", "OVERLOADED", "STATUS_VARIABLE", "CallLimit", "IvrAdmission"]

log = structlog.get_logger(__name__)

STATUS_VARIABLE: Final = "CTC_IVR_STATUS"
"""The channel variable the dialplan reads when the engine hands a caller back."""
OVERLOADED: Final = "OVERLOADED"
"""A new caller past capacity."""
FAILED: Final = "FAILED"
"""A call that failed inside the engine (its session ends ``failed``)."""

ANSWER_WINDOW: Final = 40
"""How many of the latest answers' delays :class:`CallLimit` judges by (their median)."""
LIMIT_FLOOR: Final = 10
"""The lowest limit :class:`CallLimit` cuts to: a slow Asterisk still gets callers."""
SHEDDING_QUIET: Final = 1.0
"""Seconds without a refusal before an overload is logged as ended (``ivr.shedding_ended``):
at a limit, every call that ends lets one caller in between refusals."""
_GROWTH: Final = 0.1  # limit added per answer in time while the limit binds
_DEEPEST_CUT: Final = 0.5  # a cut keeps at least this share of the calls in progress
_SHALLOWEST_CUT: Final = 0.8  # and at most this share


class CallLimit:
    """How many IVR calls may be in progress, judged by how fast Asterisk answers them.

    No limit while the answers come in time. Once the median of the last
    :data:`ANSWER_WINDOW` answers is slower than ``slow``, the limit becomes the calls in
    progress times ``slow / median`` (kept within half and four fifths of them, and not below
    :data:`LIMIT_FLOOR`). While answers come in time and the calls in progress reach the
    limit, each answer raises it by a tenth of a call; when they come in time with the calls
    in progress at half the limit or fewer, the load has gone and so does the limit. Times
    are ``time.monotonic()`` seconds, passed in so the decisions can be replayed.
    """

    def __init__(self, slow: float) -> None:
        self._slow = slow
        self._delays: collections.deque[float] = collections.deque(maxlen=ANSWER_WINDOW)
        self._cut_at = -math.inf
        self.limit: float | None = None

    def answered(self, admitted: float, delay: float, now: float, in_progress: int) -> float | None:
        """A caller admitted at ``admitted`` was answered at ``now``, ``delay`` seconds after
        the engine asked, with ``in_progress`` calls in progress; the median delay that
        lowered the limit, if it did."""
        if admitted <= self._cut_at:  # taken before the last cut: shows nothing of it
            return None
        self._delays.append(delay)
        if len(self._delays) < ANSWER_WINDOW:
            return None
        typical = statistics.median(self._delays)
        if typical > self._slow:
            return self._cut(typical, now, in_progress)
        if self.limit is not None:
            if in_progress + 1 >= self.limit:
                self.limit = round(self.limit + _GROWTH, 1)
            elif in_progress <= self.limit / 2:
                self.limit = None
        return None

    def _cut(self, typical: float, now: float, in_progress: int) -> float | None:
        share = min(_SHALLOWEST_CUT, max(_DEEPEST_CUT, self._slow / typical))
        ceiling = in_progress if self.limit is None else min(self.limit, in_progress)
        before, self.limit = self.limit, max(LIMIT_FLOOR, math.floor(ceiling * share))
        self._cut_at = now
        self._delays.clear()  # the next judgement: answers of callers taken after
        return typical if before is None or self.limit < before else None

    def admits(self, in_progress: int) -> bool:
        """Whether one more call may start with ``in_progress`` in progress."""
        return self.limit is None or in_progress < self.limit


class IvrAdmission:
    """Counts the IVR calls in progress (both doors) and refuses new ones past capacity.

    ``lag`` returns how late the event loop has been running, in seconds; the doors tell
    :meth:`answered` when Asterisk answered an admitted caller (``call_limit``, unless
    ``ivr.shed_answer_ms`` is None). ``clock`` is ``time.monotonic`` but in tests.
    """

    def __init__(
        self,
        settings: IvrSettings,
        *,
        lag: Callable[[], float],
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._shed_lag = settings.shed_lag_ms / 1000
        self._max_calls = settings.max_calls
        self._lag = lag
        self._metrics = metrics
        self._clock = clock
        self.call_limit: CallLimit | None = (
            CallLimit(settings.shed_answer_ms / 1000)
            if settings.shed_answer_ms is not None
            else None
        )
        self.in_progress = 0
        self._shedding: IvrShedReason | None = None
        self._shed_count = 0
        self._last_shed = -math.inf

    def admit(self, door: str) -> IvrShedReason | None:
        """Take a new caller (None; :meth:`release` when its call ends), or why not."""
        reason = self._refusal()
        if reason is not None:
            self._shed(door, reason)
            return reason
        if self._shedding is not None and self._clock() - self._last_shed >= SHEDDING_QUIET:
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

    def answered(self, admitted: float, asked: float) -> None:
        """Asterisk answered a caller admitted at ``admitted``; the engine asked for the
        answer at ``asked`` (both ``time.monotonic()``)."""
        if self.call_limit is None:
            return
        now = self._clock()
        lowered_by = self.call_limit.answered(admitted, now - asked, now, self.in_progress)
        limit = self.call_limit.limit
        if lowered_by is not None:
            log.warning(
                "ivr.limit_lowered",
                limit=limit,  # a whole number when cut
                in_progress=self.in_progress,
                answer_ms=round(lowered_by * 1000),
            )
        if self._metrics is not None:
            self._metrics.ivr_call_limit.set(math.inf if limit is None else limit)

    def _refusal(self) -> IvrShedReason | None:
        if self._max_calls is not None and self.in_progress >= self._max_calls:
            return "max_calls"
        if self.call_limit is not None and not self.call_limit.admits(self.in_progress):
            return "slow_answers"
        if self._lag() > self._shed_lag:
            return "lagging"
        return None

    def _shed(self, door: str, reason: IvrShedReason) -> None:
        if self._metrics is not None:
            self._metrics.ivr_shed.labels(door, reason).inc()
        if self._shedding != reason:  # an overload begins, or its cause changed
            log.warning(
                "ivr.shedding",
                reason=reason,
                in_progress=self.in_progress,
                limit=None if self.call_limit is None else self.call_limit.limit,
                lag_ms=round(self._lag() * 1000),
            )
        self._shedding = reason
        self._shed_count += 1
        self._last_shed = self._clock()
