"""The kinds of VoIP provider (carrier) the engine knows.

One list, used by the API (a provider's ``provider_type`` and the carrier webhook path),
the providers use case and the webhook intake. A member is a ``str``: it compares equal to
its value and is stored as it.
"""

from __future__ import annotations

import enum

__all__ = ["HTTP_CARRIERS", "ProviderType"]


class ProviderType(enum.StrEnum):
    ASTERISK = "asterisk"
    SIP_TRUNK = "sip_trunk"
    TWILIO = "twilio"
    EXOTEL = "exotel"
    VONAGE = "vonage"
    MCUBE = "mcube"


# The carriers reached over their HTTP APIs (the others are carried by the local Asterisk).
HTTP_CARRIERS = frozenset(
    {ProviderType.TWILIO, ProviderType.EXOTEL, ProviderType.VONAGE, ProviderType.MCUBE}
)
