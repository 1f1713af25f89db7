"""The ids of what the engine creates in Asterisk, built and parsed in one place.

Why one place: ids are derived from the session (and the transfer) they serve, so that
after the ARI socket reconnects the resync can map what Asterisk still has back to the live
sessions in PostgreSQL. Building an id in one module and parsing it in another only works
while both agree; here they are side by side and tested to round-trip.

What we name (``<session>`` and ``<transfer>`` are UUIDs, ``<leg>`` ``agent|customer``):

- ``c2c-<session>-<leg>``: a click-to-call's leg channel as dialed;
- ``c2c-<session>-target-<transfer>``: a transfer's target channel;
- ``c2c-<session>``: the call's mixing bridge, and the name of its recording;
- ``c2c-<session>-consult-<transfer>``: an attended transfer's consult bridge;
- ``c2c-<session>-<leg>-ringback``: the ringback played to a leg (a playback);
- ``c2c-<session>-consent``: the recording-consent announcement played on the call's
  bridge, to both parties, before its recording starts (a playback);
- ``ivr-<session>``: the bridge of an IVR call transferred over ARI;
- ``ivr-<session>-target-<n>``: the n-th target channel an ARI IVR call rang;
- ``ivr-message-<call>-<tag>``: a message an IVR caller left (a recording);
- ``ivr-<uuid>``: an ARI IVR prompt (a playback; never parsed).

What a channel carries into Stasis (the app arguments) and into the dialplan (channel
variables) is named here too, because the dialplan reads it back (``[ctc-hangup]`` in
``dialplan/extensions.conf`` files a leg's hangup under ``CTC_SESSION_ID``):

- ``c2c,<session>,<leg>`` and ``c2c,<session>,target``: the app arguments of a dialed leg
  and of a transfer target (:func:`leg_stasis_args`, :func:`target_stasis_args`);
- ``ivr,<menu>,<tenant>``: a caller the dialplan hands to the ARI IVR (``Stasis(ctc,ivr,
  main)``; the menu defaults to ``main``, the tenant to ``default``), read by
  :func:`parse_ivr_stasis_args`;
- ``ivr-transfer``: a target an ARI IVR call rings (routed by its channel id);
- ``agent,<number>,<tenant>``: an agent's own call out of ``[ctc-agents]``
  (``Stasis(ctc,agent,${EXTEN})``; the tenant defaults to ``default``), read by
  :func:`parse_agent_stasis_args`;
- ``CTC_SESSION_ID``, ``CTC_LEG`` (``agent|customer|target``) and, on a transfer target,
  ``CTC_TRANSFER_ID``: the channel variables (:func:`leg_channel_variables`,
  :func:`target_channel_variables`).

Which channel *is* a leg now is :func:`current_leg_channel`: a completed transfer's target
replaces the leg's own channel, and the session row stores it.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import uuid
from collections.abc import Sequence
from typing import Protocol

from engine.domain.click_to_call import Leg

__all__ = [
    "AgentStasisArgs",
    "IdKind",
    "IvrStasisArgs",
    "ParsedId",
    "call_bridge_id",
    "consent_playback_id",
    "consult_bridge_id",
    "current_leg_channel",
    "ivr_bridge_id",
    "ivr_message_name",
    "ivr_playback_id",
    "ivr_stasis_args",
    "ivr_target_channel_id",
    "ivr_transfer_stasis_args",
    "leg_channel_id",
    "leg_channel_variables",
    "leg_stasis_args",
    "parse_agent_stasis_args",
    "parse_id",
    "parse_ivr_stasis_args",
    "parse_leg_channel_id",
    "recording_name",
    "ringback_playback_id",
    "session_of_bridge",
    "session_of_channel",
    "session_of_consent_playback",
    "session_of_recording",
    "target_channel_id",
    "target_channel_variables",
    "target_stasis_args",
]

_CALL = "c2c-"
_IVR = "ivr-"
_TARGET = "-target-"
_CONSULT = "-consult-"
_CONSENT = "-consent"
_UUID_LENGTH = 36  # str(uuid.UUID(...))

# Stasis app arguments (the first one says which flow the channel belongs to)
_STASIS_CALL = "c2c"
_STASIS_IVR = "ivr"
_STASIS_IVR_TRANSFER = "ivr-transfer"
_STASIS_AGENT = "agent"
_TARGET_LEG = "target"  # CTC_LEG and the last app argument of a transfer target
_IVR_DEFAULT_MENU = "main"
_IVR_DEFAULT_TENANT = "default"


class IdKind(enum.Enum):
    LEG_CHANNEL = "leg channel"
    TARGET_CHANNEL = "transfer target channel"
    CALL_BRIDGE = "call bridge"  # also the call's recording
    CONSULT_BRIDGE = "consult bridge"
    IVR_BRIDGE = "IVR bridge"
    IVR_TARGET_CHANNEL = "IVR target channel"
    CONSENT_PLAYBACK = "consent announcement"


@dataclasses.dataclass(frozen=True, slots=True)
class ParsedId:
    """What an id of ours names: its kind, the session, and the part its kind has."""

    kind: IdKind
    session_id: uuid.UUID
    leg: Leg | None = None  # LEG_CHANNEL
    transfer_id: uuid.UUID | None = None  # TARGET_CHANNEL, CONSULT_BRIDGE
    target_number: int | None = None  # IVR_TARGET_CHANNEL


# ----------------------------------------------------------------------------- building


def leg_channel_id(session_id: uuid.UUID, leg: Leg) -> str:
    return f"{_CALL}{session_id}-{leg.value}"


def target_channel_id(session_id: uuid.UUID, transfer_id: uuid.UUID) -> str:
    return f"{_CALL}{session_id}{_TARGET}{transfer_id}"


def call_bridge_id(session_id: uuid.UUID) -> str:
    return f"{_CALL}{session_id}"


def recording_name(session_id: uuid.UUID) -> str:
    """The call's recording is named like the bridge it records."""
    return call_bridge_id(session_id)


