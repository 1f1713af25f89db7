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
menus and sets of menus the caller could never leave. The first problem in file order is
reported. Line numbers come from the composed YAML nodes (:mod:`engine.yaml_lines`, as
for the engine configuration).
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
from engine.errors import ConfigError, InvalidInput
from engine.yaml_lines import YamlSource, parse_yaml_with_lines, read_text_file

__all__ = ["dump_menus", "load_menus", "load_menus_file"]

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
    """Typed access to the plain data, raising ConfigError at the value's line."""

    def __init__(self, source: YamlSource) -> None:
        self.source = source

    def fail(self, message: str, loc: _Loc, *, key: bool = False) -> ConfigError:
        return self.source.error(message, loc, key=key)

    def mapping(self, value: Any, loc: _Loc) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail("expected a mapping", loc)
        return value

    def keys(self, data: dict[str, Any], allowed: frozenset[str], loc: _Loc, why: str) -> None:
        for key in data:
            if key not in allowed:
                raise self.fail(f"unknown key{why}", (*loc, key), key=True)

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
            raise self.fail(expected, (*loc, key))
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
        result: dict[str, str] = {}
        for name, item in self.mapping(value, (*loc, key)).items():
            if isinstance(item, bool) or not isinstance(item, str | int):
                raise self.fail("expected a string", (*loc, key, name))
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


def _build(reader: _Reader, loc: _Loc, make: Callable[[], _T]) -> _T:
    """Run a domain constructor; its InvalidInput becomes a ConfigError at the field."""
    try:
        return make()
    except InvalidInput as exc:
        field: _Loc = tuple(exc.field.split("."))
        raise reader.fail(exc.reason, (*loc, *field), key=field[0] == "options") from None


def _option(reader: _Reader, value: Any, loc: _Loc) -> IvrOption:
    data = reader.mapping(value, loc)
    raw_action = reader.choice(data, "action", loc, tuple(a.value for a in IvrAction))
    if raw_action is None:
        raise reader.fail("required", (*loc, "action"))
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
            raise reader.fail(refused, (*loc, "url"))
    return _build(reader, loc, lambda: IvrOption(action, **present))


def _menu(reader: _Reader, name: str, value: Any, loc: _Loc) -> IvrMenu:
    if not _MENU_NAME.fullmatch(name):
        raise reader.fail(
            "menu names are letters, digits, '_', '.', '-' (at most 63)", loc, key=True
        )
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
        for key, item in r.mapping(raw_options, (*loc, "options")).items():
            where = (*loc, "options", key)
            if key not in DTMF_KEYS and key not in SPECIAL_KEYS:
                raise r.fail(
                    "not a key: use one of 0-9, * or # (quoted), or timeout, invalid, collected",
                    where,
                    key=True,
                )
            options[key] = _option(r, item, where)
    fields["options"] = options
    if data.get("fallback") is not None:
        fields["fallback"] = _option(r, data["fallback"], (*loc, "fallback"))
    present = {key: value for key, value in fields.items() if value is not None}
    return _build(reader, loc, lambda: IvrMenu(name, **present))


def load_menus(text: str, *, file: str | None = None) -> dict[str, IvrMenu]:
    """Parse and validate a menus document. Raises :class:`~engine.errors.ConfigError`.

    ``file`` is the name errors show (``menus.yaml``; default ``<string>``).
    """
    source = YamlSource(file=file if file is not None else "<string>")
    data = parse_yaml_with_lines(text, source)
    reader = _Reader(source)
    reader.keys(data, frozenset({"menus"}), (), "")
    if data.get("menus") is None:
        raise ConfigError("required", file=source.file, line=1, field="menus")
    raw = reader.mapping(data["menus"], ("menus",))
    if not raw:
        raise reader.fail("must define at least one menu", ("menus",))
    menus = {name: _menu(reader, name, value, ("menus", name)) for name, value in raw.items()}
    errors = [
        reader.fail(problem.message, ("menus", *problem.path), key=True)
        for problem in check_menus(menus)
    ]
    if errors:
        raise min(errors, key=lambda e: e.line or 0)
    return menus


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
