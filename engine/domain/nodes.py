"""What a registered engine (node) is doing, judged from its row in ``engine_node``.

Pure: the store reads the row and the age of its last heartbeat by the database's clock;
this module names the state. A node that stopped gracefully says so; one whose heartbeat
is older than ``stale_after`` seconds is *stale* (dead, hung or cut off from the database:
from here they look the same); otherwise it is *alive*.

Whether an engine may take a node name: a name whose row is alive and belongs to another
process (host and pid differ) is taken; a stopped or stale row may be taken over, which
is what a restarted engine does with its own row. An engine restarted at once after a
crash finds its predecessor's row still alive: on the same host, a holder process that no
longer exists does not hold the name either.
"""

from __future__ import annotations

import enum

__all__ = ["NodeState", "name_taken", "node_state"]


class NodeState(enum.StrEnum):
    ALIVE = "alive"
    STALE = "stale"
    STOPPED = "stopped"


def node_state(*, heartbeat_age: float, stopped: bool, stale_after: float) -> NodeState:
    """The state of a node whose last beat is ``heartbeat_age`` seconds old."""
    if stopped:
        return NodeState.STOPPED
    return NodeState.STALE if heartbeat_age > stale_after else NodeState.ALIVE


def name_taken(
    state: NodeState,
    *,
    holder: tuple[str, int],
    claimant: tuple[str, int],
    holder_exists: bool = True,
) -> bool:
    """Whether a node row in ``state``, held by ``holder`` (host, pid), keeps ``claimant``
    (host, pid) from using its name; ``holder_exists`` says whether the holder's process
    runs (only known, and only asked, when both are on the same host)."""
    if state is not NodeState.ALIVE or holder == claimant:
        return False
    same_host = holder[0] == claimant[0]
    return not same_host or holder_exists
