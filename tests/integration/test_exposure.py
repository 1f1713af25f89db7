"""What the engine shows to whom, and what it keeps secret: health details and metrics over
TCP, the socket's mode, secrets at rest, a token's last use. Real engine, real PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import stat
import tempfile
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import structlog

from engine.api.server import ApiServer
from engine.daemon import Engine
from engine.devtools.databases import create_database, drop_database
from engine.domain.providers import ProviderType
from engine.errors import CtcError, SecretsError
from engine.secrets import PREFIX, Keyring
from engine.store.records import NewProvider
from engine.store.repositories import Store
from engine.store.tenants import TenantRepository
from tests.support.http import Api
from tests.support.tenants import bearer_headers, new_tenant, new_token, tenant_headers

# -- /healthz and /readyz ---------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
async def test_health_over_tcp_without_a_token_shows_states_only(
    api_engine: Engine, tcp_api: Api, path: str
) -> None:
    status, body, _ = await tcp_api.call("GET", path)
    assert status == 200
    assert body["status"] in ("ok", "degraded")
    assert body["components"]["database"] == {"state": "up"}
    assert all(set(c) == {"state"} for c in body["components"].values())
    assert str(api_engine.settings.api.socket) not in json.dumps(body)


@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
async def test_health_details_need_a_token_or_the_socket(
    api_engine: Engine, tcp_api: Api, unix_api: Api, path: str
) -> None:
    _, with_token, _ = await tcp_api.call(
        "GET", path, headers=bearer_headers(await new_token(api_engine.store))
    )
    _, local, _ = await unix_api.call("GET", path)
    for body in (with_token, local):
        assert body["components"]["api"]["detail"] == str(api_engine.settings.api.socket)
        assert body["components"]["database"]["required"] is True
    status, err, _ = await tcp_api.call("GET", path, headers={"Authorization": "Bearer ctc_no"})
    assert status == 401
    assert err["error"]["code"] == "unauthorized"


# -- /metrics ---------------------------------------------------------------------------------


async def _metrics(base: str, headers: dict[str, str] | None = None) -> tuple[int, str]:
    async with aiohttp.ClientSession() as http, http.get(f"{base}/metrics", headers=headers) as r:
        return r.status, await r.text()


async def test_metrics_over_tcp_need_a_bearer_token_by_default(api_engine: Engine) -> None:
    assert api_engine.settings.api.tcp.metrics_token_required is True
    base = f"http://127.0.0.1:{api_engine.api.tcp_port}"
    status, text = await _metrics(base)
    assert status == 401
    assert json.loads(text)["error"]["code"] == "unauthorized"
    status, text = await _metrics(base, bearer_headers(await new_token(api_engine.store)))
    assert status == 200
    assert "ctc_http_requests_total" in text


async def test_metrics_over_tcp_may_be_left_open_by_the_setting(api_engine: Engine) -> None:
    with tempfile.TemporaryDirectory(prefix="ctc-m-") as tmp:
        server = ApiServer(
            api_engine.state,
            socket_path=Path(tmp) / "m.sock",
            tcp=("127.0.0.1", 0),
            metrics_token_required=False,
        )
        async with server:
            status, text = await _metrics(f"http://127.0.0.1:{server.tcp_port}")
    assert status == 200
    assert "ctc_http_requests_total" in text


# -- the socket's mode ------------------------------------------------------------------------


async def test_the_engine_socket_has_exactly_the_configured_mode(api_engine: Engine) -> None:
    path = api_engine.settings.api.socket
    assert path.is_socket()
    assert stat.S_IMODE(path.stat().st_mode) == api_engine.settings.api.socket_mode == 0o600


async def test_the_socket_mode_does_not_depend_on_the_umask(api_engine: Engine) -> None:
    old = os.umask(0)
    try:
        with tempfile.TemporaryDirectory(prefix="ctc-m-") as tmp:
            path = Path(tmp) / "api.sock"
            async with ApiServer(api_engine.state, socket_path=path, socket_mode=0o660):
                assert stat.S_IMODE(path.stat().st_mode) == 0o660
                assert os.listdir(tmp) == ["api.sock"]
            assert not path.exists()
    finally:
        os.umask(old)


async def test_a_second_server_on_a_socket_in_use_is_refused_and_leaves_it_working(
    api_engine: Engine,
) -> None:
    with tempfile.TemporaryDirectory(prefix="ctc-m-") as tmp:
        path = Path(tmp) / "api.sock"
        async with ApiServer(api_engine.state, socket_path=path, socket_mode=0o600):
            second = ApiServer(api_engine.state, socket_path=path, socket_mode=0o600)
            with pytest.raises(CtcError, match="another engine is listening on"):
                await second.start()
            assert path.is_socket()  # the refused one's cleanup did not remove it
            connector = aiohttp.UnixConnector(path=str(path))
            async with (
                aiohttp.ClientSession(connector=connector) as session,
                session.get("http://ctc/healthz") as resp,
            ):
                assert resp.status == 200
        assert not path.exists()


# -- secrets at rest --------------------------------------------------------------------------


async def test_provider_secrets_are_stored_encrypted_and_read_back(
    api_engine: Engine, unix_api: Api
) -> None:
    tenant = await new_tenant(api_engine.store, prefix="p")
    slug = tenant.slug
    status, p, _ = await unix_api.call(
        "POST",
        "/api/v1/voip-providers",
        json={
            "name": "carrier",
            "provider_type": "twilio",
            "credentials": {"auth_token": "tw-s3cret-token"},
            "webhook_secret": "whsec-s3cret",
        },
        headers=tenant_headers(slug),
    )
    assert status == 201, p
    assert (p["has_credentials"], p["has_webhook_secret"]) == (True, True)
    row = await api_engine.db.fetchrow(
        "SELECT credentials, webhook_secret FROM voip_provider WHERE id = $1", uuid.UUID(p["id"])
    )
    assert row is not None
    for column in ("credentials", "webhook_secret"):
        assert row[column].startswith(
            f"{PREFIX}{api_engine.settings.secrets.keyring().primary_id}:"
        )
        assert "s3cret" not in row[column]
    opened = await api_engine.store.providers.secrets(tenant.id, uuid.UUID(p["id"]))
    assert opened.credentials == {"auth_token": "tw-s3cret-token"}
    assert opened.webhook_secret == "whsec-s3cret"


@contextlib.asynccontextmanager
async def own_database() -> AsyncIterator[str]:
    """A migrated database of the test's own (rotation touches every row)."""
    from engine.store.migrations import default_migrations_dir, migrate

    url = await create_database("ctc_sec")
    try:
        await migrate(url, default_migrations_dir())
        yield url
    finally:
        await drop_database(url)


