"""This engine's registration among the engines that share the database: a heartbeat.

Every ``node.heartbeat_interval`` seconds the engine upserts its ``engine_node`` row (name,
version, host, pid, capacity, its Asterisk link's state); ``ctc nodes`` reads them, and the
database's clock ages them. A graceful stop marks the row stopped. A change of the Asterisk
link's state (health component ``ari``) beats at once: the first beat goes out before the
link is up, and the other engines count a node as a peer (the claim queue) only once its
row says ``up``.

Health (component ``node``, never required for readiness: calls do not need it): ``up``
naming the node, ``down`` when the last beat failed (the database away: the next interval
tries again) or when the name is taken — another process (other host or pid) beats under
the same name and its row is fresh. Then this engine does not beat (two engines flipping
one row would hide both), logs an error naming the holder, and checks again every
interval: once the other stops or goes stale, the name is this engine's.

Close is bounded: the loop is cancelled, then the stopped mark gets ``stop_timeout``
seconds; a mark that cannot be written leaves the row to go stale.
"""

from __future__ import annotations

import asyncio
import os
import socket
from datetime import UTC, datetime
from typing import Final

import structlog

from engine import __version__
from engine.config.settings import NodeSettings
from engine.domain.nodes import name_taken, node_state
from engine.errors import describe
from engine.health import HealthReport
from engine.periodic import Periodic
from engine.store.nodes import NodeRepository
from engine.store.records import NodeBeat

__all__ = ["COMPONENT", "NodeHeartbeat"]

log = structlog.get_logger(__name__)

COMPONENT: Final = "node"
_STOP_TIMEOUT: Final = 2.0


class NodeHeartbeat(Periodic):
    def __init__(
        self,
        nodes: NodeRepository,
        settings: NodeSettings,
        *,
        health: HealthReport,
        asterisk_enabled: bool,
        stop_timeout: float = _STOP_TIMEOUT,
        process: tuple[str, int] | None = None,
    ) -> None:
        """``process`` is the (host, pid) this engine is known by; default this host and
        process (tests give two heartbeats in one process different identities)."""
        # the first beat at once: the node is registered as soon as the engine starts
        super().__init__("node_heartbeat", interval=settings.heartbeat_interval, first_delay=0)
        self._nodes = nodes
        self._settings = settings
        self._health = health
        self._asterisk_enabled = asterisk_enabled
        self._stop_timeout = stop_timeout
        self._started_at = datetime.now(UTC)
        self._host, self._pid = process or (socket.gethostname(), os.getpid())
        self._holding = False  # whether the row is this engine's (it has beaten)
        self._refused_by: tuple[str, int] | None = None  # the other holder of the name
        self.beats = 0  # successful beats, for tests
        health.add_listener(self._on_health)

    @property
    def name(self) -> str:
        return self._settings.name

    def _on_health(self, component: str, status: object) -> None:
        if component == "ari" and self._asterisk_enabled:
            self.wake()  # the others see the link's new state now, not an interval later

    async def _open(self) -> None:
        self._health.set(COMPONENT, "starting", self.name, required=False)
        await super()._open()

    async def _close(self) -> None:
        await super()._close()
        if not self._holding:
            return
        try:
            await asyncio.wait_for(self._nodes.stopped(self._beat()), self._stop_timeout)
        except Exception as exc:  # the row goes stale instead; shutdown goes on
            log.warning("node.stop_mark_failed", node=self.name, error=describe(exc))

    async def run_once(self) -> bool:
        """One round of the loop: :meth:`beat_once`."""
        return await self.beat_once()

    async def beat_once(self) -> bool:
        """One beat now, unless another process holds the name; whether it was written."""
        beat = self._beat()
        try:
            if not self._holding and await self._held_by_other(beat):
                return False
            await self._nodes.beat(beat)
        except Exception as exc:  # any failure: reported, and the next interval tries again
            self._health.set(
                COMPONENT,
                "down",
                f"{self.name}: heartbeat failed: {describe(exc)}",
                required=False,
            )
            log.warning("node.heartbeat_failed", node=self.name, error=describe(exc))
            return False
        if not self._holding:
            log.info("node.registered", node=self.name, host=self._host, pid=beat.pid)
        self._holding = True
        self.beats += 1
        self._health.set(COMPONENT, "up", self.name, required=False)
        return True

    async def _held_by_other(self, beat: NodeBeat) -> bool:
        row = await self._nodes.get(beat.name)
        if row is None:
            return False
        state = node_state(
            heartbeat_age=row.heartbeat_age,
            stopped=row.stopped_at is not None,
            stale_after=self._settings.stale_after,
        )
        holder = (row.host, row.pid)
        claimant = (beat.host, beat.pid)
        exists = row.host != beat.host or _process_exists(row.pid)
        if not name_taken(state, holder=holder, claimant=claimant, holder_exists=exists):
            return False
        if holder != self._refused_by:  # said once per holder, not every interval
            self._refused_by = holder
            log.error("node.name_taken", node=beat.name, holder_host=row.host, holder_pid=row.pid)
        detail = (
            f"node name {beat.name!r} is taken by another engine (host {row.host}, pid "
            f"{row.pid}): set node.name"
        )
        self._health.set(COMPONENT, "down", detail, required=False)
        return True

    def _beat(self) -> NodeBeat:
        return NodeBeat(
            name=self.name,
            version=__version__,
            host=self._host,
            pid=self._pid,
            started_at=self._started_at,
            max_calls=self._settings.max_calls,
            asterisk=self._asterisk_state(),
        )

    def _asterisk_state(self) -> str:
        if not self._asterisk_enabled:
            return "disabled"
        status = self._health.get("ari")
        return "unknown" if status is None else status.state


def _process_exists(pid: int) -> bool:
    """Whether a process ``pid`` runs on this host (one we may not signal counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
