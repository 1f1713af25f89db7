"""IvrAdmission: new IVR callers are taken while the engine keeps up, refused past capacity."""

from __future__ import annotations

import pytest

from engine.app.ivr_admission import IvrAdmission
from engine.config.settings import IvrSettings
from engine.metrics import Metrics


class Loop:
    """The loop's measured lateness, as the test sets it."""

    lag = 0.0

    def __call__(self) -> float:
        return self.lag


def shed(metrics: Metrics, door: str, reason: str) -> float:
    return (
        metrics.registry.get_sample_value("ctc_ivr_shed_total", {"door": door, "reason": reason})
        or 0.0
    )


def test_callers_are_taken_while_the_loop_keeps_time() -> None:
    admission = IvrAdmission(IvrSettings(), lag=Loop())
    assert [admission.admit("agi") for _ in range(3)] == [None, None, None]
    assert admission.in_progress == 3


def test_new_callers_are_refused_while_the_loop_runs_late_and_taken_again_after() -> None:
    loop, metrics = Loop(), Metrics()
    admission = IvrAdmission(IvrSettings(shed_lag_ms=100), lag=loop, metrics=metrics)
    assert admission.admit("ari") is None
    loop.lag = 0.25
    assert admission.admit("ari") == "lagging"
    assert admission.admit("agi") == "lagging"
    assert admission.in_progress == 1  # the caller already in a menu keeps its place
    loop.lag = 0.01
    assert admission.admit("ari") is None
    assert (shed(metrics, "ari", "lagging"), shed(metrics, "agi", "lagging")) == (1, 1)


def test_max_calls_caps_the_calls_in_progress_and_an_ended_call_frees_its_place() -> None:
    metrics = Metrics()
    admission = IvrAdmission(IvrSettings(max_calls=2), lag=Loop(), metrics=metrics)
    assert (admission.admit("agi"), admission.admit("ari")) == (None, None)
    assert admission.admit("agi") == "max_calls"
    admission.release()
    assert admission.admit("agi") is None
    assert shed(metrics, "agi", "max_calls") == 1
    assert metrics.registry.get_sample_value("ctc_ivr_calls") == 2


def test_releasing_more_calls_than_were_taken_is_a_bug_said_so() -> None:
    admission = IvrAdmission(IvrSettings(), lag=Loop())
    with pytest.raises(RuntimeError, match="without an admitted call"):
        admission.release()
