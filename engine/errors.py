"""The one exception tree of CTC Engine.

Every error the engine raises on purpose derives from :class:`CtcError`; third-party
errors (asyncpg, aiohttp, yaml, pydantic) are translated at the boundary with
``raise ... from exc``. The CLI catches ``CtcError`` alone, prints one line and exits
non-zero; the API maps each class to a stable error code and HTTP status (503
``unavailable`` for :class:`DatabaseUnavailable`, :class:`FeatureUnavailable`,
:class:`ClosedResourceError`, :class:`AsteriskError` and :class:`SecretsError`).

::

    CtcError
    ├── ConfigError                 a config file or value is wrong (names file:line: field)
    │   └── ConfigErrors            several of them in one file, in file order
    ├── DomainError                 the pure domain refused something
    │   ├── IllegalTransition       a call status change the state machine forbids
    │   ├── CallRejected            compliance refused a call (stored rejected, never dialled)
    │   └── InvalidInput            a value (phone number, field) is not acceptable
    │       └── InvalidInputs       several of them in one request, in document order
    ├── StoreError                  PostgreSQL-side failure
    │   ├── DatabaseUnavailable     cannot reach the database
    │   ├── MigrationError          a migration could not be applied
    │   │   └── MigrationChecksumMismatch   an applied migration file was changed
    │   ├── NotFound                no such row (for this tenant)
    │   └── Conflict                uniqueness / idempotency conflict
    ├── ClosedResourceError         a pool, link or server was used after close()
    ├── FeatureUnavailable          what was asked needs a part that is off or down:
    │                               Asterisk (ARI not enabled or not connected), the
    │                               event stream
    ├── SecretsError                a stored secret cannot be sealed or opened (no key,
    │                               a key no longer configured, a damaged value)
    ├── ApiClientError              the control API answered an error to our own client
    ├── CallbackDeliveryError       a status callback POST failed (refused, timeout, non-2xx)
    ├── DestinationRefused          an outbound request to an address the network policy refuses
    ├── TranscriptionError          a recording could not be transcribed (unreadable audio,
    │                               a backend or model that cannot load)
    ├── CarrierError                a carrier (Twilio, Exotel, Vonage, mCube) failed or refused
    │   ├── CarrierRefused          a 4xx answer to a request: provably no call was created
    │   ├── CarrierRateLimited      429: not processed (Twilio documents it as safe to retry)
    │   ├── CarrierAuthFailed       401/403: the provider's credentials are wrong
    │   ├── CarrierUnavailable      5xx, timeout, transport error: a call may exist
    │   ├── CarrierUnsupported      the carrier does not offer the operation (transfer, ...)
    │   └── WebhookRejected         a carrier webhook failed verification (signature, token)
    └── AsteriskError               talking to Asterisk failed
        ├── AriError
        ├── AmiError
        ├── AgiError                FastAGI: a bad request, a failed command, a hung-up channel
        └── SandboxError            the sandbox Asterisk could not be built or run
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = [
    "AgentBusy",
    "AgiError",
    "AmiError",
    "ApiClientError",
    "AriError",
    "AsteriskError",
    "CallRejected",
    "CallbackDeliveryError",
    "CarrierAuthFailed",
    "CarrierError",
    "CarrierRateLimited",
    "CarrierRefused",
    "CarrierUnavailable",
    "CarrierUnsupported",
    "ClosedResourceError",
    "ConfigError",
    "ConfigErrors",
    "Conflict",
    "CtcError",
    "DatabaseUnavailable",
    "DestinationRefused",
    "DomainError",
    "FeatureUnavailable",
    "IllegalTransition",
    "InvalidInput",
    "InvalidInputs",
    "MigrationChecksumMismatch",
    "MigrationError",
    "NodeUnavailable",
    "NotFound",
    "SandboxError",
    "SecretsError",
    "StoreError",
    "TranscriptionError",
    "WebhookRejected",
    "describe",
]


class CtcError(Exception):
    """Root of every error CTC Engine raises on purpose."""


class ConfigError(CtcError):
    """A configuration file or value is wrong.

    ``str(err)`` is one line: ``engine.yaml:14: api.socket_mode: expected octal string``.
    """

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        line: int | None = None,
        field: str | None = None,
    ) -> None:
        self.file = file
        self.line = line
        self.field = field
        self.reason = message
        where = ""
        if file is not None:
            where = f"{file}:{line}: " if line is not None else f"{file}: "
        what = f"{field}: " if field else ""
        super().__init__(f"{where}{what}{message}")


class ConfigErrors(ConfigError):
    """Several problems in one file, in file order (:attr:`errors`); ``str(err)`` is one
    line per problem. Its own file, line, field and reason are the first problem's, so
    whatever reports a single ConfigError reports the first."""

    def __init__(self, errors: Sequence[ConfigError]) -> None:
        if not errors:
            raise ValueError("ConfigErrors needs at least one error")
        first = errors[0]
        super().__init__(first.reason, file=first.file, line=first.line, field=first.field)
        self.errors = list(errors)
        self.args = ("\n".join(str(e) for e in self.errors),)


class DomainError(CtcError):
    """The pure domain refused an operation."""


class IllegalTransition(DomainError):
    """A call status change that the state machine forbids."""

    def __init__(self, current: str, target: str) -> None:
        self.current = current
        self.target = target
        super().__init__(f"illegal call status transition {current} -> {target}")


class InvalidInput(DomainError):
    """A value is not acceptable; ``field`` names it."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.reason = message
        super().__init__(f"{field}: {message}")