async def test_without_a_key_provider_secrets_are_refused_not_stored_in_plaintext() -> None:
    from engine.store.database import Database

    async with own_database() as url, Database(url) as db:
        store = Store.over(db)  # no key
        tenant = await store.tenants.by_slug("default")
        with pytest.raises(SecretsError, match="cannot store provider credentials"):
            await store.providers.create(
                NewProvider(
                    tenant.id, "c", ProviderType.TWILIO, credentials={"auth_token": "t0k3n"}
                )
            )
        with pytest.raises(SecretsError, match="CTC_SECRET_KEY"):
            await store.providers.create(
                NewProvider(tenant.id, "w", ProviderType.TWILIO, webhook_secret="w")
            )
        assert await db.fetchval("SELECT count(*) FROM voip_provider") == 0
        # no secret at all is fine
        plain = await store.providers.create(NewProvider(tenant.id, "n", ProviderType.SIP_TRUNK))
        assert (plain.has_credentials, plain.has_webhook_secret) == (False, False)


async def test_rotate_seals_plaintext_and_moves_old_keys_to_the_primary() -> None:
    from engine.store.database import Database

    old, new = Keyring.generate_key(), Keyring.generate_key()
    async with own_database() as url, Database(url) as db:
        tenant_id = await db.fetchval("SELECT id FROM tenant WHERE slug = 'default'")
        secret = await Store.over(db).tenants.callback_secret(tenant_id)  # plaintext row
        # a provider written before 0005 (its JSON now text) and one sealed under `old`
        await db.execute(
            "INSERT INTO voip_provider (tenant_id, name, provider_type, credentials, "
            "webhook_secret) VALUES ($1, 'legacy', 'twilio', $2, 'whsec-legacy')",
            tenant_id,
            json.dumps({"auth_token": "legacy-t0k3n"}),
        )
        sealed_old = await Store.over(db, keyring=Keyring((old,))).providers.create(
            NewProvider(
                tenant_id, "sealed", ProviderType.TWILIO, credentials={"auth_token": "old-t0k3n"}
            )
        )
        both = Store.over(db, keyring=Keyring((new, old)))
        assert sum((await both.secrets.not_current()).values()) == 4

        resealed = await both.secrets.rotate()
        assert resealed == {
            "tenant.callback_secret": 1,
            "voip_provider.credentials": 2,
            "voip_provider.webhook_secret": 1,
        }
        assert sum((await both.secrets.not_current()).values()) == 0
        assert await both.secrets.rotate() == dict.fromkeys(resealed, 0)
        dump = json.dumps(
            [dict(r) for r in await db.fetch("SELECT * FROM voip_provider")], default=str
        )
        assert "t0k3n" not in dump
        assert "whsec" not in dump

        only_new = Store.over(db, keyring=Keyring((new,)))  # the old key may go now
        assert await only_new.tenants.callback_secret(tenant_id) == secret
        legacy_id = await db.fetchval("SELECT id FROM voip_provider WHERE name = 'legacy'")
        legacy = await only_new.providers.secrets(tenant_id, legacy_id)
        assert (legacy.credentials, legacy.webhook_secret) == (
            {"auth_token": "legacy-t0k3n"},
            "whsec-legacy",
        )
        moved = await only_new.providers.secrets(tenant_id, sealed_old.id)
        assert moved.credentials == {"auth_token": "old-t0k3n"}


