"""Exotel: ``POST /v1/Accounts/<sid>/Calls/connect.json`` rings ``From`` (the agent), then
dials ``To`` (the customer) and bridges them; the status callback reports ``answered``
(``EventType``) and the terminal ``Status``.

Sources: CARRIERS.md section 2 (developer.exotel.com connect-two-numbers, status callback,
call details). Exotel signs nothing: the callback URL carries the provider's unguessable
token, the sender may be limited by CIDR, and a terminal state is confirmed with a status
query (``GET Calls/<sid>.json``) before it changes the session. Exotel documents no hang-up
or transfer for this call: :meth:`end` and :meth:`transfer` raise CarrierUnsupported (the
call's ``TimeLimit`` bounds it). Callbacks are deduplicated on (CallSid, EventType).

Provider row: ``config.account_sid``, ``config.caller_id`` (the ExoPhone),
``config.base_url`` (``https://api.in.exotel.com`` for Mumbai), ``config.webhook_base_url``,
``config.webhook_allow_cidrs``; ``credentials.api_key``, ``credentials.api_token``;
``webhook_secret``: the URL token.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from engine.domain.carriers import CarrierFact
from engine.domain.providers import ProviderType
from engine.errors import CarrierUnsupported, ConfigError
from engine.providers.base import (
    CallRef,
    CarrierCallState,
    LegState,
    PlaceCall,
    PlacedCall,
    WebhookRequest,
)
from engine.providers.common import (
    ProviderRow,
    TokenGate,
    WebhookAddress,
    field,
    optional_field,
    required,
)
from engine.providers.http import CarrierHttp

__all__ = ["ExotelAdapter"]

API = "https://api.exotel.com"


def _call(body: Any) -> Mapping[str, Any]:
    inner = body.get("Call") if isinstance(body, Mapping) else None
    return inner if isinstance(inner, Mapping) else {}


class ExotelAdapter:
    provider_type = ProviderType.EXOTEL
    confirms_terminal = True

    def __init__(self, row: ProviderRow) -> None:
        self._account = required("config", row.config, "account_sid")
        api_key = required("credentials", row.credentials, "api_key")
        api_token = required("credentials", row.credentials, "api_token")
        self._caller_id = row.config.get("caller_id")
        basic = f"{api_key}:{api_token}".encode()
        self._auth = {"Authorization": f"Basic {base64.b64encode(basic).decode()}"}
        self._gate = TokenGate(self.provider_type, row.webhook_secret, row.config)
        self._address = WebhookAddress(self.provider_type, row.provider_id, row.config)
        self._http = CarrierHttp.for_provider(self.provider_type, row.config, default_base_url=API)

    def _path(self, tail: str) -> str:
        return f"/v1/Accounts/{self._account}{tail}"

    async def place(self, call: PlaceCall) -> PlacedCall:
        caller = call.caller_id or self._caller_id
        if not caller:
            raise ConfigError("is required (the ExoPhone)", field="config.caller_id")
        form = [
            ("From", call.agent_number),
            ("To", call.customer_number),
            ("CallerId", str(caller)),
            ("TimeOut", str(call.ring_timeout_s)),
            ("CustomField", str(call.session_id)),
            (
                "StatusCallback",
                self._address.with_query(session=str(call.session_id), token=self._gate.token),
            ),
            ("StatusCallbackEvents[0]", "terminal"),
            ("StatusCallbackEvents[1]", "answered"),
            ("StatusCallbackContentType", "application/json"),
        ]
        reply = await self._http.request(
            "POST", self._path("/Calls/connect.json"), headers=self._auth, data=form, create=True
        )
        answer = _call(reply.body)
        return PlacedCall(call_id=field(answer, "Sid"), raw_status=str(answer.get("Status", "")))

    async def end(self, call: CallRef) -> None:
        raise CarrierUnsupported(
            "exotel", "no hang-up API for a connect call (TimeLimit bounds it)"
        )

    async def transfer(self, call: CallRef, target: str) -> None:
        raise CarrierUnsupported("exotel", "transfer is not supported by this carrier")

    async def status(self, call: CallRef) -> CarrierCallState:
        reply = await self._http.request(
            "GET", self._path(f"/Calls/{call.call_id}.json"), headers=self._auth
        )
        answer = _call(reply.body)
        return CarrierCallState(
            call.call_id, (LegState(None, call.call_id, str(answer.get("Status", ""))),)
        )

    async def find(self, call: PlaceCall, since: datetime) -> list[str]:
        reply = await self._http.request(
            "GET",
            self._path("/Calls.json"),
            headers=self._auth,
            params={
                "From": call.agent_number,
                "To": call.customer_number,
                "DateCreated": f"gte:{since.strftime('%Y-%m-%d %H:%M:%S')}",
            },
        )
        body = reply.body if isinstance(reply.body, Mapping) else {}
        calls = body.get("Calls")
        return (
            [str(c["Sid"]) for c in calls or [] if isinstance(c, Mapping) and c.get("Sid")]
            if isinstance(calls, list)
            else []
        )

    async def check_credentials(self) -> None:
        await self._http.request("GET", self._path(".json"), headers=self._auth)

    def verify(self, request: WebhookRequest) -> None:
        self._gate.check(request)

    def parse(self, request: WebhookRequest) -> CarrierFact:
        payload = request.payload
        sid = field(payload, "CallSid")
        event = (optional_field(payload, "EventType") or "terminal").lower()
        status = "answered" if event == "answered" else field(payload, "Status")
        return CarrierFact(
            provider_type=self.provider_type,
            call_id=sid,
            raw_status=status,
            dedupe_key=f"{sid}:{event}",
            details={
                k: str(payload[k])
                for k in ("EventType", "Status", "StartTime", "EndTime", "ConversationDuration")
                if k in payload
            },
        )

    async def close(self) -> None:
        await self._http.close()
