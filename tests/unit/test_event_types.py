"""The event types picked by a leg or a transfer outcome: one for every member."""

from __future__ import annotations

import pytest

from engine.domain.click_to_call import Leg
from engine.domain.event_types import (
    CallEventType,
    leg_hangup,
    leg_released,
    leg_replaced,
    transfer_outcome,
)
from engine.domain.transfer import TransferState
from engine.errors import DomainError


@pytest.mark.parametrize("leg", list(Leg))
def test_every_leg_has_its_hangup_released_and_replaced_event(leg: Leg) -> None:
    assert leg_hangup(leg) == f"{leg.value}.hangup"
    assert leg_released(leg) == f"transfer.{leg.value}_released"
    assert leg_replaced(leg) == f"transfer.{leg.value}_replaced"


@pytest.mark.parametrize("state", [state for state in TransferState if not state.is_live])
def test_every_terminal_transfer_state_has_its_outcome_event(state: TransferState) -> None:
    assert transfer_outcome(state) == f"transfer.{state.value}"


@pytest.mark.parametrize("state", [state for state in TransferState if state.is_live])
def test_a_live_transfer_state_is_no_outcome(state: TransferState) -> None:
    with pytest.raises(DomainError, match=f"no transfer outcome event type for '{state.value}'"):
        transfer_outcome(state)


def test_the_mappings_return_members() -> None:
    assert leg_hangup(Leg.AGENT) is CallEventType.AGENT_HANGUP
    assert transfer_outcome(TransferState.NO_ANSWER) is CallEventType.TRANSFER_NO_ANSWER
