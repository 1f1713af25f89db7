"""The engine's settings: one frozen, validated model per section of the YAML file.

Every section is optional and every field has a default, so an empty file (or none) is a
working configuration for a sandbox. The models are strict (no coercion from YAML: an
unquoted ``0660`` is an int, not a mode) and refuse unknown keys; our own checks raise
pydantic errors of type :data:`CHECK_ERROR_TYPE` whose message the loader
(:mod:`engine.config.loader`) shows verbatim, with the file and line.

Secrets (``ari.password``, ``ami.password``, ``secrets.key``) are
:class:`pydantic.SecretStr` and never show in ``repr``/``str``; the password inside
``database.url`` is masked in ``repr`` and in :func:`redacted_summary`, which is what
``ctc config check`` prints.

:func:`exposure_warnings` lists settings that work but expose the engine (a socket mode wider
than 0660, TCP on a non-loopback address without TLS, no secrets key): ``ctc run`` logs them,
``ctc config check`` prints them as ``warn:`` lines.
"""

from __future__ import annotations

import ipaddress
import re
import socket
import string
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Annotated, Any, Literal

import phonenumbers
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from engine.secrets import NO_KEY_HINT, Keyring

__all__ = [
    "CHECK_ERROR_TYPE",
    "AgiSettings",
    "AmiSettings",
    "ApiSettings",
    "AriSettings",
    "CallSettings",
    "CallbackSettings",
    "DatabaseSettings",
    "LogSettings",
    "NodeSettings",
    "QualitySettings",
    "RetentionSettings",
    "SecretsSettings",
    "Settings",
    "TcpSettings",
    "TranscriptSettings",
    "exposure_warnings",
    "redacted_summary",
]

CHECK_ERROR_TYPE = "ctc_config"
"""The pydantic error type of the settings' own checks; their message is shown verbatim."""

_MASK = "***"


# --------------------------------------------------------------------------- validators


def _fail(message: str) -> PydanticCustomError:
    return PydanticCustomError(CHECK_ERROR_TYPE, message)


def _between(low: int, high: int) -> Callable[[int], int]:
    def check(value: int) -> int:
        if not low <= value <= high:
            raise _fail(f"must be between {low} and {high}")
        return value

    return check


def _one_of(*choices: str) -> Callable[[Any], Any]:
    message = "must be one of: " + ", ".join(choices)

    def check(value: Any) -> Any:
        if not isinstance(value, str) or value.strip().lower() not in choices:
            raise _fail(message)
        return value.strip().lower()

    return check


def _prefixed(*prefixes: str) -> Callable[[str], str]:
    message = "must start with " + " or ".join(prefixes)

    def check(value: str) -> str:
        if not value.startswith(prefixes):
            raise _fail(message)
        return value

    return check


def _non_empty_path(value: Any) -> Any:
    if isinstance(value, str) and not value.strip():
        raise _fail("must not be empty")
    return value


_OCTAL_MODE = re.compile(r"0?[0-7]{3,4}")


def _octal_mode(value: Any) -> int:
    # YAML turns an unquoted 0660 into the int 432 and 660 into 660: only a string is
    # unambiguous, so anything else is refused.
    if not isinstance(value, str) or not _OCTAL_MODE.fullmatch(value):
        raise _fail("expected octal string")
    return int(value, 8)


_APP_NAME = re.compile(r"[A-Za-z0-9_-]+")


_NODE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")


def _node_name(value: str) -> str:
    if not _NODE_NAME.fullmatch(value):
        raise _fail(
            "must be 1 to 63 letters, digits, '.', '_' or '-', starting with a letter or digit"
        )
    return value


def _host_name_if_unset(value: Any) -> Any:
    """``null`` (the default) names the node after the host, up to its first dot (``ctc``
    when the host name is not a valid node name)."""
    if value is not None:
        return value
    name = socket.gethostname().split(".", 1)[0]
    return name if _NODE_NAME.fullmatch(name) else "ctc"


def _app_name(value: str) -> str:
    if not _APP_NAME.fullmatch(value):
        raise _fail("must contain only letters, digits, '_' and '-'")
    return value


