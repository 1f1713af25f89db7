"""Loading the engine's configuration: find the file, read it, apply the environment, validate.

:func:`load_settings` finds the file (explicit path, else ``$CTC_CONFIG``, else
:data:`DEFAULT_CONFIG_PATH`), reads it with line numbers (:mod:`engine.yaml_lines`), applies
the ``CTC_*`` environment overrides and validates the result into a frozen
:class:`~engine.config.settings.Settings` tree::

    settings = load_settings()
    settings.database.url, settings.api.tcp.port, settings.ari.password  # SecretStr | None

Every problem becomes exactly one :class:`~engine.errors.ConfigError` whose text names the
file, the line and the dotted field, e.g. ``engine.yaml:14: api.socket_mode: expected octal
string``: each pydantic error location is mapped back to the line it came from. A value that
came from an environment variable is reported under the variable's name instead
(``CTC_API_TCP_PORT: expected an integer``).

Relative ``password_file``, ``secrets.key_file`` and ``database.migrations_dir`` paths are
taken relative to the directory of the config file. ``password_file`` is read here (not by
the models), after validation; its content minus trailing newlines becomes the password
(``database.password_file``'s goes into ``database.url``, percent-encoded; a URL with a
password of its own is refused beside it, unless it came from ``CTC_DATABASE_URL``, which
then wins, as the other ``CTC_*`` passwords win over files).
``secrets.key_file`` is read the same way, and refused when other users may read it (it
decrypts every stored secret).
"""

from __future__ import annotations

import os
import re
import stat
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from pydantic import SecretStr, ValidationError
from pydantic_core import ErrorDetails

from engine.config.settings import (
    CHECK_ERROR_TYPE,
    AmiSettings,
    AriSettings,
    DatabaseSettings,
    SecretsSettings,
    Settings,
)
from engine.errors import ConfigError, SecretsError
from engine.yaml_lines import KeyPath, YamlSource, parse_yaml_with_lines, read_text_file

__all__ = ["CONFIG_ENV_VAR", "DEFAULT_CONFIG_PATH", "load_settings"]

DEFAULT_CONFIG_PATH = Path("/etc/ctc/engine.yaml")
"""Where the engine looks when neither a path nor ``$CTC_CONFIG`` is given."""

CONFIG_ENV_VAR = "CTC_CONFIG"
"""The environment variable naming the config file when no path is given."""


# --------------------------------------------------------------------------- environment


def _env_str(var: str, raw: str) -> str:
    return raw


_INTEGER = re.compile(r"\s*[+-]?\d+\s*")


def _env_int(var: str, raw: str) -> int:
    if not _INTEGER.fullmatch(raw):
        raise ConfigError("expected an integer", field=var)
    return int(raw)


_ENV_OVERRIDES: tuple[tuple[str, KeyPath, Callable[[str, str], Any]], ...] = (
    ("CTC_NODE_NAME", ("node", "name"), _env_str),
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
    if kind == CHECK_ERROR_TYPE:
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


_S = TypeVar("_S", AriSettings, AmiSettings)


@dataclass(frozen=True, slots=True)
class _SecretFile:
    path: Path  # resolved against the config file's directory
    text: str
    mode: int  # permission bits


def _read_secret_file(
    path: Path, base: Path | None, loc: KeyPath, source: YamlSource
) -> _SecretFile:
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
    loc: KeyPath = (name, "password_file")
    file = _read_secret_file(section.password_file, base, loc, source)
    secret = file.text.rstrip("\r\n")
    if not secret:
        raise source.error(f"{file.path} is empty", loc)
    return section.model_copy(update={"password": SecretStr(secret), "password_file": file.path})


def _resolve_database_password(
    section: DatabaseSettings, base: Path | None, source: YamlSource
) -> DatabaseSettings:
    if section.password_file is None:
        return section
    loc: KeyPath = ("database", "password_file")
    parts = urllib.parse.urlsplit(section.url)
    if parts.password is not None:
        if ("database", "url") in source.env_vars:
            return section.model_copy(update={"password_file": None})  # the environment wins
        raise source.error("cannot be used with a password in database.url (set only one)", loc)
    file = _read_secret_file(section.password_file, base, loc, source)
    secret = file.text.rstrip("\r\n")
    if not secret:
        raise source.error(f"{file.path} is empty", loc)
    user = parts.username if parts.username is not None else "postgres"
    host = parts.netloc.rpartition("@")[2]
    userinfo = f"{user}:{urllib.parse.quote(secret, safe='')}"
    url = urllib.parse.urlunsplit(parts._replace(netloc=f"{userinfo}@{host}"))
    return section.model_copy(update={"url": url, "password_file": file.path})


def _resolve_key_file(
    section: SecretsSettings, base: Path | None, source: YamlSource
) -> SecretsSettings:
    """Read ``secrets.key_file`` (refused if others may read it) and check the key(s)."""
    if section.key_file is not None:
        loc: KeyPath = ("secrets", "key_file")
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


def _check_keys(section: SecretsSettings, loc: KeyPath, source: YamlSource) -> SecretsSettings:
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
            "database": _resolve_database_password(database, base, source),
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
