"""Declared endpoints: one table that both serves the routes and writes the OpenAPI document.

Each endpoint names the pydantic models of its body, query and responses. The same models
validate requests and generate ``/api/v1/openapi.json``, so the document describes exactly
what the routes accept. The error statuses every endpoint of a kind can give (401 with
auth, 400/413/415/422 with a body, ...) are added here too, so no route can forget one.

Every request body goes through one decoding step before a model sees it, because the
database and the JSON encoder refuse things Python's ``json`` accepts:

1. media type: the endpoint's (JSON unless it says otherwise; no Content-Type is read as
   JSON), ``charset`` absent or UTF-8 — else 415;
2. strict UTF-8 — else 400 ``invalid_encoding``;
3. JSON with bounded nesting (:data:`MAX_JSON_DEPTH`) — else 400 ``invalid_json``;
4. every string and key free of NUL and lone surrogates (PostgreSQL text cannot hold
   them), every number a finite float or a 64-bit integer — else 422 naming the field.

Query and path parameters get step 4 too (NUL arrives percent-encoded).
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
import uuid
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from typing import Any, Final, NoReturn, TypeVar
from urllib.parse import parse_qsl

from aiohttp import web
from pydantic import BaseModel, ValidationError
from pydantic.json_schema import models_json_schema

from engine import __version__
from engine.contract import CALLBACK_EVENT_TYPES, EVENT_ID_HEADER, SIGNATURE_HEADER, StatusCallback
from engine.domain.event_types import CallEventType
from engine.domain.stream_cursor import PATTERN as CURSOR_PATTERN
from engine.domain.text import text_problem
from engine.errors import DatabaseUnavailable, NotFound
from engine.store.records import Tenant

__all__ = [
    "LOCAL_CALLER",
    "MAX_JSON_DEPTH",
    "TENANT",
    "TENANT_UNAVAILABLE",
    "ApiRequest",
    "BadRequest",
    "Endpoint",
    "Handler",
    "Router",
    "json_response",
    "parse_json_object",
    "printable",
    "read_form",
    "read_json_object",
    "refuse_unauthenticated",
    "router",
    "validation_details",
]

Handler = Callable[["ApiRequest"], Awaitable[web.StreamResponse]]
# The tenant a request acts for, set by the server's auth middleware.
TENANT: web.RequestKey[Tenant] = web.RequestKey("tenant", Tenant)
# Set instead of TENANT when PostgreSQL could not say who the caller is: routes that need a
# tenant answer it (503); the ops routes (auth=False) still answer, so health can say why.
TENANT_UNAVAILABLE: web.RequestKey[DatabaseUnavailable] = web.RequestKey(
    "tenant_unavailable", DatabaseUnavailable
)
# The caller is on the Unix socket (trusted by its file mode): health shows details.
LOCAL_CALLER: web.RequestKey[bool] = web.RequestKey("local_caller", bool)
M = TypeVar("M", bound=BaseModel)


# Containers nested deeper than this are refused (json's own limit is Python's recursion
# limit, about 1000, and it raises RecursionError).
MAX_JSON_DEPTH: Final = 32
_INT_MIN: Final = -(2**63)
_INT_MAX: Final = 2**63 - 1
_JSON: Final = "application/json"
_SSE: Final = "text/event-stream"


class BadRequest(Exception):
    """A request the API refuses before any handler runs; becomes a JSON 4xx."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: Any = None,
        *,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details
        self.headers = headers


@dataclasses.dataclass(frozen=True, slots=True)
class Endpoint:
    method: str
    path: str
    handler: Handler
    summary: str
    tags: tuple[str, ...]
    body: type[BaseModel] | None
    query: type[BaseModel] | None
    responses: Mapping[int, type[BaseModel] | None]
    auth: bool
    body_content: Mapping[str, Any] | None  # for bodies that are not one JSON model
    response_content: str  # media type of the 2xx body
    headers: tuple[Mapping[str, Any], ...] = ()  # OpenAPI header parameters it reads
    operation_id: str = ""  # the handler's name when empty
    description: str | None = None  # the handler's docstring when None


