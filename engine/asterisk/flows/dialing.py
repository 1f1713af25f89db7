"""How a target becomes an Asterisk dial string, in one place for every leg we ring.

A PBX endpoint or extension goes through ``calls.agent_endpoint_template``
(``PJSIP/{number}``); a number on an outside line (E.164) through
``calls.customer_endpoint_template`` (``PJSIP/{number}@trunk``): agents, customers,
transfer targets and IVR transfer targets alike.

A customer leg presents its caller ID twice: as the caller ID ARI's originate sets (the
SIP ``From`` user) and, on a PJSIP channel, as a ``P-Asserted-Identity`` header
(:func:`asserted_identity_variables`), which carriers trust over ``From``. The header is a
``tel:`` URI (RFC 3325 allows it), so it needs no domain of ours.
"""

from __future__ import annotations

from engine.config.settings import CallSettings

__all__ = ["asserted_identity_variables", "dial_string"]


def dial_string(calls: CallSettings, target: str, *, outside_line: bool | None = None) -> str:
    """The dial string for ``target``; ``outside_line`` defaults to "it is E.164"."""
    outside = target.startswith("+") if outside_line is None else outside_line
    template = calls.customer_endpoint_template if outside else calls.agent_endpoint_template
    return template.format(number=target)


def asserted_identity_variables(endpoint: str, caller_id: str | None) -> dict[str, str]:
    """The channel variables that add ``P-Asserted-Identity: <tel:caller_id>`` to the
    INVITE of a leg dialled as ``endpoint``; none for a leg without a caller ID or not on
    PJSIP (the header function exists only there)."""
    if not caller_id or not endpoint.upper().startswith("PJSIP/"):
        return {}
    return {"PJSIP_HEADER(add,P-Asserted-Identity)": f"<tel:{caller_id}>"}
