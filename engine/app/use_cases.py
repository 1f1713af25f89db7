"""All the use cases, built over one store: what the API's state and the CLI hold."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from engine.app.agent_states import AgentStateService
from engine.app.agents import AgentActivityService
from engine.app.billing import BillingService
from engine.app.call_activity import CallActivityService
from engine.app.callbacks import CallbackService
from engine.app.calls import CallService
from engine.app.compliance import ComplianceAdmin
from engine.app.controls import CallControlService
from engine.app.event_stream import EventStream
from engine.app.ivr_menus import IvrMenuService
from engine.app.ports import CallQueue, Carriers, Dialer, InCallControls, OwnerLink
from engine.app.providers import ProviderService
from engine.app.recordings import RecordingDownloads
from engine.app.routing_rules import RoutingRuleService
from engine.app.stats import StatsService
from engine.app.stored_secrets import StoredSecretsService
from engine.app.tenants import TenantService
from engine.app.transcripts import CallQualityReads, TranscriptService
from engine.app.webhooks import WebhookIntake
from engine.events import EventBus
from engine.store.repositories import Store

__all__ = ["UseCases"]


@dataclasses.dataclass(frozen=True, slots=True)
class UseCases:
    tenants: TenantService
    calls: CallService
    compliance: ComplianceAdmin  # number lists, compliance rules, caller-ID profiles
    call_activity: CallActivityService  # the console's plots
    recordings: RecordingDownloads
    controls: CallControlService
    event_stream: EventStream
    ivr_menus: IvrMenuService
    providers: ProviderService
    agents: AgentActivityService
    agent_states: AgentStateService  # each agent's state: the board, and routing
    routing: RoutingRuleService
    webhooks: WebhookIntake
    secrets: StoredSecretsService
    transcripts: TranscriptService
    quality: CallQualityReads
    callbacks: CallbackService  # the outbox: failed callbacks, replays
    billing: BillingService
    stats: StatsService

    @classmethod
    def over(
        cls,
        store: Store,
        *,
        dialer: Dialer | None = None,
        controls: InCallControls | None = None,
        events: EventBus | None = None,
        recording_dir: Path | None = None,
        carriers: Carriers | None = None,
        queue: CallQueue | None = None,
        owners: OwnerLink | None = None,
    ) -> UseCases:
        """The use cases over ``store``; ``dialer`` and ``controls`` are the Asterisk ports
        (None without ARI: what needs them raises FeatureUnavailable); ``events`` is the bus
        of committed call events (None, as in the CLI: no event stream); ``recording_dir`` is
        where Asterisk writes recordings (None without ARI: none is served); ``carriers`` builds
        the carrier adapters that verify webhooks (None: carrier webhooks are refused, 503);
        ``queue`` takes initiated calls for any engine to claim (``node.claim_queue``) and
        ``owners`` reaches the engine that owns a session (None: a lone engine)."""
        agent_states = AgentStateService(store)
        return cls(
            tenants=TenantService(store),
            calls=CallService(store, dialer=dialer, queue=queue, owners=owners),
            compliance=ComplianceAdmin(store),
            call_activity=CallActivityService(store),
            recordings=RecordingDownloads(store, recording_dir),
            controls=CallControlService(store, controls, owners=owners),
            event_stream=EventStream(store, events),
            ivr_menus=IvrMenuService(store),
            providers=ProviderService(store, carriers),
            agents=AgentActivityService(store),
            agent_states=agent_states,
            routing=RoutingRuleService(store, agent_states),
            webhooks=WebhookIntake(store, carriers),
            secrets=StoredSecretsService(store),
            transcripts=TranscriptService(store),
            quality=CallQualityReads(store),
            callbacks=CallbackService(store),
            billing=BillingService(store),
            stats=StatsService(store),
        )