@dataclasses.dataclass(slots=True)
class ApiRequest:
    raw: web.Request
    tenant: Tenant | None
    body: BaseModel | None
    query: BaseModel | None

    def body_as(self, model: type[M]) -> M:
        if not isinstance(self.body, model):
            raise RuntimeError(
                f"route body is {type(self.body).__name__}, not the declared {model.__name__}"
            )
        return self.body

    def query_as(self, model: type[M]) -> M:
        if not isinstance(self.query, model):
            raise RuntimeError(
                f"route query is {type(self.query).__name__}, not the declared {model.__name__}"
            )
        return self.query

    def require_tenant(self) -> Tenant:
        if self.tenant is None:
            raise RuntimeError("route reads the tenant but does not declare auth=True")
        return self.tenant

    def path_uuid(self, name: str, what: str) -> uuid.UUID:
        """The id in the path; one that is not a UUID names no ``what``: 404, like an
        unknown one."""
        raw = self.raw.match_info[name]
        try:
            return uuid.UUID(raw)
        except ValueError as exc:
            raise NotFound(what, raw) from exc


def json_response(
    model: BaseModel | None, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    body = "" if model is None else model.model_dump_json()
    return web.Response(
        text=body,
        status=status,
        content_type="application/json" if model is not None else None,
        headers=headers,
    )


def validation_details(exc: ValidationError, prefix: str = "") -> list[dict[str, str]]:
    """pydantic errors as ``[{"field": "a.b", "message": ...}]``."""
    out = []
    for err in exc.errors(include_url=False, include_input=False):
        field = ".".join(str(p) for p in err["loc"])
        out.append(
            {"field": f"{prefix}{field}" if field else prefix.rstrip("."), "message": err["msg"]}
        )
    return out


def _is_list(annotation: Any) -> bool:
    if typing.get_origin(annotation) is list:
        return True
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        return any(_is_list(a) for a in typing.get_args(annotation))
    return False


class Router:
    def __init__(self, prefix: str = "") -> None:
        self.prefix = prefix
        self.endpoints: list[Endpoint] = []
        # paths whose Authorization header is not ours to read (a carrier's signed JWT)
        self.foreign_authorization: set[str] = set()

    def route(
        self,
        method: str,
        path: str,
        *,
        summary: str,
        tags: tuple[str, ...] = (),
        body: type[BaseModel] | None = None,
        query: type[BaseModel] | None = None,
        responses: Mapping[int, type[BaseModel] | None],
        auth: bool = True,
        body_content: Mapping[str, Any] | None = None,
        response_content: str = "application/json",
        headers: Sequence[Mapping[str, Any]] = (),
        operation_id: str = "",
        description: str | None = None,
        foreign_authorization: bool = False,
    ) -> Callable[[Handler], Handler]:
        """Register the decorated handler. ``operation_id`` and ``description`` (OpenAPI)
        default to the handler's name and docstring; a handler that serves several
        endpoints gives them. ``foreign_authorization``: the request's Authorization
        header belongs to someone else (a carrier's JWT), never read as a tenant token."""

        def register(handler: Handler) -> Handler:
            if foreign_authorization:
                self.foreign_authorization.add(self.prefix + path)
            common = _common_responses(
                path,
                auth=auth,
                body=body is not None or body_content is not None,
                params=query is not None or bool(headers),
            )
            self.endpoints.append(
                Endpoint(
                    method.upper(),
                    self.prefix + path,
                    handler,
                    summary,
                    tags,
                    body,
                    query,
                    dict(sorted({**common, **responses}.items())),
                    auth,
                    body_content,
                    response_content,
                    tuple(headers),
                    operation_id or handler.__name__,
                    description if description is not None else handler.__doc__,
                )
            )
            return handler

        return register

    def install(self, app: web.Application) -> None:
        for endpoint in self.endpoints:
            app.router.add_route(endpoint.method, endpoint.path, _adapter(endpoint))

    # -- OpenAPI ----------------------------------------------------------------------------

    def openapi(self, *, title: str = "CTC Engine control API") -> dict[str, Any]:
        models: set[type[BaseModel]] = set()
        for ep in self.endpoints:
            if ep.body is not None:
                models.add(ep.body)
            models.update(m for m in ep.responses.values() if m is not None)
        from engine.api.models import ErrorOut

        models.add(ErrorOut)
        models.add(StatusCallback)  # the body of the callStatus webhook
        ordered = sorted(models, key=lambda m: m.__name__)
        _, defs = models_json_schema(
            [(m, "validation" if m is not ErrorOut else "serialization") for m in ordered],
            ref_template="#/components/schemas/{model}",
        )
        schemas: dict[str, Any] = dict(defs.get("$defs", {}))
        paths: dict[str, dict[str, Any]] = {}
        for ep in self.endpoints:
            paths.setdefault(ep.path, {})[ep.method.lower()] = _operation(ep, schemas)
        return {
            "openapi": "3.1.0",
            "info": {"title": title, "version": __version__},
            "paths": paths,
            "webhooks": {"callStatus": {"post": _status_callback_operation()}},
            "components": {
                "schemas": schemas,
                "parameters": {
                    "TenantHeader": {
                        "name": "X-CTC-Tenant",
                        "in": "header",
                        "required": False,
                        "schema": {"type": "string"},
                        "description": "On the Unix socket without a bearer token: the "
                        "slug of the tenant the request acts for (default `default`). "
                        "Ignored when a token is sent (the token decides the tenant).",
                    }
                },
                "securitySchemes": {
                    "bearer": {
                        "type": "http",
                        "scheme": "bearer",
                        "description": "Per-tenant token from `ctc token create`; required "
                        "on TCP. On the Unix socket, optional (X-CTC-Tenant names the tenant).",
                    }
                },
            },
        }


def _status_callback_operation() -> dict[str, Any]:
    """The status callback the engine POSTs to a tenant's (or a request's) callback URL."""
    return {
        "summary": "A session's status changed",
        "operationId": "callStatus",
        "tags": ["callbacks"],
        "description": "Sent for every status change of a session that has a callback URL "
        "(the initiate request's, else the tenant's), its creation (status `queued`) "
        "included, one at a time per session in `seq` order, at least once: de-duplicate on "
        "the event id. `seq` numbers the session's whole timeline, so callbacks may skip "
        "numbers (events that change no status send none). Event types a callback carries: "
        + ", ".join(f"`{t.value}`" for t in CallEventType if t in CALLBACK_EVENT_TYPES)
        + ". The body is signed with HMAC-SHA256 under the tenant's callback secret over "
        "`<t>.<raw body>`; during a secret rotation's grace period a second `v1=` made with "
        "the previous secret follows; accept when any matches. Reject a timestamp more than "
        "5 minutes from your clock. Anything but a 2xx answer within `callbacks.timeout` "
        "(redirects are not followed) is retried after min(backoff_initial * "
        "2^(attempts-1), backoff_max) seconds, ±10 %; after `callbacks.max_attempts` "
        "attempts (by default 12, over about 18.5 minutes) it is `dead`: listed by "
        "`GET /api/v1/callbacks?state=dead` and sent again by "
        "`POST /api/v1/callbacks/replay`.",
        "parameters": [
            {
                "name": EVENT_ID_HEADER,
                "in": "header",
                "required": True,
                "description": "The call_event id (the body's event_id)",
                "schema": {"type": "string", "pattern": "^[0-9]+$"},
            },
            {
                "name": SIGNATURE_HEADER,
                "in": "header",
                "required": True,
                "description": "`t=<unix seconds>,v1=<hex HMAC-SHA256 of f'{t}.{body}'>`, "
                "and a second `,v1=<hex>` (the previous secret's) during a rotation's grace "
                "period",
                "schema": {
                    "type": "string",
                    "pattern": "^t=[0-9]+(,v1=[0-9a-f]{64})+$",
                },
            },
        ],
        "requestBody": {"required": True, "content": {_JSON: {"schema": _ref(StatusCallback)}}},
        "responses": {"2XX": {"description": "Delivered"}},
    }


# The control API's one table of endpoints: the modules of engine.api.routes register on it.
router = Router()


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _operation(ep: Endpoint, schemas: dict[str, Any]) -> dict[str, Any]:
    op: dict[str, Any] = {
        "summary": ep.summary,
        "operationId": ep.operation_id,
        "tags": list(ep.tags),
    }
    if ep.description:
        op["description"] = ep.description.strip()
    params: list[dict[str, Any]] = [
        {
            "name": name,
            "in": "path",
            "required": True,
            # ids are UUIDs; other path names (a menu name, a provider type) are plain text
            "schema": {"type": "string", **({"format": "uuid"} if name.endswith("_id") else {})},
        }
        for name in _path_names(ep.path)
    ]
    if ep.query is not None:
        schema = ep.query.model_json_schema(ref_template="#/components/schemas/{model}")
        required = set(schema.get("required", []))
        for name, prop in schema.get("properties", {}).items():
            params.append(
                {
                    "name": name,
                    "in": "query",
                    "required": name in required,
                    "schema": prop,
                    **({"explode": True} if prop.get("type") == "array" else {}),
                }
            )
        # enums a query model refers to join the shared components
        schemas.update(schema.get("$defs", {}))
    if ep.auth:  # on the Unix socket without a token, the tenant is named by this header
        params.append({"$ref": "#/components/parameters/TenantHeader"})
    if ep.method == "POST" and ep.path.endswith("/initiate"):
        params.append(
            {
                "name": "Idempotency-Key",
                "in": "header",
                "required": False,
                "schema": {"type": "string", "maxLength": 200},
                "description": "A retried request with the same key never dials twice",
            }
        )
    params.extend({"in": "header", **h} for h in ep.headers)
    if params:
        op["parameters"] = params
    if ep.body is not None:
        op["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": _ref(ep.body)}},
        }
    elif ep.body_content is not None:
        op["requestBody"] = {"required": True, "content": dict(ep.body_content)}
    responses: dict[str, Any] = {}
    for status, model in sorted(ep.responses.items()):
        media = "application/json" if status >= 400 else ep.response_content
        if model is None:
            responses[str(status)] = {"description": _reason(status)}
        else:
            schema = _sse_event(model) if media == _SSE else _ref(model)
            responses[str(status)] = {
                "description": _reason(status),
                "content": {media: {"schema": schema}},
            }
        headers = _RESPONSE_HEADERS.get((ep.method, ep.path.rpartition("/")[2], status))
        if headers is not None:
            responses[str(status)]["headers"] = headers
    op["responses"] = responses
    if ep.auth:
        op["security"] = [{"bearer": []}]
    return op


