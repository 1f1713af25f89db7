"""IVR menus as YAML: load (validated, with file and line) and dump (``ctc ivr export``).

Why here and not in :mod:`engine.domain.ivr`: this module reads text; the domain only gets
the finished :class:`~engine.domain.ivr.IvrMenu` values. The document looks like::

    menus:
      main:
        greeting: sound:main-menu
        timeout_ms: 5000
        max_retries: 2
        options:
          1: {action: submenu, menu: sales}
          "#": {action: transfer, target_type: agent, target: "1001"}
        fallback: {action: hangup, prompt: sound:vm-goodbye}

Every problem is one :class:`~engine.errors.ConfigError` naming the file, the line and the
dotted field, e.g. ``menus.yaml:12: menus.main.options.1.menu: unknown menu 'salse'``:
unknown keys (also keys another action does not use), wrong types, invalid digits,
duplicate digits (YAML duplicate keys), missing fields an action needs, unknown target
menus, placeholders no step sets and sets of menus the caller could never leave. Every
problem is reported, in file order (:class:`~engine.errors.ConfigErrors` when there are
several), except after a YAML syntax error, where reading stops. Line numbers come from
the composed YAML nodes (:mod:`engine.yaml_lines`, as for the engine configuration).

Two YAML traps of menu files are named: an unquoted ``*:`` key is an alias to YAML (the
error says to quote ``*`` and ``#``), and an unquoted ``#:`` line is a comment, silently
dropped, so :func:`menu_warnings` warns about every line that looks like one.

The designer's reference is ``docs/ivr/reference.md``; ``docs/ivr/recipes/`` holds
complete menus.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml

from engine.domain.ivr import (
    DTMF_KEYS,
    SPECIAL_KEYS,
    InputMode,
    IvrAction,
    IvrMenu,
    IvrOption,
    SayMode,
    TransferTargetType,
    check_menus,
)
from engine.domain.netpolicy import scheme_refusal
from engine.errors import ConfigError, ConfigErrors, InvalidInput
from engine.yaml_lines import YamlSource, parse_yaml_with_lines, read_text_file

__all__ = ["dump_menus", "load_menus", "load_menus_file", "menu_warnings"]

_Loc = tuple[str | int, ...]
_T = TypeVar("_T")

_MENU_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")

# a menu's scalar fields, in the order an export writes them
_MENU_ORDER = (
    "description",
    "greeting",
    "invalid_prompt",
    "timeout_prompt",
    "timeout_ms",
    "inter_digit_timeout_ms",
    "max_retries",
    "input_mode",
    "input_length",
    "terminator",
    "variable",
)
_MENU_KEYS = frozenset({*_MENU_ORDER, "options", "fallback"})

# Keys each action accepts besides ``action`` and ``prompt``.
_ACTION_KEYS: Mapping[IvrAction, frozenset[str]] = {
    IvrAction.SUBMENU: frozenset({"menu"}),
    IvrAction.BACK: frozenset(),
    IvrAction.REPEAT: frozenset(),
    IvrAction.HANGUP: frozenset(),
    IvrAction.TRANSFER: frozenset({"target_type", "target", "failure_prompt"}),
    IvrAction.RECORD_MESSAGE: frozenset({"max_duration_s", "beep", "silence_s", "next"}),
    IvrAction.HTTP_LOOKUP: frozenset(
        {
            "url",
            "method",
            "params",
            "timeout_ms",
            "result_variable",
            "say",
            "routes",
            "next",
            "failure_prompt",
        }
    ),
    IvrAction.SET_VARIABLE: frozenset({"name", "value", "next"}),
}

_METHODS = ("GET", "POST")


class _Reader:
    """Typed access to the plain data. A wrong value is noted (:attr:`errors`, a
    ConfigError at the value's line) and read as absent, so reading goes on and every
    problem is found; only a value whose shape stops the reading (:meth:`mapping`) raises."""

    def __init__(self, source: YamlSource) -> None:
        self.source = source
        self.errors: list[ConfigError] = []
        # menus with problems, built from what could be read: for the checks across menus
        self.partial: dict[str, IvrMenu] = {}

    def fail(self, message: str, loc: _Loc, *, key: bool = False) -> ConfigError:
        return self.source.error(message, loc, key=key)

    def note(self, message: str, loc: _Loc, *, key: bool = False) -> None:
        self.errors.append(self.fail(message, loc, key=key))

    def mapping(self, value: Any, loc: _Loc) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail("expected a mapping", loc)
        return value

    def keys(self, data: dict[str, Any], allowed: frozenset[str], loc: _Loc, why: str) -> None:
        for key in data:
            if key not in allowed:
                self.note(f"unknown key{why}", (*loc, key), key=True)

    def get(
        self,
        data: dict[str, Any],
        key: str,
        loc: _Loc,
        check: Callable[[Any], _T | None],
        expected: str,
    ) -> _T | None:
        if key not in data or data[key] is None:
            return None
        value = check(data[key])
        if value is None:
            self.note(expected, (*loc, key))
        return value

    def text(self, data: dict[str, Any], key: str, loc: _Loc) -> str | None:
        return self.get(data, key, loc, _non_empty_str, "expected a non-empty string")

    def integer(self, data: dict[str, Any], key: str, loc: _Loc) -> int | None:
        return self.get(data, key, loc, _int, "expected an integer")

    def choice(
        self, data: dict[str, Any], key: str, loc: _Loc, choices: tuple[str, ...]
    ) -> str | None:
        def check(value: Any) -> str | None:
            return value if isinstance(value, str) and value in choices else None

        return self.get(data, key, loc, check, "must be one of: " + ", ".join(choices))

    def strings(self, data: dict[str, Any], key: str, loc: _Loc) -> dict[str, str] | None:
        value = data.get(key)
        if value is None:
            return None
        if not isinstance(value, dict):
            self.note("expected a mapping", (*loc, key))
            return None
        result: dict[str, str] = {}
        for name, item in value.items():
            if isinstance(item, bool) or not isinstance(item, str | int):
                self.note("expected a string", (*loc, key, name))
                continue
            result[name] = str(item)
        return result


def _non_empty_str(value: Any) -> str | None:
    return value if isinstance(value, str) and value.strip() else None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _bool(value: Any) -> bool | None:
    return value if isinstance(value, bool) else None


def _target(value: Any) -> str | None:
    # ``target: 1001`` is an int to YAML; an agent extension is text to us.
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return _non_empty_str(value)


def _build(reader: _Reader, loc: _Loc, noted: int, make: Callable[[], _T]) -> _T | None:
    """Run a domain constructor unless problems were noted since ``noted`` (what it would
    say is then said already, or follows from them); its InvalidInput is noted at the
    field. None when nothing was built."""
    if len(reader.errors) > noted:
        return None
    try:
        return make()
    except InvalidInput as exc:
        field: _Loc = tuple(exc.field.split("."))
        reader.note(exc.reason, (*loc, *field), key=field[0] == "options")
        return None


def _option(reader: _Reader, value: Any, loc: _Loc) -> IvrOption | None:
    noted = len(reader.errors)
    data = reader.mapping(value, loc)
    raw_action = reader.choice(data, "action", loc, tuple(a.value for a in IvrAction))
    if raw_action is None:
        if len(reader.errors) == noted:
            reader.note("required", (*loc, "action"))
        return None
    action = IvrAction(raw_action)
    reader.keys(
        data, _ACTION_KEYS[action] | {"action", "prompt"}, loc, f" for action {action.value}"
    )
    r = reader
    fields: dict[str, Any] = {
        "prompt": r.text(data, "prompt", loc),
        "menu": r.text(data, "menu", loc),
        "next": r.text(data, "next", loc),
        "target": r.get(data, "target", loc, _target, "expected a non-empty string"),
        "failure_prompt": r.text(data, "failure_prompt", loc),
        "max_duration_s": r.integer(data, "max_duration_s", loc),
        "beep": r.get(data, "beep", loc, _bool, "expected true or false"),
        "silence_s": r.integer(data, "silence_s", loc),
        "url": r.text(data, "url", loc),
        "params": r.strings(data, "params", loc),
        "timeout_ms": r.integer(data, "timeout_ms", loc),
        "result_variable": r.text(data, "result_variable", loc),
        "routes": r.strings(data, "routes", loc),
        "name": r.text(data, "name", loc),
        "value": r.get(data, "value", loc, _target, "expected a string"),
    }
    method = r.choice(data, "method", loc, _METHODS)
    if method is not None:
        fields["method"] = method
    target_type = r.choice(data, "target_type", loc, tuple(t.value for t in TransferTargetType))
    if target_type is not None:
        fields["target_type"] = TransferTargetType(target_type)
    say = r.choice(data, "say", loc, tuple(s.value for s in SayMode))
    if say is not None:
        fields["say"] = SayMode(say)
    present = {key: value for key, value in fields.items() if value is not None}
    url = present.get("url")
    if action is IvrAction.HTTP_LOOKUP and isinstance(url, str):
        # the address part of the rule needs the tenant: checked when the menu is saved
        refused = scheme_refusal(url)
        if refused is not None:
            reader.note(refused, (*loc, "url"))
    return _build(reader, loc, noted, lambda: IvrOption(action, **present))


def _attempt(reader: _Reader, read: Callable[[], _T | None]) -> _T | None:
    """``read()``; a ConfigError it raises (a value whose shape stops the reading) is
    noted, and nothing was read."""
    try:
        return read()
    except ConfigError as exc:
        reader.errors.append(exc)
        return None


def _menu(reader: _Reader, name: str, value: Any, loc: _Loc) -> IvrMenu | None:
    noted = len(reader.errors)
    if not _MENU_NAME.fullmatch(name):
        reader.note("menu names are letters, digits, '_', '.', '-' (at most 63)", loc, key=True)
    data = reader.mapping(value, loc)
    reader.keys(data, _MENU_KEYS, loc, "")
    r = reader
    fields: dict[str, Any] = {
        "description": r.text(data, "description", loc),
        "greeting": r.text(data, "greeting", loc),
        "invalid_prompt": r.text(data, "invalid_prompt", loc),
        "timeout_prompt": r.text(data, "timeout_prompt", loc),
        "timeout_ms": r.integer(data, "timeout_ms", loc),
        "inter_digit_timeout_ms": r.integer(data, "inter_digit_timeout_ms", loc),
        "max_retries": r.integer(data, "max_retries", loc),
        "input_length": r.integer(data, "input_length", loc),
        "terminator": r.choice(data, "terminator", loc, ("#", "*")),
        "variable": r.text(data, "variable", loc),
    }
    mode = r.choice(data, "input_mode", loc, tuple(m.value for m in InputMode))
    if mode is not None:
        fields["input_mode"] = InputMode(mode)
    options: dict[str, IvrOption] = {}
    raw_options = data.get("options")
    if raw_options is not None:
        items = _attempt(r, lambda: r.mapping(raw_options, (*loc, "options"))) or {}
        for key, item in items.items():
            where = (*loc, "options", key)
            if key not in DTMF_KEYS and key not in SPECIAL_KEYS:
                r.note(
                    "not a key: use one of 0-9, * or # (quoted), or timeout, invalid, collected",
                    where,
                    key=True,
                )
                continue
            option = _attempt(r, lambda: _option(r, item, where))  # noqa: B023 (called now)
            if option is not None:
                options[key] = option
    fields["options"] = options
    if data.get("fallback") is not None:
        fields["fallback"] = _attempt(r, lambda: _option(r, data["fallback"], (*loc, "fallback")))
    present = {key: value for key, value in fields.items() if value is not None}
    menu = _build(reader, loc, noted, lambda: IvrMenu(name, **present))
    if menu is None:
        shadow = _shadow(name, present)
        if shadow is not None:
            reader.partial[name] = shadow
    return menu


def _shadow(name: str, present: dict[str, Any]) -> IvrMenu | None:
    """A menu with problems as far as it can be built (the fields that were read, else
    only its options and fallback), so the checks across menus still see its options."""
    options: dict[str, IvrOption] = present.get("options", {})
    collect = ("input_mode", "input_length", "terminator", "variable")
    tries: tuple[dict[str, Any], ...] = (
        present,
        {k: v for k, v in present.items() if k in {"options", "fallback", *collect}},
        {"options": {k: o for k, o in options.items() if k != "collected"}},
        {},
    )
    for fields in tries:
        try:
            return IvrMenu(name, **{**fields, "fallback": present.get("fallback")})
        except InvalidInput:
            continue
    return None


def load_menus(text: str, *, file: str | None = None) -> dict[str, IvrMenu]:
    """Parse and validate a menus document. Raises :class:`~engine.errors.ConfigError`.

    ``file`` is the name errors show (``menus.yaml``; default ``<string>``).
    """
    source = YamlSource(file=file if file is not None else "<string>")
    data = parse_yaml_with_lines(text, source)
    reader = _Reader(source)
    reader.keys(data, frozenset({"menus"}), (), "")
    raw: dict[str, Any] = {}
    if data.get("menus") is None:
        reader.errors.append(ConfigError("required", file=source.file, line=1, field="menus"))
    else:
        raw = _attempt(reader, lambda: reader.mapping(data["menus"], ("menus",))) or {}
        if not raw and not reader.errors:
            reader.note("must define at least one menu", ("menus",))
    menus: dict[str, IvrMenu] = {}
    for name, value in raw.items():
        menu = _attempt(reader, lambda: _menu(reader, name, value, ("menus", name)))  # noqa: B023
        if menu is not None:
            menus[name] = menu
    # the checks across menus see the menus with problems too, as far as they were read;
    # whether the caller can leave is judged only when every menu was
    seen = {**reader.partial, **menus}
    unread = frozenset(raw) - frozenset(seen)
    judge_exits = not reader.errors
    for problem in check_menus(seen, also_known=unread, traps=judge_exits):
        reader.note(problem.message, ("menus", *problem.path), key=True)
    if reader.errors:
        # file order; a problem with no line (a missing key) before the rest of its menu
        errors = sorted(reader.errors, key=lambda e: e.line or 0)
        raise errors[0] if len(errors) == 1 else ConfigErrors(errors)
    return menus


# A line YAML reads as a comment that looks like one of a menu file's keys: ``#:`` (the
# option for key #, unquoted) or ``# <key>: ...`` (a key commented out).
_KNOWN_KEYS = "|".join(
    re.escape(key)
    for key in sorted(
        {"menus", *_MENU_KEYS, "action", "prompt", *SPECIAL_KEYS}
        | {k for keys in _ACTION_KEYS.values() for k in keys}
        | set("0123456789")
        | {"'*'", '"*"', "'#'", '"#"'},
        key=len,
        reverse=True,
    )
)
_HASH_KEY = re.compile(r"^\s*#\s*:(?:\s|$)")
_COMMENTED_KEY = re.compile(rf"^\s*#\s*({_KNOWN_KEYS})\s*:(?:\s|$)")


def menu_warnings(text: str, *, file: str | None = None) -> list[str]:
    """``file:line: ...`` for each line that YAML drops as a comment but that looks like
    a key of a menu file, in file order. An unquoted ``#:`` (the option of key ``#``) is
    the trap: YAML reads the whole line as a comment, so the option silently does not
    exist."""
    label = file if file is not None else "<string>"
    found: list[str] = []
    for number, line in enumerate(text.splitlines(), 1):
        if _HASH_KEY.match(line):
            found.append(
                f"{label}:{number}: an unquoted '#:' is a YAML comment: this line is ignored; "
                'quote the key ("#": ...)'
            )
        elif (match := _COMMENTED_KEY.match(line)) is not None:
            found.append(
                f"{label}:{number}: looks like the key {match.group(1)!r} commented out: "
                "YAML ignores this line"
            )
    return found


def load_menus_file(path: str | os.PathLike[str]) -> dict[str, IvrMenu]:
    """:func:`load_menus` on a file; errors name the path as given."""
    label = os.fspath(path)
    return load_menus(read_text_file(Path(label), label, True), file=label)


# -- dump -----------------------------------------------------------------------------------

_OPTION_DEFAULTS = IvrOption(IvrAction.HANGUP)
_MENU_DEFAULTS = IvrMenu("_")


def _plain(value: Any) -> Any:
    if isinstance(value, str):
        return str(value)  # StrEnum -> plain str, which SafeDumper can represent
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    return value


def _dump_option(option: IvrOption) -> dict[str, Any]:
    out: dict[str, Any] = {"action": option.action.value}
    keys = ("prompt", *sorted(_ACTION_KEYS[option.action]))
    for key in keys:
        value = getattr(option, key)
        if value is not None and value != getattr(_OPTION_DEFAULTS, key):
            out[key] = _plain(value)
    return out


def dump_menus(menus: Mapping[str, IvrMenu]) -> str:
    """YAML that :func:`load_menus` reads back to equal menus (defaults left out)."""
    out: dict[str, Any] = {}
    for name, menu in menus.items():
        item: dict[str, Any] = {}
        for key in _MENU_ORDER:
            value = getattr(menu, key)
            if value is not None and value != getattr(_MENU_DEFAULTS, key):
                item[key] = _plain(value)
        if menu.options:
            item["options"] = {key: _dump_option(opt) for key, opt in menu.options.items()}
        if menu.fallback is not None:
            item["fallback"] = _dump_option(menu.fallback)
        out[name] = item
    return yaml.safe_dump({"menus": out}, sort_keys=False, allow_unicode=True)
