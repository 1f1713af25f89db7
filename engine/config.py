"""The engine's configuration: a YAML file, environment overrides, validated settings.

:func:`load_settings` finds the file (explicit path, else ``$CTC_CONFIG``, else
:data:`DEFAULT_CONFIG_PATH`), reads it, applies the ``CTC_*`` environment overrides and
validates the result into a frozen :class:`Settings` tree::

    settings = load_settings()
    settings.database.url, settings.api.tcp.port, settings.ari.password  # SecretStr | None

Every problem becomes exactly one :class:`~engine.errors.ConfigError` whose text names the
file, the line and the dotted field, e.g. ``engine.yaml:14: api.socket_mode: expected octal
string``. To get the line, the YAML is composed into nodes (which keep their marks), turned
into plain Python while remembering each path's line, validated with pydantic, and each
pydantic error location is mapped back to its node. A value that came from an environment
variable is reported under the variable's name instead (``CTC_API_TCP_PORT: expected an
integer``).

Secrets (``ari.password``, ``ami.password``) are :class:`pydantic.SecretStr` and never show
in ``repr``/``str``; the password inside ``database.url`` is masked in ``repr`` and in
:func:`redacted_summary`, which is what ``ctc config check`` prints.

Relative ``password_file``, ``secrets.key_file`` and ``database.migrations_dir`` paths are
taken relative to the directory of the config file. ``password_file`` is read by
:func:`load_settings` (not by the models), after validation; its content minus trailing
newlines becomes the password. ``secrets.key_file`` is read the same way, and refused when
other users may read it (it decrypts every stored secret).

:func:`exposure_warnings` lists settings that work but expose the engine (a socket mode wider
than 0660, TCP on a non-loopback address without TLS, no secrets key): ``ctc run`` logs them,
``ctc config check`` prints them as ``warn:`` lines.
"""

from __future__ import annotations

import ipaddress
import os
import re
import stat
import string
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails, PydanticCustomError

from engine.domain.text import text_problem
from engine.errors import ConfigError, SecretsError
from engine.secrets import NO_KEY_HINT, Keyring

__all__ = [
    "DEFAULT_CONFIG_PATH",
    "MAX_YAML_ALIASES",
    "MAX_YAML_BYTES",
    "MAX_YAML_EXPANSION",
    "AgiSettings",
    "AmiSettings",
    "ApiSettings",
    "AriSettings",
    "CallSettings",
    "CallbackSettings",
    "DatabaseSettings",
    "LogSettings",
    "SecretsSettings",
    "Settings",
    "TcpSettings",
    "YamlSource",
    "exposure_warnings",
    "load_settings",
    "parse_yaml_with_lines",
    "read_text_file",
    "redacted_summary",
]

DEFAULT_CONFIG_PATH = Path("/etc/ctc/engine.yaml")
"""Where the engine looks when neither a path nor ``$CTC_CONFIG`` is given."""

CONFIG_ENV_VAR = "CTC_CONFIG"

_MASK = "***"
_ERROR_TYPE = "ctc_config"  # pydantic error type of our own checks; msg is used verbatim


# --------------------------------------------------------------------------- validators


def _fail(message: str) -> PydanticCustomError:
    return PydanticCustomError(_ERROR_TYPE, message)


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


class Settings(_Section):
    """The whole engine configuration; every section is optional."""

    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    api: ApiSettings = Field(default_factory=ApiSettings)
    log: LogSettings = Field(default_factory=LogSettings)
    ari: AriSettings = Field(default_factory=AriSettings)
    ami: AmiSettings = Field(default_factory=AmiSettings)
    agi: AgiSettings = Field(default_factory=AgiSettings)
    calls: CallSettings = Field(default_factory=CallSettings)
    callbacks: CallbackSettings = Field(default_factory=CallbackSettings)
    secrets: SecretsSettings = Field(default_factory=SecretsSettings)


# --------------------------------------------------------------------------- sources

_Loc = tuple[str | int, ...]


@dataclass
class YamlSource:
    """Where each value came from: file lines per path, or an environment variable."""

    file: str | None
    key_lines: dict[_Loc, int] = field(default_factory=dict)
    value_lines: dict[_Loc, int] = field(default_factory=dict)
    env_vars: dict[_Loc, str] = field(default_factory=dict)

    def line_for(self, loc: _Loc, *, key: bool = False) -> int | None:
        if key and loc in self.key_lines:
            return self.key_lines[loc]
        if loc in self.value_lines:
            return self.value_lines[loc]
        # Not in the file (a default checked against a neighbour): point at the
        # closest enclosing key that is.
        for end in range(len(loc) - 1, 0, -1):
            line = self.key_lines.get(loc[:end])
            if line is not None:
                return line
        return None

    def error(self, message: str, loc: _Loc, *, key: bool = False) -> ConfigError:
        var = self.env_vars.get(loc)
        if var is not None:
            return ConfigError(message, field=var)
        return ConfigError(
            message, file=self.file, line=self.line_for(loc, key=key), field=_dotted(loc)
        )


