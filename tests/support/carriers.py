"""Fake carriers for the integration tests, each with a provider row pointing at it (one
tenant per fixture) in the ``api_engine``: ``twilio``, ``vonage``, ``exotel``, ``mcube``
(registered by tests/integration/conftest.py)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from engine.daemon import Engine
from engine.devtools.fake_carriers import FakeExotel, FakeMcube, FakeTwilio, FakeVonage
from engine.domain.call import CallStatus
from engine.domain.event_types import CallEventType
from engine.domain.providers import ProviderType
from engine.providers.base import CarrierAdapter, PlaceCall
from engine.store.records import NewProvider, NewSession, StoredProvider, StoredSession, Tenant
from tests.support.tenants import new_tenant

__all__ = [
    "AGENT",
    "CUSTOMER",
    "PRIVATE_PEM",
    "PUBLIC_PEM",
    "Carrier",
    "exotel",
    "mcube",
    "provider_row",
    "start_carrier",
    "twilio",
    "vonage",
]

AGENT = "+14155550100"
CUSTOMER = "+14155550123"

_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
PRIVATE_PEM = _KEY.private_bytes(
    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
).decode()
PUBLIC_PEM = (
    _KEY.public_key()
    .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    .decode()
)


class Carrier:
    """A fake carrier, the provider row pointing at it, and the engine around them."""

    def __init__(self, engine: Engine, tenant: Tenant, provider: StoredProvider, fake: Any) -> None:
        self.engine = engine
        self.tenant = tenant
        self.provider = provider
        self.fake = fake

    async def adapter(self) -> CarrierAdapter:
        secrets = await self.engine.store.providers.secrets(self.tenant.id, self.provider.id)
        return self.engine.carriers.adapter(self.provider, secrets)

    async def place(self) -> tuple[StoredSession, Any]:
        """Place a call through the adapter, then store its session with the carrier's call id."""
        session, _ = await self.engine.store.sessions.create(
            NewSession(self.tenant.id, AGENT, CUSTOMER, provider_id=self.provider.id)
        )
        placed = await (await self.adapter()).place(
            PlaceCall(session.id, AGENT, CUSTOMER, caller_id="+14155550199")
        )
        session, _ = await self.engine.store.sessions.append_event(
            self.tenant.id,
            session.id,
            CallEventType.PROVIDER_STATUS,
            payload={"provider_status": placed.raw_status},
            changes={"provider_call_id": placed.call_id},
        )
        return session, self.fake.calls[placed.call_id]

    async def status(self, session: StoredSession) -> CallStatus:
        return (await self.engine.store.sessions.get(self.tenant.id, session.id)).status

    async def events(self, session: StoredSession) -> list[str]:
        found = await self.engine.store.sessions.events(self.tenant.id, session.id)
        return [e.event_type for e in found]

    async def log_rows(self, session_or_none: StoredSession | None = None) -> list[dict[str, Any]]:
        rows = await self.engine.store.db.fetch(
            "SELECT signature_valid, processing_status, error, dedupe_key, session_id "
            "FROM click_to_call_webhook_log WHERE provider_id = $1 ORDER BY id",
            self.provider.id,
        )
        return [dict(r) for r in rows]


async def provider_row(
    engine: Engine,
    tenant: Tenant,
    kind: ProviderType,
    config: dict[str, Any],
    credentials: dict[str, str],
    webhook_secret: str | None = None,
) -> StoredProvider:
    base = f"http://127.0.0.1:{engine.api.tcp_port}"
    return await engine.store.providers.create(
        NewProvider(
            tenant.id,
            f"{kind.value}-{uuid.uuid4().hex[:6]}",
            kind,
            config={"webhook_base_url": base, "timeout_s": 2, "retries": 1, **config},
            credentials=credentials,
            webhook_secret=webhook_secret,
        )
    )


async def start_carrier(engine: Engine, kind: ProviderType) -> Carrier:
    """A started fake of ``kind``, a new tenant and its provider row pointing at the fake
    (stop it with ``carrier.fake.stop()``)."""
    tenant = await new_tenant(engine.store)
    fake: Any
    match kind:
        case ProviderType.TWILIO:
            fake = FakeTwilio("AC" + uuid.uuid4().hex, "tok-" + uuid.uuid4().hex)
            config: dict[str, Any] = {"account_sid": fake.account_sid}
            credentials = {"auth_token": fake.auth_token}
            secret = None
        case ProviderType.VONAGE:
            fake = FakeVonage(str(uuid.uuid4()), PUBLIC_PEM, "sig-" + uuid.uuid4().hex)
            config = {"application_id": fake.application_id}
            credentials = {"private_key": PRIVATE_PEM}
            secret = fake.signature_secret
        case ProviderType.EXOTEL:
            fake = FakeExotel("acct" + uuid.uuid4().hex[:6], "key1", "tok-" + uuid.uuid4().hex)
            config = {"account_sid": fake.account_sid, "caller_id": "08030752400"}
            credentials = {"api_key": fake.api_key, "api_token": fake.api_token}
            secret = "url-token-" + uuid.uuid4().hex
        case ProviderType.MCUBE:
            fake = FakeMcube("apikey-" + uuid.uuid4().hex)
            config = {"webhook_allow_cidrs": ["127.0.0.0/8"]}
            credentials = {"apikey": fake.apikey}
            secret = "url-token-" + uuid.uuid4().hex
        case _:
            raise ValueError(f"no fake carrier of type {kind}")
    await fake.start()
    provider = await provider_row(
        engine,
        tenant,
        kind,
        {"base_url": fake.url, **config},
        credentials,
        webhook_secret=secret,
    )
    return Carrier(engine, tenant, provider, fake)


async def _carrier(engine: Engine, kind: ProviderType) -> AsyncIterator[Carrier]:
    carrier = await start_carrier(engine, kind)
    yield carrier
    await carrier.fake.stop()


@pytest.fixture
async def twilio(api_engine: Engine) -> AsyncIterator[Carrier]:
    async for carrier in _carrier(api_engine, ProviderType.TWILIO):
        yield carrier


@pytest.fixture
async def vonage(api_engine: Engine) -> AsyncIterator[Carrier]:
    async for carrier in _carrier(api_engine, ProviderType.VONAGE):
        yield carrier


@pytest.fixture
async def exotel(api_engine: Engine) -> AsyncIterator[Carrier]:
    async for carrier in _carrier(api_engine, ProviderType.EXOTEL):
        yield carrier


@pytest.fixture
async def mcube(api_engine: Engine) -> AsyncIterator[Carrier]:
    async for carrier in _carrier(api_engine, ProviderType.MCUBE):
        yield carrier
