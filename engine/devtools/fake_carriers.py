"""Fake carriers for tests and benches: small local aiohttp servers that follow what Twilio,
Vonage, Exotel and mCube document (CARRIERS.md), so the adapters and the webhook route are
tested against the carriers' contracts, not against mocks of our own code.

Each fake checks the request's authentication (Twilio and Exotel Basic, Vonage's RS256 JWT,
mCube's apikey) and shape (the fields each carrier requires), keeps the calls created,
answers status and list queries, and sends status callbacks back to the URL the create
named, signed the way that carrier signs them (Twilio ``X-Twilio-Signature``, Vonage HS256
JWT with ``payload_hash``, Exotel and mCube: the URL's token only). A callback can be sent
signed wrongly (``forge=True``), twice (a replay) or out of order: the test chooses.

Knobs for failure paths: ``fail_creates`` (answer the next creates with this status) and
``create_delay_s`` (create the call, then answer late: the client times out although the
call exists, which is what reconciliation must find); ``early`` (a callback sent for the new
call before the create is answered, as real carriers do: the create's answer waits for the
engine's answer to it, at most ``early_hold_s``).
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import itertools
import json
import re
import secrets
import urllib.parse
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

import aiohttp
from aiohttp import web

from engine.providers.signatures import (
    JwtProblem,
    body_sha256,
    hs256_jwt,
    rs256_claims,
    twilio_signature,
)

__all__ = [
    "Callback",
    "FakeCall",
    "FakeCarrier",
    "FakeExotel",
    "FakeMcube",
    "FakeTwilio",
    "FakeVonage",
]


@dataclasses.dataclass
class FakeCall:
    """A call the fake created: its id, the numbers, where its callbacks go, its state."""

    call_id: str
    agent: str
    customer: str
    callback_urls: dict[str, str]  # leg -> URL
    status: str
    created_at: datetime
    legs: dict[str, str] = dataclasses.field(default_factory=dict)  # leg -> leg id
    leg_status: dict[str, str] = dataclasses.field(default_factory=dict)
    sequence: dict[str, int] = dataclasses.field(default_factory=dict)
    caller_id: str | None = None  # what the create asked the customer to see


@dataclasses.dataclass(frozen=True)
class Callback:
    """A callback as the fake sent it and how the engine answered."""

    url: str
    status: int
    body: Any
    sent: bytes
    headers: Mapping[str, str]


class FakeCarrier:
    """What every fake shares: the server, the calls, the failure knobs, sending."""

    def __init__(self) -> None:
        self.calls: dict[str, FakeCall] = {}
        self.requests: list[tuple[str, str]] = []  # (method, path) of every API request
        self.fail_creates: list[int] = []  # statuses for the next creates
        self.create_delay_s = 0.0
        self.early: Callable[[FakeCall], Awaitable[Callback]] | None = None
        self.early_hold_s = 1.0
        self.early_sent: list[asyncio.Task[Callback]] = []  # the early callbacks, answered
        self._runner: web.AppRunner | None = None
        self._port = 0
        self._ids = itertools.count(1)
        self._client: aiohttp.ClientSession | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    def _routes(self, app: web.Application) -> None:
        raise NotImplementedError

    async def start(self) -> FakeCarrier:
        app = web.Application()
        self._routes(app)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self._port = int(self._runner.addresses[0][1])
        self._client = aiohttp.ClientSession()
        return self

    async def stop(self) -> None:
        if self._client is not None:
            await self._client.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def _new_id(self, prefix: str) -> str:
        return f"{prefix}{next(self._ids):04d}{secrets.token_hex(14)}"

    async def _created(self, answer: web.Response, call: FakeCall) -> web.Response:
        """The create's answer, late when ``create_delay_s`` says so (the call exists),
        after the ``early`` callback when one is set."""
        if self.early is not None:
            sent = asyncio.ensure_future(self.early(call))
            self.early_sent.append(sent)
            # a carrier does not wait for its callback: answer once it is answered or held
            await asyncio.wait({sent}, timeout=self.early_hold_s)
        if self.create_delay_s:
            await asyncio.sleep(self.create_delay_s)
        return answer

    def _refused_create(self) -> int | None:
        return self.fail_creates.pop(0) if self.fail_creates else None

    async def _send(
        self, url: str, *, headers: Mapping[str, str], data: bytes, content_type: str
    ) -> Callback:
        if self._client is None:
            raise RuntimeError("start() the fake first")
        sent_headers = {**headers, "Content-Type": content_type}
        async with self._client.post(url, data=data, headers=sent_headers) as response:
            text = await response.text()
            try:
                body: Any = json.loads(text)
            except ValueError:
                body = text
            return Callback(url, response.status, body, data, sent_headers)


def _basic(request: web.Request) -> tuple[str, str] | None:
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, _, password = base64.b64decode(value).decode().partition(":")
    except ValueError:
        return None
    return user, password


class FakeTwilio(FakeCarrier):
    """Twilio's 2010-04-01 Calls API for one account, and its status callbacks."""

    def __init__(self, account_sid: str, auth_token: str) -> None:
        super().__init__()
        self.account_sid = account_sid
        self.auth_token = auth_token

    def _routes(self, app: web.Application) -> None:
        base = f"/2010-04-01/Accounts/{self.account_sid}"
        app.router.add_post(f"{base}/Calls.json", self._create)
        app.router.add_get(f"{base}/Calls.json", self._list)
        app.router.add_get(f"{base}/Calls/{{sid}}.json", self._fetch)
        app.router.add_post(f"{base}/Calls/{{sid}}.json", self._update)
        app.router.add_get(f"{base}.json", self._account)

    def _authorized(self, request: web.Request) -> bool:
        self.requests.append((request.method, request.path))
        return _basic(request) == (self.account_sid, self.auth_token)

    @staticmethod
    def _error(status: int, code: int, message: str) -> web.Response:
        return web.json_response(
            {"code": code, "message": message, "status": status}, status=status
        )

    def _resource(self, call: FakeCall, leg: str = "agent") -> dict[str, Any]:
        sid = call.legs.get(leg, call.call_id)
        return {
            "sid": sid,
            "account_sid": self.account_sid,
            "parent_call_sid": None if leg == "agent" else call.call_id,
            "to": call.agent if leg == "agent" else call.customer,
            "status": call.leg_status.get(leg, call.status),
            "direction": "outbound-api" if leg == "agent" else "outbound-dial",
            "start_time": format_datetime(call.created_at),
        }

    async def _create(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return self._error(401, 20003, "Authenticate")
        form = await request.post()
        missing = [f for f in ("To", "From") if not form.get(f)]
        if missing or not any(form.get(f) for f in ("Url", "Twiml", "ApplicationSid")):
            return self._error(400, 21205, f"missing {missing or 'Url/Twiml'}")
        refused = self._refused_create()
        if refused is not None:
            return self._error(refused, 20429 if refused == 429 else 20500, "refused by the fake")
        twiml = str(form["Twiml"])
        number = re.search(r'<Number statusCallback="([^"]+)"[^>]*>([^<]+)</Number>', twiml)
        if number is None:
            return self._error(400, 12100, "the fake expects <Dial><Number statusCallback=..>")
        sid = self._new_id("CA")
        call = FakeCall(
            call_id=sid,
            agent=str(form["To"]),
            customer=number.group(2),
            callback_urls={
                "agent": str(form.get("StatusCallback", "")),
                "customer": number.group(1).replace("&amp;", "&"),
            },
            status="queued",
            created_at=datetime.now(UTC),
            legs={"agent": sid, "customer": self._new_id("CA")},
            caller_id=str(form["From"]),
        )
        self.calls[sid] = call
        return await self._created(web.json_response(self._resource(call), status=201), call)

    async def _fetch(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return self._error(401, 20003, "Authenticate")
        call = self.calls.get(request.match_info["sid"])
        if call is None:
            return self._error(404, 20404, "not found")
        return web.json_response(self._resource(call))

    async def _list(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return self._error(401, 20003, "Authenticate")
        parent = request.query.get("ParentCallSid")
        to = request.query.get("To")
        found: list[dict[str, Any]] = []
        for call in self.calls.values():
            if parent and call.call_id == parent:
                found.append(self._resource(call, "customer"))
            elif to and call.agent == to:
                found.append(self._resource(call))
        return web.json_response({"calls": found})

    async def _update(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return self._error(401, 20003, "Authenticate")
        sid = request.match_info["sid"]
        form = await request.post()
        for call in self.calls.values():
            for leg, leg_sid in call.legs.items():
                if leg_sid == sid:
                    if form.get("Status") in ("completed", "canceled"):
                        call.leg_status[leg] = str(form["Status"])
                        call.status = str(form["Status"])
                    return web.json_response(self._resource(call, leg))
        return self._error(404, 20404, "not found")

    async def _account(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return self._error(401, 20003, "Authenticate")
        return web.json_response({"sid": self.account_sid, "status": "active"})

    def callback_form(
        self, call: FakeCall, leg: str, status: str, *, sequence: int | None = None
    ) -> dict[str, str]:
        """The form Twilio posts for ``leg`` reaching ``status`` (the next SequenceNumber
        of that leg unless given)."""
        if sequence is None:
            sequence = call.sequence.get(leg, -1) + 1
        call.sequence[leg] = max(sequence, call.sequence.get(leg, -1))
        call.leg_status[leg] = status
        form = {
            "CallSid": call.legs[leg],
            "AccountSid": self.account_sid,
            "CallStatus": status,
            "Direction": "outbound-api" if leg == "agent" else "outbound-dial",
            "From": "+15005550006",
            "To": call.agent if leg == "agent" else call.customer,
            "CallbackSource": "call-progress-events",
            "SequenceNumber": str(sequence),
            "Timestamp": format_datetime(datetime.now(UTC)),
        }
        if leg == "customer":
            form["ParentCallSid"] = call.call_id
        return form

    async def send_form(
        self, call: FakeCall, leg: str, form: Mapping[str, str], *, forge: bool = False
    ) -> Callback:
        url = call.callback_urls[leg]
        token = "not-the-auth-token" if forge else self.auth_token
        signature = twilio_signature(token, url, form)
        return await self._send(
            url,
            headers={"X-Twilio-Signature": signature},
            data=urllib.parse.urlencode(form).encode(),
            content_type="application/x-www-form-urlencoded",
        )

    async def callback(
        self, call: FakeCall, leg: str, status: str, *, forge: bool = False
    ) -> Callback:
        return await self.send_form(call, leg, self.callback_form(call, leg, status), forge=forge)


class FakeVonage(FakeCarrier):
    """Vonage's Voice API (``/v1/calls``) for one application, and its signed events."""

    def __init__(self, application_id: str, public_key_pem: str, signature_secret: str) -> None:
        super().__init__()
        self.application_id = application_id
        self.public_key_pem = public_key_pem
        self.signature_secret = signature_secret

    def _routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/calls", self._create)
        app.router.add_get("/v1/calls", self._list)
        app.router.add_put("/v1/calls/{uuid}", self._update)

    @staticmethod
    def _problem(status: int, title: str) -> web.Response:
        return web.json_response(
            {"type": "https://developer.nexmo.com/api-errors", "title": title, "detail": title},
            status=status,
            content_type="application/problem+json",
        )

    def _authorized(self, request: web.Request) -> bool:
        self.requests.append((request.method, request.path))
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme != "Bearer":
            return False
        try:
            claims = rs256_claims(token, self.public_key_pem)
        except JwtProblem:
            return False
        return claims.get("application_id") == self.application_id

    def _leg(self, call: FakeCall, leg: str) -> dict[str, Any]:
        return {
            "uuid": call.legs[leg],
            "conversation_uuid": call.call_id,
            "status": call.leg_status.get(leg, "started"),
            "direction": "outbound",
            "to": {"type": "phone", "number": call.agent if leg == "agent" else call.customer},
        }

    async def _create(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return self._problem(401, "Invalid credentials")
        body = await request.json()
        try:
            agent = body["to"][0]["number"]
            connect = body["ncco"][0]
            if connect["action"] != "connect":
                raise KeyError("action")
            customer = connect["endpoint"][0]["number"]
            urls = {"agent": body["event_url"][0], "customer": connect["eventUrl"][0]}
        except (KeyError, IndexError, TypeError):
            return self._problem(400, "Bad Request: to, ncco connect and event_url are required")
        refused = self._refused_create()
        if refused is not None:
            return self._problem(refused, "refused by the fake")
        conversation = f"CON-{self._new_id('')}"
        call = FakeCall(
            call_id=conversation,
            agent=agent,
            customer=customer,
            callback_urls=urls,
            status="started",
            created_at=datetime.now(UTC),
            legs={"agent": self._new_id("a-"), "customer": self._new_id("c-")},
            caller_id=str(connect.get("from", "")) or None,
        )
        self.calls[conversation] = call
        answer = {
            "uuid": call.legs["agent"],
            "status": "started",
            "direction": "outbound",
            "conversation_uuid": conversation,
        }
        return await self._created(web.json_response(answer, status=201), call)

    async def _list(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return self._problem(401, "Invalid credentials")
        conversation = request.query.get("conversation_uuid")
        legs = [
            self._leg(call, leg)
            for call in self.calls.values()
            if conversation is None or call.call_id == conversation
            for leg in (("agent", "customer") if conversation else ("agent",))
        ]
        return web.json_response({"count": len(legs), "_embedded": {"calls": legs}})

    async def _update(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return self._problem(401, "Invalid credentials")
        leg_uuid = request.match_info["uuid"]
        action = (await request.json()).get("action")
        for call in self.calls.values():
            for leg, uuid_ in call.legs.items():
                if uuid_ == leg_uuid:
                    if action == "hangup":
                        call.leg_status[leg] = "completed"
                    return web.Response(status=204)
        return self._problem(404, "Not Found")

    def event_body(self, call: FakeCall, leg: str, status: str) -> bytes:
        call.leg_status[leg] = status
        event = {
            "status": status,
            "uuid": call.legs[leg],
            "conversation_uuid": call.call_id,
            "direction": "outbound",
            "to": call.agent if leg == "agent" else call.customer,
            "timestamp": datetime.now(UTC).isoformat(timespec="microseconds"),
        }
        return json.dumps(event, separators=(",", ":")).encode()

    def jwt_for(self, body: bytes, *, secret: str | None = None) -> str:
        claims = {
            "iat": int(datetime.now(UTC).timestamp()),
            "jti": secrets.token_hex(8),
            "iss": "Vonage",
            "payload_hash": body_sha256(body),
            "api_key": "fakekey",
            "application_id": self.application_id,
        }
        return hs256_jwt(claims, secret or self.signature_secret)

    async def send_body(
        self, call: FakeCall, leg: str, body: bytes, *, forge: bool = False
    ) -> Callback:
        token = self.jwt_for(body, secret="wrong-secret" if forge else None)
        return await self._send(
            call.callback_urls[leg],
            headers={"Authorization": f"Bearer {token}"},
            data=body,
            content_type="application/json",
        )

    async def callback(
        self, call: FakeCall, leg: str, status: str, *, forge: bool = False
    ) -> Callback:
        return await self.send_body(call, leg, self.event_body(call, leg, status), forge=forge)


class FakeExotel(FakeCarrier):
    """Exotel's v1 connect API for one account, and its (unsigned) status callback."""

    def __init__(self, account_sid: str, api_key: str, api_token: str) -> None:
        super().__init__()
        self.account_sid = account_sid
        self.api_key = api_key
        self.api_token = api_token

    def _routes(self, app: web.Application) -> None:
        base = f"/v1/Accounts/{self.account_sid}"
        app.router.add_post(f"{base}/Calls/connect.json", self._create)
        app.router.add_get(f"{base}/Calls/{{sid}}.json", self._fetch)
        app.router.add_get(f"{base}/Calls.json", self._list)

    def _authorized(self, request: web.Request) -> bool:
        self.requests.append((request.method, request.path))
        return _basic(request) == (self.api_key, self.api_token)

    @staticmethod
    def _error(status: int, message: str) -> web.Response:
        return web.json_response(
            {"RestException": {"Status": status, "Message": message}}, status=status
        )

    def _resource(self, call: FakeCall) -> dict[str, Any]:
        return {
            "Sid": call.call_id,
            "ParentCallSid": None,
            "From": call.agent,
            "To": call.customer,
            "Status": call.status,
            "DateCreated": call.created_at.strftime("%Y-%m-%d %H:%M:%S"),
        }

    async def _create(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return self._error(401, "Authentication is required")
        form = await request.post()
        missing = [f for f in ("From", "To", "CallerId") if not form.get(f)]
        if missing:
            return self._error(400, f"missing {', '.join(missing)}")
        refused = self._refused_create()
        if refused is not None:
            return self._error(refused, "refused by the fake")
        sid = self._new_id("")
        call = FakeCall(
            call_id=sid,
            agent=str(form["From"]),
            customer=str(form["To"]),
            callback_urls={"call": str(form.get("StatusCallback", ""))},
            status="in-progress",
            created_at=datetime.now(UTC),
            caller_id=str(form["CallerId"]),
        )
        self.calls[sid] = call
        return await self._created(web.json_response({"Call": self._resource(call)}), call)

    async def _fetch(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return self._error(401, "Authentication is required")
        call = self.calls.get(request.match_info["sid"])
        if call is None:
            return self._error(404, "not found")
        return web.json_response({"Call": self._resource(call)})

    async def _list(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return self._error(401, "Authentication is required")
        found = [
            self._resource(c)
            for c in self.calls.values()
            if c.agent == request.query.get("From") and c.customer == request.query.get("To")
        ]
        return web.json_response({"Calls": found})

    async def send_event(
        self, call: FakeCall, event: str, status: str, *, token: str | None = None
    ) -> Callback:
        """A status callback (JSON, as the create asked); ``token`` replaces the URL's."""
        url = call.callback_urls["call"]
        if token is not None:
            url = _with_token(url, token)
        body = {
            "CallSid": call.call_id,
            "EventType": event,
            "Status": status,
            "From": call.agent,
            "To": call.customer,
            "DateUpdated": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S"),
        }
        return await self._send(
            url, headers={}, data=json.dumps(body).encode(), content_type="application/json"
        )

    async def callback(
        self, call: FakeCall, status: str, *, event: str = "terminal", token: str | None = None
    ) -> Callback:
        if event == "terminal":
            call.status = status
        return await self.send_event(call, event, status, token=token)


class FakeMcube(FakeCarrier):
    """mCube's legacy ``outboundcall`` and its (unsigned) end-of-call callback."""

    def __init__(self, apikey: str) -> None:
        super().__init__()
        self.apikey = apikey

    def _routes(self, app: web.Application) -> None:
        app.router.add_get("/api/outboundcall", self._create)

    async def _create(self, request: web.Request) -> web.Response:
        self.requests.append((request.method, request.path))
        query = request.query
        if query.get("apikey") != self.apikey:
            return web.json_response({"status": "error", "msg": "Invalid apikey"})
        missing = [f for f in ("exenumber", "custnumber", "url") if not query.get(f)]
        if missing:
            return web.json_response({"status": "error", "msg": f"missing {missing}"})
        refused = self._refused_create()
        if refused is not None:
            return web.json_response({"status": "error", "msg": "refused"}, status=refused)
        callid = self._new_id("")
        call = FakeCall(
            call_id=callid,
            agent=query["exenumber"],
            customer=query["custnumber"],
            callback_urls={"call": query["url"]},
            status="queued",
            created_at=datetime.now(UTC),
            caller_id=query.get("did"),
        )
        self.calls[callid] = call
        return await self._created(web.json_response({"status": "success", "callid": callid}), call)

    async def callback(
        self,
        call: FakeCall,
        dialstatus: str,
        *,
        shape: str = "json",
        token: str | None = None,
    ) -> Callback:
        """The end-of-call callback in one of the shapes integrators report: ``json``,
        ``form``, or ``data`` (a form field holding JSON)."""
        url = call.callback_urls["call"]
        if token is not None:
            url = _with_token(url, token)
        fields = {
            "callid": call.call_id,
            "refid": "ref",
            "emp_phone": call.agent,
            "callto": call.customer,
            "dialstatus": dialstatus,
            "answeredtime": "00:00:04" if dialstatus == "ANSWER" else "00:00:00",
        }
        if shape == "json":
            return await self._send(
                url, headers={}, data=json.dumps(fields).encode(), content_type="application/json"
            )
        form = fields if shape == "form" else {"data": json.dumps(fields)}
        return await self._send(
            url,
            headers={},
            data=urllib.parse.urlencode(form).encode(),
            content_type="application/x-www-form-urlencoded",
        )


def _with_token(url: str, token: str) -> str:
    parts = urllib.parse.urlsplit(url)
    query = dict(urllib.parse.parse_qsl(parts.query))
    query["token"] = token
    return parts._replace(query=urllib.parse.urlencode(query)).geturl()
