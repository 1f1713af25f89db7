"""The ids of our channels, bridges and recordings: built and parsed by one module."""

from __future__ import annotations

import types
import uuid

import pytest

from engine.asterisk.naming import (
    IdKind,
    IvrStasisArgs,
    ParsedId,
    call_bridge_id,
    consent_playback_id,
    consult_bridge_id,
    current_leg_channel,
    ivr_bridge_id,
    ivr_stasis_args,
    ivr_target_channel_id,
    ivr_transfer_stasis_args,
    leg_channel_id,
    leg_channel_variables,
    leg_stasis_args,
    parse_id,
    parse_ivr_stasis_args,
    parse_leg_channel_id,
    recording_name,
    session_of_bridge,
    session_of_channel,
    session_of_consent_playback,
    session_of_recording,
    target_channel_id,
    target_channel_variables,
    target_stasis_args,
)
from engine.domain.click_to_call import Leg

SID, TID = uuid.uuid4(), uuid.uuid4()


@pytest.mark.parametrize(
    ("built", "parsed"),
    [
        (leg_channel_id(SID, Leg.AGENT), ParsedId(IdKind.LEG_CHANNEL, SID, leg=Leg.AGENT)),
        (leg_channel_id(SID, Leg.CUSTOMER), ParsedId(IdKind.LEG_CHANNEL, SID, leg=Leg.CUSTOMER)),
        (target_channel_id(SID, TID), ParsedId(IdKind.TARGET_CHANNEL, SID, transfer_id=TID)),
        (call_bridge_id(SID), ParsedId(IdKind.CALL_BRIDGE, SID)),
        (recording_name(SID), ParsedId(IdKind.CALL_BRIDGE, SID)),
        (consult_bridge_id(SID, TID), ParsedId(IdKind.CONSULT_BRIDGE, SID, transfer_id=TID)),
        (ivr_bridge_id(SID), ParsedId(IdKind.IVR_BRIDGE, SID)),
        (ivr_target_channel_id(SID, 2), ParsedId(IdKind.IVR_TARGET_CHANNEL, SID, target_number=2)),
        (consent_playback_id(SID), ParsedId(IdKind.CONSENT_PLAYBACK, SID)),
    ],
)
def test_every_kind_round_trips(built: str, parsed: ParsedId) -> None:
    assert parse_id(built) == parsed


def test_every_kind_is_built_and_parsed() -> None:
    kinds = {
        parsed.kind
        for value in (
            leg_channel_id(SID, Leg.AGENT),
            target_channel_id(SID, TID),
            call_bridge_id(SID),
            consult_bridge_id(SID, TID),
            ivr_bridge_id(SID),
            ivr_target_channel_id(SID, 1),
            consent_playback_id(SID),
        )
        if (parsed := parse_id(value)) is not None
    }
    assert kinds == set(IdKind)


def test_the_ids_on_the_wire() -> None:
    # what Asterisk, the session rows and the e2e tests see
    assert leg_channel_id(SID, Leg.AGENT) == f"c2c-{SID}-agent"
    assert target_channel_id(SID, TID) == f"c2c-{SID}-target-{TID}"
    assert call_bridge_id(SID) == recording_name(SID) == f"c2c-{SID}"
    assert consult_bridge_id(SID, TID) == f"c2c-{SID}-consult-{TID}"
    assert ivr_bridge_id(SID) == f"ivr-{SID}"
    assert ivr_target_channel_id(SID, 3) == f"ivr-{SID}-target-3"


def test_each_transfer_gets_its_own_channel_and_bridge() -> None:
    other = uuid.uuid4()
    assert target_channel_id(SID, TID) != target_channel_id(SID, other)
    assert consult_bridge_id(SID, TID) != consult_bridge_id(SID, other)


def test_ids_that_are_not_ours() -> None:
    for other in (
        "PJSIP/agent1-00000001",
        "1700000000.1",
        "bench-1",
        str(SID),
        "",
        "c2c-nope",
        "c2c-nope-agent",
        f"c2c-{SID}-boss",
        f"c2c-{SID}-target",  # the old, per-session form of a target
        f"c2c-nope-target-{TID}",
        f"c2c-{SID}-target-nope",
        f"c2c-{SID}-consult-nope",
        f"ivr-{SID}-target",
        f"ivr-{SID}-target-x",
        f"ivr-message-{SID}-abc",
    ):
        assert parse_id(other) is None, other


