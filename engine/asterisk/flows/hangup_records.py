"""What Asterisk remembers of a leg's hangup while the engine was away.

Asterisk neither queues nor replays ARI events for an app whose socket is gone: a party
hanging up while the engine is down (crashed, restarting) or cut off is never reported.
The resync then finds the channel gone, and without more the call's end would be the
moment the engine came back, with no cause: billable talk time overstated by the whole
outage.

So every leg the engine dials carries a hangup handler (``calls.hangup_handler``, the
shipped dialplan's ``[ctc-hangup]``) that writes ``<epoch.ms>,<Q.850 cause>`` into AstDB
under ``ctc_end/<session>/<channel>``. AstDB lives on Asterisk's disk, so it outlasts the
engine. ARI cannot read AstDB (``DB()`` needs a channel), AMI can: the resync reads a
session's records with ``DBGetTree`` and ends the call at the recorded time with the
recorded cause. Where there is no record (AMI off or down, handler not installed,
Asterisk itself restarted) the end is marked estimated instead.

Without AMI no handler is set at all (nothing could read or delete its records).
Records are deleted by :meth:`HangupRecords.sweep`, which deletes only the records of
sessions that are over. A live session's records are never deleted, so a sweep cannot
race the resync that needs them, and deleting costs nothing on a call's own path.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

import structlog

from engine.asterisk.links.ami import AmiLink, AmiResponseError
from engine.errors import AmiError, ClosedResourceError

__all__ = [
    "FAMILY",
    "HANDLER_VARIABLE",
    "ChannelEnd",
    "HangupRecords",
    "parse_record",
]

log = structlog.get_logger(__name__)

#: The channel variable (a dialplan function) that pushes a hangup handler on a channel.
HANDLER_VARIABLE = "CHANNEL(hangup_handler_push)"
#: The AstDB family the ``[ctc-hangup]`` handler writes to.
FAMILY = "ctc_end"


@dataclass(frozen=True, slots=True)
class ChannelEnd:
    """When a channel ended and with which Q.850 cause, as Asterisk recorded it."""

    at: datetime
    cause: int | None


def parse_record(value: str) -> ChannelEnd | None:
    """``"1796006565.499,17"`` to a :class:`ChannelEnd`; None for anything else."""
    stamp, _, cause = value.partition(",")
    try:
        at = datetime.fromtimestamp(float(stamp), UTC)
    except (ValueError, OverflowError, OSError):
        return None
    return ChannelEnd(at, int(cause) if cause.strip().isdigit() else None)


def _session_of(key: str) -> uuid.UUID | None:
    """``/ctc_end/<session>/<channel>`` to the session id; None for any other key."""
    parts = key.strip("/").split("/")
    if len(parts) != 3 or parts[0] != FAMILY:
        return None
    try:
        return uuid.UUID(parts[1])
    except ValueError:
        return None


class HangupRecords:
    """Reads and deletes the ``ctc_end`` records over AMI (or does nothing without it)."""

    def __init__(
        self, ami: AmiLink | None, handler: str = "", *, connect_wait: float = 5.0
    ) -> None:
        self._ami = ami
        # the originate variables that give each leg the hangup handler at ``handler``
        # (context,exten,priority). Without AMI nothing could read or delete the records,
        # so no handler is set: they would only pile up in AstDB.
        self.leg_variables: dict[str, str] = (
            {HANDLER_VARIABLE: handler} if handler and ami is not None else {}
        )
        # only the first read waits for the link (the engine starts AMI and ARI together);
        # later reads while AMI is down fail at once instead of stalling a resync per call
        self._connect_wait: float | None = connect_wait

    async def read(self, session_id: uuid.UUID) -> dict[str, ChannelEnd]:
        """The recorded ends of ``session_id``'s channels, by channel id; {} when AMI
        cannot be asked (the caller then estimates)."""
        entries = await self._tree(str(session_id))
        if entries is None:
            return {}
        ends: dict[str, ChannelEnd] = {}
        for key, value in entries:
            # key: /ctc_end/<session>/<channel>
            channel = key.rpartition("/")[2]
            end = parse_record(value)
            if end is None:
                log.warning("hangup_records.unreadable", key=key, value=value[:100])
                continue
            ends[channel] = end
        return ends

    async def sweep(self, live: Callable[[], Awaitable[Iterable[uuid.UUID]]]) -> int:
        """Delete the records of every session that is not live; how many sessions.

        The records are listed before ``live()`` is asked: a session whose records are
        listed existed then, so if it is not live in the answer it is over for good.
        """
        entries = await self._tree(None)
        if not entries:
            return 0
        keep = set(await live())
        # key: /ctc_end/<session>/<channel>; a session part that is not a session id (e.g.
        # a copy of [ctc-hangup] on a channel without CTC_SESSION_ID) is never deleted by
        # prefix: an empty one would make DBDelTree delete the whole family
        sessions = {sid for key, _ in entries if (sid := _session_of(key)) is not None}
        deleted = 0
        for session in sorted(sessions - keep):
            if await self._delete(session):
                deleted += 1
        return deleted

    async def _tree(self, key: str | None) -> list[tuple[str, str]] | None:
        ami = self._ami
        if ami is None:
            return None
        try:
            if self._connect_wait is not None:
                wait, self._connect_wait = self._connect_wait, None
                await ami.wait_connected(wait)
            if key is None:
                response = await ami.action("DBGetTree", Family=FAMILY)
            else:
                response = await ami.action("DBGetTree", Family=FAMILY, Key=key)
        except (AmiError, ClosedResourceError) as exc:
            log.warning("hangup_records.unavailable", error=str(exc))
            return None
        return [
            (str(event.get("Key", "")), str(event.get("Val", "")))
            for event in response.get("events", ())
        ]

    async def _delete(self, session: uuid.UUID) -> bool:
        ami = self._ami
        if ami is None:
            return False
        try:
            await ami.action("DBDelTree", Family=FAMILY, Key=str(session))
        except AmiResponseError:
            return False  # already gone
        except (AmiError, ClosedResourceError) as exc:
            log.warning("hangup_records.delete_failed", session=session, error=str(exc))
            return False
        return True