def _dotted(loc: Iterable[str | int]) -> str:
    return ".".join(str(part) for part in loc)


def _line(node: yaml.Node) -> int:
    return int(node.start_mark.line) + 1


MAX_YAML_BYTES = 1 << 20
"""The largest YAML document read (a config or menus file, an API menu body): 1 MiB."""
MAX_YAML_ALIASES = 64
"""Aliases (``*name``) a document may use; merge keys (``<<: *defaults``) are aliases too."""
MAX_YAML_EXPANSION = 10_000
"""Values a document may reach through its aliases (a copied mapping counts each value in
it). With :data:`MAX_YAML_ALIASES` this bounds an alias bomb ("billion laughs": a few
lines whose aliases nest into billions of values) before it costs time or memory."""

_MAP_TAG = "tag:yaml.org,2002:map"
_SEQ_TAG = "tag:yaml.org,2002:seq"
_MERGE_TAG = "tag:yaml.org,2002:merge"


def parse_yaml_with_lines(text: str, source: YamlSource) -> dict[str, Any]:
    """YAML text -> plain dict, filling ``source`` with the line of every path.

    Bounded: a document over :data:`MAX_YAML_BYTES`, with more than
    :data:`MAX_YAML_ALIASES` aliases or whose aliases expand to more than
    :data:`MAX_YAML_EXPANSION` values is refused with a ConfigError naming the line.
    """
    file = source.file
    if len(text) > MAX_YAML_BYTES:
        raise ConfigError(f"document larger than {MAX_YAML_BYTES} bytes", file=file)
    try:
        loader = _BoundedLoader(text, file)
    except yaml.reader.ReaderError as exc:
        raise _reader_error(exc, text, file) from None
    try:
        root = loader.get_single_node()
        if root is None:
            return {}
        if not isinstance(root, yaml.MappingNode):
            raise ConfigError("top level must be a mapping", file=file, line=_line(root))
        converted = _Converter(loader, source).convert(root, ())
        assert isinstance(converted, dict)
        return converted
    except yaml.MarkedYAMLError as exc:
        # ``from None``: the YAML error's text quotes the offending line (maybe a secret).
        mark = exc.problem_mark or exc.context_mark
        line = int(mark.line) + 1 if mark is not None else None
        message = exc.problem or exc.context or "invalid YAML"
        raise ConfigError(message, file=file, line=line) from None
    except yaml.reader.ReaderError as exc:
        raise _reader_error(exc, text, file) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"invalid YAML: {type(exc).__name__}", file=file) from None
    finally:
        loader.dispose()


def _reader_error(exc: yaml.reader.ReaderError, text: str, file: str | None) -> ConfigError:
    char = exc.character
    code = ord(char) if isinstance(char, str) else int(char)
    line = text.count("\n", 0, exc.position) + 1
    return ConfigError(f"unacceptable character #x{code:04x}", file=file, line=line)


class _BoundedLoader(yaml.SafeLoader):
    """A SafeLoader that refuses a document with more than MAX_YAML_ALIASES aliases."""

    def __init__(self, stream: str, file: str | None) -> None:
        super().__init__(stream)
        self.file = file
        self.aliases = 0

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        if self.check_event(yaml.AliasEvent):
            self.aliases += 1
            if self.aliases > MAX_YAML_ALIASES:
                mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
                raise ConfigError(
                    f"more than {MAX_YAML_ALIASES} YAML aliases",
                    file=self.file,
                    line=int(mark.line) + 1,
                )
        return super().compose_node(parent, index)


