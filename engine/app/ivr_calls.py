"""What both IVR doors (ARI Stasis and FastAGI) record about an IVR call, and its lookups.

The session row (direction ``inbound``), its status changes, one ``call_dtmf_interaction``
row plus a ``call_event`` per key decision, the ``call_transfer`` rows of the transfers the
menus ask for, and the ERP lookups a menu makes. The doors differ only in how they play
prompts, hear keys and ring targets; this is the part they share, and it knows nothing of
either: a call is told by the id of its caller's channel and the name of its door.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
import urllib.parse
import uuid
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import structlog

from engine.app.agent_states import AgentStateService
from engine.app.calls import CallService
from engine.app.ports import ErpLookup
from engine.domain.call import CallStatus, Direction
from engine.domain.compliance import Finding
from engine.domain.event_types import CallEventType
from engine.domain.ivr import (
    BY_CONDITIONS,
    HttpLookup,
    LookupResult,
    MenuBook,
    RecordDtmf,
    Transfer,
    TransferTargetType,
)
from engine.domain.netpolicy import OutboundPolicy
from engine.domain.phone import e164_or_none
from engine.domain.routing import Attempt, RoutePlan, plan_route, plan_summary
from engine.domain.routing_rules import CallFacts, condition_skips, select_rule
from engine.domain.transfer import TransferState, TransferType
from engine.errors import CtcError, InvalidInput, NotFound
from engine.metrics import IvrDoorMetrics, Metrics
from engine.store.records import NewSession, NewTransfer, StoredSession, StoredTransfer, Tenant
from engine.store.repositories import Store

__all__ = ["IvrCallRecord", "MenuLoader", "http_lookup"]

# one proxy for every call: a new one per call built its logger again on every bind (~18 µs)
log = structlog.get_logger(__name__)

# The tenant's menus with their stored ids (Store.ivr.book).
MenuLoader = Callable[[uuid.UUID], Awaitable[MenuBook]]


class IvrCallRecord:
    """The stored side of one IVR call; :meth:`store_session` stores its session, the rest needs it.

    ``door`` names the door the caller came through (``ari``, ``agi``), ``channel_id`` the
    caller's channel; both are kept on the session's metadata. Made when the caller reaches
    the door: with ``metrics``, the time to :meth:`answered` is the door's answer latency
    (``ctc_answer_latency_seconds``) and each key decision is counted
    (``ctc_ivr_inputs_total``).
    """

    def __init__(
        self, store: Store, channel_id: str, door: str, *, metrics: Metrics | None = None
    ) -> None:
        self.store = store
        self.channel_id = channel_id
        self.door = door
        self.arrived = time.monotonic()
        self._metrics: IvrDoorMetrics | None = (
            metrics.ivr_doors.get(door) if metrics is not None else None
        )
        self.session: StoredSession | None = None
        self.book: MenuBook | None = None
        self.agents = AgentStateService(store)
        self.on_call_agent: str | None = None  # offered by a routing rule, answered
        self.tenant: Tenant | None = None  # once stored
        # the caller ID a transfer's outside leg presents (a caller-ID profile's choice)
        self.outside_caller_id: str | None = None
        self.policy = OutboundPolicy()  # the tenant's, once stored: where lookups may go
        self.log: Any = log.bind(channel=channel_id, door=door)

    async def store_session(
        self,
        load_menus: MenuLoader,
        *,
        tenant_slug: str,
        menu: str,
        caller: str | None,
        dialed: str | None,
    ) -> MenuBook:
        """Load the tenant's menus and store the queued session.

        An unknown tenant or ``menu`` raises :class:`NotFound` before anything is stored: a
        request naming a menu that does not exist is not a call the engine took.
        """
        tenant = await self.store.tenants.by_slug(tenant_slug)
        self.tenant = tenant
        self.policy = tenant.policy
        book = await load_menus(tenant.id)
        if menu not in book.menus:
            raise NotFound("IVR menu", menu)
        customer = e164_or_none(caller) if caller else None
        # written behind: the IVR owns this session in memory (engine/store/journal.py)
        self.session = self.store.sessions.open_live(
            NewSession(
                tenant_id=tenant.id,
                direction=Direction.INBOUND,
                agent_number=None,
                customer_number=customer,
                caller_number=caller,
                dialed_number=dialed,
                ivr_menu=menu,
                metadata={"channel_id": self.channel_id, "door": self.door},
            ),
            tenant_callback_url=tenant.callback_url,
        )
        self.log = self.log.bind(call_id=str(self.session.id), tenant_id=str(tenant.id))
        self.book = book
        return book

    def stored_session(self) -> StoredSession:
        """The call's session; RuntimeError before :meth:`store_session` stored it."""
        if self.session is None:
            raise RuntimeError(f"IVR call on {self.channel_id} used before store_session()")
        return self.session

    def menus(self) -> MenuBook:
        """The tenant's menus; RuntimeError before :meth:`store_session` loaded them."""
        if self.book is None:
            raise RuntimeError(f"IVR call on {self.channel_id} used before store_session()")
        return self.book

    async def answered(self, menu: str) -> None:
        """The caller's channel is answered."""
        session = self.stored_session()
        self.session, _ = await self.store.sessions.transition(
            session.tenant_id,
            session.id,
            CallStatus.CONNECTED,
            event_type=CallEventType.IVR_ANSWERED,
            payload={"menu": menu, "channel_id": self.channel_id},
        )
        if self._metrics is not None:
            self._metrics.answer.observe(time.monotonic() - self.arrived)
        self.log.info("ivr.entered", menu=menu)

    async def note(self, event_type: CallEventType, payload: dict[str, Any]) -> None:
        """A telephony fact of this call as a ``call_event``."""
        session = self.stored_session()
        await self.store.sessions.append_event(
            session.tenant_id, session.id, event_type, payload=payload
        )

    async def record_dtmf(self, row: RecordDtmf) -> None:
        session, book = self.stored_session(), self.menus()
        if self._metrics is not None:
            self._metrics.input_decided(row.outcome.value)
        menu_id, version = book.menu_ids[row.menu]
        option_id = book.option_ids.get((row.menu, row.option)) if row.option else None
        await self.store.dtmf.record(
            session.tenant_id,
            session.id,
            menu_id=menu_id,
            menu_version=version,
            option_id=option_id,
            digit=row.digit or None,
            input_value=row.value,
            outcome=row.outcome.value,
            attempt=row.attempt,
            ms_since_prompt=row.ms_since_prompt,
            channel_id=self.channel_id,
        )
        await self.store.sessions.append_event(
            session.tenant_id,
            session.id,
            CallEventType.IVR_DTMF,
            payload={
                "menu": row.menu,
                "digit": row.digit,
                "outcome": row.outcome.value,
                "option": row.option,
                "value": row.value,
                "ms_since_prompt": row.ms_since_prompt,
            },
        )

    async def end(self, status: CallStatus, reason: str) -> None:
        """Finish the session (connected → ``status``; never answered → canceled); the
        agent a routing rule put on this call goes to wrap-up."""
        if self.session is None:
            return
        if self.on_call_agent is not None:
            agent, self.on_call_agent = self.on_call_agent, None
            try:
                await self.agents.call_ended(self.session.tenant_id, agent, self.session.id)
            except CtcError as exc:  # the session still ends (it is written behind)
                self.log.warning("ivr.agent_state_failed", agent=agent, error=str(exc))
        current = await self.store.sessions.by_id(self.session.id)
        if current is None or current.status.is_terminal:
            return
        if status is not CallStatus.FAILED and current.status is not CallStatus.CONNECTED:
            status = CallStatus.CANCELED
        await self.store.sessions.transition(
            current.tenant_id,
            current.id,
            status,
            event_type=CallEventType.IVR_ENDED,
            payload={"reason": reason},
            changes={"end_reason": reason},
        )
        self.log.info("ivr.ended", status=status.value, reason=reason)

    # -- transfers (``call_transfer`` rows; the caller is the leg that stays) ----------------

    async def transfer_started(
        self,
        *,
        target_type: TransferTargetType,
        target: str | None,
        menu: str | None = None,
        key: str | None = None,
        routing_rule_id: uuid.UUID | None = None,
        target_channel_id: str | None = None,
    ) -> StoredTransfer:
        """Store the transfer the IVR option ``menu``/``key`` asked for as initiated.

        For a routing rule ``target`` is the member(s) offered (``&``-joined when rung at
        once) and ``routing_rule_id`` the rule offering them.
        """
        session = self.stored_session()
        option_id = None
        if self.book is not None and menu is not None and key is not None:
            option_id = self.book.option_ids.get((menu, key))
        # the session may still be queued in the write-behind journal: the row refers to it
        await self.store.journal.created([session.id])
        transfer = await self.store.transfers.create(
            NewTransfer(
                tenant_id=session.tenant_id,
                session_id=session.id,
                transfer_type=TransferType.BLIND,
                from_leg="caller",  # the leg that stays and is moved to the target
                target_type=target_type,
                target=target,
                target_channel_id=target_channel_id,
                initiated_by="ivr",
                option_id=option_id,
                routing_rule_id=routing_rule_id,
            )
        )
        payload: dict[str, Any] = {
            "transfer_id": str(transfer.id),
            "target_type": target_type.value,
            "target": target,
        }
        if routing_rule_id is not None:
            payload["routing_rule_id"] = str(routing_rule_id)
        await self.note(CallEventType.IVR_TRANSFER_STARTED, payload)
        return transfer

    async def transfer_finished(
        self,
        transfer: StoredTransfer,
        state: TransferState,
        *,
        cause: int | None = None,
        reason: str | None = None,
        target_channel_id: str | None = None,
        answered_at: datetime | None = None,
        answered_by: str | None = None,
    ) -> StoredTransfer:
        """Set the outcome: completed (answered and bridged), busy, no_answer or failed.

        For a routing rule's offer, the agents offered change state: the one who answered
        (``answered_by``, else the one the answering channel names) is on the call, the
        others are available again."""
        changes: dict[str, Any] = {}
        if cause is not None:
            changes["hangup_cause"] = cause
        if reason:
            changes["failure_cause"] = reason[:500]
        if target_channel_id:
            changes["target_channel_id"] = target_channel_id
        if answered_at is not None:
            changes["answered_at"] = max(answered_at, transfer.requested_at)
        done = await self.store.transfers.update(transfer.id, state, **changes)
        if done.routing_rule_id is not None and done.target:
            await self._offer_ended(done, state, answered_by, answered_at)
        payload: dict[str, Any] = {"transfer_id": str(done.id), "state": state.value}
        if cause is not None:
            payload["hangup_cause"] = cause
        if reason:
            payload["reason"] = reason
        await self.note(CallEventType.IVR_TRANSFER_FINISHED, payload)
        self.log.info("ivr.transfer_finished", target=done.target, state=state.value)
        return done

    async def _offer_ended(
        self,
        row: StoredTransfer,
        state: TransferState,
        answered_by: str | None,
        answered_at: datetime | None,
    ) -> None:
        offered = (row.target or "").split("&")
        winner = None
        if state is TransferState.COMPLETED:
            named = [m for m in offered if row.target_channel_id and m in row.target_channel_id]
            winner = answered_by or (offered[0] if len(offered) == 1 else None)
            winner = winner or (named[0] if named else None)
        others = [m for m in offered if m != winner]
        if others:
            await self.agents.not_answered(row.tenant_id, others, row.session_id)
        if winner is not None:
            self.on_call_agent = winner
            await self.agents.answered(row.tenant_id, winner, row.session_id, answered_at)

    async def attempt_started(
        self, command: Transfer, attempt: Attempt
    ) -> tuple[StoredTransfer, Attempt]:
        """The row of one attempt of an IVR transfer (members rung at once: ``a&b``) and the
        attempt as it rings: a routing rule's members are reserved first, each atomically
        (:meth:`AgentStateService.offered`), and only those reserved ring; one another call
        took meanwhile is left out (none left: the attempt fails, saying who was busy)."""
        if attempt.rule_id is not None and attempt.targets:
            session = self.stored_session()
            await self.store.journal.created([session.id])  # the log rows refer to it
            taken, kept = await self.agents.offered(session.tenant_id, attempt.targets, session.id)
            if kept:
                busy = ", ".join(f"{agent} ({state})" for agent, state in kept.items())
                self.log.info("ivr.agents_taken", agents=busy)
                reason = None if taken else f"agents busy: {busy}"
                attempt = dataclasses.replace(attempt, targets=tuple(taken), reason=reason)
        row = await self.transfer_started(
            target_type=command.target_type,
            target="&".join(attempt.targets) or None,
            menu=command.menu,
            key=command.key,
            routing_rule_id=attempt.rule_id,
        )
        return row, attempt

    async def routed_to_menu(
        self, command: Transfer, plan_menu: str, rule_id: uuid.UUID | None
    ) -> None:
        """An ``ivr_menu`` routing rule: the transfer completes by sending the caller to
        that menu (a completed row whose target is the menu)."""
        row = await self.transfer_started(
            target_type=command.target_type,
            target=plan_menu,
            menu=command.menu,
            key=command.key,
            routing_rule_id=rule_id,
        )
        await self.transfer_finished(row, TransferState.COMPLETED)

    async def transfer_plan(
        self,
        command: Transfer,
        ring_timeout_s: int,
        variables: Mapping[str, str] | None = None,
        *,
        default_region: str | None = None,
    ) -> tuple[RoutePlan, bool | None]:
        """What an IVR transfer rings, and whether its targets take the outside line: a
        routing rule's plan (None: each member by its form, E.164 out on the trunk), or the
        one target for ``ring_timeout_s`` (a number goes out on the trunk).

        A rule of the chain whose conditions do not hold for this call (its caller, the
        number dialled, the key that chose the transfer, the skills in the IVR variable
        ``skill``, comma-separated, of ``variables``) or whose schedule does not hold now
        passes the call to its fallback; agents not available are left out.

        Every number that would go out on the trunk (a ``number`` target, with ``+`` or
        national in ``default_region``; a rule's E.164 member) passes the pre-dial check
        and the caller-ID choice of every outbound leg
        (:meth:`~engine.app.calls.CallService.customer_leg`): a refused one is never rung
        (``ivr.transfer_rejected``), the chosen caller ID is :attr:`outside_caller_id`."""
        session = self.stored_session()
        ref = command.target or ""
        self.outside_caller_id = None
        if command.target_type is not TransferTargetType.ROUTING_RULE:
            outside = command.target_type is TransferTargetType.NUMBER
            if outside:
                number = await self._outside_number(ref, default_region)
                if number is None:
                    return RoutePlan(reason=f"transfer to {ref} refused"), True
                ref = number
            return RoutePlan((Attempt(None, (ref,), ring_timeout_s),)), outside
        settings = await self.store.routing.settings(session.tenant_id)
        skills = (variables or {}).get("skill", "")
        facts = CallFacts(
            at=datetime.now(UTC),
            caller=session.customer_number or session.caller_number,
            callee=e164_or_none(session.dialed_number or ""),
            dialed=session.dialed_number,
            ivr_choice=command.key,
            skills=frozenset(s.strip() for s in skills.split(",") if s.strip()),
        )
        chosen = f"IVR menu {command.menu} key {command.key}" if command.menu else "the IVR"
        matched: str | None = None  # why the rule was chosen by its conditions
        if ref == BY_CONDITIONS:  # no rule named: the first whose conditions hold decides
            decision = select_rule(
                await self.store.routing.definitions(session.tenant_id), facts, settings.time_zone
            )
            if decision.rule is None:
                considered = {v.rule: v.why for v in decision.considered}
                await self.note(
                    CallEventType.ROUTING_DECIDED,
                    {
                        "rule": None,
                        "selected_by": "conditions",
                        "considered": considered,
                        "reason": f"{decision.reason} (asked by {chosen})",
                    },
                )
                return RoutePlan(reason=decision.reason), None
            ref, matched = decision.rule.name, decision.reason
        first, rules = await self.store.routing.chain(session.tenant_id, ref)
        if first is None:
            return RoutePlan(reason=f"unknown routing rule {ref!r}"), None
        members = {m for r in rules.values() for m in (*r.members, r.target) if m}
        plan = plan_route(
            rules,
            first,
            unavailable=await self.agents.unavailable(session.tenant_id, members),
            at=facts.at,
            zone=settings.time_zone,
            skip=condition_skips(rules.values(), facts),
        )
        plan = await self._screened_members(plan)
        followed = [rules[r].name for r in plan.rules if r in rules]
        why = (
            f"rule {rules[first].name!r} chosen by {chosen}: {plan_summary(plan)}"
            if matched is None
            else f"{matched} (asked by {chosen}): {plan_summary(plan)}"
        )
        await self.note(
            CallEventType.ROUTING_DECIDED,
            {
                "rule": rules[first].name,
                "routing_rule_id": str(first),
                "selected_by": "menu" if matched is None else "conditions",
                "rules": followed,
                "skipped": dict(plan.skipped),
                "reason": why,
            },
        )
        return plan, None

    async def _outside_number(self, target: str, default_region: str | None) -> str | None:
        """``target`` as the E.164 number an outside leg rings, once the pre-dial check let
        it (its caller ID chosen, its warnings noted); None when refused (noted as
        ``ivr.transfer_rejected``: never dialled)."""
        tenant = self.tenant
        if tenant is None:
            raise RuntimeError(f"IVR call on {self.channel_id} used before store_session()")
        refusal: Finding | None
        try:
            leg = await CallService(self.store).customer_leg(
                tenant, target, field="target", default_region=default_region
            )
        except InvalidInput as exc:
            refusal = Finding("e164", "invalid_number", f"{exc.field}: {exc.reason}")
        else:
            refusal = leg.refusal
        if refusal is not None:
            await self.note(
                CallEventType.IVR_TRANSFER_REJECTED, {"target": target, **refusal.as_payload()}
            )
            self.log.info("ivr.transfer_rejected", target=target, rule=refusal.rule)
            return None
        for warning in leg.warnings:
            await self.note(CallEventType.COMPLIANCE_WARNING, warning.as_payload())
        if leg.choice is not None:
            await self.note(CallEventType.CALLER_ID_CHOSEN, leg.choice.as_payload())
        self.outside_caller_id = self.outside_caller_id or leg.caller_id
        return leg.customer_number

    async def _screened_members(self, plan: RoutePlan) -> RoutePlan:
        """``plan`` with the E.164 members the pre-dial check refuses left out of its
        attempts (an attempt left with none fails, saying why)."""
        attempts: list[Attempt] = []
        for attempt in plan.attempts:
            outside = [t for t in attempt.targets if t.startswith("+")]
            if not outside:
                attempts.append(attempt)
                continue
            kept = []
            for target in attempt.targets:
                if not target.startswith("+") or await self._outside_number(target, None):
                    kept.append(target)
            reason = attempt.reason if kept else "every number refused by the pre-dial check"
            attempts.append(dataclasses.replace(attempt, targets=tuple(kept), reason=reason))
        return dataclasses.replace(plan, attempts=tuple(attempts))


