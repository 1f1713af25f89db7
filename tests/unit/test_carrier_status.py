"""The carriers' statuses mapped to the session's, and the order rules (engine/domain/carriers)."""

from __future__ import annotations

import pytest

from engine.domain.call import CallStatus as S
from engine.domain.carriers import CarrierFact, decide, path_to
from engine.domain.click_to_call import Leg
from engine.domain.providers import ProviderType as P


def fact(p: P, raw: str, leg: Leg | None = None) -> CarrierFact:
    return CarrierFact(p, "CALL1", raw, dedupe_key=f"CALL1:{raw}", leg=leg)


def test_path_to_catches_up_and_never_goes_back() -> None:
    assert path_to(S.QUEUED, S.CONNECTED) == (
        S.DIALING_AGENT,
        S.AGENT_ANSWERED,
        S.DIALING_CUSTOMER,
        S.CONNECTED,
    )
    assert path_to(S.CONNECTED, S.DIALING_CUSTOMER) is None
    assert path_to(S.COMPLETED, S.FAILED) is None
    assert path_to(S.CONNECTED, S.CONNECTED) == ()
    # a customer's busy passes through dialing_customer even if the agent's answer was lost
    assert path_to(S.DIALING_AGENT, S.BUSY, via=S.DIALING_CUSTOMER) == (
        S.AGENT_ANSWERED,
        S.DIALING_CUSTOMER,
        S.BUSY,
    )


@pytest.mark.parametrize(
    ("current", "raw", "leg", "connected", "path"),
    [
        (S.QUEUED, "initiated", Leg.AGENT, False, (S.DIALING_AGENT,)),
        (S.DIALING_AGENT, "in-progress", Leg.AGENT, False, (S.AGENT_ANSWERED,)),
        (S.AGENT_ANSWERED, "ringing", Leg.CUSTOMER, False, (S.DIALING_CUSTOMER,)),
        (S.DIALING_CUSTOMER, "in-progress", Leg.CUSTOMER, False, (S.CONNECTED,)),
        (S.CONNECTED, "completed", Leg.CUSTOMER, True, (S.COMPLETED,)),
        (S.CONNECTED, "completed", Leg.AGENT, True, (S.COMPLETED,)),
        (S.DIALING_AGENT, "busy", Leg.AGENT, False, (S.BUSY,)),
        (S.DIALING_CUSTOMER, "no-answer", Leg.CUSTOMER, False, (S.NO_ANSWER,)),
        # out of order: a stale ringing after the answer changes nothing
        (S.CONNECTED, "ringing", Leg.CUSTOMER, True, ()),
        (S.DIALING_CUSTOMER, "in-progress", Leg.AGENT, False, ()),
        # the parent completes before the customer's outcome arrives: that outcome decides
        (S.DIALING_CUSTOMER, "completed", Leg.AGENT, False, ()),
        # the agent talked alone and hung up before the customer was dialled
        (S.AGENT_ANSWERED, "completed", Leg.AGENT, False, (S.CANCELED,)),
        (S.COMPLETED, "busy", Leg.CUSTOMER, True, ()),
        (S.QUEUED, "queued", Leg.AGENT, False, ()),
    ],
)
def test_twilio(current: S, raw: str, leg: Leg, connected: bool, path: tuple[S, ...]) -> None:
    assert decide(current, fact(P.TWILIO, raw, leg), connected=connected).path == path


def test_vonage_completed_before_its_failure_waits_for_the_failure() -> None:
    # Vonage documents completed arriving before a leg's busy/timeout
    assert (
        decide(S.DIALING_AGENT, fact(P.VONAGE, "completed", Leg.AGENT), connected=False).path == ()
    )
    assert decide(S.DIALING_AGENT, fact(P.VONAGE, "timeout", Leg.AGENT), connected=False).path == (
        S.NO_ANSWER,
    )
    assert decide(
        S.DIALING_CUSTOMER, fact(P.VONAGE, "rejected", Leg.CUSTOMER), connected=False
    ).path == (S.BUSY,)
    # started and ringing in either order end in the same place
    assert decide(
        S.AGENT_ANSWERED, fact(P.VONAGE, "started", Leg.CUSTOMER), connected=False
    ).path == (S.DIALING_CUSTOMER,)
    assert (
        decide(S.DIALING_CUSTOMER, fact(P.VONAGE, "ringing", Leg.CUSTOMER), connected=False).path
        == ()
    )


def test_exotel_answered_then_terminal_and_never_back() -> None:
    assert decide(S.QUEUED, fact(P.EXOTEL, "answered"), connected=False).path == (
        S.DIALING_AGENT,
        S.AGENT_ANSWERED,
        S.DIALING_CUSTOMER,
        S.CONNECTED,
    )
    assert decide(S.CONNECTED, fact(P.EXOTEL, "completed"), connected=True).path == (S.COMPLETED,)
    # the answered event arriving after the terminal one changes nothing
    assert decide(S.COMPLETED, fact(P.EXOTEL, "answered"), connected=True).path == ()
    assert decide(S.QUEUED, fact(P.EXOTEL, "busy"), connected=False).path == (
        S.DIALING_AGENT,
        S.BUSY,
    )


def test_mcube_dialstatus() -> None:
    assert decide(S.QUEUED, fact(P.MCUBE, "ANSWER"), connected=False).target is S.COMPLETED
    assert decide(S.QUEUED, fact(P.MCUBE, "Executive Busy"), connected=False).target is S.BUSY
    assert decide(S.QUEUED, fact(P.MCUBE, "NoAnswer"), connected=False).target is S.NO_ANSWER
    assert decide(S.QUEUED, fact(P.MCUBE, "mystery"), connected=False).path == ()
