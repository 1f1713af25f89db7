"""What crosses PostgreSQL between engines for a forwarded control: the control as JSON,
and the owner's refusal turned back into the same error (pure)."""

from __future__ import annotations

import json
import uuid

import pytest

from engine.app.controls import (
    Hold,
    InCallControl,
    Mute,
    RecordingAction,
    RecordingControl,
    SendDtmf,
    Unhold,
    Unmute,
    decode_control,
    encode_control,
)
from engine.app.forwarding import error_result, raise_result
from engine.app.ports import MuteDirection
from engine.domain.click_to_call import Leg
from engine.errors import (
    CallRejected,
    Conflict,
    CtcError,
    FeatureUnavailable,
    IllegalTransition,
    InvalidInput,
    NotFound,
)

CONTROLS: list[InCallControl] = [
    Hold(Leg.AGENT),
    Unhold(Leg.CUSTOMER),
    Mute(Leg.AGENT, MuteDirection.IN),
    Unmute(Leg.CUSTOMER, MuteDirection.BOTH),
    SendDtmf(Leg.CUSTOMER, "12#"),
    RecordingControl(RecordingAction.PAUSE),
]


@pytest.mark.parametrize("control", CONTROLS, ids=lambda c: type(c).__name__)
def test_every_control_survives_the_trip_as_json(control: InCallControl) -> None:
    assert decode_control(json.loads(json.dumps(encode_control(control)))) == control


def test_an_unknown_or_malformed_control_is_invalid_input() -> None:
    with pytest.raises(InvalidInput, match="unknown forwarded control"):
        decode_control({"control": "teleport"})
    with pytest.raises(InvalidInput, match="malformed"):
        decode_control({"control": "hold", "leg": "third"})


ERRORS: list[CtcError] = [
    Conflict("session x is completed"),
    NotFound("session", "abc"),
    InvalidInput("target", "unknown endpoint"),
    IllegalTransition("queued", "connected"),
    CallRejected(uuid.uuid4(), "dnc", "dnc_check", "on the list", field="target"),
]


@pytest.mark.parametrize("error", ERRORS, ids=lambda e: type(e).__name__)
def test_the_owner_s_refusal_comes_back_as_the_same_error(error: CtcError) -> None:
    result = json.loads(json.dumps(error_result(error)))
    with pytest.raises(type(error)) as raised:
        raise_result(result, "alpha")
    assert str(raised.value) == str(error)


def test_an_owner_without_asterisk_is_unavailable_and_a_bug_stays_a_bug() -> None:
    with pytest.raises(FeatureUnavailable, match="node alpha: ARI down"):
        raise_result(error_result(FeatureUnavailable("ARI down")), "alpha")
    with pytest.raises(CtcError, match="node alpha failed the command: ValueError"):
        raise_result(error_result(ValueError("boom")), "alpha")
    assert raise_result({"ok": True}, "alpha") == {"ok": True}