_E164 = re.compile(r"\+[1-9]\d{6,14}")


def _caller_id(value: Any) -> Any:
    if value is None:
        return None
    # Unquoted, YAML reads +14155550100 as an integer.
    if not isinstance(value, str):
        raise _fail('expected a quoted string like "+14155550100"')
    if not _E164.fullmatch(value):
        raise _fail('must be an E.164 number like "+14155550100"')
    return value


def _region(value: Any) -> Any:
    if value is None:
        return None
    if not isinstance(value, str) or not re.fullmatch(r"[A-Z]{2}", value):
        raise _fail('expected an ISO country code in capitals, like "GB"')
    if value not in phonenumbers.SUPPORTED_REGIONS:
        raise _fail(f"phonenumbers knows no region {value!r}")
    return value


def _endpoint_template(value: str) -> str:
    try:
        names = {name for _, name, _, _ in string.Formatter().parse(value) if name is not None}
    except ValueError:
        raise _fail("unbalanced braces (write {{ or }} for a literal brace)") from None
    if "number" not in names:
        raise _fail("must contain {number}")
    if names != {"number"}:
        raise _fail("may only use the {number} placeholder")
    return value


_DIALPLAN_LOCATION = re.compile(r"^[A-Za-z0-9_.-]+,[A-Za-z0-9_*#+.-]+,[0-9]+$")


def _hangup_handler(value: str) -> str:
    if value and not _DIALPLAN_LOCATION.match(value):
        raise _fail('expected "context,extension,priority" (e.g. "ctc-hangup,s,1") or ""')
    return value


Port = Annotated[int, AfterValidator(_between(1, 65535))]
RingTimeout = Annotated[int, AfterValidator(_between(1, 600))]
Seconds = Annotated[float, Field(gt=0)]
Name = Annotated[str, Field(min_length=1)]
FsPath = Annotated[Path, Field(strict=False), BeforeValidator(_non_empty_path)]


# --------------------------------------------------------------------------- models


