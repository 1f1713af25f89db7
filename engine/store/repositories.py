"""Every repository over one database, as one :class:`Store` the engine passes around."""

from __future__ import annotations

import dataclasses

from engine.events import EventBus
from engine.secrets import Keyring
from engine.store.activity import ActivityRepository, WebhookRepository
from engine.store.billing import BillingRepository
from engine.store.claims import ClaimRepository
from engine.store.compliance import (
    CallerIdProfileRepository,
    ComplianceRuleRepository,
    NumberListRepository,
)
from engine.store.database import Database
from engine.store.dtmf import DtmfRepository
from engine.store.ivr import IvrMenuRepository
from engine.store.journal import CallJournal
from engine.store.node_commands import NodeCommandRepository
from engine.store.nodes import NodeRepository
from engine.store.outbox import OutboxRepository
from engine.store.ownership import SessionOwnership
from engine.store.providers import ProviderRepository
from engine.store.quality import QualityRepository
from engine.store.recording import RecordingPolicyRepository
from engine.store.retention import RetentionRepository
from engine.store.routing import RoutingRepository
from engine.store.sessions import SessionRepository
from engine.store.stats import StatsQueries
from engine.store.stored_secrets import StoredSecrets
from engine.store.tenants import TenantRepository
from engine.store.transcripts import TranscriptRepository
from engine.store.transfers import TransferRepository
from engine.store.write_through import WriteThrough

__all__ = ["Store"]


@dataclasses.dataclass(frozen=True, slots=True)
class Store:
    """Every repository over one :class:`Database`."""

    db: Database
    tenants: TenantRepository
    sessions: SessionRepository
    providers: ProviderRepository
    activity: ActivityRepository
    webhooks: WebhookRepository
    recording: RecordingPolicyRepository
    dtmf: DtmfRepository
    ivr: IvrMenuRepository
    outbox: OutboxRepository
    transfers: TransferRepository
    routing: RoutingRepository
    quality: QualityRepository  # call_quality_metric: RTCP figures and MOS per leg
    transcripts: TranscriptRepository  # call_transcript: the queue and the results
    number_lists: NumberListRepository  # compliance: blocklist, allowlist, do-not-call
    compliance_rules: ComplianceRuleRepository
    caller_ids: CallerIdProfileRepository
    retention: RetentionRepository  # the prune of old rows (engine/app/retention.py)
    secrets: StoredSecrets  # every secret column: what is not yet sealed, rotation
    nodes: NodeRepository  # the engines sharing the database (heartbeats)
    claims: ClaimRepository  # which node owns a call: the claim queue, failover
    node_commands: NodeCommandRepository  # controls forwarded to a session's owner
    billing: BillingRepository  # rate cards and billing lines
    stats: StatsQueries  # the manager's statistics over many sessions
    # live calls owned by this process, written behind (close it before the database)
    journal: CallJournal
    # which writer owns each session: the journal above, or write-through
    ownership: SessionOwnership

    @classmethod
    def over(
        cls, db: Database, *, events: EventBus | None = None, keyring: Keyring | None = None
    ) -> Store:
        """Every repository over ``db``; committed call events are published to ``events``;
        stored secrets are sealed and opened with ``keyring`` (None: no key configured)."""
        journal = CallJournal(db, events)
        ownership = SessionOwnership(journal, WriteThrough(db, events))
        keys = Keyring() if keyring is None else keyring
        # the routing settings hold the tenant's zone: a tenant changed clears them
        routing = RoutingRepository(db)
        tenants = TenantRepository(db, keyring=keys, on_change=routing.forget_settings)
        return cls(
            db=db,
            tenants=tenants,
            sessions=SessionRepository(db, ownership),
            providers=ProviderRepository(db, keyring=keys),
            activity=ActivityRepository(db),
            webhooks=WebhookRepository(db),
            recording=RecordingPolicyRepository(db),
            dtmf=DtmfRepository(db, ownership),
            ivr=IvrMenuRepository(db),
            outbox=OutboxRepository(db, keyring=keys),
            transfers=TransferRepository(db),
            routing=routing,
            quality=QualityRepository(db),
            transcripts=TranscriptRepository(db),
            number_lists=NumberListRepository(db),
            compliance_rules=ComplianceRuleRepository(db),
            caller_ids=CallerIdProfileRepository(db),
            retention=RetentionRepository(db),
            secrets=StoredSecrets(db, keys),
            nodes=NodeRepository(db),
            claims=ClaimRepository(db),
            node_commands=NodeCommandRepository(db),
            billing=BillingRepository(db),
            stats=StatsQueries(db),
            journal=journal,
            ownership=ownership,
        )