def test_what_the_resync_asks_of_an_id() -> None:
    agent, target = leg_channel_id(SID, Leg.AGENT), target_channel_id(SID, TID)
    assert parse_leg_channel_id(agent) == (SID, Leg.AGENT)
    assert parse_leg_channel_id(target) is None  # not an agent/customer leg
    # channels: legs and transfer targets of a click-to-call
    assert session_of_channel(agent) == session_of_channel(target) == SID
    assert session_of_channel(call_bridge_id(SID)) is None
    assert session_of_channel(ivr_target_channel_id(SID, 1)) is None
    # bridges: the call's and a transfer's consult bridge
    assert session_of_bridge(call_bridge_id(SID)) == SID
    assert session_of_bridge(consult_bridge_id(SID, TID)) == SID
    assert session_of_bridge(ivr_bridge_id(SID)) is None
    assert session_of_bridge(agent) is None
    # recordings: the call's
    assert session_of_recording(recording_name(SID)) == SID
    assert session_of_recording(consult_bridge_id(SID, TID)) is None


def test_the_current_leg_channel_is_the_stored_one_else_the_legs_own() -> None:
    def session(agent: str | None, customer: str | None) -> types.SimpleNamespace:
        return types.SimpleNamespace(id=SID, agent_channel_id=agent, customer_channel_id=customer)

    assert current_leg_channel(session(None, None), Leg.CUSTOMER) == f"c2c-{SID}-customer"
    assert current_leg_channel(session("x", "y"), Leg.AGENT) == "x"
    assert current_leg_channel(session("x", "y"), Leg.CUSTOMER) == "y"


def test_the_stasis_args_and_channel_variables_on_the_wire() -> None:
    # what the dialplan and Asterisk read: Stasis(ctc,<args>) and [ctc-hangup]'s variables
    assert leg_stasis_args(SID, Leg.AGENT) == f"c2c,{SID},agent"
    assert leg_stasis_args(SID, Leg.CUSTOMER) == f"c2c,{SID},customer"
    assert target_stasis_args(SID) == f"c2c,{SID},target"
    assert ivr_transfer_stasis_args() == "ivr-transfer"
    assert ivr_stasis_args(IvrStasisArgs("sales", "acme")) == "ivr,sales,acme"
    assert leg_channel_variables(SID, Leg.CUSTOMER) == {
        "CTC_SESSION_ID": str(SID),
        "CTC_LEG": "customer",
    }
    assert target_channel_variables(SID, TID) == {
        "CTC_SESSION_ID": str(SID),
        "CTC_LEG": "target",
        "CTC_TRANSFER_ID": str(TID),
    }


@pytest.mark.parametrize(
    "asked", [IvrStasisArgs(), IvrStasisArgs("sales"), IvrStasisArgs("sales", "acme")]
)
def test_the_ivr_stasis_args_round_trip(asked: IvrStasisArgs) -> None:
    # Asterisk hands the app arguments to StasisStart split at the commas
    assert parse_ivr_stasis_args(ivr_stasis_args(asked).split(",")) == asked


def test_the_ivr_stasis_args_default_the_menu_and_the_tenant() -> None:
    # the dialplan's Stasis(ctc,ivr,main) names no tenant
    assert parse_ivr_stasis_args(["ivr", "main"]) == IvrStasisArgs("main", "default")
    assert parse_ivr_stasis_args(["ivr"]) == IvrStasisArgs("main", "default")


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["ivr-transfer"],
        leg_stasis_args(SID, Leg.AGENT).split(","),
        target_stasis_args(SID).split(","),
    ],
)
def test_stasis_args_that_are_not_an_ivr_caller(args: list[str]) -> None:
    assert parse_ivr_stasis_args(args) is None


def test_a_consent_playback_names_its_call_only() -> None:
    assert session_of_consent_playback(consent_playback_id(SID)) == SID
    assert session_of_consent_playback(call_bridge_id(SID)) is None
    assert session_of_channel(consent_playback_id(SID)) is None