async def test_rotate_without_a_key_is_refused() -> None:
    from engine.store.database import Database

    async with own_database() as url, Database(url) as db:
        with pytest.raises(SecretsError, match="cannot rotate: no secrets key"):
            await Store.over(db).secrets.rotate()


# -- api_token.last_used_at -------------------------------------------------------------------


async def test_a_token_records_its_last_use_at_most_once_a_minute(api_engine: Engine) -> None:
    slug = (await new_tenant(api_engine.store, prefix="u")).slug
    issued = await api_engine.store.tenants.issue_token(slug, "erp")
    # no cache: every lookup reaches the database
    tenants = TenantRepository(api_engine.db, keyring=Keyring(), cache_ttl=0)

    async def last_used() -> object:
        return await api_engine.db.fetchval(
            "SELECT last_used_at FROM api_token WHERE id = $1", issued.id
        )

    assert await last_used() is None
    assert await tenants.by_token(issued.token) is not None
    first = await last_used()
    assert first is not None

    # used again within the minute: no write
    await api_engine.db.execute(
        "UPDATE api_token SET last_used_at = now() - interval '30 seconds' WHERE id = $1",
        issued.id,
    )
    recent = await last_used()
    assert await tenants.by_token(issued.token) is not None
    assert await last_used() == recent

    # older than a minute: written again
    await api_engine.db.execute(
        "UPDATE api_token SET last_used_at = now() - interval '90 seconds' WHERE id = $1",
        issued.id,
    )
    stale = await last_used()
    assert await tenants.by_token(issued.token) is not None
    refreshed = await last_used()
    assert isinstance(refreshed, type(stale))
    assert refreshed != stale
    assert await api_engine.db.fetchval(
        "SELECT last_used_at > now() - interval '10 seconds' FROM api_token WHERE id = $1",
        issued.id,
    )


