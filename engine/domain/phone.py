"""Phone number normalisation: everything we store is E.164.

``phonenumbers`` decides what is a valid number; we reject what it rejects and say why,
naming the field the number came from.
"""

from __future__ import annotations

import phonenumbers

from engine.errors import InvalidInput

__all__ = ["to_e164"]


def to_e164(raw: str, *, field: str, default_region: str | None = None) -> str:
    """Return ``raw`` as an E.164 string, or raise :class:`InvalidInput` naming ``field``.

    Without ``default_region`` the number must carry its country code (``+…``).
    """
    text = raw.strip()
    if not text:
        raise InvalidInput(field, "phone number is empty")
    try:
        number = phonenumbers.parse(text, default_region)
    except phonenumbers.NumberParseException as exc:
        raise InvalidInput(field, f"not a phone number: {exc}") from exc
    if not phonenumbers.is_valid_number(number):
        raise InvalidInput(field, f"not a valid phone number: {raw!r}")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
