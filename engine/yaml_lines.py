"""YAML with line numbers: a document read into plain Python, each path's line remembered.

The engine's configuration and its IVR menu files are both YAML written by hand, and both
report every problem as ``file:line: dotted.field: reason``. PyYAML's ``safe_load`` keeps no
positions, so the document is composed into nodes (which keep their marks) and converted
here while a :class:`YamlSource` records the line of every key and value; a validation
error's location (a path of keys and list indexes) is then mapped back to its line. A
value that came from an environment variable is reported under the variable's name
instead.

The reading is bounded, because a menu may arrive over the API: at most
:data:`MAX_YAML_BYTES`, :data:`MAX_YAML_ALIASES` aliases, and :data:`MAX_YAML_EXPANSION`
values reached through them (an alias bomb is refused before it costs time or memory).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, overload

import yaml

from engine.domain.text import text_problem
from engine.errors import ConfigError

__all__ = [
    "MAX_YAML_ALIASES",
    "MAX_YAML_BYTES",
    "MAX_YAML_EXPANSION",
    "STAR_KEY_MESSAGE",
    "KeyPath",
    "YamlSource",
    "parse_yaml_with_lines",
    "read_text_file",
]

KeyPath = tuple[str | int, ...]
"""A path into a document: mapping keys and list indexes (pydantic's error ``loc``)."""


@dataclass
class YamlSource:
    """Where each value came from: file lines per path, or an environment variable."""

    file: str | None
    key_lines: dict[KeyPath, int] = field(default_factory=dict)
    value_lines: dict[KeyPath, int] = field(default_factory=dict)
    env_vars: dict[KeyPath, str] = field(default_factory=dict)

    def line_for(self, loc: KeyPath, *, key: bool = False) -> int | None:
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

    def error(self, message: str, loc: KeyPath, *, key: bool = False) -> ConfigError:
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
        if not isinstance(converted, dict):
            raise ConfigError("top level must be a mapping", file=file, line=_line(root))
        return converted
    except yaml.MarkedYAMLError as exc:
        # ``from None``: the YAML error's text quotes the offending line (maybe a secret).
        mark = exc.problem_mark or exc.context_mark
        line = int(mark.line) + 1 if mark is not None else None
        message = exc.problem or exc.context or "invalid YAML"
        if line is not None and _STAR_KEY.search(_nth_line(text, line)):
            message = STAR_KEY_MESSAGE
        raise ConfigError(message, file=file, line=line) from None
    except yaml.reader.ReaderError as exc:
        raise _reader_error(exc, text, file) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"invalid YAML: {type(exc).__name__}", file=file) from None
    finally:
        loader.dispose()


# an unquoted ``*`` key: YAML reads ``*`` as the start of an alias (``*name``)
_STAR_KEY = re.compile(r"(?:^|[\s{,\[])\*\s*:")
STAR_KEY_MESSAGE = 'an unquoted * starts a YAML alias: quote * and # keys ("*": ..., "#": ...)'
"""What a document with an unquoted ``*:`` key is told instead of PyYAML's "expected
alphabetic or numeric character, but found ':'"."""


def _nth_line(text: str, line: int) -> str:
    lines = text.splitlines()
    return lines[line - 1] if 0 < line <= len(lines) else ""


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

    def _expand(self, count: int, node: yaml.Node, loc: KeyPath) -> None:
        self._expanded += count
        if self._expanded > MAX_YAML_EXPANSION:
            raise ConfigError(
                f"YAML aliases expand to more than {MAX_YAML_EXPANSION} values",
                file=self._source.file,
                line=_line(node),
                field=_dotted(loc) or None,
            )

    def _merged_size(self, node: yaml.MappingNode, loc: KeyPath, active: set[int]) -> int:
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

    def convert(self, node: yaml.Node, loc: KeyPath) -> Any:
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

    def _key(self, node: yaml.Node, loc: KeyPath) -> str:
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

    def _storable(self, value: str, node: yaml.Node, loc: KeyPath) -> None:
        """NUL or a lone surrogate (YAML's \\0, \\ud800 escapes) in any string: refused."""
        if (problem := text_problem(value)) is not None:
            raise ConfigError(
                problem, file=self._source.file, line=_line(node), field=_dotted(loc) or None
            )

    def _mapping(self, node: yaml.MappingNode, loc: KeyPath) -> dict[str, Any]:
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

    def _sequence(self, node: yaml.SequenceNode, loc: KeyPath) -> list[Any]:
        result: list[Any] = []
        for index, item in enumerate(node.value):
            child = (*loc, index)
            self._source.key_lines[child] = self._source.value_lines[child] = _line(item)
            result.append(self.convert(item, child))
        return result


@overload
def read_text_file(path: Path, label: str, required: Literal[True]) -> str: ...
@overload
def read_text_file(path: Path, label: str, required: bool) -> str | None: ...
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