class InvalidInputs(InvalidInput):
    """Several values of one request are not acceptable (:attr:`problems`, in document
    order). Its own field and reason are the first problem's, so whatever reports a single
    InvalidInput reports the first; the API lists them all."""

    def __init__(self, problems: Sequence[InvalidInput]) -> None:
        if not problems:
            raise ValueError("InvalidInputs needs at least one problem")
        super().__init__(problems[0].field, problems[0].reason)
        self.problems = list(problems)
        self.args = ("\n".join(str(p) for p in self.problems),)


class CallRejected(DomainError):
    """Compliance refused to dial a number: a new call is stored ``rejected`` and was never
    dialled, a transfer is not made. ``rule`` names the rule (or list) that refused,
    ``reason`` says why, ``field`` the request field that held the number."""

    def __init__(
        self,
        session_id: Any,
        rule: str,
        rule_type: str,
        reason: str,
        *,
        field: str = "customer_number",
    ) -> None:
        self.session_id = session_id
        self.field = field
        self.rule = rule
        self.rule_type = rule_type
        self.reason = reason
        super().__init__(f"call rejected by {rule}: {reason}")


class StoreError(CtcError):
    """PostgreSQL-side failure."""


class DatabaseUnavailable(StoreError):
    """The database cannot be reached."""


class MigrationError(StoreError):
    """A migration could not be applied."""


class MigrationChecksumMismatch(MigrationError):
    """An already-applied migration file was changed on disk."""


class NotFound(StoreError):
    """No such row (for this tenant)."""

    def __init__(self, what: str, key: Any) -> None:
        self.what = what
        self.key = key
        super().__init__(f"{what} {key} not found")


class Conflict(StoreError):
    """A uniqueness or idempotency conflict."""


class AgentBusy(Conflict):
    """The agent a call names is working on another call (``state``: ringing, on_call or
    wrap_up): the call is not stored and nothing is dialled."""

    def __init__(self, agent: str, state: str) -> None:
        self.agent = agent
        self.state = state
        super().__init__(f"agent {agent!r} is busy ({state}): not offered another call")


class ClosedResourceError(CtcError):
    """A pool, link or server was used after it was closed."""


class FeatureUnavailable(CtcError):
    """What was asked needs a part of the engine that is off or down now: Asterisk (the ARI
    link) is not enabled or not connected, or the event stream is not served. The request
    was valid; the API answers 503 ``unavailable`` and the client may retry once the part is
    back."""