class _Converter:
    """Composed nodes -> plain Python, recording lines; bounds what aliases expand to.

    The composer shares an anchored node between its aliases, so a node converted a
    second time was reached through an alias: such conversions are counted against
    MAX_YAML_EXPANSION, and so are the pairs merge keys would copy, before PyYAML's
    ``flatten_mapping`` copies them (nested merges double at every level).
    """

    def __init__(self, loader: yaml.SafeLoader, source: YamlSource) -> None:
        self._loader = loader
        self._source = source
        self._active: set[int] = set()
        self._converted: set[int] = set()
        self._expanded = 0
        self._merged_sizes: dict[int, int] = {}

    def _expand(self, count: int, node: yaml.Node, loc: _Loc) -> None:
        self._expanded += count
        if self._expanded > MAX_YAML_EXPANSION:
            raise ConfigError(
                f"YAML aliases expand to more than {MAX_YAML_EXPANSION} values",
                file=self._source.file,
                line=_line(node),
                field=_dotted(loc) or None,
            )

    def _merged_size(self, node: yaml.MappingNode, loc: _Loc, active: set[int]) -> int:
        """Pairs ``node`` has once its merge keys are flattened (computed once per node)."""
        known = self._merged_sizes.get(id(node))
        if known is not None:
            return known
        if id(node) in active:  # merges itself: flatten_mapping copies nothing then
            return 0
        active.add(id(node))
        size = 0
        for key_node, value_node in node.value:
            if key_node.tag != _MERGE_TAG:
                size += 1
                continue
            sources = (
                value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
            )
            for merged in sources:
                if isinstance(merged, yaml.MappingNode):
                    copied = self._merged_size(merged, loc, active)
                    self._expand(copied, key_node, loc)
                    size += copied
        active.discard(id(node))
        self._merged_sizes[id(node)] = size
        return size

    def convert(self, node: yaml.Node, loc: _Loc) -> Any:
        if id(node) in self._converted:
            self._expand(1, node, loc)
        self._converted.add(id(node))
        if isinstance(node, yaml.ScalarNode):
            value = self._loader.construct_object(node, deep=True)
            if isinstance(value, str):
                self._storable(value, node, loc)
            return value
        if id(node) in self._active:
            raise ConfigError(
                "recursive alias", file=self._source.file, line=_line(node), field=_dotted(loc)
            )
        self._active.add(id(node))
        try:
            if isinstance(node, yaml.MappingNode) and node.tag == _MAP_TAG:
                return self._mapping(node, loc)
            if isinstance(node, yaml.SequenceNode) and node.tag == _SEQ_TAG:
                return self._sequence(node, loc)
            raise ConfigError(
                f"unsupported YAML tag {node.tag}",
                file=self._source.file,
                line=_line(node),
                field=_dotted(loc) or None,
            )
        finally:
            self._active.discard(id(node))

    def _key(self, node: yaml.Node, loc: _Loc) -> str:
        if not isinstance(node, yaml.ScalarNode):
            raise ConfigError(
                "keys must be plain strings",
                file=self._source.file,
                line=_line(node),
                field=_dotted(loc) or None,
            )
        key = str(node.value)
        self._storable(key, node, loc)
        return key

    def _storable(self, value: str, node: yaml.Node, loc: _Loc) -> None:
        """NUL or a lone surrogate (YAML's \\0, \\ud800 escapes) in any string: refused."""
        if (problem := text_problem(value)) is not None:
            raise ConfigError(
                problem, file=self._source.file, line=_line(node), field=_dotted(loc) or None
            )

    def _mapping(self, node: yaml.MappingNode, loc: _Loc) -> dict[str, Any]:
        seen: set[str] = set()
        for key_node, _ in node.value:
            if key_node.tag == _MERGE_TAG:
                continue
            key = self._key(key_node, loc)
            if key in seen:
                raise ConfigError(
                    "duplicate key",
                    file=self._source.file,
                    line=_line(key_node),
                    field=_dotted((*loc, key)),
                )
            seen.add(key)
        self._merged_size(node, loc, set())
        self._loader.flatten_mapping(node)  # resolves ``<<: *anchor`` merge keys
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = self._key(key_node, loc)
            child = (*loc, key)
            self._source.key_lines[child] = _line(key_node)
            self._source.value_lines[child] = _line(value_node)
            result[key] = self.convert(value_node, child)
        return result

    def _sequence(self, node: yaml.SequenceNode, loc: _Loc) -> list[Any]:
        result: list[Any] = []
        for index, item in enumerate(node.value):
            child = (*loc, index)
            self._source.key_lines[child] = self._source.value_lines[child] = _line(item)
            result.append(self.convert(item, child))
        return result


# --------------------------------------------------------------------------- environment


def _env_str(var: str, raw: str) -> str:
    return raw


_INTEGER = re.compile(r"\s*[+-]?\d+\s*")


def _env_int(var: str, raw: str) -> int:
    if not _INTEGER.fullmatch(raw):
        raise ConfigError("expected an integer", field=var)
    return int(raw)


