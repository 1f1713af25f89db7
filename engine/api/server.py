"""The control API's HTTP servers: a Unix socket (trusted, local) and optional TCP (bearer
tokens). Both serve the same routes over the same state.

Who is the tenant:
- on TCP, the bearer token's tenant; no valid token is 401.
- on the Unix socket, the bearer token's tenant if one is sent, else the tenant named by
  ``X-CTC-Tenant`` (a slug), else ``default``. Access to the socket itself is the
  permission, set by ``api.socket_mode`` (the socket is created with that mode, see
  :mod:`engine.api.unix_socket`).

``/healthz`` and ``/readyz`` answer without a token, but only with the status and each
component's state; the details (socket path, users, URLs) need a token or the socket.
``/metrics`` on TCP needs a token unless ``api.tcp.metrics_token_required`` is false.
The web console's pages (``/console/``, :mod:`engine.api.console`) are served on TCP
without a token: they hold no data, and ask the API for it with the token typed in.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import structlog
from aiohttp import web
from aiohttp.typedefs import Middleware
from pydantic import ValidationError

from engine.api import routes  # noqa: F401  (importing it registers every route on router)
from engine.api.console import install_console
from engine.api.endpoints import (
    LOCAL_CALLER,
    TENANT,
    TENANT_UNAVAILABLE,
    BadRequest,
    router,
    validation_details,
)
from engine.api.sse import OPEN_STREAMS, OpenStreams
from engine.api.state import API_STATE, METRICS_NEED_TOKEN, ApiState
from engine.api.unix_socket import bind_unix_socket
from engine.domain.text import text_problem
from engine.errors import (
    AgentBusy,
    AsteriskError,
    CallRejected,
    CarrierError,
    CarrierUnsupported,
    ClosedResourceError,
    Conflict,
    CtcError,
    DatabaseUnavailable,
    FeatureUnavailable,
    IllegalTransition,
    InvalidInput,
    InvalidInputs,
    NodeUnavailable,
    NotFound,
    SecretsError,
)
from engine.lifecycle import Lifecycle
from engine.listening import LISTEN_BACKLOG
from engine.store.records import Tenant

__all__ = ["ApiServer", "build_app", "openapi_document"]

log = structlog.get_logger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _error(
    status: int,
    code: str,
    message: str,
    details: object = None,
    headers: Mapping[str, str] | None = None,
) -> web.Response:
    body = {"error": {"code": code, "message": message, "details": details}}
    return web.json_response(body, status=status, headers=headers)


def _translate(exc: BaseException) -> web.Response:
    """Map the project's errors to stable codes; anything else is a 500 (a bug)."""
    match exc:
        case BadRequest():
            return _error(exc.status, exc.code, exc.message, exc.details, exc.headers)
        case InvalidInputs():
            details = [{"field": p.field, "message": p.reason} for p in exc.problems]
            return _error(422, "validation_error", str(exc.problems[0]), details)
        case InvalidInput():
            details = [{"field": exc.field, "message": exc.reason}]
            return _error(422, "validation_error", str(exc), details)
        case ValidationError():
            return _error(422, "validation_error", "invalid input", validation_details(exc))
        case CallRejected():
            refused = {
                "field": exc.field,
                "message": exc.reason,
                "rule": exc.rule,
                "rule_type": exc.rule_type,
                "session_id": str(exc.session_id),
            }
            return _error(403, "call_rejected", str(exc), [refused])
        case NotFound():
            return _error(404, "not_found", str(exc))
        case IllegalTransition():
            transition = {"current": exc.current, "requested": exc.target}
            return _error(409, "illegal_transition", str(exc), transition)
        case AgentBusy():
            busy = {"field": "agent_id", "message": str(exc), "state": exc.state}
            return _error(409, "agent_busy", str(exc), [busy])
        case Conflict():
            return _error(409, "conflict", str(exc))
        case CarrierUnsupported():
            return _error(409, "not_supported", str(exc))
        case CarrierError():
            # the carrier failed or refused (its message, never a credential)
            return _error(502, "carrier_error", str(exc))
        case NodeUnavailable():
            return _error(503, "node_unavailable", str(exc))
        case (
            DatabaseUnavailable()
            | FeatureUnavailable()
            | ClosedResourceError()
            | AsteriskError()
            | SecretsError()
        ):
            return _error(503, "unavailable", str(exc))
        case web.HTTPRequestEntityTooLarge():
            return _error(413, "body_too_large", "request body is too large")
        case web.HTTPMethodNotAllowed():
            allowed = ", ".join(sorted(exc.allowed_methods))
            return _error(
                405,
                "method_not_allowed",
                f"method not allowed; allowed: {allowed}",
                headers={"Allow": allowed},
            )
        case web.HTTPNotFound():
            return _error(404, "not_found", "no such route")
        case web.HTTPException():
            return _error(exc.status, "http_error", exc.reason)
        case _:
            return _error(500, "internal_error", "internal error; see the engine log")


@web.middleware
async def _errors_and_metrics(request: web.Request, handler: Handler) -> web.StreamResponse:
    state = request.app[API_STATE]
    started = time.perf_counter()
    route = (
        request.match_info.route.resource.canonical if request.match_info.route.resource else "?"
    )
    try:
        response = await handler(request)
    except (CtcError, BadRequest, ValidationError, web.HTTPException) as exc:
        response = _translate(exc)
        if response.status >= 500:
            log.warning("api.unavailable", route=route, error=str(exc))
    except Exception:
        log.exception("api.internal_error", route=route, method=request.method)
        response = _translate(Exception())
    state.metrics.http_requests.labels(request.method, route, str(response.status)).inc()
    state.metrics.http_latency.labels(request.method, route).observe(time.perf_counter() - started)
    return response


