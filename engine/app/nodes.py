"""The engines that share the database, as ``ctc nodes`` shows them, with the claim
queue: calls waiting for any engine, and the ones each engine claimed and has not dialled."""

from __future__ import annotations

import dataclasses

from engine.domain.nodes import NodeState, node_state
from engine.store.claims import ClaimRepository
from engine.store.nodes import NodeRepository
from engine.store.records import StoredNode

__all__ = ["NodeListing", "NodeService"]


@dataclasses.dataclass(frozen=True, slots=True)
class NodeListing:
    node: StoredNode
    state: NodeState
    claimed: int = 0  # queued calls it claimed and has not dialled yet


class NodeService:
    def __init__(
        self, nodes: NodeRepository, claims: ClaimRepository, *, stale_after: float
    ) -> None:
        self._nodes = nodes
        self._claims = claims
        self._stale_after = stale_after

    async def list(self) -> list[NodeListing]:
        """Every node that ever registered, by name, with its state now."""
        queue = await self._claims.counts()
        return [
            NodeListing(
                node,
                node_state(
                    heartbeat_age=node.heartbeat_age,
                    stopped=node.stopped_at is not None,
                    stale_after=self._stale_after,
                ),
                queue.claimed.get(node.name, 0),
            )
            for node in await self._nodes.list()
        ]

    async def unclaimed(self) -> int:
        """Queued calls no engine has claimed yet."""
        return (await self._claims.counts()).unclaimed
