"""Vonage (Voice API): the agent leg is ``POST /v1/calls`` whose NCCO ``connect`` action
dials the customer; both legs report to our webhook, each request carrying a JWT signed
HS256 with the account's signature secret whose ``payload_hash`` is the body's SHA-256.

Sources: CARRIERS.md section 3 (vonage-python-sdk's voice and JWT packages; Vonage's
webhook reference and signed-webhooks guide). Our API requests carry an RS256 JWT signed
with the application's private key. Both legs share the conversation: its uuid is the
session's ``provider_call_id``; each leg's event URL names the leg (``leg=agent|customer``).
Events are deduplicated on (uuid, status, timestamp).

Provider row: ``config.application_id``, ``config.webhook_base_url``;
``credentials.private_key`` (PEM, or an ``env:``/``file:`` reference); ``webhook_secret``:
the signature secret.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from engine.domain.carriers import CarrierFact
from engine.domain.click_to_call import Leg
from engine.domain.providers import ProviderType
from engine.errors import InvalidInput, WebhookRejected
from engine.providers.base import (
    CallRef,
    CarrierCallState,
    LegState,
    PlaceCall,
    PlacedCall,
    WebhookRequest,
)
from engine.providers.common import ProviderRow, WebhookAddress, field, required
from engine.providers.http import CarrierHttp
from engine.providers.signatures import JwtProblem, rs256_jwt, verify_hs256_jwt

__all__ = ["VonageAdapter"]

API = "https://api.nexmo.com"
_LIVE = ("started", "ringing", "answered")


class VonageAdapter:
    provider_type = ProviderType.VONAGE
    confirms_terminal = False

    def __init__(self, row: ProviderRow) -> None:
        self._app = required("config", row.config, "application_id")
        self._key = required("credentials", row.credentials, "private_key")
        self._secret = row.webhook_secret  # the signature secret
        self._max_age = float(row.config.get("webhook_max_age_s", 300))
        self._address = WebhookAddress(self.provider_type, row.provider_id, row.config)
        self._http = CarrierHttp.for_provider(self.provider_type, row.config, default_base_url=API)

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {rs256_jwt(self._app, self._key)}"}

    async def place(self, call: PlaceCall) -> PlacedCall:
        session = str(call.session_id)
        caller = call.caller_id or call.agent_number
        body = {
            "to": [{"type": "phone", "number": call.agent_number.lstrip("+")}],
            "from": {"type": "phone", "number": caller.lstrip("+")},
            "ringing_timer": call.ring_timeout_s,
            "event_url": [self._address.with_query(session=session, leg="agent")],
            "ncco": [
                {
                    "action": "connect",
                    "from": caller.lstrip("+"),
                    "timeout": call.ring_timeout_s,
                    "eventUrl": [self._address.with_query(session=session, leg="customer")],
                    "endpoint": [{"type": "phone", "number": call.customer_number.lstrip("+")}],
                }
            ],
        }
        reply = await self._http.request(
            "POST", "/v1/calls", headers=self._headers(), json=body, create=True
        )
        answer = reply.body if isinstance(reply.body, Mapping) else {}
        return PlacedCall(
            call_id=field(answer, "conversation_uuid"), raw_status=str(answer.get("status", ""))
        )

    async def _legs(self, conversation: str) -> list[Mapping[str, Any]]:
        reply = await self._http.request(
            "GET",
            "/v1/calls",
            headers=self._headers(),
            params={"conversation_uuid": conversation, "page_size": "10"},
        )
        body = reply.body if isinstance(reply.body, Mapping) else {}
        embedded = body.get("_embedded")
        calls = embedded.get("calls") if isinstance(embedded, Mapping) else None
        return [c for c in calls if isinstance(c, Mapping)] if isinstance(calls, list) else []

    @staticmethod
    def _leg_of(leg: Mapping[str, Any], call: CallRef) -> Leg | None:
        to = leg.get("to")
        number = str(to.get("number", "")) if isinstance(to, Mapping) else ""
        if number and number == call.agent_number.lstrip("+"):
            return Leg.AGENT
        if number and number == call.customer_number.lstrip("+"):
            return Leg.CUSTOMER
        return None

    async def end(self, call: CallRef) -> None:
        for leg in await self._legs(call.call_id):
            if leg.get("status") in _LIVE:
                await self._http.request(
                    "PUT",
                    f"/v1/calls/{leg['uuid']}",
                    headers=self._headers(),
                    json={"action": "hangup"},
                )

    async def transfer(self, call: CallRef, target: str) -> None:
        legs = [
            leg
            for leg in await self._legs(call.call_id)
            if self._leg_of(leg, call) is Leg.CUSTOMER and leg.get("status") == "answered"
        ]
        if not legs:
            raise InvalidInput("session", "the customer leg is not answered")
        ncco = [
            {"action": "connect", "endpoint": [{"type": "phone", "number": target.lstrip("+")}]}
        ]
        await self._http.request(
            "PUT",
            f"/v1/calls/{legs[0]['uuid']}",
            headers=self._headers(),
            json={"action": "transfer", "destination": {"type": "ncco", "ncco": ncco}},
        )

    async def status(self, call: CallRef) -> CarrierCallState:
        legs = tuple(
            LegState(self._leg_of(leg, call), str(leg.get("uuid")), str(leg.get("status", "")))
            for leg in await self._legs(call.call_id)
        )
        return CarrierCallState(call.call_id, legs)

    async def find(self, call: PlaceCall, since: datetime) -> list[str]:
        reply = await self._http.request(
            "GET",
            "/v1/calls",
            headers=self._headers(),
            params={"date_start": since.strftime("%Y-%m-%dT%H:%M:%SZ"), "page_size": "100"},
        )
        body = reply.body if isinstance(reply.body, Mapping) else {}
        embedded = body.get("_embedded")
        calls = embedded.get("calls") if isinstance(embedded, Mapping) else None
        agent = call.agent_number.lstrip("+")
        return sorted(
            {
                str(c.get("conversation_uuid"))
                for c in calls or []
                if isinstance(c, Mapping)
                and isinstance(c.get("to"), Mapping)
                and str(c["to"].get("number", "")) == agent
            }
        )

    async def check_credentials(self) -> None:
        await self._http.request(
            "GET", "/v1/calls", headers=self._headers(), params={"page_size": "1"}
        )

    def verify(self, request: WebhookRequest) -> None:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise WebhookRejected("vonage", "missing_signature", "no bearer JWT")
        if not self._secret:
            raise WebhookRejected("vonage", "no_secret", "the provider has no signature secret")
        try:
            verify_hs256_jwt(
                token.strip(), self._secret, body=request.body, max_age_s=self._max_age
            )
        except JwtProblem as exc:
            raise WebhookRejected("vonage", "bad_signature", str(exc)) from None

    def parse(self, request: WebhookRequest) -> CarrierFact:
        payload = request.payload
        leg_uuid = field(payload, "uuid")
        status = field(payload, "status")
        stamp = str(payload.get("timestamp", ""))
        leg_name = request.query.get("leg")
        leg = Leg.CUSTOMER if leg_name == "customer" else Leg.AGENT
        return CarrierFact(
            provider_type=self.provider_type,
            call_id=field(payload, "conversation_uuid"),
            raw_status=status,
            dedupe_key=f"{leg_uuid}:{status}:{stamp}",
            leg=leg,
            leg_call_id=leg_uuid,
            details={k: str(payload[k]) for k in ("timestamp", "duration") if k in payload},
        )

    async def close(self) -> None:
        await self._http.close()