_ENV_OVERRIDES: tuple[tuple[str, _Loc, Callable[[str, str], Any]], ...] = (
    ("CTC_DATABASE_URL", ("database", "url"), _env_str),
    ("CTC_API_SOCKET", ("api", "socket"), _env_str),
    ("CTC_API_TCP_PORT", ("api", "tcp", "port"), _env_int),
    ("CTC_LOG_LEVEL", ("log", "level"), _env_str),
    ("CTC_ARI_URL", ("ari", "url"), _env_str),
    ("CTC_ARI_PASSWORD", ("ari", "password"), _env_str),
    ("CTC_AMI_PASSWORD", ("ami", "password"), _env_str),
    ("CTC_SECRET_KEY", ("secrets", "key"), _env_str),
)


def _apply_env(data: dict[str, Any], env: Mapping[str, str], source: YamlSource) -> None:
    """Write ``CTC_*`` overrides into ``data``; unset or empty variables are ignored.

    A password (or secrets key) from the environment replaces the file's password *and*
    password_file (key *and* key_file).
    """
    for var, loc, parse in _ENV_OVERRIDES:
        raw = env.get(var)
        if not raw:
            continue
        value = parse(var, raw)
        target = data
        for part in loc[:-1]:
            nested = target.get(str(part))
            if nested is None:
                nested = target[str(part)] = {}
            if not isinstance(nested, dict):
                break  # the file's own value is wrong; validation will say so
            target = nested
        else:
            leaf = str(loc[-1])
            target[leaf] = value
            source.env_vars[loc] = var
            if leaf in ("password", "key"):
                target.pop(f"{leaf}_file", None)


# --------------------------------------------------------------------------- errors

_SIMPLE_MESSAGES = {
    "extra_forbidden": "unknown key",
    "int_type": "expected an integer",
    "int_parsing": "expected an integer",
    "int_from_float": "expected an integer",
    "float_type": "expected a number",
    "float_parsing": "expected a number",
    "finite_number": "expected a finite number",
    "bool_type": "expected true or false",
    "bool_parsing": "expected true or false",
    "string_type": "expected a string",
    "string_too_short": "must not be empty",
    "path_type": "expected a path",
    "model_type": "expected a mapping",
    "model_attributes_type": "expected a mapping",
    "dict_type": "expected a mapping",
}

_BOUND_MESSAGES = {
    "greater_than": ("gt", "must be greater than"),
    "greater_than_equal": ("ge", "must be at least"),
    "less_than": ("lt", "must be less than"),
    "less_than_equal": ("le", "must be at most"),
}


def _message(error: ErrorDetails) -> str:
    kind = error["type"]
    if kind == _ERROR_TYPE:
        return error["msg"]
    if kind in _SIMPLE_MESSAGES:
        return _SIMPLE_MESSAGES[kind]
    if kind in _BOUND_MESSAGES:
        key, text = _BOUND_MESSAGES[kind]
        return f"{text} {error.get('ctx', {}).get(key)}"
    msg = error["msg"]
    return msg[:1].lower() + msg[1:]


def _translate(exc: ValidationError, source: YamlSource) -> ConfigError:
    """The first problem (in file order; env-var problems last) as one ConfigError."""
    errors = [
        source.error(_message(error), tuple(error["loc"]), key=error["type"] == "extra_forbidden")
        for error in exc.errors(include_url=False, include_input=False)
    ]
    errors.sort(key=lambda e: (e.file is None, e.line is None, e.line or 0))
    first = errors[0]
    if len(errors) > 1:
        return ConfigError(
            f"{first.reason} (and {len(errors) - 1} more)",
            file=first.file,
            line=first.line,
            field=first.field,
        )
    return first


# --------------------------------------------------------------------------- loading


def _resolve_path(
    path: str | os.PathLike[str] | None, env: Mapping[str, str]
) -> tuple[Path, str, bool]:
    """(path, label as the user wrote it, must it exist)."""
    if path is not None:
        label = os.fspath(path)
        return Path(label), label, True
    from_env = env.get(CONFIG_ENV_VAR)
    if from_env:
        return Path(from_env), from_env, True
    return DEFAULT_CONFIG_PATH, str(DEFAULT_CONFIG_PATH), False