async def http_lookup(
    erp: ErpLookup,
    lookup: HttpLookup,
    call: IvrCallRecord | None = None,
    *,
    policy: OutboundPolicy | None = None,
) -> LookupResult:
    """Ask the ERP through ``erp``; any failure is ``ok=False`` (the menu then plays its
    failure prompt).

    Only where ``policy`` (default: the call's tenant's, else global addresses only) lets
    requests go (:mod:`engine.domain.netpolicy`): a refused URL or resolved address is a
    failure saying so, and nothing is sent. What is sent and what counts as an answer:
    :class:`~engine.app.ports.ErpLookup`. With ``call`` the request and its result are
    that call's ``ivr.lookup`` / ``ivr.lookup_result`` events.
    """
    if call is not None:
        await call.note(
            CallEventType.IVR_LOOKUP,
            {"method": lookup.method, "url": _shown(lookup.url), "params": dict(lookup.params)},
        )
    started = time.monotonic()
    if policy is None:
        policy = call.policy if call is not None else OutboundPolicy()
    result = await erp.ask(lookup, policy)
    if call is not None:
        took = round((time.monotonic() - started) * 1000)
        await call.note(
            CallEventType.IVR_LOOKUP_RESULT,
            {"ok": result.ok, "value": result.value, "error": result.error, "ms": took},
        )
        call.log.info("ivr.lookup", ok=result.ok, error=result.error, ms=took)
    return result


def _shown(url: str) -> str:
    """The URL without credentials (``user:password@``), for the call's events."""
    with contextlib.suppress(ValueError):
        parts = urllib.parse.urlsplit(url)
        if "@" in parts.netloc:
            host = parts.netloc.rsplit("@", 1)[1]
            return urllib.parse.urlunsplit(parts._replace(netloc=host))
    return url