# headers some answers carry, by (method, last path segment, status)
_RESPONSE_HEADERS: dict[tuple[str, str, int], dict[str, Any]] = {
    ("POST", "initiate", 202): {
        "Location": {
            "description": "The session's URL",
            "schema": {"type": "string"},
        },
        "Idempotent-Replayed": {
            "description": "`true` when an Idempotency-Key repeat returned the first "
            "session (nothing was dialled again); absent otherwise",
            "schema": {"type": "string", "enum": ["true"]},
        },
    },
}


def _common_responses(
    path: str, *, auth: bool, body: bool, params: bool
) -> dict[int, type[BaseModel] | None]:
    """The error answers an endpoint can give by its kind alone, all in the error shape."""
    from engine.api.models import ErrorOut

    statuses: set[int] = set()
    if auth:
        statuses |= {401, 503}  # no valid token; the database is unreachable
    if body:
        statuses |= {400, 413, 415, 422}  # not JSON or not UTF-8; too large; media type
    if params:
        statuses.add(422)
    if _path_names(path):
        statuses.add(404)  # a path id that names nothing
    return dict.fromkeys(statuses, ErrorOut)


def _sse_event(model: type[BaseModel]) -> dict[str, Any]:
    """The schema of one message of an event stream (OpenAPI 3.1: a ``text/event-stream``
    schema describes each event, not the stream): its ``data`` is ``model`` as JSON."""
    return {
        "type": "object",
        "required": ["id", "event", "data"],
        "properties": {
            "id": {
                "type": "string",
                "pattern": CURSOR_PATTERN,
                "description": "The stream's cursor after this event (send it back as "
                "Last-Event-ID): the event id, or the newest settled id then the distances "
                "above it of the ids sent in the last seconds",
            },
            "event": {"type": "string", "description": "The event's event_type"},
            "data": {
                "type": "string",
                "contentMediaType": _JSON,
                "contentSchema": _ref(model),
            },
            "retry": {"type": "integer", "description": "Reconnect delay (ms)"},
        },
    }