def consult_bridge_id(session_id: uuid.UUID, transfer_id: uuid.UUID) -> str:
    return f"{_CALL}{session_id}{_CONSULT}{transfer_id}"


def ringback_playback_id(session_id: uuid.UUID, leg: Leg) -> str:
    return f"{leg_channel_id(session_id, leg)}-ringback"


def consent_playback_id(session_id: uuid.UUID) -> str:
    return f"{_CALL}{session_id}{_CONSENT}"


def ivr_bridge_id(session_id: uuid.UUID) -> str:
    return f"{_IVR}{session_id}"


def ivr_target_channel_id(session_id: uuid.UUID, number: int) -> str:
    return f"{_IVR}{session_id}{_TARGET}{number}"


def ivr_message_name(call: uuid.UUID | str, tag: str) -> str:
    """A caller's message: ``call`` is the session (ARI) or the channel's unique id (AGI)."""
    return f"{_IVR}message-{call}-{tag}"


def ivr_playback_id() -> str:
    return f"{_IVR}{uuid.uuid4()}"


@dataclasses.dataclass(frozen=True, slots=True)
class IvrStasisArgs:
    """What ``Stasis(ctc,ivr,<menu>,<tenant>)`` asks of the ARI IVR."""

    menu: str = _IVR_DEFAULT_MENU
    tenant_slug: str = _IVR_DEFAULT_TENANT


@dataclasses.dataclass(frozen=True, slots=True)
class AgentStasisArgs:
    """What ``Stasis(ctc,agent,<number>,<tenant>)`` asks: place the agent's call."""

    number: str
    tenant_slug: str = _IVR_DEFAULT_TENANT


def leg_stasis_args(session_id: uuid.UUID, leg: Leg) -> str:
    return f"{_STASIS_CALL},{session_id},{leg.value}"


def target_stasis_args(session_id: uuid.UUID) -> str:
    return f"{_STASIS_CALL},{session_id},{_TARGET_LEG}"


def ivr_stasis_args(args: IvrStasisArgs) -> str:
    """The app arguments the dialplan writes for an IVR caller (``ivr,<menu>,<tenant>``)."""
    return f"{_STASIS_IVR},{args.menu},{args.tenant_slug}"


def ivr_transfer_stasis_args() -> str:
    return _STASIS_IVR_TRANSFER


def leg_channel_variables(session_id: uuid.UUID, leg: Leg) -> dict[str, str]:
    """The channel variables of a dialed click-to-call leg (the dialplan's hangup handler
    reads ``CTC_SESSION_ID``)."""
    return {"CTC_SESSION_ID": str(session_id), "CTC_LEG": leg.value}


def target_channel_variables(session_id: uuid.UUID, transfer_id: uuid.UUID) -> dict[str, str]:
    """The channel variables of a transfer's target channel."""
    return {
        "CTC_SESSION_ID": str(session_id),
        "CTC_LEG": _TARGET_LEG,
        "CTC_TRANSFER_ID": str(transfer_id),
    }


class _HasLegChannels(Protocol):
    @property
    def id(self) -> uuid.UUID: ...
    @property
    def agent_channel_id(self) -> str | None: ...
    @property
    def customer_channel_id(self) -> str | None: ...


def current_leg_channel(session: _HasLegChannels, leg: Leg) -> str:
    """The channel that is ``leg`` of the session now: the one stored on the session (a
    completed transfer's target), else the leg's own ``c2c-<session>-<leg>``."""
    stored = session.agent_channel_id if leg is Leg.AGENT else session.customer_channel_id
    return stored or leg_channel_id(session.id, leg)


