"""mCube (VMC): ``GET /api/outboundcall`` rings ``exenumber`` (the agent), then
``custnumber``, and calls our URL once the call is over with its ``dialstatus``.

Sources: CARRIERS.md section 4: no official API reference was found; the request and the
callback's fields are those of public integrations (UNVERIFIED with mCube). mCube signs
nothing and documents no status, hang-up or transfer API: its callback URL carries the
provider's unguessable token, the sender may be limited by CIDR, and :meth:`end`,
:meth:`transfer`, :meth:`status` and :meth:`find` raise CarrierUnsupported, so a terminal
callback is taken on the token alone (the event says ``confirmed: false``) and a create
that timed out can only be reconciled by waiting out the ring time. The callback's shape
varies by account (JSON, form fields, or a ``data`` field holding JSON): all are read.
Deduplicated on (callid, dialstatus).

Provider row: ``config.base_url`` (default ``https://mcube.vmc.in``),
``config.webhook_base_url``, ``config.webhook_allow_cidrs``; ``credentials.apikey``;
``webhook_secret``: the URL token.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime

from engine.domain.carriers import CarrierFact
from engine.domain.providers import ProviderType
from engine.errors import CarrierRefused, CarrierUnsupported
from engine.providers.base import (
    CallRef,
    CarrierCallState,
    PlaceCall,
    PlacedCall,
    WebhookRequest,
)
from engine.providers.common import ProviderRow, TokenGate, WebhookAddress, field, required
from engine.providers.http import CarrierHttp

__all__ = ["McubeAdapter"]

API = "https://mcube.vmc.in"


class McubeAdapter:
    provider_type = ProviderType.MCUBE
    confirms_terminal = False  # no status API to confirm with (see the module)

    def __init__(self, row: ProviderRow) -> None:
        self._key = required("credentials", row.credentials, "apikey")
        self._gate = TokenGate(self.provider_type, row.webhook_secret, row.config)
        self._address = WebhookAddress(self.provider_type, row.provider_id, row.config)
        self._http = CarrierHttp.for_provider(self.provider_type, row.config, default_base_url=API)

    async def place(self, call: PlaceCall) -> PlacedCall:
        params = {
            "apikey": self._key,
            "exenumber": call.agent_number,
            "custnumber": call.customer_number,
            "refid": str(call.session_id),
            "url": self._address.with_query(session=str(call.session_id), token=self._gate.token),
        }
        if call.caller_id:  # the DID the customer sees (some accounts pick their own)
            params["did"] = call.caller_id
        reply = await self._http.request(
            "GET", "/api/outboundcall", headers={}, params=params, create=True
        )
        body = reply.body
        if isinstance(body, str):
            try:
                body = json.loads(body)
            except ValueError:
                body = {}
        answer = body if isinstance(body, Mapping) else {}
        if str(answer.get("status", "")).lower() in ("error", "failed", "fail"):
            raise CarrierRefused("mcube", str(answer.get("msg") or "refused"), status=reply.status)
        return PlacedCall(call_id=field(answer, "callid"), raw_status=str(answer.get("status", "")))

    async def end(self, call: CallRef) -> None:
        raise CarrierUnsupported("mcube", "no hang-up API is documented")

    async def transfer(self, call: CallRef, target: str) -> None:
        raise CarrierUnsupported("mcube", "transfer is not supported by this carrier")

    async def status(self, call: CallRef) -> CarrierCallState:
        raise CarrierUnsupported("mcube", "no call status API is documented")

    async def find(self, call: PlaceCall, since: datetime) -> list[str]:
        raise CarrierUnsupported("mcube", "no call list API: wait out the ring time")

    async def check_credentials(self) -> None:
        raise CarrierUnsupported("mcube", "no credentials check without placing a call")

    def verify(self, request: WebhookRequest) -> None:
        self._gate.check(request)

    @staticmethod
    def _fields(request: WebhookRequest) -> Mapping[str, object]:
        payload = request.payload
        data = payload.get("data")
        if isinstance(data, str):
            try:
                inner = json.loads(data)
            except ValueError:
                inner = None
            if isinstance(inner, dict):
                return inner
        if isinstance(data, Mapping):
            return data
        return payload

    def parse(self, request: WebhookRequest) -> CarrierFact:
        payload = self._fields(request)
        call_id = field(payload, "callid", "call_id", "CallId")
        status = field(payload, "dialstatus", "status")
        return CarrierFact(
            provider_type=self.provider_type,
            call_id=call_id,
            raw_status=status,
            dedupe_key=f"{call_id}:{status}",
            details={
                "confirmed": False,
                **{
                    k: str(payload[k])
                    for k in ("refid", "answeredtime", "disconnectedby", "starttime", "endtime")
                    if k in payload
                },
            },
        )

    async def close(self) -> None:
        await self._http.close()
