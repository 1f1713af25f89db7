"""The engines that share the database, as ``ctc nodes`` shows them."""

from __future__ import annotations

import dataclasses

from engine.domain.nodes import NodeState, node_state
from engine.store.nodes import NodeRepository
from engine.store.records import StoredNode

__all__ = ["NodeListing", "NodeService"]


@dataclasses.dataclass(frozen=True, slots=True)
class NodeListing:
    node: StoredNode
    state: NodeState


class NodeService:
    def __init__(self, nodes: NodeRepository, *, stale_after: float) -> None:
        self._nodes = nodes
        self._stale_after = stale_after

    async def list(self) -> list[NodeListing]:
        """Every node that ever registered, by name, with its state now."""
        return [
            NodeListing(
                node,
                node_state(
                    heartbeat_age=node.heartbeat_age,
                    stopped=node.stopped_at is not None,
                    stale_after=self._stale_after,
                ),
            )
            for node in await self._nodes.list()
        ]