def _path_names(path: str) -> list[str]:
    return [part[1:-1] for part in path.split("/") if part.startswith("{")]


def _reason(status: int) -> str:
    from http import HTTPStatus

    return HTTPStatus(status).phrase


def refuse_unauthenticated(request: web.Request) -> NoReturn:
    """A request that needs a tenant has none: 503 when PostgreSQL could not say who the
    caller is (the token or slug was not checked), else 401."""
    if (unavailable := request.get(TENANT_UNAVAILABLE)) is not None:
        raise unavailable
    raise BadRequest(401, "unauthorized", "missing or invalid bearer token")


def _adapter(ep: Endpoint) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def handle(request: web.Request) -> web.StreamResponse:
        tenant = request.get(TENANT)
        if ep.auth and tenant is None:
            refuse_unauthenticated(request)
        for name, value in request.match_info.items():
            if text_problem(value) is not None:
                raise NotFound(name, printable(value))  # no row has such a key
        if ep.body is not None or ep.body_content is not None:
            _require_media_type(request, ep.body_content or (_JSON,))
        query = None
        if ep.query is not None:
            query = _parse_query(ep.query, request)
        body = None
        if ep.body is not None:
            body = await _parse_body(ep.body, request)
        return await ep.handler(ApiRequest(request, tenant, body, query))

    handle.__name__ = ep.operation_id
    return handle


