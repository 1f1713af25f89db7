"""Controls and transfers of a call another engine owns: sent to that engine, carried out
there, the result answered here.

Why: the ERP talks to any engine, but a call's channels are on the Asterisk of the engine
that owns the session (its ``node``). The use cases (:class:`~engine.app.calls.CallService`,
:class:`~engine.app.controls.CallControlService`) ask :func:`owner_elsewhere` first; a
session of another live node goes through the :class:`~engine.app.ports.OwnerLink` port
(over PostgreSQL: :class:`~engine.node_link.NodeLink`) as a plain JSON command, and the
owner's command runner runs the same use case there. The owner's refusal comes back
as the same error (Conflict, NotFound, ...), so the API answers as the owner would have.

A command is a JSON object: ``op`` (``control``, ``end``, ``transfer``,
``transfer_complete``, ``transfer_cancel``), ``tenant`` (the tenant's slug) and the
operation's fields. A result is ``{"ok": true}`` (with ``transfer_id`` for transfers) or
``{"error": {...}}`` (:func:`error_result`). The owner's side is
:class:`~engine.app.node_commands.CommandRunner`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from engine.app.ports import OwnerLink
from engine.errors import (
    AsteriskError,
    CallRejected,
    Conflict,
    CtcError,
    DatabaseUnavailable,
    FeatureUnavailable,
    IllegalTransition,
    InvalidInput,
    NotFound,
    describe,
)
from engine.store.records import StoredSession, Tenant

__all__ = ["error_result", "forward", "owner_elsewhere", "raise_result"]


def owner_elsewhere(link: OwnerLink | None, session: StoredSession) -> OwnerLink | None:
    """The link to use when another engine owns ``session`` (None: this engine acts)."""
    if link is None or session.node is None or session.node == link.node:
        return None
    return link


async def forward(
    link: OwnerLink, session: StoredSession, tenant: Tenant, command: Mapping[str, Any]
) -> Mapping[str, Any]:
    """Have the session's owner carry ``command`` out; its result, or its refusal raised
    here (NodeUnavailable when it does not answer in time)."""
    owner = session.node or ""
    result = await link.forward(session, {**command, "tenant": tenant.slug})
    return raise_result(result, owner)


def error_result(exc: Exception) -> dict[str, Any]:
    """An owner's refusal as a result the sender turns back into the same error."""
    match exc:
        case CallRejected():
            error = {
                "type": "call_rejected",
                "session_id": str(exc.session_id),
                "rule": exc.rule,
                "rule_type": exc.rule_type,
                "reason": exc.reason,
                "field": exc.field,
            }
        case InvalidInput():
            error = {"type": "invalid_input", "field": exc.field, "reason": exc.reason}
        case IllegalTransition():
            error = {"type": "illegal_transition", "current": exc.current, "target": exc.target}
        case NotFound():
            error = {"type": "not_found", "what": exc.what, "key": str(exc.key)}
        case Conflict():
            error = {"type": "conflict", "message": str(exc)}
        case FeatureUnavailable() | AsteriskError() | DatabaseUnavailable():
            error = {"type": "unavailable", "message": str(exc)}
        case _:
            error = {"type": "error", "message": describe(exc)}
    return {"error": error}


def raise_result(result: Mapping[str, Any], owner: str) -> Mapping[str, Any]:
    """``result`` if the owner carried the command out; else its error, raised here."""
    error = result.get("error")
    if not isinstance(error, Mapping):
        return result
    match error.get("type"):
        case "call_rejected":
            raise CallRejected(
                error["session_id"],
                error["rule"],
                error["rule_type"],
                error["reason"],
                field=error["field"],
            )
        case "invalid_input":
            raise InvalidInput(error["field"], error["reason"])
        case "illegal_transition":
            raise IllegalTransition(error["current"], error["target"])
        case "not_found":
            raise NotFound(error["what"], error["key"])
        case "conflict":
            raise Conflict(error["message"])
        case "unavailable":
            raise FeatureUnavailable(f"node {owner}: {error['message']}")
    raise CtcError(f"node {owner} failed the command: {error.get('message')}")