def _bearer(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def _auth(*, local: bool) -> Middleware:
    @web.middleware
    async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
        tenants = request.app[API_STATE].use_cases.tenants
        resource = request.match_info.route.resource
        if resource is not None and resource.canonical in router.foreign_authorization:
            # a carrier's webhook: its Authorization (Vonage's JWT) is the carrier's proof,
            # checked by the route; it names no tenant
            request[LOCAL_CALLER] = local
            return await handler(request)
        token = _bearer(request)
        tenant: Tenant | None = None
        request[LOCAL_CALLER] = local
        try:
            if token is not None:
                # header bytes that are not UTF-8 arrive as surrogates: such a token is no token
                tenant = await tenants.by_token(token) if text_problem(token) is None else None
                if tenant is None:
                    raise BadRequest(401, "unauthorized", "invalid or revoked token")
            elif local:
                slug = request.headers.get("X-CTC-Tenant", "default")
                try:
                    if text_problem(slug) is not None:
                        raise NotFound("tenant", slug)
                    tenant = await tenants.by_slug(slug)
                except NotFound as exc:
                    raise BadRequest(401, "unauthorized", f"unknown tenant {slug!r}") from exc
        except DatabaseUnavailable as exc:
            # PostgreSQL cannot say who this is: a route that needs to know answers 503,
            # /healthz and /readyz still answer (and say the database is down)
            request[TENANT_UNAVAILABLE] = exc
        if tenant is not None:
            request[TENANT] = tenant
        return await handler(request)

    return authenticate


def openapi_document() -> dict[str, Any]:
    """The OpenAPI document of every route the servers serve."""
    return router.openapi()


def build_app(
    state: ApiState,
    *,
    local: bool,
    max_body_bytes: int = 65536,
    metrics_token_required: bool = True,
) -> web.Application:
    app = web.Application(
        middlewares=[_errors_and_metrics, _auth(local=local)], client_max_size=max_body_bytes
    )
    app[API_STATE] = state
    app[METRICS_NEED_TOKEN] = metrics_token_required and not local
    # open SSE streams end when shutdown starts, not after aiohttp's shutdown_timeout
    streams = app[OPEN_STREAMS] = OpenStreams()
    app.on_shutdown.append(streams.on_shutdown)
    router.install(app)
    if not local:
        install_console(app)  # a browser reaches the engine over TCP only
    return app


class ApiServer(Lifecycle):
    """The Unix-socket site and the optional TCP site, as one component."""

    def __init__(
        self,
        state: ApiState,
        *,
        socket_path: Path,
        socket_mode: int = 0o660,
        tcp: tuple[str, int] | None = None,
        max_body_bytes: int = 65536,
        shutdown_timeout: float = 10.0,
        metrics_token_required: bool = True,
    ) -> None:
        self._state = state
        self._socket_path = socket_path
        self._socket_mode = socket_mode
        self._tcp = tcp
        self._max_body = max_body_bytes
        self._shutdown_timeout = shutdown_timeout
        self._metrics_token_required = metrics_token_required
        self._runners: list[web.AppRunner] = []
        self._bound = False  # the socket at socket_path is ours (close() removes only then)

    @property
    def tcp_port(self) -> int | None:
        """The bound TCP port (useful when configured as 0)."""
        for runner in self._runners:
            for addr in runner.addresses:
                if isinstance(addr, tuple):
                    return int(addr[1])
        return None

    async def _open(self) -> None:
        await self._start_unix()
        if self._tcp is not None:
            await self._start_tcp(*self._tcp)

    async def _start_unix(self) -> None:
        path = self._socket_path
        path.parent.mkdir(parents=True, exist_ok=True)
        runner = web.AppRunner(
            build_app(self._state, local=True, max_body_bytes=self._max_body),
            shutdown_timeout=self._shutdown_timeout,
            access_log=None,
        )
        await runner.setup()
        self._runners.append(runner)
        # bound with its final mode (replacing a stale socket from a previous run, refused
        # while another engine listens there)
        sock = bind_unix_socket(path, self._socket_mode)
        self._bound = True
        try:
            await web.SockSite(runner, sock, backlog=LISTEN_BACKLOG).start()
        except OSError as exc:
            sock.close()
            raise CtcError(f"cannot listen on {path}: {exc.strerror}") from exc
        log.info("api.listening", socket=str(path), mode=oct(self._socket_mode))

    async def _start_tcp(self, host: str, port: int) -> None:
        runner = web.AppRunner(
            build_app(
                self._state,
                local=False,
                max_body_bytes=self._max_body,
                metrics_token_required=self._metrics_token_required,
            ),
            shutdown_timeout=self._shutdown_timeout,
            access_log=None,
        )
        await runner.setup()
        self._runners.append(runner)
        try:
            await web.TCPSite(runner, host, port, backlog=LISTEN_BACKLOG).start()
        except OSError as exc:
            raise CtcError(f"cannot listen on {host}:{port}: {exc.strerror}") from exc
        log.info("api.listening", host=host, port=self.tcp_port)

    async def _close(self) -> None:
        """Stop accepting, let in-flight requests finish (bounded by ``shutdown_timeout``
        per site), remove the socket if we bound it (a start refused because another engine
        listens leaves that one's alone)."""
        runners, self._runners = self._runners, []
        for runner in reversed(runners):
            try:
                await asyncio.shield(runner.cleanup())
            except Exception:
                log.warning("api.close_failed", exc_info=True)
        bound, self._bound = self._bound, False
        with contextlib.suppress(FileNotFoundError):
            if bound and self._socket_path.is_socket():
                self._socket_path.unlink()
