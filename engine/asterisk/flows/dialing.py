"""How a target becomes an Asterisk dial string, in one place for every leg we ring.

A PBX endpoint or extension goes through ``calls.agent_endpoint_template``
(``PJSIP/{number}``); a number on an outside line (E.164) through
``calls.customer_endpoint_template`` (``PJSIP/{number}@trunk``): agents, customers,
transfer targets and IVR transfer targets alike.
"""

from __future__ import annotations

from engine.config.settings import CallSettings

__all__ = ["dial_string"]


def dial_string(calls: CallSettings, target: str, *, outside_line: bool | None = None) -> str:
    """The dial string for ``target``; ``outside_line`` defaults to "it is E.164"."""
    outside = target.startswith("+") if outside_line is None else outside_line
    template = calls.customer_endpoint_template if outside else calls.agent_endpoint_template
    return template.format(number=target)