class _Section(BaseModel):
    """Common behaviour: frozen, unknown keys refused, no type coercion from YAML."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        strict=True,
        allow_inf_nan=False,
        hide_input_in_errors=True,
    )

    @model_validator(mode="before")
    @classmethod
    def _empty_section_means_defaults(cls, data: Any) -> Any:
        # ``api:`` with every key commented out is YAML null: treat it as ``{}``.
        if not isinstance(data, dict):
            return data
        return {
            key: value
            for key, value in data.items()
            if not (value is None and key in cls.model_fields and _is_section(cls, key))
        }

    def __repr_args__(self) -> Iterable[tuple[str | None, Any]]:
        # A URL may carry a password (postgresql://user:secret@host/db): mask it in repr/str.
        for name, value in super().__repr_args__():
            yield name, (_mask_url(value) if name == "url" and isinstance(value, str) else value)


def _is_section(model: type[BaseModel], name: str) -> bool:
    annotation = model.model_fields[name].annotation
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


class DatabaseSettings(_Section):
    """``database:`` — the PostgreSQL connection pool."""

    url: Annotated[str, AfterValidator(_prefixed("postgres://", "postgresql://"))] = (
        "postgresql://postgres@127.0.0.1:5432/ctc"
    )
    min_size: int = Field(default=1, ge=0)
    max_size: int = Field(default=10, ge=1, validate_default=True)
    command_timeout: Seconds = 10.0
    migrations_dir: FsPath | None = None
    # the password, read from this file and put into url (which then must hold none)
    password_file: FsPath | None = None

    @field_validator("max_size")
    @classmethod
    def _max_not_below_min(cls, value: int, info: ValidationInfo) -> int:
        min_size = info.data.get("min_size")
        if isinstance(min_size, int) and value < min_size:
            raise _fail(f"must be at least min_size ({min_size})")
        return value


class TcpSettings(_Section):
    """``api.tcp:`` — the optional TCP listener of the control API."""

    enabled: bool = False
    host: Name = "127.0.0.1"
    port: Port = 8470
    # /metrics over TCP needs a bearer token (like the API); false: anyone reaching the port
    metrics_token_required: bool = True


class ApiSettings(_Section):
    """``api:`` — the control API (Unix socket first, TCP optional)."""

    socket: FsPath = Path("/run/ctc/engine.sock")
    socket_mode: Annotated[int, BeforeValidator(_octal_mode)] = 0o660
    max_body_bytes: int = Field(default=65536, gt=0)
    # open GET /api/v1/events streams (each holds a connection and a queue); one more is 429
    max_event_streams_per_tenant: int = Field(default=20, ge=1)
    max_event_streams: int = Field(default=200, ge=1)
    tcp: TcpSettings = Field(default_factory=TcpSettings)


LogLevel = Literal["debug", "info", "warning", "error"]
LogFormat = Literal["auto", "json", "console"]


class LogSettings(_Section):
    """``log:`` — level and output format (``auto``: console on a TTY, else JSON)."""

    level: Annotated[LogLevel, BeforeValidator(_one_of("debug", "info", "warning", "error"))] = (
        "info"
    )
    format: Annotated[LogFormat, BeforeValidator(_one_of("auto", "json", "console"))] = "auto"


def _password_conflict(value: Path | None, info: ValidationInfo) -> Path | None:
    if value is not None and info.data.get("password") is not None:
        raise _fail("cannot be used together with password (set only one)")
    return value


class AriSettings(_Section):
    """``ari:`` — Asterisk REST Interface (HTTP + WebSocket events)."""

    enabled: bool = True
    url: Annotated[str, AfterValidator(_prefixed("http://", "https://"))] = "http://127.0.0.1:8088"
    username: Name = "ctc"
    password: SecretStr | None = None
    password_file: FsPath | None = None
    app: Annotated[str, AfterValidator(_app_name)] = "ctc"
    recording_dir: FsPath = Path("/var/spool/asterisk/recording")

    @field_validator("password_file")
    @classmethod
    def _one_password_source(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        return _password_conflict(value, info)


class AmiSettings(_Section):
    """``ami:`` — Asterisk Manager Interface (used only when ``ari.enabled``)."""

    enabled: bool = True
    host: Name = "127.0.0.1"
    port: Port = 5038
    username: Name = "ctc"
    password: SecretStr | None = None
    password_file: FsPath | None = None
    ping_interval: Seconds = 20.0

    @field_validator("password_file")
    @classmethod
    def _one_password_source(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        return _password_conflict(value, info)


class AgiSettings(_Section):
    """``agi:`` — the FastAGI server dialplan reaches with ``AGI(agi://host:port/...)``."""

    enabled: bool = True
    host: Name = "127.0.0.1"
    port: Port = 4573
    request_timeout: Seconds = 5.0
    reply_timeout: Seconds = 120.0
    # None: from the process's open-files limit
    # (see engine.asterisk.links.agi_server.connection_cap)
    max_connections: int | None = Field(default=None, ge=1)


class IvrSettings(_Section):
    """``ivr:`` — when the IVR (both doors) takes no more callers.

    Past capacity a new caller is handed back to the dialplan at once with
    ``CTC_IVR_STATUS=OVERLOADED`` (dialplan/extensions.conf refuses it unanswered: SIP 503),
    and callers already in a menu keep the engine: the event loop running later than
    ``shed_lag_ms`` for 300 ms on end (every call waits on it; engine/loop_watch.py
    measures it every 100 ms), Asterisk answering new callers slower than
    ``shed_answer_ms`` (the median of the last 40; the calls in progress are then limited
    to what it answers in time: engine/app/ivr_admission.py; None: not watched) or
    ``max_calls`` IVR calls in progress (None: no cap).
    """

    shed_lag_ms: int = Field(default=250, ge=10)
    shed_answer_ms: int | None = Field(default=500, ge=10)
    max_calls: int | None = Field(default=None, ge=1)


class CallSettings(_Section):
    """``calls:`` — how click-to-call legs are dialled."""

    agent_ring_timeout: RingTimeout = 30
    customer_ring_timeout: RingTimeout = 30
    default_caller_id: Annotated[str | None, BeforeValidator(_caller_id)] = None
    agent_endpoint_template: Annotated[str, AfterValidator(_endpoint_template)] = "PJSIP/{number}"
    customer_endpoint_template: Annotated[str, AfterValidator(_endpoint_template)] = (
        "PJSIP/{number}@trunk"
    )
    # A queued call whose start was lost (the engine died right after accepting it) is
    # started by the next engine if it is younger than this, else failed with a callback.
    queued_start_deadline: Seconds = 120.0
    # Dialplan location (context,exten,priority) every leg gets as a hangup handler, so
    # Asterisk records a hangup that happens while the engine is away (read and deleted
    # over AMI: without the AMI link no handler is set); "" turns it off.
    hangup_handler: Annotated[str, AfterValidator(_hangup_handler)] = "ctc-hangup,s,1"
    # How long an ended, recorded call waits for Asterisk's RecordingFinished before the
    # engine asks ARI itself (Asterisk 22 sometimes sends none for a destroyed bridge's
    # recording): a stored file ends the recording with an estimated duration.
    recording_end_timeout: Seconds = 10.0
    # Where numbers an agent dials from the desk phone without "+country" belong (the
    # [ctc-agents] door); None: only numbers with their country code are placed.
    agent_default_region: Annotated[str | None, BeforeValidator(_region)] = None


class CallbackSettings(_Section):
    """``callbacks:`` — delivery of status callbacks to the ERP (from the outbox)."""

    timeout: Seconds = 5.0
    max_attempts: int = Field(default=12, ge=1)
    backoff_initial: Seconds = 1.0
    backoff_max: Seconds = Field(default=300.0, validate_default=True)

    @field_validator("backoff_max")
    @classmethod
    def _max_not_below_initial(cls, value: float, info: ValidationInfo) -> float:
        initial = info.data.get("backoff_initial")
        if isinstance(initial, int | float) and value < initial:
            raise _fail(f"must be at least backoff_initial ({initial:g})")
        return value


Days = Annotated[int, AfterValidator(_between(1, 36500))]


class RetentionSettings(_Section):
    """``retention:`` — how long call history, delivered callbacks and recordings are kept.

    ``null`` keeps them forever. The daemon prunes every ``interval`` seconds in batches of
    ``batch_size`` rows, one short transaction each, pausing ``batch_pause`` seconds
    between batches (see :mod:`engine.store.retention`); ``ctc db prune --dry-run`` says
    what would go.
    """

    call_events_days: Days | None = None
    delivered_callbacks_days: Days | None = 30
    recordings_days: Days | None = None
    interval: Seconds = 3600.0
    batch_size: int = Field(default=5000, ge=100, le=100000)
    batch_pause: float = Field(default=0.05, ge=0, le=60)


class QualitySettings(_Section):
    """``quality:`` — call quality (RTCP figures and an E-model MOS) per leg of every call.

    Every leg's end-of-call figures come with Asterisk's hangup (``RTPAUDIOQOS*`` channel
    variables, delivered as ARI ``ChannelVarset`` events: no request of ours). A leg up for
    at least ``sample_interval`` seconds is also sampled every ``sample_interval`` seconds
    (one ARI request per leg; ``0`` samples nothing). A leg whose MOS is below ``mos_floor`` gets a
    ``quality.low_mos`` call event.
    """

    enabled: bool = True
    sample_interval: float = Field(default=15.0, ge=0, le=3600)
    mos_floor: float = Field(default=3.5, ge=1, le=5)
    # G.113 Appendix I packet-loss robustness of G.711: 25.1 with concealment, 4.3 without
    packet_loss_robustness: float = Field(default=25.1, gt=0, le=100)


class StatsSettings(_Section):
    """``stats:`` — the manager's statistics. Their daily rollup (sql/0023) is exact at
    every moment; every ``compact_interval`` seconds the rows triggers appended to it are
    folded into one per day and key (``ctc stats compact`` does the same by hand)."""

    compact_interval: float = Field(default=60.0, ge=1, le=86400)


class TranscriptSettings(_Section):
    """``transcripts:`` — offline transcription of recorded calls, on this host.

    A tenant turns it on (``ctc tenant update SLUG --transcripts on``; off by default);
    its calls' recordings are then queued in PostgreSQL as they finish and transcribed by
    the daemon's worker in a separate, low-priority process, ``concurrency`` at a time.
    ``backend``: ``pocketsphinx`` (English model in the wheel; weak on telephone audio) or
    ``whisper`` (faster-whisper, ``pip install 'ctc-engine[whisper]'``, with a
    CTranslate2 model directory in ``model_dir``). ``enabled: false`` runs no worker.
    """

    enabled: bool = True
    backend: Literal["pocketsphinx", "whisper"] = "pocketsphinx"
    model_dir: FsPath | None = None
    language: str = Field(default="en", pattern=r"^[a-z]{2,3}$")
    concurrency: int = Field(default=1, ge=1, le=16)
    # the worker process's niceness (0-19): transcription yields the CPU to calls
    nice: int = Field(default=10, ge=0, le=19)
    poll_interval: Seconds = 5.0
    max_attempts: int = Field(default=3, ge=1, le=100)
    backoff_initial: Seconds = 30.0
    # a job whose worker died is taken up again once its lease ran out
    lease: Seconds = 1800.0

    @model_validator(mode="after")
    def _whisper_needs_model(self) -> TranscriptSettings:
        if self.enabled and self.backend == "whisper" and self.model_dir is None:
            raise _fail("backend whisper needs model_dir (a CTranslate2 model directory)")
        return self


class SecretsSettings(_Section):
    """``secrets:`` — the key(s) that encrypt stored secrets (see :mod:`engine.secrets`)."""

    key: SecretStr | None = None
    key_file: FsPath | None = None

    def keyring(self) -> Keyring:
        """The configured keys (``key``, filled from ``key_file`` on load); empty for none."""
        return Keyring.parse(None if self.key is None else self.key.get_secret_value())

    @field_validator("key_file")
    @classmethod
    def _one_key_source(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        if value is not None and info.data.get("key") is not None:
            raise _fail("cannot be used together with key (set only one)")
        return value


class NodeSettings(_Section):
    """``node:`` — this engine among the engines that share one database.

    Each engine registers under ``name`` and beats every ``heartbeat_interval`` seconds
    (``ctc nodes`` lists them); a node whose last beat is older than ``stale_after`` seconds
    is shown *stale*. The sessions an engine creates carry its name (``node`` column).
    ``max_calls`` is the most live calls this node takes (``null``: no limit of its own).

    ``claim_queue``: ``initiate`` on this engine stores the call unclaimed, and whichever
    engine with capacity (``max_calls`` minus its live calls, its Asterisk link up) claims
    it first dials it; off, the engine that received the call dials it. Every engine
    sharing a database should say the same. A busier engine waits ``claim_yield`` seconds
    per less-loaded engine before claiming, so the work spreads; ``claim_batch`` is the
    most calls one claim takes. Calls a node claimed but had not dialled when its beats
    stopped (``stale_after``) go back to the queue.

    ``failover_after``: a node silent that long (longer than an engine restart, which
    re-adopts its own calls) has its live calls ended by one surviving engine
    (``session.owner_lost``, status ``failed``, end_reason ``node_lost``).
    ``forward_timeout``: how long an engine waits for the owning engine to carry out a
    control or transfer sent to it (then 503 ``node_unavailable``).
    """

    name: Annotated[str, BeforeValidator(_host_name_if_unset), AfterValidator(_node_name)] = Field(
        default=None, validate_default=True
    )
    heartbeat_interval: Seconds = 5.0
    stale_after: Seconds = Field(default=30.0, validate_default=True)
    max_calls: int | None = Field(default=None, ge=1)
    claim_queue: bool = False
    claim_batch: int = Field(default=4, ge=1, le=100)
    claim_yield: Seconds = 0.02
    failover_after: Seconds = 120.0
    forward_timeout: Seconds = 5.0

    @field_validator("stale_after")
    @classmethod
    def _stale_after_beats(cls, value: float, info: ValidationInfo) -> float:
        interval = info.data.get("heartbeat_interval")
        if isinstance(interval, int | float) and value < 2 * interval:
            raise _fail(f"must be at least twice heartbeat_interval ({2 * interval:g})")
        return value


class Settings(_Section):
    """The whole engine configuration; every section is optional."""

    node: NodeSettings = Field(default_factory=NodeSettings)

    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    api: ApiSettings = Field(default_factory=ApiSettings)
    log: LogSettings = Field(default_factory=LogSettings)
    ari: AriSettings = Field(default_factory=AriSettings)
    ami: AmiSettings = Field(default_factory=AmiSettings)
    agi: AgiSettings = Field(default_factory=AgiSettings)
    calls: CallSettings = Field(default_factory=CallSettings)
    ivr: IvrSettings = Field(default_factory=IvrSettings)
    callbacks: CallbackSettings = Field(default_factory=CallbackSettings)
    retention: RetentionSettings = Field(default_factory=RetentionSettings)
    quality: QualitySettings = Field(default_factory=QualitySettings)
    stats: StatsSettings = Field(default_factory=StatsSettings)
    transcripts: TranscriptSettings = Field(default_factory=TranscriptSettings)
    secrets: SecretsSettings = Field(default_factory=SecretsSettings)


# --------------------------------------------------------------------------- summary


_URL = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<netloc>[^/?#]*)(?P<rest>.*)", re.S)
_QUERY_PASSWORD = re.compile(r"(?i)([?&]password=)[^&#]*")


def _mask_url(url: str) -> str:
    """``postgresql://user:secret@host/db`` -> ``postgresql://user:***@host/db``."""
    match = _URL.fullmatch(url)
    if match is None:
        return url
    netloc = match["netloc"]
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        if ":" in userinfo:
            netloc = f"{userinfo.split(':', 1)[0]}:{_MASK}@{host}"
    rest = _QUERY_PASSWORD.sub(lambda m: m.group(1) + _MASK, match["rest"])
    return f"{match['scheme']}{netloc}{rest}"


def redacted_summary(settings: Settings) -> dict[str, Any]:
    """The effective settings as a JSON-able dict, every secret shown as ``"***"``.

    ``api.socket_mode`` is rendered back as an octal string (``"0660"``).
    """
    summary = settings.model_dump(mode="json")
    summary["database"]["url"] = _mask_url(settings.database.url)
    summary["api"]["socket_mode"] = f"{settings.api.socket_mode:04o}"
    summary["ari"]["url"] = _mask_url(settings.ari.url)
    summary["ari"]["password"] = None if settings.ari.password is None else _MASK
    summary["ami"]["password"] = None if settings.ami.password is None else _MASK
    summary["secrets"]["key"] = None if settings.secrets.key is None else _MASK
    return summary


# --------------------------------------------------------------------------- warnings

_SAFE_SOCKET_BITS = 0o660


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def exposure_warnings(settings: Settings) -> list[str]:
    """Settings that work but expose the engine, one sentence each naming the fix."""
    out: list[str] = []
    api = settings.api
    if api.socket_mode & ~_SAFE_SOCKET_BITS:
        out.append(
            f"api.socket_mode {api.socket_mode:04o} gives access beyond the socket's owner and "
            "group (any bit outside 0660): every local user it lets in can act for any "
            'tenant; use "0660" or "0600"'
        )
    if api.tcp.enabled and not _is_loopback(api.tcp.host):
        out.append(
            f"api.tcp.host {api.tcp.host} is not a loopback address and the engine has no "
            "TLS: tokens and call data cross the network in clear; put TLS in front "
            "(reverse proxy) or bind to loopback"
        )
        if not api.tcp.metrics_token_required:
            out.append(
                f"api.tcp.metrics_token_required is false: /metrics on {api.tcp.host} answers "
                "anyone who reaches the port (tenant names, call counts)"
            )
    if settings.secrets.key is None:
        out.append(
            f"{NO_KEY_HINT}: provider credentials and webhook secrets cannot be stored, and "
            "tenant callback secrets are stored in plaintext until a key is set and "
            "`ctc secrets rotate` runs"
        )
    return out