# ----------------------------------------------------------------------------- parsing


def _uuid(text: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(text)
    except ValueError:
        return None


# Every ARI event's ids are parsed by each flow that looks at it (a dozen times per event of
# a bridged call: ~2.5 % of the engine's CPU in bench/originate.py), always the same few ids
# of the calls up now: the answers (immutable) are kept for the most recent ids.
@functools.lru_cache(maxsize=8192)
def parse_id(value: str) -> ParsedId | None:
    """What an id of ours names; None for ids that are not ours (or not any of the kinds
    above: playbacks and messages are never parsed)."""
    if value.startswith(_CALL):
        prefix = _CALL
    elif value.startswith(_IVR):
        prefix = _IVR
    else:
        return None
    rest = value[len(prefix) :]
    session_id = _uuid(rest[:_UUID_LENGTH]) if len(rest) >= _UUID_LENGTH else None
    if session_id is None:
        return None
    suffix = rest[_UUID_LENGTH:]
    if prefix == _IVR:
        if not suffix:
            return ParsedId(IdKind.IVR_BRIDGE, session_id)
        number = suffix.removeprefix(_TARGET)
        if number != suffix and number.isdigit():
            return ParsedId(IdKind.IVR_TARGET_CHANNEL, session_id, target_number=int(number))
        return None
    if not suffix:
        return ParsedId(IdKind.CALL_BRIDGE, session_id)
    if suffix == _CONSENT:
        return ParsedId(IdKind.CONSENT_PLAYBACK, session_id)
    for leg in Leg:
        if suffix == f"-{leg.value}":
            return ParsedId(IdKind.LEG_CHANNEL, session_id, leg=leg)
    for marker, kind in ((_TARGET, IdKind.TARGET_CHANNEL), (_CONSULT, IdKind.CONSULT_BRIDGE)):
        if suffix.startswith(marker):
            transfer_id = _uuid(suffix[len(marker) :])
            if transfer_id is None:
                return None
            return ParsedId(kind, session_id, transfer_id=transfer_id)
    return None


def parse_ivr_stasis_args(args: Sequence[str]) -> IvrStasisArgs | None:
    """The IVR a channel entering Stasis with ``args`` asks for; None when the channel is
    not an IVR caller (a leg, a transfer target, or another app's)."""
    if not args or args[0] != _STASIS_IVR:
        return None
    menu = args[1] if len(args) > 1 else _IVR_DEFAULT_MENU
    tenant_slug = args[2] if len(args) > 2 else _IVR_DEFAULT_TENANT
    return IvrStasisArgs(menu, tenant_slug)


def parse_agent_stasis_args(args: Sequence[str]) -> AgentStasisArgs | None:
    """The call an agent's channel entering Stasis with ``args`` asks for; None when the
    channel is not an agent's own call. The number is as dialled (maybe empty: the door
    refuses it like any number that is not one)."""
    if not args or args[0] != _STASIS_AGENT:
        return None
    number = args[1].strip() if len(args) > 1 else ""
    tenant_slug = args[2].strip() if len(args) > 2 and args[2].strip() else _IVR_DEFAULT_TENANT
    return AgentStasisArgs(number, tenant_slug)


def _session_if(value: str, *kinds: IdKind) -> uuid.UUID | None:
    parsed = parse_id(value)
    return parsed.session_id if parsed is not None and parsed.kind in kinds else None


def parse_leg_channel_id(value: str) -> tuple[uuid.UUID, Leg] | None:
    """``c2c-<session>-<leg>`` back to its parts; None for any other channel."""
    parsed = parse_id(value)
    if parsed is None or parsed.leg is None:
        return None
    return parsed.session_id, parsed.leg


def session_of_channel(value: str) -> uuid.UUID | None:
    """The click-to-call a channel of ours (a leg or a transfer target) belongs to; None
    for channels that are not a click-to-call's."""
    return _session_if(value, IdKind.LEG_CHANNEL, IdKind.TARGET_CHANNEL)


def session_of_bridge(value: str) -> uuid.UUID | None:
    """The click-to-call a bridge of ours belongs to (its call bridge or a transfer's
    consult bridge); None for bridges that are not a click-to-call's."""
    return _session_if(value, IdKind.CALL_BRIDGE, IdKind.CONSULT_BRIDGE)


def session_of_consent_playback(value: str) -> uuid.UUID | None:
    """The click-to-call whose consent announcement ``value`` is; None for any other
    playback."""
    return _session_if(value, IdKind.CONSENT_PLAYBACK)


def session_of_recording(value: str) -> uuid.UUID | None:
    """The click-to-call a recording of ours belongs to; None for any other recording."""
    return _session_if(value, IdKind.CALL_BRIDGE)
