"""IvrAdmission: new IVR callers are taken while the engine and Asterisk keep up, refused past
capacity."""

from __future__ import annotations

import math

import pytest
import structlog

from engine.app.ivr_admission import ANSWER_WINDOW, LIMIT_FLOOR, SHEDDING_QUIET, IvrAdmission
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


class Clock:
    """``time.monotonic()`` as the test sets it."""

    now = 100.0

    def __call__(self) -> float:
        return self.now


def limit_of(admission: IvrAdmission) -> float | None:
    """The admission's current limit on calls in progress (None: none set)."""
    if admission.call_limit is None:
        raise AssertionError("the admission watches no answers (shed_answer_ms=None)")
    return admission.call_limit.limit


def answer_all(admission: IvrAdmission, clock: Clock, *, delay: float, calls: int) -> None:
    """``calls`` callers reach the door now and are answered ``delay`` seconds after the
    engine asks (they stay in progress)."""
    admitted = clock.now
    for _ in range(calls):
        assert admission.admit("agi") is None
    clock.now += delay
    for _ in range(calls):
        admission.answered(admitted, admitted)


def answer_more(admission: IvrAdmission, clock: Clock, *, delay: float, answers: int) -> None:
    """``answers`` more answers, ``delay`` seconds each, of callers admitted just now."""
    clock.now += 0.1
    for _ in range(answers):
        admission.answered(clock.now, clock.now - delay)


def test_answers_in_time_set_no_limit_whatever_the_calls_in_progress() -> None:
    clock, metrics = Clock(), Metrics()
    admission = IvrAdmission(
        IvrSettings(shed_answer_ms=500), lag=Loop(), metrics=metrics, clock=clock
    )
    answer_all(admission, clock, delay=0.05, calls=300)
    assert limit_of(admission) is None
    assert admission.admit("agi") is None
    assert metrics.registry.get_sample_value("ctc_ivr_call_limit") == math.inf


def test_slow_answers_limit_the_calls_in_progress_and_new_callers_are_shed() -> None:
    clock, metrics = Clock(), Metrics()
    admission = IvrAdmission(
        IvrSettings(shed_answer_ms=500), lag=Loop(), metrics=metrics, clock=clock
    )
    with structlog.testing.capture_logs() as logs:
        answer_all(admission, clock, delay=2.0, calls=100)  # four times too slow: cut deepest
    assert limit_of(admission) == 50
    assert [(e["event"], e["limit"], e["answer_ms"]) for e in logs] == [
        ("ivr.limit_lowered", 50, 2000)
    ]
    assert admission.admit("ari") == "slow_answers"
    assert admission.in_progress == 100  # the callers already in a menu keep their place
    assert shed(metrics, "ari", "slow_answers") == 1
    assert metrics.registry.get_sample_value("ctc_ivr_call_limit") == 50
    for _ in range(51):
        admission.release()
    assert admission.admit("agi") is None  # below the limit again


@pytest.mark.parametrize(
    ("delay", "limit"),
    [(0.55, 80), (0.8, 62), (2.0, 50)],
    ids=["just-slow-shallowest", "as-slow-as-the-answers", "very-slow-deepest"],
)
def test_a_cut_is_as_deep_as_the_answers_are_slow_within_bounds(delay: float, limit: int) -> None:
    clock = Clock()
    admission = IvrAdmission(IvrSettings(shed_answer_ms=500), lag=Loop(), clock=clock)
    answer_all(admission, clock, delay=delay, calls=100)
    assert limit_of(admission) == limit


def test_answers_of_callers_taken_before_a_cut_do_not_cut_again() -> None:
    clock = Clock()
    admission = IvrAdmission(IvrSettings(shed_answer_ms=500), lag=Loop(), clock=clock)
    answer_all(admission, clock, delay=1.0, calls=200)  # all taken before the first cut
    assert limit_of(admission) == 100  # one cut, not a collapse
    for _ in range(110):
        admission.release()  # 90 in progress
    # callers taken after it are answered faster, still too slowly: cut again, as deep as
    # they are slow
    answer_more(admission, clock, delay=0.8, answers=ANSWER_WINDOW)
    assert limit_of(admission) == 56  # 90 in progress * 0.5 / 0.8