def _parse_query(model: type[BaseModel], request: web.Request) -> BaseModel:
    problems = [
        {"field": printable(key), "message": problem}
        for key, value in request.query.items()
        if (problem := text_problem(key) or text_problem(value)) is not None
    ]
    if problems:
        raise BadRequest(422, "validation_error", "invalid query parameters", problems)
    raw: dict[str, Any] = {}
    for key in request.query:
        info = model.model_fields.get(key)
        if info is not None and _is_list(info.annotation):
            raw[key] = request.query.getall(key)
        else:
            raw[key] = request.query[key]
    return _validated(model, raw, "query parameters")


def printable(value: str) -> str:
    """``value`` safe to echo in an error body: NUL and lone surrogates as escapes."""
    return value.replace("\x00", "\\u0000").encode("utf-8", "backslashreplace").decode()


def _require_media_type(request: web.Request, accepted: Collection[str]) -> None:
    """415 unless the body's media type is one the endpoint reads, in UTF-8. No
    Content-Type at all is read as JSON (when JSON is accepted)."""
    if "Content-Type" not in request.headers:
        if _JSON in accepted:
            return
        media = "(none)"
    else:
        media = request.content_type
        charset = request.charset
        if media in accepted or (media.endswith("+json") and _JSON in accepted):
            if charset is None or charset.strip().lower() in ("utf-8", "utf8"):
                return
            raise BadRequest(
                415,
                "unsupported_media_type",
                f"unsupported charset {printable(charset)!r}; send UTF-8",
                [{"field": "Content-Type", "message": "charset must be utf-8"}],
            )
    raise BadRequest(
        415,
        "unsupported_media_type",
        f"unsupported Content-Type {printable(media)!r}; expected {' or '.join(accepted)}",
        [{"field": "Content-Type", "message": f"expected {' or '.join(accepted)}"}],
    )


def _not_utf8(message: str) -> BadRequest:
    """The 400 for a body that is not UTF-8 (``message`` says where it broke)."""
    return BadRequest(
        400, "invalid_encoding", message, [{"field": "body", "message": "must be UTF-8"}]
    )


async def _read_utf8(request: web.Request, what: str) -> str:
    raw = await request.read()  # 413 past client_max_size
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _not_utf8(f"{what} is not UTF-8: invalid byte at offset {exc.start}") from None


async def read_json_object(
    request: web.Request, *, what: str = "body", not_object_status: int = 422
) -> tuple[str, dict[str, Any]]:
    """The body as text and as the JSON object it must be; a clear 4xx otherwise."""
    text = await _read_utf8(request, what)
    if not text.strip():
        raise BadRequest(400, "invalid_json", f"{what} is empty; expected a JSON object")
    return text, parse_json_object(text, what=what, not_object_status=not_object_status)


