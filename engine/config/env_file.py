"""The service's environment file, for the ``ctc`` command run by hand.

The systemd unit hands the daemon its secrets from ``/etc/ctc/engine.env``
(``EnvironmentFile=``): ``CTC_DATABASE_URL``, ``CTC_ARI_PASSWORD``, ``CTC_SECRET_KEY``...
An admin who then runs ``ctc db migrate`` or ``ctc doctor`` in a shell must reach the same
database with the same password, so ``ctc`` reads the same file first (or the one
``--env-file`` / ``$CTC_ENV_FILE`` names) and finds what the service finds.

The format is systemd's: ``KEY=VALUE`` lines, ``#`` or ``;`` comment lines, blank lines, a
value optionally in single or double quotes. A line that is none of these is an error
naming the file and line. A variable already set in the environment is left as it is, so
``CTC_DATABASE_URL=... ctc db status`` still overrides the file.
"""

from __future__ import annotations

import os
import re
from collections.abc import MutableMapping
from pathlib import Path
from typing import Final

from engine.errors import ConfigError

__all__ = ["DEFAULT_ENV_FILE", "ENV_FILE_VAR", "apply_env_file", "parse_env_file"]

DEFAULT_ENV_FILE: Final = Path("/etc/ctc/engine.env")
"""The unit's ``EnvironmentFile=``; read when it exists and nothing else is named."""
ENV_FILE_VAR: Final = "CTC_ENV_FILE"
"""Names another file; set to an empty value, no file is read."""

_LINE: Final = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*?)\s*")
_MAX_BYTES: Final = 1 << 20


def parse_env_file(text: str, file: str) -> dict[str, str]:
    """The variables of an environment file's ``text`` (``file`` names it in errors)."""
    out: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped[0] in "#;":
            continue
        match = _LINE.fullmatch(line)
        if match is None:
            raise ConfigError(
                "expected KEY=VALUE (a name of letters, digits and _, then =)",
                file=file,
                line=number,
            )
        key, value = match.groups()
        out[key] = _unquote(value, file, number, key)
    return out


def _unquote(value: str, file: str, line: int, key: str) -> str:
    if len(value) >= 1 and value[0] in "'\"":
        quote = value[0]
        if len(value) < 2 or value[-1] != quote:
            raise ConfigError(f"unterminated {quote} quote", file=file, line=line, field=key)
        inner = value[1:-1]
        if quote == '"':  # systemd unescapes \" \\ inside double quotes
            inner = re.sub(r"\\(.)", r"\1", inner)
        return inner
    return value


def apply_env_file(
    explicit: str | None, environ: MutableMapping[str, str] | None = None
) -> tuple[Path | None, str | None]:
    """Read the environment file into ``environ`` (default ``os.environ``), without
    overriding what is set there already.

    ``explicit`` (``--env-file`` or ``$CTC_ENV_FILE``; ``""``: none) must be readable; the
    default file is read when it exists. Returns the file read (None: none) and a warning
    for a default file that exists but cannot be read (not the engine's user), else None.
    """
    env = os.environ if environ is None else environ
    if explicit == "":
        return None, None
    path = Path(explicit) if explicit is not None else DEFAULT_ENV_FILE
    try:
        with path.open("rb") as handle:
            raw = handle.read(_MAX_BYTES + 1)
    except FileNotFoundError:
        if explicit is None:
            return None, None
        raise ConfigError("no such file", file=str(path)) from None
    except OSError as exc:
        reason = exc.strerror or str(exc)
        if explicit is None:
            return None, (
                f"cannot read {path} ({reason}): the service's secrets there are not used; "
                f"run as root or the engine's user, or pass --env-file"
            )
        raise ConfigError(f"cannot read: {reason}", file=str(path)) from None
    if len(raw) > _MAX_BYTES:
        raise ConfigError(f"larger than {_MAX_BYTES} bytes", file=str(path))
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError("not valid UTF-8", file=str(path)) from None
    for key, value in parse_env_file(text, str(path)).items():
        env.setdefault(key, value)
    return path, None
