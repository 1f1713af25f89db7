"""The ``[ctc-agents]`` door: a call an agent places from the desk phone becomes a session.

The shipped dialplan sends an agent phone's outgoing call to
``Stasis(ctc,agent,<number>[,<tenant>])`` (``dialplan/extensions.conf``); the channel
arrives here unanswered. Who the agent is comes from the channel: its endpoint (the part of
``PJSIP/agent1-0000002a`` between the technology and the sequence number) is the session's
``agent_number``, and the caller ID the phone presented is kept as ``caller_number``. The
tenant is the Stasis argument (``default`` when the dialplan names none: one context per
tenant's phones, each writing its slug).

The call itself is the application's (:meth:`engine.app.calls.CallService.place_agent_dialled`):
the dialled number normalised to E.164 and the customer's leg decided as for a
click-to-call, a session with direction ``outbound`` stored and started. From there the
click-to-call flow (:mod:`engine.asterisk.flows.click_to_call`) carries it: the agent's
channel is answered and hears ringback, the customer is dialled, both are bridged and
recorded by the tenant's policy, and the events and callbacks are a click-to-call's.

A call the engine does not place goes back to the dialplan with ``CTC_AGENT_STATUS`` set,
as the IVR door hands callers back (the shipped ``[ctc-agent-refused]`` plays the prompt
and hangs up): ``REJECTED`` when the number was refused (the session ends ``rejected`` with
the reason), ``FAILED`` when the call could not be taken (unknown tenant, Asterisk or the
database not ready; no session).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from typing import Any, Final

import structlog

from engine.app.calls import AgentDialledCall, CallService
from engine.asterisk.flows.call_quality import LegFollower
from engine.asterisk.links.ari import AriClient, AriConflict, AriNotFound
from engine.asterisk.links.ari_router import AriEvent, AriEventRouter
from engine.asterisk.naming import AgentStasisArgs, parse_agent_stasis_args
from engine.config.settings import CallSettings
from engine.domain.call import CallStatus
from engine.errors import AriError, CtcError
from engine.lifecycle import Lifecycle, cancel_tasks

__all__ = ["FAILED", "REJECTED", "STATUS_VARIABLE", "AgentDoor", "endpoint_of_channel"]

log = structlog.get_logger(__name__)

#: The channel variable a call handed back to the dialplan carries, and its values.
STATUS_VARIABLE: Final = "CTC_AGENT_STATUS"
REJECTED: Final = "REJECTED"  # the number was refused: the session ended rejected
FAILED: Final = "FAILED"  # the engine could not take the call (no session)


def endpoint_of_channel(name: str) -> str:
    """The endpoint of a channel name: ``PJSIP/agent1-0000002a`` -> ``agent1``
    (``SIP/…`` and ``IAX2/…`` alike); the name itself when it has no such shape."""
    _, slash, rest = name.partition("/")
    if not slash or not rest:
        return name
    endpoint, dash, sequence = rest.rpartition("-")
    return endpoint if dash and endpoint and sequence else rest


class AgentDoor(Lifecycle):
    """Takes the agents' own calls from the Stasis app's router and places them through
    the call use cases (:meth:`serve` hands them over; until then, and without them, every
    such call is handed back ``FAILED``). ``quality`` (when calls are measured) is told the
    agent's channel of each call placed: its id is Asterisk's, not one that names the call.
    Closing cancels the calls being taken."""

    def __init__(
        self, ari: AriClient, settings: CallSettings, *, quality: LegFollower | None = None
    ) -> None:
        self._ari = ari
        self._settings = settings
        self._quality = quality
        self._calls: CallService | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def serve(self, calls: CallService) -> None:
        """Place the agents' calls through ``calls`` from now on."""
        self._calls = calls

    def subscribe(self, router: AriEventRouter) -> None:
        """Take, from ``router``, the channels entering ``Stasis(ctc,agent,...)``."""
        router.on("StasisStart", self._on_stasis_start)

    def _on_stasis_start(self, event: AriEvent) -> bool:
        args = parse_agent_stasis_args(event.get("args") or [])
        if args is None:
            return False
        channel = event.get("channel") or {}
        self._spawn(self.take(channel, args), name=f"agent-door-{channel.get('id', '')}")
        return True

    def _spawn(self, work: Coroutine[Any, Any, None], *, name: str) -> None:
        task = asyncio.create_task(work, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def take(self, channel: dict[str, Any], args: AgentStasisArgs) -> None:
        """Place the call the agent's ``channel`` dialled, or hand it back to the dialplan."""
        channel_id = str(channel.get("id", ""))
        endpoint = endpoint_of_channel(str(channel.get("name", "")))
        caller = str((channel.get("caller") or {}).get("number") or "") or None
        bound = log.bind(channel=channel_id, endpoint=endpoint, tenant=args.tenant_slug)
        calls = self._calls
        if calls is None:
            bound.warning("agent_door.not_serving")
            await self._hand_back(channel_id, FAILED)
            return
        call = AgentDialledCall(
            tenant_slug=args.tenant_slug,
            dialled=args.number,
            endpoint=endpoint,
            channel_id=channel_id,
            caller_number=caller,
            default_region=self._settings.agent_default_region,
        )
        try:
            session = await calls.place_agent_dialled(call)
        except CtcError as exc:  # unknown tenant, database or Asterisk not ready
            bound.warning("agent_door.not_placed", error=str(exc))
            await self._hand_back(channel_id, FAILED)
            return
        except Exception:  # a bug: the agent hears the apology, not silence
            bound.exception("agent_door.crashed")
            await self._hand_back(channel_id, FAILED)
            return
        if session.status is CallStatus.REJECTED:
            await self._hand_back(channel_id, REJECTED)
        elif self._quality is not None:
            self._quality.follow(channel_id, session.id, "agent", session.tenant_id)

    async def _hand_back(self, channel_id: str, status: str) -> None:
        """The agent's call goes on in the dialplan with ``CTC_AGENT_STATUS=status``; hung
        up if that cannot be done."""
        try:
            await self._ari.set_channel_var(channel_id, STATUS_VARIABLE, status)
            await self._ari.continue_in_dialplan(channel_id)
        except (AriNotFound, AriConflict):
            pass  # the agent hung up meanwhile
        except AriError as exc:
            log.warning("agent_door.hand_back_failed", channel=channel_id, error=str(exc))
            with contextlib.suppress(AriError):
                await self._ari.hangup(channel_id)

    async def _close(self) -> None:
        await cancel_tasks(*self._tasks)