async def test_a_last_use_that_cannot_be_written_does_not_refuse_the_token() -> None:
    """Bookkeeping only: a PostgreSQL error that is not a lost connection (here a trigger
    refusing the UPDATE) is logged, and the token still authenticates."""
    from engine.store.database import Database

    async with own_database() as url, Database(url) as db:
        await db.execute(
            "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN RAISE EXCEPTION 'last_used_at is read-only today'; END $$; "
            "CREATE TRIGGER refuse_touch BEFORE UPDATE OF last_used_at ON api_token "
            "FOR EACH ROW EXECUTE FUNCTION refuse()"
        )
        store = Store.over(db)
        issued = await store.tenants.issue_token("default", "erp")
        with structlog.testing.capture_logs() as logs:
            tenant = await store.tenants.by_token(issued.token)
        assert tenant is not None
        assert tenant.slug == "default"
        (warning,) = [e for e in logs if e["event"] == "api_token.last_used_not_written"]
        assert warning["log_level"] == "warning"
        assert "read-only today" in warning["error"]
        assert (
            await db.fetchval("SELECT last_used_at FROM api_token WHERE id = $1", issued.id) is None
        )


async def test_a_request_over_tcp_marks_its_token_used(api_engine: Engine, tcp_api: Api) -> None:
    slug = (await new_tenant(api_engine.store, prefix="u")).slug
    issued = await api_engine.store.tenants.issue_token(slug, "erp")
    status, _, _ = await tcp_api.call(
        "GET",
        "/api/v1/click-to-call/sessions",
        headers=bearer_headers(issued.token),
    )
    assert status == 200
    assert await api_engine.db.fetchval(
        "SELECT last_used_at IS NOT NULL FROM api_token WHERE id = $1", issued.id
    )


async def test_migration_0005_keeps_existing_credentials_as_json_text(tmp_path: Path) -> None:
    import shutil

    from engine.store.database import Database
    from engine.store.migrations import default_migrations_dir, migrate

    before = tmp_path / "sql"
    await asyncio.to_thread(shutil.copytree, default_migrations_dir(), before)
    # every migration from 0005 on (0010 and later too) is applied afterwards
    for later in await asyncio.to_thread(lambda: sorted(before.glob("[0-9][0-9][0-9][0-9]_*.sql"))):
        if int(later.name[:4]) >= 5:
            later.unlink()
    url = await create_database("ctc_m5")
    try:
        await migrate(url, before)
        async with Database(url) as db:
            tenant_id = await db.fetchval("SELECT id FROM tenant WHERE slug = 'default'")
            await db.execute(
                "INSERT INTO voip_provider (tenant_id, name, provider_type, credentials) "
                "VALUES ($1, 'with', 'twilio', '{\"auth_token\": \"t0k3n\"}'::jsonb), "
                "       ($1, 'without', 'twilio', DEFAULT)",
                tenant_id,
            )
            await migrate(url, default_migrations_dir())
            rows = dict(await db.fetch("SELECT name, credentials FROM voip_provider"))
            assert rows["without"] is None
            assert json.loads(rows["with"]) == {"auth_token": "t0k3n"}
            store = Store.over(db)  # legacy plaintext reads without a key
            with_id = await db.fetchval("SELECT id FROM voip_provider WHERE name = 'with'")
            provider = await store.providers.get(tenant_id, with_id)
            assert provider.has_credentials
            opened = await store.providers.secrets(tenant_id, with_id)
            assert opened.credentials == {"auth_token": "t0k3n"}
    finally:
        await drop_database(url)
