"""Twilio: the agent leg is a REST call (``POST /Calls.json``) whose TwiML dials the
customer (``<Dial><Number>``); both legs report to our webhook, signed with the account's
auth token (``X-Twilio-Signature``).

Sources: CARRIERS.md section 1 (twilio-python's call resource and request validator;
twilio.com's call status and connection-override pages). The parent call (the agent) is
the session's ``provider_call_id``; the customer leg's callbacks carry it as
``ParentCallSid``. Callbacks are deduplicated on (CallSid, SequenceNumber), falling back to
(CallSid, CallStatus) when Twilio sends no SequenceNumber.

Provider row: ``config.account_sid``, ``config.webhook_base_url``; ``credentials.auth_token``
(or ``env:``/``file:`` references, see :func:`~engine.providers.http.resolve_credentials`).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any
from xml.sax.saxutils import escape, quoteattr

from engine.domain.carriers import CarrierFact
from engine.domain.click_to_call import Leg
from engine.domain.providers import ProviderType
from engine.errors import ConfigError, InvalidInput, WebhookRejected
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
    WebhookAddress,
    field,
    optional_field,
    required,
    sequence_int,
)
from engine.providers.http import CarrierHttp
from engine.providers.signatures import twilio_signature_valid

__all__ = ["TwilioAdapter"]

API = "https://api.twilio.com"
_EVENTS = ("initiated", "ringing", "answered", "completed")


class TwilioAdapter:
    provider_type = ProviderType.TWILIO
    confirms_terminal = False  # signed: a terminal callback needs no second opinion

    def __init__(self, row: ProviderRow) -> None:
        """Twilio signs its webhooks with the auth token: the row's webhook secret is not
        read."""
        account = row.config.get("account_sid") or row.credentials.get("account_sid")
        if not account:
            raise ConfigError("is required", field="config.account_sid")
        token = required("credentials", row.credentials, "auth_token")
        self._account = str(account)
        self._token = token
        self._address = WebhookAddress(self.provider_type, row.provider_id, row.config)
        self._public_base = str(row.config["webhook_base_url"]).rstrip("/")
        self._http = CarrierHttp.for_provider(
            self.provider_type, row.config, default_base_url=API, retry_create_on_429=True
        )

    def _headers(self) -> dict[str, str]:
        import base64

        basic = base64.b64encode(f"{self._account}:{self._token}".encode()).decode()
        return {"Authorization": f"Basic {basic}", "Accept": "application/json"}

    def _path(self, tail: str) -> str:
        return f"/2010-04-01/Accounts/{self._account}{tail}"

    async def place(self, call: PlaceCall) -> PlacedCall:
        callback = self._address.with_query(session=str(call.session_id))
        caller = call.caller_id or call.agent_number
        twiml = (
            f'<Response><Dial callerId={quoteattr(caller)} timeout="{call.ring_timeout_s}">'
            f"<Number statusCallback={quoteattr(callback)} "
            f'statusCallbackEvent="{" ".join(_EVENTS)}">'
            f"{escape(call.customer_number)}</Number></Dial></Response>"
        )
        form: list[tuple[str, str]] = [
            ("To", call.agent_number),
            ("From", caller),
            ("Twiml", twiml),
            ("StatusCallback", callback),
            ("Timeout", str(call.ring_timeout_s)),
            *(("StatusCallbackEvent", e) for e in _EVENTS),
        ]
        reply = await self._http.request(
            "POST", self._path("/Calls.json"), headers=self._headers(), data=form, create=True
        )
        body = reply.body if isinstance(reply.body, Mapping) else {}
        return PlacedCall(call_id=field(body, "sid"), raw_status=str(body.get("status", "")))

    async def end(self, call: CallRef) -> None:
        await self._http.request(
            "POST",
            self._path(f"/Calls/{call.call_id}.json"),
            headers=self._headers(),
            data={"Status": "completed"},
        )

    async def _children(self, call_id: str) -> list[Mapping[str, Any]]:
        reply = await self._http.request(
            "GET",
            self._path("/Calls.json"),
            headers=self._headers(),
            params={"ParentCallSid": call_id, "PageSize": "20"},
        )
        body = reply.body if isinstance(reply.body, Mapping) else {}
        calls = body.get("calls")
        return [c for c in calls if isinstance(c, Mapping)] if isinstance(calls, list) else []

    async def transfer(self, call: CallRef, target: str) -> None:
        live = [c for c in await self._children(call.call_id) if c.get("status") == "in-progress"]
        if not live:
            raise InvalidInput("session", "the customer leg is not in progress")
        twiml = f"<Response><Dial><Number>{escape(target)}</Number></Dial></Response>"
        await self._http.request(
            "POST",
            self._path(f"/Calls/{live[0]['sid']}.json"),
            headers=self._headers(),
            data={"Twiml": twiml},
        )

    async def status(self, call: CallRef) -> CarrierCallState:
        reply = await self._http.request(
            "GET", self._path(f"/Calls/{call.call_id}.json"), headers=self._headers()
        )
        body = reply.body if isinstance(reply.body, Mapping) else {}
        legs = [LegState(Leg.AGENT, call.call_id, str(body.get("status", "")))]
        legs += [
            LegState(Leg.CUSTOMER, str(c.get("sid")), str(c.get("status", "")))
            for c in await self._children(call.call_id)
        ]
        return CarrierCallState(call.call_id, tuple(legs))

    async def find(self, call: PlaceCall, since: datetime) -> list[str]:
        reply = await self._http.request(
            "GET",
            self._path("/Calls.json"),
            headers=self._headers(),
            params={
                "To": call.agent_number,
                "StartTime>": since.strftime("%Y-%m-%d"),
                "PageSize": "50",
            },
        )
        body = reply.body if isinstance(reply.body, Mapping) else {}
        calls = body.get("calls") if isinstance(body.get("calls"), list) else []
        return [str(c["sid"]) for c in calls or [] if isinstance(c, Mapping) and c.get("sid")]

    async def check_credentials(self) -> None:
        await self._http.request("GET", self._path(".json"), headers=self._headers())

    def verify(self, request: WebhookRequest) -> None:
        signature = request.headers.get("X-Twilio-Signature", "")
        if not signature:
            raise WebhookRejected("twilio", "missing_signature", "no X-Twilio-Signature")
        json_body = not request.params and bool(request.body)
        if json_body and "bodySHA256=" not in request.path_qs:
            # a body that is not a form is signed only through bodySHA256 in the URL: without
            # it the signature covers the URL alone, and any body could ride on it
            raise WebhookRejected("twilio", "bad_signature", "a JSON body needs bodySHA256")
        if not twilio_signature_valid(
            self._token,
            self._public_base + request.path_qs,
            request.params,
            signature,
            body=request.body if json_body else None,
        ):
            raise WebhookRejected("twilio", "bad_signature", "X-Twilio-Signature does not match")

    def parse(self, request: WebhookRequest) -> CarrierFact:
        payload = request.payload
        sid = field(payload, "CallSid")
        parent = optional_field(payload, "ParentCallSid")
        status = field(payload, "CallStatus")
        sequence = sequence_int(optional_field(payload, "SequenceNumber"), "SequenceNumber")
        key = f"{sid}:{sequence}" if sequence is not None else f"{sid}:{status}"
        return CarrierFact(
            provider_type=self.provider_type,
            call_id=parent or sid,
            raw_status=status,
            dedupe_key=key,
            leg=Leg.CUSTOMER if parent else Leg.AGENT,
            leg_call_id=sid,
            sequence=sequence,
            details={
                k: str(payload[k])
                for k in ("CallDuration", "Timestamp", "Direction")
                if k in payload
            },
        )

    async def close(self) -> None:
        await self._http.close()