def read_text_file(path: Path, label: str, required: bool) -> str | None:
    """The file as text; None when it is missing and not ``required``. At most
    :data:`MAX_YAML_BYTES` are read: a larger file is a ConfigError."""
    try:
        with path.open("rb") as fh:
            raw = fh.read(MAX_YAML_BYTES + 1)
    except FileNotFoundError:
        if required:
            raise ConfigError("config file not found", file=label) from None
        return None
    except OSError as exc:
        raise ConfigError(f"cannot read config file: {exc.strerror or exc}", file=label) from exc
    if len(raw) > MAX_YAML_BYTES:
        raise ConfigError(f"file larger than {MAX_YAML_BYTES} bytes", file=label)
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise ConfigError("not valid UTF-8", file=label, line=line) from None


_S = TypeVar("_S", AriSettings, AmiSettings)


@dataclass(frozen=True, slots=True)
class _SecretFile:
    path: Path  # resolved against the config file's directory
    text: str
    mode: int  # permission bits


def _read_secret_file(path: Path, base: Path | None, loc: _Loc, source: YamlSource) -> _SecretFile:
    """A ``*_file`` setting's file: a relative ``path`` is taken from ``base`` (the config
    file's directory); unreadable or not UTF-8 is an error at ``loc``."""
    if base is not None and not path.is_absolute():
        path = base / path
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise source.error(f"cannot read {path}: {exc.strerror or exc}", loc) from exc
    except UnicodeDecodeError:
        raise source.error(f"cannot read {path}: not valid UTF-8", loc) from None
    return _SecretFile(path, text, mode)


def _resolve_password_file(section: _S, name: str, base: Path | None, source: YamlSource) -> _S:
    if section.password_file is None:
        return section
    loc: _Loc = (name, "password_file")
    file = _read_secret_file(section.password_file, base, loc, source)
    secret = file.text.rstrip("\r\n")
    if not secret:
        raise source.error(f"{file.path} is empty", loc)
    return section.model_copy(update={"password": SecretStr(secret), "password_file": file.path})


def _resolve_key_file(
    section: SecretsSettings, base: Path | None, source: YamlSource
) -> SecretsSettings:
    """Read ``secrets.key_file`` (refused if others may read it) and check the key(s)."""
    if section.key_file is not None:
        loc: _Loc = ("secrets", "key_file")
        file = _read_secret_file(section.key_file, base, loc, source)
        if file.mode & 0o007:
            raise source.error(
                f"{file.path} is accessible to other users (mode {file.mode:04o}): it decrypts "
                f"every stored secret; chmod 600 {file.path} (or 640 with the engine's group)",
                loc,
            )
        section = section.model_copy(update={"key": SecretStr(file.text), "key_file": file.path})
        return _check_keys(section, loc, source)
    return _check_keys(section, ("secrets", "key"), source)


def _check_keys(section: SecretsSettings, loc: _Loc, source: YamlSource) -> SecretsSettings:
    if section.key is not None:
        try:
            keyring = section.keyring()
        except SecretsError as exc:
            raise source.error(str(exc), loc) from None
        if not keyring.configured:
            raise source.error("holds no key", loc)
    return section


def _finish(settings: Settings, base: Path | None, source: YamlSource) -> Settings:
    """Post-validation steps that touch the file system."""
    database = settings.database
    migrations = database.migrations_dir
    if base is not None and migrations is not None and not migrations.is_absolute():
        database = database.model_copy(update={"migrations_dir": base / migrations})
    return settings.model_copy(
        update={
            "database": database,
            "ari": _resolve_password_file(settings.ari, "ari", base, source),
            "ami": _resolve_password_file(settings.ami, "ami", base, source),
            "secrets": _resolve_key_file(settings.secrets, base, source),
        }
    )


def load_settings(
    path: str | os.PathLike[str] | None = None, env: Mapping[str, str] | None = None
) -> Settings:
    """Load, override from the environment, and validate the engine configuration.

    ``path`` wins, then ``env["CTC_CONFIG"]``, then :data:`DEFAULT_CONFIG_PATH`. A missing
    explicit or ``CTC_CONFIG`` file is an error; a missing default file means defaults.
    ``env`` defaults to :data:`os.environ`. Raises :class:`~engine.errors.ConfigError`.
    """
    environ: Mapping[str, str] = os.environ if env is None else env
    file_path, label, required = _resolve_path(path, environ)
    text = read_text_file(file_path, label, required)
    source = YamlSource(file=label if text is not None else None)
    data = parse_yaml_with_lines(text, source) if text is not None else {}
    _apply_env(data, environ, source)
    try:
        settings = Settings.model_validate(data)
    except ValidationError as exc:
        raise _translate(exc, source) from exc  # inputs are hidden from its text
    base = file_path.parent if text is not None else None
    return _finish(settings, base, source)


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
