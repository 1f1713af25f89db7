"""Declared endpoints: one table that both serves the routes and writes the OpenAPI document.

Each endpoint names the pydantic models of its body, query and responses. The same models
validate requests and generate ``/api/v1/openapi.json``, so the document describes exactly
what the routes accept.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError
from pydantic.json_schema import models_json_schema

from engine import __version__
from engine.errors import NotFound
from engine.store.tenants import Tenant

__all__ = [
    "TENANT",
    "ApiRequest",
    "BadRequest",
    "Endpoint",
    "Router",
    "json_response",
    "parse_json_object",
    "validation_details",
]

Handler = Callable[["ApiRequest"], Awaitable[web.StreamResponse]]
# The tenant a request acts for, set by the server's auth middleware.
TENANT: web.RequestKey[Tenant] = web.RequestKey("tenant", Tenant)
M = TypeVar("M", bound=BaseModel)


class BadRequest(Exception):
    """A request the API refuses before any handler runs; becomes a JSON 4xx."""

    def __init__(self, status: int, code: str, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details


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


@dataclasses.dataclass(slots=True)
class ApiRequest:
    raw: web.Request
    tenant: Tenant | None
    body: BaseModel | None
    query: BaseModel | None

    def body_as(self, model: type[M]) -> M:
        assert isinstance(self.body, model)
        return self.body

    def query_as(self, model: type[M]) -> M:
        assert isinstance(self.query, model)
        return self.query

    def require_tenant(self) -> Tenant:
        assert self.tenant is not None, "route declared auth=True"
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
    ) -> Callable[[Handler], Handler]:
        def register(handler: Handler) -> Handler:
            self.endpoints.append(
                Endpoint(
                    method.upper(),
                    self.prefix + path,
                    handler,
                    summary,
                    tags,
                    body,
                    query,
                    dict(responses),
                    auth,
                    body_content,
                    response_content,
                    tuple(headers),
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
            "components": {
                "schemas": schemas,
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


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _operation(ep: Endpoint, schemas: dict[str, Any]) -> dict[str, Any]:
    op: dict[str, Any] = {
        "summary": ep.summary,
        "operationId": ep.handler.__name__,
        "tags": list(ep.tags),
    }
    if ep.handler.__doc__:
        op["description"] = ep.handler.__doc__.strip()
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
            responses[str(status)] = {
                "description": _reason(status),
                "content": {media: {"schema": _ref(model)}},
            }
    op["responses"] = responses
    if ep.auth:
        op["security"] = [{"bearer": []}]
    return op


def _path_names(path: str) -> list[str]:
    return [part[1:-1] for part in path.split("/") if part.startswith("{")]


def _reason(status: int) -> str:
    from http import HTTPStatus

    return HTTPStatus(status).phrase


def _adapter(ep: Endpoint) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def handle(request: web.Request) -> web.StreamResponse:
        tenant = request.get(TENANT)
        if ep.auth and tenant is None:
            raise BadRequest(401, "unauthorized", "missing or invalid bearer token")
        query = None
        if ep.query is not None:
            query = _parse_query(ep.query, request)
        body = None
        if ep.body is not None:
            body = await _parse_body(ep.body, request)
        return await ep.handler(ApiRequest(request, tenant, body, query))

    handle.__name__ = ep.handler.__name__
    return handle


def _parse_query(model: type[BaseModel], request: web.Request) -> BaseModel:
    raw: dict[str, Any] = {}
    for key in request.query:
        info = model.model_fields.get(key)
        if info is not None and _is_list(info.annotation):
            raw[key] = request.query.getall(key)
        else:
            raw[key] = request.query[key]
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise BadRequest(
            422, "validation_error", "invalid query parameters", validation_details(exc)
        ) from exc


def parse_json_object(
    text: str, *, what: str = "body", not_object_status: int = 422
) -> dict[str, Any]:
    """Decode a request body that must be one JSON object; a clear 4xx otherwise."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadRequest(
            400,
            "invalid_json",
            f"{what} is not JSON: line {exc.lineno} column {exc.colno}: {exc.msg}",
        ) from exc
    if not isinstance(data, dict):
        code = "invalid_json" if not_object_status == 400 else "validation_error"
        raise BadRequest(not_object_status, code, f"{what} must be a JSON object")
    return data


async def _parse_body(model: type[BaseModel], request: web.Request) -> BaseModel:
    text = await request.text()
    if not text.strip():
        raise BadRequest(400, "invalid_json", "request body is empty; expected a JSON object")
    data = parse_json_object(text)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise BadRequest(
            422, "validation_error", "invalid request body", validation_details(exc)
        ) from exc
