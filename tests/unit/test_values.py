"""evolve: the same copy as dataclasses.replace, for the value types it may copy."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime

import pytest

from engine.domain.ivr import IvrState, Phase
from engine.domain.values import evolve
from engine.store.records import CallEvent


def test_a_changed_copy_equals_what_dataclasses_replace_makes() -> None:
    state = IvrState(variables={"caller": "5551000"})
    assert evolve(state, phase=Phase.WAITING, retries=2) == dataclasses.replace(
        state, phase=Phase.WAITING, retries=2
    )
    event = CallEvent(
        id=0,
        tenant_id=uuid.uuid4(),
        session_id=uuid.uuid4(),
        seq=3,
        event_type="ivr.dtmf",
        status_from=None,
        status_to=None,
        payload={"digit": "1"},
        occurred_at=datetime.now(UTC),
    )
    copy = evolve(event, id=42)
    assert copy == dataclasses.replace(event, id=42)
    assert event.id == 0  # the original is untouched


def test_an_unknown_field_is_refused_by_name() -> None:
    with pytest.raises(TypeError, match=r"IvrState has no field\(s\) colour"):
        evolve(IvrState(), colour="red")


def test_classes_whose_init_does_more_than_store_fields_are_refused() -> None:
    @dataclasses.dataclass(frozen=True, slots=True)
    class Checked:
        n: int

        def __post_init__(self) -> None:
            if self.n < 0:
                raise ValueError(self.n)

    @dataclasses.dataclass(frozen=True)
    class NoSlots:
        n: int

    for value in (Checked(1), NoSlots(1)):
        with pytest.raises(TypeError, match="slotted dataclasses without __post_init__"):
            evolve(value, n=2)