def test_the_limit_never_falls_below_the_floor_and_a_cut_to_it_again_is_not_logged() -> None:
    clock = Clock()
    admission = IvrAdmission(IvrSettings(shed_answer_ms=500), lag=Loop(), clock=clock)
    answer_all(admission, clock, delay=5.0, calls=LIMIT_FLOOR)
    with structlog.testing.capture_logs() as logs:
        answer_more(admission, clock, delay=5.0, answers=ANSWER_WINDOW)
        assert limit_of(admission) == LIMIT_FLOOR
        answer_more(admission, clock, delay=5.0, answers=ANSWER_WINDOW)
        assert limit_of(admission) == LIMIT_FLOOR
    assert [e["event"] for e in logs] == ["ivr.limit_lowered"]


def test_answers_in_time_at_the_limit_raise_it_a_tenth_of_a_call_each() -> None:
    clock = Clock()
    admission = IvrAdmission(IvrSettings(shed_answer_ms=500), lag=Loop(), clock=clock)
    answer_all(admission, clock, delay=2.0, calls=ANSWER_WINDOW)
    assert limit_of(admission) == ANSWER_WINDOW // 2
    for _ in range(ANSWER_WINDOW // 2):
        admission.release()  # at the limit: it binds
    assert admission.admit("agi") == "slow_answers"
    answer_more(admission, clock, delay=0.01, answers=ANSWER_WINDOW + 10)
    # the first ANSWER_WINDOW - 1 only fill the window; each of the other 11 adds a tenth
    assert limit_of(admission) == pytest.approx(ANSWER_WINDOW // 2 + 1.1)
    assert admission.admit("agi") is None


def test_answers_in_time_below_the_limit_leave_it_where_it_is() -> None:
    clock = Clock()
    admission = IvrAdmission(IvrSettings(shed_answer_ms=500), lag=Loop(), clock=clock)
    answer_all(admission, clock, delay=2.0, calls=100)
    assert limit_of(admission) == 50
    for _ in range(60):
        admission.release()  # 40 in progress: the limit does not bind
    answer_more(admission, clock, delay=0.01, answers=ANSWER_WINDOW * 2)
    assert limit_of(admission) == 50


def test_once_the_load_is_gone_the_limit_goes_too() -> None:
    clock, metrics = Clock(), Metrics()
    admission = IvrAdmission(
        IvrSettings(shed_answer_ms=500), lag=Loop(), metrics=metrics, clock=clock
    )
    answer_all(admission, clock, delay=2.0, calls=100)
    assert limit_of(admission) == 50
    for _ in range(75):
        admission.release()  # 25 in progress: half the limit
    answer_more(admission, clock, delay=0.01, answers=ANSWER_WINDOW)
    assert limit_of(admission) is None
    assert metrics.registry.get_sample_value("ctc_ivr_call_limit") == math.inf


def test_watching_answers_can_be_turned_off() -> None:
    clock = Clock()
    admission = IvrAdmission(IvrSettings(shed_answer_ms=None), lag=Loop(), clock=clock)
    answer_all(admission, clock, delay=10.0, calls=100)
    assert admission.call_limit is None
    assert admission.admit("agi") is None


def test_an_overload_is_logged_once_until_a_quiet_second_has_passed() -> None:
    clock = Clock()
    admission = IvrAdmission(IvrSettings(max_calls=1), lag=Loop(), clock=clock)
    with structlog.testing.capture_logs() as logs:
        assert admission.admit("agi") is None
        for _ in range(3):  # at the cap, each ended call lets one caller in between refusals
            assert admission.admit("agi") == "max_calls"
            admission.release()
            assert admission.admit("agi") is None
        clock.now += SHEDDING_QUIET
        admission.release()
        assert admission.admit("agi") is None
    assert [entry["event"] for entry in logs] == ["ivr.shedding", "ivr.shedding_ended"]
    assert logs[1]["shed"] == 3


def test_an_overload_whose_cause_changes_is_logged_again_with_the_new_cause() -> None:
    loop = Loop()
    admission = IvrAdmission(IvrSettings(max_calls=1, shed_lag_ms=100), lag=loop)
    with structlog.testing.capture_logs() as logs:
        assert admission.admit("agi") is None
        assert admission.admit("agi") == "max_calls"
        admission.release()
        loop.lag = 0.5
        assert admission.admit("agi") == "lagging"
    assert [(e["event"], e["reason"]) for e in logs] == [
        ("ivr.shedding", "max_calls"),
        ("ivr.shedding", "lagging"),
    ]
