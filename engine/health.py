"""One health report that every component adds its status to.

Components call :meth:`HealthReport.set` as their state changes (database reachable,
ARI connected, ...). ``/healthz`` shows the whole report (:meth:`HealthReport.snapshot`) to
trusted callers and only each component's state (:meth:`HealthReport.states`) to others,
since details name paths, users and URLs; ``/readyz`` is ready only when every component
that is *required* for readiness is up.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any, Literal

__all__ = ["ComponentStatus", "HealthListener", "HealthReport", "State"]

State = Literal["up", "down", "starting"]


@dataclasses.dataclass(frozen=True, slots=True)
class ComponentStatus:
    state: State
    detail: str
    required: bool
    since: float

    def as_dict(self) -> dict[str, Any]:
        return {"state": self.state, "detail": self.detail, "required": self.required}


# called with a component's name and its new status when its state changes
HealthListener = Callable[[str, ComponentStatus], None]


class HealthReport:
    def __init__(self, *, node: str | None = None) -> None:
        self.node = node  # the engine's node name (settings node.name), shown by /healthz
        self._components: dict[str, ComponentStatus] = {}
        self._listeners: list[HealthListener] = []

    def add_listener(self, listener: HealthListener) -> None:
        """Call ``listener(name, status)`` whenever a component's state changes (a new
        detail with the same state is no change); called at once for every component
        reported so far. It runs inside :meth:`set`: it must be quick and not raise."""
        self._listeners.append(listener)
        for name, status in self._components.items():
            listener(name, status)

    def set(self, name: str, state: State, detail: str = "", *, required: bool = True) -> None:
        old = self._components.get(name)
        unchanged = old is not None and old.state == state
        since = old.since if old is not None and unchanged else time.monotonic()
        status = ComponentStatus(state, detail, required, since)
        self._components[name] = status
        if not unchanged:
            for listener in self._listeners:
                listener(name, status)

    def get(self, name: str) -> ComponentStatus | None:
        return self._components.get(name)

    @property
    def ready(self) -> bool:
        return all(c.state == "up" for c in self._components.values() if c.required)

    @property
    def overall(self) -> Literal["ok", "degraded", "down"]:
        states = [c.state for c in self._components.values()]
        if all(s == "up" for s in states):
            return "ok"
        return "degraded" if self.ready else "down"

    def snapshot(self) -> dict[str, dict[str, Any]]:
        return {name: c.as_dict() for name, c in sorted(self._components.items())}

    def states(self) -> dict[str, dict[str, Any]]:
        """Like :meth:`snapshot` with only each component's state (no detail)."""
        return {name: {"state": c.state} for name, c in sorted(self._components.items())}
