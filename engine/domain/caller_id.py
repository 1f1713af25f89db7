"""Which caller ID an outbound leg presents: the tenant's ``caller_id_profile`` rows,
decided without I/O.

First the profile (:func:`select_profile`): the active profile with the lowest
``priority`` whose ``match_prefix`` the callee's number starts with (no prefix matches
every number) and whose ``provider_id``, when set, is the call's provider; else the
tenant's default profile. Then the number (:func:`choose`):

- ``fixed``: the profile's ``caller_id``;
- ``round_robin``: the pool in turn, from the profile's shared ``rotation_cursor``;
- ``local_presence``: the pool numbers in the callee's country *and* area code (the
  geographic area code ``phonenumbers`` knows, e.g. 415 for +1 415 ...) when there is one,
  else those in the callee's country, rotated the same way; none: the profile's
  ``caller_id``.

A ``daily_cap`` limits how many legs one number presents per UTC day: a number at its
cap is skipped in the rotation, and when every candidate is at its cap the profile's
``caller_id`` is presented (the reason says so). Every :class:`CallerIdChoice` carries the
reason it was made, for the session's ``caller_id.chosen`` event.
"""

from __future__ import annotations

import dataclasses
import enum
import uuid
from collections.abc import Iterable, Mapping, Sequence

import phonenumbers

__all__ = [
    "CallerIdChoice",
    "Profile",
    "Rotation",
    "area_key",
    "choose",
    "local_candidates",
    "select_profile",
]


class Rotation(enum.StrEnum):
    FIXED = "fixed"
    ROUND_ROBIN = "round_robin"
    LOCAL_PRESENCE = "local_presence"


@dataclasses.dataclass(frozen=True, slots=True)
class Profile:
    """One ``caller_id_profile`` row, as the choice needs it."""

    name: str
    caller_id: str
    rotation: Rotation = Rotation.FIXED
    pool: tuple[str, ...] = ()
    priority: int = 100
    match_prefix: str | None = None
    provider_id: uuid.UUID | None = None
    is_default: bool = False
    is_active: bool = True
    daily_cap: int | None = None
    id: uuid.UUID | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class CallerIdChoice:
    number: str
    profile: str
    reason: str
    profile_id: uuid.UUID | None = None

    def as_payload(self) -> dict[str, str]:
        payload = {"caller_id": self.number, "profile": self.profile, "reason": self.reason}
        if self.profile_id is not None:
            payload["profile_id"] = str(self.profile_id)
        return payload


def select_profile(
    profiles: Iterable[Profile], number: str, provider_id: uuid.UUID | None = None
) -> Profile | None:
    """The profile that decides the caller ID of a leg to ``number`` over ``provider_id``."""
    usable = [
        p
        for p in profiles
        if p.is_active and (p.provider_id is None or p.provider_id == provider_id)
    ]
    matching = [p for p in usable if p.match_prefix is None or number.startswith(p.match_prefix)]
    if matching:
        # among equal priorities the longer (more specific) prefix first, then the name
        return min(matching, key=lambda p: (p.priority, -len(p.match_prefix or ""), p.name))
    return next((p for p in usable if p.is_default), None)


def area_key(number: str) -> tuple[str, str] | None:
    """(country, geographic area code) of an E.164 number; the area code is '' when the
    number has none (mobiles, non-geographic, unknown)."""
    try:
        parsed = phonenumbers.parse(number, None)
    except phonenumbers.NumberParseException:
        return None
    region = phonenumbers.region_code_for_number(parsed)
    if not region or region == "ZZ":
        return None
    length = phonenumbers.length_of_geographical_area_code(parsed)
    national = phonenumbers.national_significant_number(parsed)
    return region, national[:length] if length else ""


def local_candidates(pool: Sequence[str], number: str) -> tuple[tuple[str, ...], str]:
    """The pool numbers local to ``number`` and how local: same country and area code,
    else same country, else none."""
    callee = area_key(number)
    if callee is None:
        return (), "the callee's country is unknown"
    keys = {n: area_key(n) for n in pool}
    country, area = callee
    if area:
        same_area = tuple(n for n in pool if keys[n] == (country, area))
        if same_area:
            return same_area, f"local presence: area code {area} ({country})"
    same_country = tuple(n for n in pool if (k := keys[n]) is not None and k[0] == country)
    if same_country:
        return same_country, f"local presence: country {country}"
    return (), f"no pool number in {country}"


def _rotate(
    candidates: Sequence[str], cursor: int, used_today: Mapping[str, int], cap: int | None
) -> str | None:
    """The candidate at ``cursor`` (mod their count), or the next one under the cap."""
    count = len(candidates)
    for step in range(count):
        candidate = candidates[(cursor + step) % count]
        if cap is None or used_today.get(candidate, 0) < cap:
            return candidate
    return None


def choose(
    profile: Profile,
    number: str,
    *,
    cursor: int = 0,
    used_today: Mapping[str, int] | None = None,
) -> CallerIdChoice:
    """The caller ID ``profile`` presents to ``number``; ``cursor`` is the profile's
    rotation position for this leg (each leg takes the next), ``used_today`` how many legs
    each number presented today (for ``daily_cap``)."""
    used = used_today or {}

    def made(chosen: str, reason: str) -> CallerIdChoice:
        return CallerIdChoice(chosen, profile.name, reason, profile.id)

    if profile.rotation is Rotation.FIXED or not profile.pool:
        return made(profile.caller_id, "fixed")
    if profile.rotation is Rotation.LOCAL_PRESENCE:
        candidates, why = local_candidates(profile.pool, number)
        if not candidates:
            return made(profile.caller_id, f"{why}: the profile's caller ID")
    else:
        candidates, why = profile.pool, "round robin"
    chosen = _rotate(candidates, cursor, used, profile.daily_cap)
    if chosen is None:
        return made(
            profile.caller_id,
            f"{why}: every candidate reached its daily cap of {profile.daily_cap}",
        )
    return made(chosen, why)
