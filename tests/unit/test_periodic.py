"""The one loop of components that do a round of work every N seconds (engine.periodic)."""

from __future__ import annotations

import asyncio

import pytest
import structlog

from engine.periodic import Periodic
from tests.support.waiting import eventually

HOUR = 3600.0  # an interval no test waits out: rounds come from wake() or first_delay=0


class Rounds(Periodic):
    """Counts its rounds; the ones in ``failing`` raise, a round waits while ``hold`` is
    set (``held`` tells it is waiting)."""

    def __init__(
        self,
        *,
        interval: float = HOUR,
        first_delay: float | None = None,
        failing: frozenset[int] = frozenset(),
    ) -> None:
        super().__init__("rounds", interval=interval, first_delay=first_delay)
        self.rounds = 0
        self.failing = set(failing)
        self.hold: asyncio.Event | None = None
        self.held = asyncio.Event()
        self.cancelled = False

    async def run_once(self) -> int:
        self.rounds += 1
        if self.rounds in self.failing:
            raise OSError(f"round {self.rounds} failed")
        if self.hold is not None:
            self.held.set()
            try:
                await self.hold.wait()
            except asyncio.CancelledError:
                self.cancelled = True
                raise
        return self.rounds


async def test_a_first_delay_of_zero_runs_the_first_round_at_once() -> None:
    async with Rounds(first_delay=0) as component:
        await eventually(lambda: component.rounds == 1, what="the first round")


async def test_a_wake_up_runs_a_round_before_the_interval() -> None:
    async with Rounds() as component:  # the first round an hour after start
        assert component.rounds == 0
        component.wake()
        await eventually(lambda: component.rounds == 1, what="the woken round")
        component.wake()
        await eventually(lambda: component.rounds == 2, what="a second woken round")


async def test_a_failing_round_is_logged_with_the_name_and_error_and_the_next_round_runs() -> None:
    with structlog.testing.capture_logs() as logs:
        async with Rounds(first_delay=0, failing=frozenset({1})) as component:
            await eventually(lambda: logs, what="the failure logged")
            component.wake()
            await eventually(lambda: component.rounds == 2, what="the round after the failure")
    assert logs == [
        {"event": "rounds.failed", "error": "OSError: round 1 failed", "log_level": "warning"}
    ]


class Buggy(Periodic):
    """Its round is a bug (not trouble the engine expects), in a component that logs its node."""

    def __init__(self) -> None:
        super().__init__("buggy", interval=HOUR, first_delay=0, log_fields={"node": "n1"})

    async def run_once(self) -> None:
        raise KeyError("missing")


async def test_a_round_that_hits_a_bug_is_logged_with_its_traceback_and_the_fields() -> None:
    with structlog.testing.capture_logs() as logs:
        async with Buggy():
            await eventually(lambda: logs, what="the failure logged")
    [entry] = logs
    assert (entry["event"], entry["log_level"], entry["node"]) == ("buggy.failed", "error", "n1")
    assert entry["exc_info"] is True


async def test_a_wake_up_during_a_round_runs_the_next_round_when_it_ends() -> None:
    component = Rounds(first_delay=0)
    component.hold = hold = asyncio.Event()
    async with component:
        await component.held.wait()
        component.wake()
        component.hold = None  # the next round returns at once
        hold.set()
        await eventually(lambda: component.rounds == 2, what="the round the wake-up asked for")


async def test_close_cancels_a_round_in_progress_and_never_swallows_the_cancellation() -> None:
    component = Rounds(first_delay=0)
    component.hold = asyncio.Event()  # never set: the round waits until cancelled
    await component.start()
    await component.held.wait()
    async with asyncio.timeout(5):  # bounded: the round's cancellation ends the loop
        await component.close()
    assert component.cancelled
    assert component.rounds == 1
    assert component.is_closed


async def test_run_once_can_be_called_directly_without_the_loop() -> None:
    component = Rounds()
    assert await component.run_once() == 1
    assert await component.run_once() == 2
    assert not component.is_open


async def test_an_interval_that_is_not_positive_is_refused_with_the_component_named() -> None:
    with pytest.raises(ValueError, match="rounds: interval must be more than 0 seconds, got 0"):
        Rounds(interval=0)
    with pytest.raises(ValueError, match="rounds: first_delay must be 0 or more, got -1"):
        Rounds(interval=1, first_delay=-1)