class NodeUnavailable(FeatureUnavailable):
    """The engine that owns a session (another node sharing the database) did not carry
    out a control or transfer sent to it within ``node.forward_timeout``: it is down, or
    too busy. The API answers 503 ``node_unavailable``; the request was not carried out
    (it is withdrawn before this is raised), so the client may retry."""


class SecretsError(CtcError):
    """A secret cannot be encrypted or decrypted: no key configured, the value was sealed
    under a key that is no longer configured, or the stored value is damaged."""


class TranscriptionError(CtcError):
    """A recording could not be transcribed: its audio is unreadable, or the backend or
    its model cannot be loaded. The worker records it on the job and tries again later."""


class ApiClientError(CtcError):
    """The control API answered an error to one of our own clients (the CLI)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        self.status = status
        self.code = code
        super().__init__(f"{code}: {message} (HTTP {status})")


class CallbackDeliveryError(CtcError):
    """A status callback could not be delivered; it is retried from the outbox, unless
    ``permanent`` (its URL is refused by the network policy): then it is dead at once.

    ``status`` is the receiver's HTTP status when it answered, ``None`` when it did not
    (connection refused, timeout, reset).
    """

    def __init__(self, message: str, *, status: int | None = None, permanent: bool = False) -> None:
        self.status = status
        self.permanent = permanent
        super().__init__(message)


class DestinationRefused(CtcError, OSError):
    """An outbound request (status callback, IVR lookup) was not sent: its destination is
    an address the network policy refuses (:mod:`engine.domain.netpolicy`).

    Also an :class:`OSError`, because it is raised inside aiohttp's resolver and socket
    factory, which pass only OSErrors on (wrapped in a connection error).
    """


class CarrierError(CtcError):
    """A request to a carrier's API failed. ``call_may_exist`` says whether a call might
    have been created anyway (a timeout or 5xx after the request was sent): whoever retries
    or fails over must reconcile first. ``status`` is the carrier's HTTP status, if any."""

    call_may_exist: bool = False

    def __init__(self, provider_type: str, message: str, *, status: int | None = None) -> None:
        self.provider_type = provider_type
        self.status = status
        super().__init__(f"{provider_type}: {message}")


class CarrierRefused(CarrierError):
    """The carrier refused the request (a 4xx validation answer): nothing was created."""


class CarrierRateLimited(CarrierError):
    """The carrier answered 429: the request was not processed."""


class CarrierAuthFailed(CarrierError):
    """The carrier refused the provider's credentials (401/403)."""


class CarrierUnavailable(CarrierError):
    """No usable answer (5xx, timeout, connection lost after sending): a call may exist."""

    call_may_exist = True


class CarrierUnsupported(CarrierError):
    """The carrier does not offer this operation (e.g. transfer on Exotel, end on mCube)."""


class WebhookRejected(CarrierError):
    """A carrier webhook failed verification; ``reason`` is the metric's reason label."""

    def __init__(self, provider_type: str, reason: str, message: str) -> None:
        self.reason = reason
        super().__init__(provider_type, message, status=401)


class AsteriskError(CtcError):
    """Talking to Asterisk failed."""


class AriError(AsteriskError):
    """An ARI request or the ARI event socket failed."""


class AmiError(AsteriskError):
    """An AMI action or the AMI connection failed."""


class AgiError(AsteriskError):
    """A FastAGI request or command failed (subclasses in
    :mod:`engine.asterisk.links.agi_protocol` and :mod:`engine.asterisk.links.agi_server`)."""


class SandboxError(AsteriskError):
    """The sandbox Asterisk could not be built, started or stopped."""


def describe(exc: BaseException) -> str:
    """What went wrong, for a log line or a wrapping error: the exception's class and its
    message (``TimeoutError``, ``ClientConnectorError: Cannot connect to host …``). Many
    of asyncio's and aiohttp's exceptions have an empty message, and a bare ``{exc}`` left
    log lines with no reason at all."""
    message = str(exc)
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__
