"""The one lifecycle of long-lived components (engine.lifecycle)."""

from __future__ import annotations

import asyncio

import pytest
import structlog

from engine.errors import ClosedResourceError
from engine.lifecycle import Lifecycle, LifecycleState, cancel_tasks


class Component(Lifecycle):
    def __init__(self, *, fail_open: bool = False) -> None:
        self.calls: list[str] = []
        self.fail_open = fail_open

    async def _open(self) -> None:
        self.calls.append("open")
        if self.fail_open:
            raise OSError("port taken")

    async def _close(self) -> None:
        self.calls.append("close")


async def test_start_opens_once_and_returns_the_component() -> None:
    component = Component()
    assert component.lifecycle_state is LifecycleState.UNOPENED
    assert await component.start() is component
    assert component.is_open
    assert component.calls == ["open"]


async def test_starting_twice_is_a_misuse_with_a_clear_error() -> None:
    component = await Component().start()
    with pytest.raises(ClosedResourceError, match="Component is open: a component is started once"):
        await component.start()


async def test_a_closed_component_is_not_started_again() -> None:
    component = await Component().start()
    await component.close()
    with pytest.raises(ClosedResourceError, match="Component is closed"):
        await component.start()


async def test_close_is_idempotent_and_a_no_op_when_never_started() -> None:
    never = Component()
    await never.close()
    assert never.calls == []
    assert never.is_closed
    component = await Component().start()
    await component.close()
    await component.close()
    assert component.calls == ["open", "close"]


async def test_a_failed_open_cleans_up_and_ends_closed() -> None:
    component = Component(fail_open=True)
    with pytest.raises(OSError, match="port taken"):
        await component.start()
    assert component.calls == ["open", "close"]
    assert component.is_closed


async def test_async_with_opens_and_closes() -> None:
    async with Component() as component:
        assert component.is_open
    assert component.calls == ["open", "close"]


async def test_require_open_names_the_component_and_what_to_do() -> None:
    component = Component()
    with pytest.raises(
        ClosedResourceError, match="Component is unopened and cannot be used: start"
    ):
        component.require_open()
    await component.start()
    component.require_open()
    await component.close()
    with pytest.raises(ClosedResourceError, match="cannot be dialed: it was closed"):
        component.require_open("dialed")


async def test_cancel_tasks_ends_every_task_and_skips_none() -> None:
    started = asyncio.Event()

    async def forever() -> None:
        started.set()
        await asyncio.Event().wait()

    tasks = [asyncio.create_task(forever()) for _ in range(3)]
    await started.wait()
    await cancel_tasks(tasks[0], None, *tasks[1:])
    assert all(t.cancelled() for t in tasks)


async def test_cancel_tasks_logs_a_task_that_had_failed_instead_of_raising() -> None:
    async def broken() -> None:
        raise OSError("socket gone")

    task = asyncio.create_task(broken(), name="pruner")
    await asyncio.wait({task})
    with structlog.testing.capture_logs() as logs:
        await cancel_tasks(task)
    assert logs == [
        {
            "event": "task.failed",
            "task": "pruner",
            "error": "OSError: socket gone",
            "log_level": "error",
        }
    ]


async def test_cancel_tasks_does_not_swallow_the_callers_own_cancellation() -> None:
    release = asyncio.Event()

    async def slow_to_stop() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            await release.wait()  # cleanup that takes a while

    inner = asyncio.create_task(slow_to_stop())
    await asyncio.sleep(0)
    closer = asyncio.create_task(cancel_tasks(inner))
    await asyncio.sleep(0)
    closer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await closer  # at once: the task's slow cleanup goes on without its caller
    assert not inner.done()
    release.set()
    await asyncio.wait({inner})
