"""The one Protocol every carrier adapter follows, and what passes through it.

A two-leg click-to-call through a carrier rings the agent first, then the customer, and
bridges them, each carrier its own way (Twilio ``<Dial><Number>``, Exotel
``Calls/connect``, Vonage NCCO ``connect``, mCube ``outboundcall``). Whatever the carrier,
the session's statuses and events are the same: an adapter turns the carrier's webhooks into
:class:`~engine.domain.carriers.CarrierFact` and the domain decides what they mean.

The call id a session records (``provider_call_id``) is :attr:`PlacedCall.call_id`; every
later operation names the call by it (:class:`CallRef`).
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Protocol

from engine.domain.carriers import CarrierFact
from engine.domain.click_to_call import Leg
from engine.domain.providers import ProviderType

__all__ = [
    "CallRef",
    "CarrierAdapter",
    "CarrierCallState",
    "LegState",
    "PlaceCall",
    "PlacedCall",
    "WebhookRequest",
]


@dataclasses.dataclass(frozen=True, slots=True)
class PlaceCall:
    """A click-to-call to place through a carrier (numbers in E.164)."""

    session_id: uuid.UUID
    agent_number: str
    customer_number: str
    caller_id: str | None = None
    ring_timeout_s: int = 30  # per leg


@dataclasses.dataclass(frozen=True, slots=True)
class PlacedCall:
    call_id: str  # what the session records as provider_call_id
    raw_status: str  # the carrier's status in its answer to the create


@dataclasses.dataclass(frozen=True, slots=True)
class CallRef:
    """A call placed earlier, as the session knows it."""

    call_id: str
    agent_number: str
    customer_number: str


@dataclasses.dataclass(frozen=True, slots=True)
class LegState:
    leg: Leg | None  # None: the carrier reports the call as a whole
    leg_id: str
    raw_status: str


@dataclasses.dataclass(frozen=True, slots=True)
class CarrierCallState:
    """A status query's answer: the carrier's raw statuses, per leg where it has legs."""

    call_id: str
    legs: tuple[LegState, ...]

    def raw_status(self, leg: Leg | None = None) -> str | None:
        for state in self.legs:
            if leg is None or state.leg is leg:
                return state.raw_status
        return None


@dataclasses.dataclass(frozen=True, slots=True)
class WebhookRequest:
    """A carrier's webhook as it arrived: what verification and parsing read.

    ``url`` is the URL as this server saw it and ``path_qs`` its path and query: a carrier
    that signs the URL (Twilio) signed the one it was given, which is the provider's
    ``webhook_base_url`` + ``path_qs`` behind a proxy; ``params`` the
    form fields (every value of a repeated one), empty for a JSON body; ``payload`` the
    decoded body (form fields with their last value, or the JSON object).
    """

    url: str
    path_qs: str
    headers: Mapping[str, str]
    body: bytes
    params: Mapping[str, tuple[str, ...]]
    payload: Mapping[str, object]
    remote: str | None
    query: Mapping[str, str]


class CarrierAdapter(Protocol):
    """One provider row's carrier: its API (place, end, transfer, query) and its webhooks."""

    @property
    def provider_type(self) -> ProviderType: ...

    async def place(self, call: PlaceCall) -> PlacedCall:
        """Create the two-leg call. Never retried blindly: only a request the carrier
        provably did not process is sent again (see :mod:`engine.providers.http`)."""
        ...

    async def end(self, call: CallRef) -> None:
        """Hang up every leg of the call (CarrierUnsupported where the carrier has no API)."""

    async def transfer(self, call: CallRef, target: str) -> None:
        """Move the customer to ``target`` (blind), replacing the agent; CarrierUnsupported
        where the carrier offers no transfer."""

    async def status(self, call: CallRef) -> CarrierCallState:
        """The carrier's view of the call now."""
        ...

    async def find(self, call: PlaceCall, since: datetime) -> list[str]:
        """The ids of calls to ``call``'s agent created since ``since``: after a create
        that timed out, whether the carrier created it anyway (reconcile before retrying)."""
        ...

    async def check_credentials(self) -> None:
        """Raise CarrierAuthFailed unless the carrier accepts the credentials (no call is
        placed); CarrierUnsupported where the carrier offers no such check."""

    def verify(self, request: WebhookRequest) -> None:
        """Raise WebhookRejected unless the webhook is the carrier's (constant-time)."""

    def parse(self, request: WebhookRequest) -> CarrierFact:
        """The verified webhook as a fact (InvalidInput naming a missing field)."""
        ...

    @property
    def confirms_terminal(self) -> bool:
        """Whether a terminal fact must be confirmed by :meth:`status` before it applies
        (carriers that do not sign their webhooks)."""
        ...

    async def close(self) -> None: ...
