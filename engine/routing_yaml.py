"""Routing rules as YAML: load (validated, with file and line) and dump (``ctc routing export``).

The same machinery as the IVR menus (:mod:`engine.yaml_lines`): every problem is one
:class:`~engine.errors.ConfigError` naming the file, the line and the dotted field, e.g.
``rules.yaml:7: rules.sales-hours.match.caller_prefix.0: an E.164 prefix: '+' and 1-15
digits``. The API's body for one rule is the same mapping as one entry under ``rules:``
and goes through :func:`rule_from_data` (no lines then, the field still named). The
document::

    settings:                       # optional: the tenant's routing settings
      time_zone: Europe/Berlin      # schedules that name no zone are read in it
      wrap_up_s: 30                 # an agent's wrap-up after each call (0: none)
    rules:
      sales-hours:
        priority: 10                # lower first (default 100)
        direction: inbound          # inbound, outbound, click_to_call or any
        match:                      # every key must hold; a list: any of its values
          caller_prefix: ["+49"]
          callee_country: DE
          dialed_number: "5551000"
          ivr_choice: "1"
          skill: german
        schedule:
          time_zone: Europe/Berlin  # default: settings.time_zone
          windows:
            - {days: [1, 2, 3, 4, 5], start: "09:00", end: "18:00"}
          holidays: [2026-12-25]
        strategy: ring_group_simultaneous
        members: [agent3, agent4]
        ring_timeout_s: 20
        fallback: after-hours       # another rule, tried when nobody answers
      after-hours:
        strategy: ivr_menu
        ivr_menu: closed

Times are ``"HH:MM"`` strings (YAML reads an unquoted ``09:00`` as the number 540, which is
taken as minutes after midnight, the same time).
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Callable, Mapping
from datetime import date, time
from pathlib import Path
from typing import Any, TypeVar

import yaml

from engine.domain.routing import Strategy
from engine.domain.routing_rules import (
    CONDITION_KEYS,
    DIRECTIONS,
    Conditions,
    RoutingSettings,
    RuleDefinition,
)
from engine.domain.schedule import Schedule, Window
from engine.errors import ConfigError, InvalidInput
from engine.yaml_lines import KeyPath, YamlSource, parse_yaml_with_lines, read_text_file

__all__ = [
    "RoutingDocument",
    "dump_rules",
    "load_rules",
    "load_rules_file",
    "rule_entry",
    "rule_from_data",
]

_T = TypeVar("_T")
_CLOCK = re.compile(r"([0-9]{1,2}):([0-9]{2})")

_RULE_KEYS = frozenset(
    {
        "description",
        "priority",
        "active",
        "direction",
        "match",
        "schedule",
        "strategy",
        "target",
        "members",
        "ivr_menu",
        "provider",
        "ring_timeout_s",
        "fallback",
    }
)


@dataclasses.dataclass(frozen=True, slots=True)
class RoutingDocument:
    rules: dict[str, RuleDefinition]
    settings: RoutingSettings | None = None  # None: the document sets none
    # where each value came from: a problem found later (against stored rules) names its line
    source: YamlSource | None = dataclasses.field(default=None, compare=False, repr=False)

    def error(self, message: str, field: str) -> ConfigError:
        """A ConfigError at the line of ``field`` (dotted, from the document's top)."""
        if self.source is None:
            return ConfigError(message, field=field)
        return self.source.error(message, _path(field))


class _Reader:
    def __init__(self, source: YamlSource) -> None:
        self.source = source

    def fail(self, message: str, loc: KeyPath, *, key: bool = False) -> ConfigError:
        return self.source.error(message, loc, key=key)

    def mapping(self, value: Any, loc: KeyPath, allowed: frozenset[str]) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail("expected a mapping", loc)
        for key in value:
            if key not in allowed:
                raise self.fail("unknown key", (*loc, key), key=True)
        return value

    def get(
        self,
        data: dict[str, Any],
        key: str,
        loc: KeyPath,
        check: Callable[[Any], _T | None],
        what: str,
    ) -> _T | None:
        if data.get(key) is None:
            return None
        value = check(data[key])
        if value is None:
            raise self.fail(what, (*loc, key))
        return value

    def texts(self, value: Any, loc: KeyPath) -> tuple[str, ...]:
        """A string (or number) or a list of them."""
        items = value if isinstance(value, list) else [value]
        out: list[str] = []
        for i, item in enumerate(items):
            text = _text(item)
            if text is None:
                raise self.fail("expected a string", (*loc, i) if isinstance(value, list) else loc)
            out.append(text)
        return tuple(out)

    def build(self, loc: KeyPath, make: Callable[[], _T]) -> _T:
        """Run a domain constructor; its InvalidInput becomes a ConfigError at the field."""
        try:
            return make()
        except InvalidInput as exc:
            raise self.fail(exc.reason, (*loc, *_path(exc.field))) from None


def _path(field: str) -> KeyPath:
    return tuple(int(p) if p.isdigit() else p for p in field.split("."))


def _text(value: Any) -> str | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    return value if isinstance(value, str) and value.strip() else None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _bool(value: Any) -> bool | None:
    return value if isinstance(value, bool) else None


def _clock(value: Any) -> time | None:
    if isinstance(value, int) and not isinstance(value, bool):  # YAML's 09:00 is 540
        return time(value // 60, value % 60) if 0 <= value < 24 * 60 else None
    matched = _CLOCK.fullmatch(value) if isinstance(value, str) else None
    if matched is None or int(matched[1]) > 23 or int(matched[2]) > 59:
        return None
    return time(int(matched[1]), int(matched[2]))


def _date(value: Any) -> date | None:
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value)
        except ValueError:
            return None
    return None


def _window(days: tuple[int, ...], start: time, end: time) -> Callable[[], Window]:
    return lambda: Window(days, start, end)


def _schedule(r: _Reader, value: Any, loc: KeyPath) -> Schedule:
    data = r.mapping(value, loc, frozenset({"time_zone", "windows", "holidays"}))
    windows: list[Window] = []
    raw_windows = data.get("windows") or []
    if not isinstance(raw_windows, list):
        raise r.fail("expected a list", (*loc, "windows"))
    for i, item in enumerate(raw_windows):
        where = (*loc, "windows", i)
        w = r.mapping(item, where, frozenset({"days", "start", "end"}))
        for key in ("days", "start", "end"):
            if w.get(key) is None:
                raise r.fail("required", (*where, key))
        days = w["days"] if isinstance(w["days"], list) else [w["days"]]
        if not all(_int(d) is not None for d in days):
            raise r.fail("expected ISO weekdays (1 = Monday .. 7)", (*where, "days"))
        start = r.get(w, "start", where, _clock, "expected a time HH:MM")
        end = r.get(w, "end", where, _clock, "expected a time HH:MM")
        if start is None or end is None:  # checked as required above
            raise r.fail("required", where)
        windows.append(r.build(where, _window(tuple(days), start, end)))
    holidays: list[date] = []
    raw_holidays = data.get("holidays") or []
    if not isinstance(raw_holidays, list):
        raise r.fail("expected a list of dates", (*loc, "holidays"))
    for i, item in enumerate(raw_holidays):
        day = _date(item)
        if day is None:
            raise r.fail("expected a date YYYY-MM-DD", (*loc, "holidays", i))
        holidays.append(day)
    zone = r.get(data, "time_zone", loc, _text, "expected a time zone name")
    return r.build(loc, lambda: Schedule(tuple(windows), zone, tuple(holidays)))


def rule_from_data(
    name: str, value: Any, source: YamlSource, loc: KeyPath, *, name_loc: KeyPath | None = None
) -> RuleDefinition:
    """One rule from its plain data (a YAML entry or an API body) at ``loc``; a bad name
    is reported at ``name_loc`` (default: the entry's key)."""
    r = _Reader(source)
    data = r.mapping(value, loc, _RULE_KEYS)
    strategy = r.get(
        data,
        "strategy",
        loc,
        lambda v: v if v in tuple(Strategy) else None,
        "must be one of: " + ", ".join(s.value for s in Strategy),
    )
    if strategy is None:
        raise r.fail("required", (*loc, "strategy"))
    match = r.mapping(data.get("match") or {}, (*loc, "match"), frozenset(CONDITION_KEYS))
    for key in ("caller_prefix", "callee_prefix"):
        raw = match.get(key)
        items = raw if isinstance(raw, list) else [raw]
        for i, item in enumerate(items):
            if isinstance(item, int) and not isinstance(item, bool):
                where = (*loc, "match", key, i) if isinstance(raw, list) else (*loc, "match", key)
                raise r.fail("quote the prefix ('+49'): YAML reads +49 as the number 49", where)
    conditions = r.build(
        (*loc, "match"),
        lambda: Conditions(**{k: r.texts(v, (*loc, "match", k)) for k, v in match.items()}),
    )
    fields: dict[str, Any] = {
        "description": r.get(data, "description", loc, _text, "expected a string"),
        "priority": r.get(data, "priority", loc, _int, "expected an integer"),
        "active": r.get(data, "active", loc, _bool, "expected true or false"),
        "direction": r.get(
            data,
            "direction",
            loc,
            lambda v: v if v in DIRECTIONS else None,
            "must be one of: " + ", ".join(DIRECTIONS),
        ),
        "target": r.get(data, "target", loc, _text, "expected a string"),
        "ivr_menu": r.get(data, "ivr_menu", loc, _text, "expected a menu name"),
        "provider": r.get(data, "provider", loc, _text, "expected a provider name"),
        "ring_timeout_s": r.get(data, "ring_timeout_s", loc, _int, "expected an integer"),
        "fallback": r.get(data, "fallback", loc, _text, "expected a rule name"),
    }
    if data.get("members") is not None:
        if not isinstance(data["members"], list):
            raise r.fail("expected a list", (*loc, "members"))
        fields["members"] = r.texts(data["members"], (*loc, "members"))
    if data.get("schedule") is not None:
        fields["schedule"] = _schedule(r, data["schedule"], (*loc, "schedule"))
    present = {k: v for k, v in fields.items() if v is not None}

    def make() -> RuleDefinition:
        return RuleDefinition(name, Strategy(strategy), conditions=conditions, **present)

    try:
        return make()
    except InvalidInput as exc:
        if exc.field == "name":
            raise r.fail(exc.reason, loc if name_loc is None else name_loc, key=True) from None
        raise r.fail(exc.reason, (*loc, *_path(exc.field))) from None


def load_rules(text: str, *, file: str | None = None) -> RoutingDocument:
    """Parse and validate a routing document (ConfigError at the first problem found).
    A ``fallback`` must name a rule of the document or one already stored (checked on
    import)."""
    source = YamlSource(file=file if file is not None else "<string>")
    data = parse_yaml_with_lines(text, source)
    r = _Reader(source)
    r.mapping(data, (), frozenset({"settings", "rules"}))
    settings = None
    if data.get("settings") is not None:
        raw = r.mapping(data["settings"], ("settings",), frozenset({"time_zone", "wrap_up_s"}))
        given: dict[str, Any] = {
            "time_zone": r.get(raw, "time_zone", ("settings",), _text, "expected a zone name"),
            "wrap_up_s": r.get(raw, "wrap_up_s", ("settings",), _int, "expected an integer"),
        }
        present = {k: v for k, v in given.items() if v is not None}
        settings = r.build(("settings",), lambda: RoutingSettings(**present))
    raw_rules = data.get("rules")
    if raw_rules is None and settings is None:
        raise ConfigError("required", file=source.file, line=1, field="rules")
    if raw_rules is not None and not isinstance(raw_rules, dict):
        raise r.fail("expected a mapping of rule names to rules", ("rules",))
    rules = {
        name: rule_from_data(str(name), value, source, ("rules", name))
        for name, value in (raw_rules or {}).items()
    }
    return RoutingDocument(rules, settings, source)


def load_rules_file(path: str | os.PathLike[str]) -> RoutingDocument:
    """:func:`load_rules` on a file; errors name the path as given."""
    label = os.fspath(path)
    return load_rules(read_text_file(Path(label), label, True), file=label)


# -- dump -----------------------------------------------------------------------------------

_DEFAULT = RuleDefinition("default", Strategy.IVR_MENU, ivr_menu="default")


def rule_entry(rule: RuleDefinition) -> dict[str, Any]:
    """A rule as the plain data of its YAML entry (the API's body; defaults left out)."""
    out: dict[str, Any] = {}
    for key in ("description", "priority", "active", "direction"):
        value = getattr(rule, key)
        if value != getattr(_DEFAULT, key):
            out[key] = value
    if rule.conditions.as_dict():
        out["match"] = rule.conditions.as_dict()
    if rule.schedule is not None:
        schedule: dict[str, Any] = {}
        if rule.schedule.time_zone:
            schedule["time_zone"] = rule.schedule.time_zone
        if rule.schedule.windows:
            schedule["windows"] = [
                {"days": list(w.days), "start": f"{w.start:%H:%M}", "end": f"{w.end:%H:%M}"}
                for w in rule.schedule.windows
            ]
        if rule.schedule.holidays:
            schedule["holidays"] = [d.isoformat() for d in rule.schedule.holidays]
        out["schedule"] = schedule
    out["strategy"] = rule.strategy.value
    for key in ("target", "ivr_menu", "provider"):
        if getattr(rule, key):
            out[key] = getattr(rule, key)
    if rule.members:
        out["members"] = list(rule.members)
    if rule.ring_timeout_s != _DEFAULT.ring_timeout_s:
        out["ring_timeout_s"] = rule.ring_timeout_s
    if rule.fallback:
        out["fallback"] = rule.fallback
    return out


def dump_rules(rules: Mapping[str, RuleDefinition], settings: RoutingSettings | None = None) -> str:
    """YAML that :func:`load_rules` reads back to equal rules (and settings)."""
    doc: dict[str, Any] = {}
    if settings is not None:
        doc["settings"] = {"time_zone": settings.time_zone, "wrap_up_s": settings.wrap_up_s}
    doc["rules"] = {name: rule_entry(rule) for name, rule in rules.items()}
    return yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)