async def read_form(request: web.Request, *, what: str = "body") -> dict[str, str]:
    """A form-encoded body (UTF-8, also inside %-escapes); repeated keys keep the last."""
    text = await _read_utf8(request, what)
    try:
        pairs = parse_qsl(text, keep_blank_values=True, encoding="utf-8", errors="strict")
    except UnicodeDecodeError:
        raise _not_utf8(f"{what} is not UTF-8 inside a %-escape") from None
    form = dict(pairs)
    _check_tree(form, what)
    return form


class _HugeInt(str):
    """A JSON integer too long to be a 64-bit one (kept as text: converting a long one is
    slow, and past 4300 digits Python refuses)."""


def _parse_int(text: str) -> int | _HugeInt:
    return _HugeInt(text) if len(text) > 20 else int(text)


def _refuse_constant(name: str) -> Any:
    raise BadRequest(400, "invalid_json", f"{name} is not JSON (numbers must be finite)")


def parse_json_object(
    text: str, *, what: str = "body", not_object_status: int = 422
) -> dict[str, Any]:
    """Decode a request body that must be one JSON object; a clear 4xx otherwise."""
    try:
        data = json.loads(text, parse_int=_parse_int, parse_constant=_refuse_constant)
    except json.JSONDecodeError as exc:
        raise BadRequest(
            400,
            "invalid_json",
            f"{what} is not JSON: line {exc.lineno} column {exc.colno}: {exc.msg}",
        ) from exc
    except RecursionError:
        raise _too_deep(what, "body") from None
    if not isinstance(data, dict):
        code = "invalid_json" if not_object_status == 400 else "validation_error"
        raise BadRequest(not_object_status, code, f"{what} must be a JSON object")
    _check_tree(data, what)
    return data


def _too_deep(what: str, field: str) -> BadRequest:
    return BadRequest(
        400,
        "invalid_json",
        f"{what} nests deeper than {MAX_JSON_DEPTH} levels",
        [{"field": field, "message": f"nested deeper than {MAX_JSON_DEPTH} levels"}],
    )


def _check_tree(data: Any, what: str) -> None:
    """Step 4 of the module docstring over a decoded body, without recursion: 422 naming
    every field (up to 20) that cannot be stored."""
    problems: list[dict[str, str]] = []
    stack: list[tuple[Any, str, int]] = [(data, "", 0)]
    while stack and len(problems) < 20:
        value, field, depth = stack.pop()
        if isinstance(value, dict | list):
            if depth >= MAX_JSON_DEPTH:
                raise _too_deep(what, field or "body")
            items = value.items() if isinstance(value, dict) else enumerate(value)
            for key, item in items:
                name = printable(str(key))
                sub = f"{field}.{name}" if field else name
                if isinstance(key, str) and (problem := text_problem(key)) is not None:
                    problems.append({"field": sub, "message": f"key {problem}"})
                stack.append((item, sub, depth + 1))
            continue
        problem = None
        if isinstance(value, _HugeInt):
            problem = "integer out of range (64-bit)"
        elif isinstance(value, str):
            problem = text_problem(value)
        elif isinstance(value, float) and not math.isfinite(value):
            problem = "number out of range"
        elif isinstance(value, int) and not _INT_MIN <= value <= _INT_MAX:
            problem = "integer out of range (64-bit)"
        if problem is not None:
            problems.append({"field": field or "body", "message": problem})
    if problems:
        problems.sort(key=lambda p: p["field"])
        raise BadRequest(422, "validation_error", f"invalid {what}", problems)


async def _parse_body(model: type[BaseModel], request: web.Request) -> BaseModel:
    _, data = await read_json_object(request)
    return _validated(model, data, "request body")


def _validated(model: type[BaseModel], data: Any, what: str) -> BaseModel:
    """``data`` read into ``model``; 422 ``invalid {what}`` naming each wrong field."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise BadRequest(
            422, "validation_error", f"invalid {what}", validation_details(exc)
        ) from exc
