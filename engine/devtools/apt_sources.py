"""Which Debian mirror the sandbox root is built from: the host's own apt sources.

The mirror is never hard-coded: a development machine or CI runner already knows a Debian
archive it may reach (``/etc/apt/sources.list`` and ``/etc/apt/sources.list.d/*.list|
*.sources``), so the root build reads it from there unless ``CTC_SANDBOX_MIRROR`` or the
``mirror`` argument names one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from engine.errors import SandboxError

__all__ = ["SID_APT_OPTIONS", "apt_mirror"]

#: apt options every Debian *sid* root we build needs (mmdebstrap ``--aptopt``): the
#: reachable mirror's sid Release file can be past its Valid-Until date.
SID_APT_OPTIONS: tuple[str, ...] = ('Acquire::Check-Valid-Until "false"',)


def apt_mirror(
    sources_list: Path = Path("/etc/apt/sources.list"),
    sources_dir: Path = Path("/etc/apt/sources.list.d"),
) -> str:
    """The host's Debian archive mirror URL, read from its apt sources.

    Both the one-line (``*.list``) and deb822 (``*.sources``) formats are read. A source
    qualifies when it is an enabled ``deb`` source over HTTP(S), is not a security archive,
    names only plain suites (``bookworm``, ``bookworm-updates``, not ``…-security``) and,
    if it has a ``Signed-By``, is signed by Debian's archive keyring (which rules out
    third-party repositories such as a vendor's ``bookworm`` suite). A URI ending in
    ``/debian`` is preferred; otherwise the first qualifying source wins.
    """
    files: list[Path] = []
    if sources_list.is_file():
        files.append(sources_list)
    if sources_dir.is_dir():
        files.extend(sorted(p for p in sources_dir.iterdir() if p.suffix in {".list", ".sources"}))
    candidates: list[str] = []
    for path in files:
        try:
            text = path.read_text()
        except OSError:
            continue
        entries = _deb822_entries(text) if path.suffix == ".sources" else _one_line_entries(text)
        candidates.extend(e.uri for e in entries if _is_debian_archive(e))
    for uri in candidates:
        if uri.rstrip("/").endswith("/debian"):
            return uri
    if candidates:
        return candidates[0]
    raise SandboxError(
        "no Debian mirror found in the host's apt sources "
        f"({sources_list}, {sources_dir}/*.list|*.sources); set CTC_SANDBOX_MIRROR"
    )


@dataclass(frozen=True, slots=True)
class _AptSource:
    uri: str
    suites: tuple[str, ...]
    signed_by: str | None  # None: no Signed-By (the host's trusted keyrings apply)


def _one_line_entries(text: str) -> list[_AptSource]:
    entries: list[_AptSource] = []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line.startswith("deb "):
            continue
        rest = line[4:].strip()
        options = ""
        if rest.startswith("["):  # [arch=amd64 signed-by=/usr/share/keyrings/...]
            options, _, rest = rest[1:].partition("]")
        words = rest.split()
        signed_by = None
        for option in options.split():
            name, _, value = option.partition("=")
            if name.strip().lower() == "signed-by":
                signed_by = value.strip()
        if len(words) >= 2:
            entries.append(_AptSource(words[0], (words[1],), signed_by))
    return entries


def _deb822_entries(text: str) -> list[_AptSource]:
    entries: list[_AptSource] = []
    for stanza in text.split("\n\n"):
        fields: dict[str, str] = {}
        for raw in stanza.splitlines():
            if raw.startswith("#") or ":" not in raw or raw[:1].isspace():
                continue  # comments, and continuation lines (e.g. an inline key block)
            name, value = raw.split(":", 1)
            fields[name.strip().lower()] = value.strip()
        if "deb" not in fields.get("types", "").split():
            continue
        if fields.get("enabled", "yes").lower() == "no":
            continue
        suites = tuple(fields.get("suites", "").split())
        signed_by = fields.get("signed-by")
        entries.extend(_AptSource(uri, suites, signed_by) for uri in fields.get("uris", "").split())
    return entries


def _is_debian_archive(source: _AptSource) -> bool:
    if not source.uri.startswith(("http://", "https://")):
        return False
    if "security" in source.uri.rstrip("/").rsplit("/", 1)[-1]:
        return False
    if source.signed_by is not None and "debian-archive" not in source.signed_by:
        return False
    return bool(source.suites) and all(
        s and "/" not in s and not s.endswith("-security") for s in source.suites
    )
