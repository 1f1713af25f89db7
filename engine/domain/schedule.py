"""When a routing rule applies: weekly windows in a time zone, with holidays as exceptions.

Pure (the zone data is read by :mod:`zoneinfo`). A window's days are ISO weekdays
(1 = Monday); a window whose end is before its start runs past midnight and belongs to the
day it starts on. A holiday is a local date on which the schedule does not hold at all.
"""

from __future__ import annotations

import dataclasses
import re
from datetime import date, datetime, time
from typing import Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from engine.errors import InvalidInput

__all__ = ["Schedule", "Window", "at_local", "schedule_problem", "time_zone"]

# the names the database stores (tenant.timezone), which every IANA name fits
_ZONE_NAME: Final = re.compile(r"[A-Za-z][A-Za-z0-9_+/-]{0,63}")
_DAY_NAMES: Final = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def time_zone(name: str, *, field: str) -> ZoneInfo:
    """The IANA zone ``name``; InvalidInput naming ``field`` when there is none."""
    if not _ZONE_NAME.fullmatch(name):
        raise InvalidInput(field, f"unknown time zone {name!r}")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise InvalidInput(field, f"unknown time zone {name!r}") from None


@dataclasses.dataclass(frozen=True, slots=True)
class Window:
    """ISO ``days`` (1 = Monday), from ``start`` to ``end`` local time; an ``end`` before
    ``start`` runs past midnight (the day is the one the window starts on)."""

    days: tuple[int, ...]
    start: time
    end: time

    def __post_init__(self) -> None:
        if not self.days or any(d not in range(1, 8) for d in self.days):
            raise InvalidInput("days", "ISO weekdays 1 (Monday) to 7 (Sunday), at least one")
        if len(set(self.days)) != len(self.days):
            raise InvalidInput("days", "a day is listed twice")
        if self.start == self.end:
            raise InvalidInput("end", "a window's end must differ from its start")

    def holds(self, local: datetime) -> bool:
        clock = local.time().replace(tzinfo=None)
        day = local.isoweekday()
        if self.start < self.end:
            return day in self.days and self.start <= clock < self.end
        if clock >= self.start:  # the evening part, on a listed day
            return day in self.days
        previous = 7 if day == 1 else day - 1  # the morning part, after a listed day
        return clock < self.end and previous in self.days

    def describe(self) -> str:
        days = sorted(self.days)
        if days == list(range(1, 8)):
            when = "every day"
        elif len(days) > 2 and days == list(range(days[0], days[-1] + 1)):
            when = f"{_DAY_NAMES[days[0] - 1]}–{_DAY_NAMES[days[-1] - 1]}"
        else:
            when = ", ".join(_DAY_NAMES[d - 1] for d in days)
        return f"{when} {self.start:%H:%M}–{self.end:%H:%M}"


@dataclasses.dataclass(frozen=True, slots=True)
class Schedule:
    """When a rule applies: in one of ``windows`` (none: all day) in ``time_zone`` (None:
    the tenant's), on a date not in ``holidays``."""

    windows: tuple[Window, ...] = ()
    time_zone: str | None = None
    holidays: tuple[date, ...] = ()

    def __post_init__(self) -> None:
        if self.time_zone is not None:
            time_zone(self.time_zone, field="time_zone")
        if not self.windows and not self.holidays:
            raise InvalidInput("windows", "a schedule needs windows or holidays")


def schedule_problem(schedule: Schedule | None, at: datetime, default_zone: str) -> str | None:
    """Why ``schedule`` does not hold at ``at`` (None: it does, or there is none)."""
    if schedule is None:
        return None
    name = schedule.time_zone or default_zone
    local = at.astimezone(time_zone(name, field="time_zone"))
    if local.date() in schedule.holidays:
        return f"{local.date().isoformat()} is a holiday ({name})"
    if schedule.windows and not any(w.holds(local) for w in schedule.windows):
        shown = "; ".join(w.describe() for w in schedule.windows)
        return f"{local:%a %H:%M} {name} is outside {shown}"
    return None


def at_local(at: datetime, zone: str) -> datetime:
    """``at`` read in ``zone`` (a naive ``at`` is local time there)."""
    tz = time_zone(zone, field="time_zone")
    try:
        return at.replace(tzinfo=tz) if at.tzinfo is None else at.astimezone(tz)
    except OverflowError:
        raise InvalidInput("at", "out of range") from None
