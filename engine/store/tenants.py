"""Tenants and their API tokens.

A token is ``ctc_`` + 32 random bytes (url-safe base64); only its SHA-256 is stored, so a
leaked database does not leak working tokens. Tokens have full entropy, so a plain hash
(no salt, no KDF) is enough and lets us look one up by its hash.

A tenant's ``outbound_allow_cidrs`` are the non-global networks its callbacks and IVR
lookups may reach (:mod:`engine.domain.netpolicy`); its ``callback_url`` is checked
against them when it is set.

A token's ``last_used_at`` is written when it authenticates, at most once a minute per
token (only when the stored value is older than :data:`LAST_USED_GRANULARITY`), so a busy
ERP does not cost a write per request.

The tenant's ``callback_secret`` (the HMAC key of its callbacks) is generated here and
stored sealed by :class:`~engine.secrets.Keyring` (in plaintext while no key is configured;
``ctc secrets rotate`` seals it later).
"""

from __future__ import annotations

import contextlib
import hashlib
import secrets
import uuid
from collections.abc import Callable

import asyncpg
import structlog

from engine.domain.netpolicy import Network, OutboundPolicy, check_url
from engine.errors import Conflict, CtcError, NotFound
from engine.secrets import Keyring
from engine.store.database import Database, returned
from engine.store.read_cache import ReadCache
from engine.store.records import ApiTokenInfo, IssuedToken, SecretRotation, Tenant

__all__ = ["LAST_USED_GRANULARITY", "TenantRepository", "hash_token", "new_callback_secret"]

log = structlog.get_logger(__name__)

LAST_USED_GRANULARITY = 60
"""Seconds: ``api_token.last_used_at`` is rewritten only when older than this."""

_TOKEN_PREFIX = "ctc_"


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_callback_secret() -> str:
    """A random callback signing secret (64 hex characters, 256 bits)."""
    return secrets.token_hex(32)


_TENANT_COLUMNS = ("id", "slug", "name", "callback_url", "is_active", "outbound_allow_cidrs")
_TENANT_COLS = ", ".join(_TENANT_COLUMNS)
_TENANT_COLS_OF_T = ", ".join(f"t.{column}" for column in _TENANT_COLUMNS)


def _tenant(row: asyncpg.Record) -> Tenant:
    return Tenant(
        row["id"],
        row["slug"],
        row["name"],
        row["callback_url"],
        row["is_active"],
        OutboundPolicy.allowing(row["outbound_allow_cidrs"]),
    )


class _Keep:
    """``update``'s default for a field it leaves as it is."""


_KEEP = _Keep()


class TenantRepository:
    """Tenants and tokens. Every API request and IVR call looks its tenant up, so found
    tenants are cached for ``cache_ttl`` seconds (:mod:`engine.store.read_cache`):
    deactivating a tenant or revoking a token takes effect within that time and one read."""

    def __init__(
        self,
        db: Database,
        *,
        keyring: Keyring,
        cache_ttl: float = 5.0,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        """``on_change`` is called when this process changed a tenant (the routing
        settings' cache holds its zone)."""
        self._db = db
        self._keyring = keyring
        self._on_change = on_change
        # keys "slug:<slug>" and "token:<digest>"; bounded: tokens are unguessable, slugs few
        self._cache: ReadCache[str, Tenant] = ReadCache(cache_ttl, max_entries=10_000)

    async def create(
        self,
        slug: str,
        name: str,
        callback_url: str | None = None,
        *,
        allow_cidrs: tuple[str | Network, ...] = (),
        callback_secret: str | None = None,
    ) -> Tenant:
        """A new tenant; its ``callback_secret`` is ``callback_secret``, else a random one.
        :class:`InvalidInput` for a CIDR that is not one (``allow_cidr``) or a
        ``callback_url`` the network policy refuses (``callback_url``)."""
        policy = OutboundPolicy.allowing(allow_cidrs)
        if callback_url is not None:
            check_url(callback_url, policy, field="callback_url")
        try:
            row = await self._db.fetchrow(
                f"INSERT INTO tenant (slug, name, callback_url, outbound_allow_cidrs, "
                f"callback_secret) VALUES ($1, $2, $3, $4, $5) RETURNING {_TENANT_COLS}",
                slug,
                name,
                callback_url,
                list(policy.allow),
                self._keyring.seal_if_configured(callback_secret or new_callback_secret()),
            )
        except asyncpg.UniqueViolationError as exc:
            raise Conflict(f"tenant {slug!r} already exists") from exc
        except asyncpg.CheckViolationError as exc:
            raise Conflict(f"tenant slug {slug!r} is not valid: use a-z, 0-9, _ and -") from exc
        return _tenant(returned(row, "INSERT INTO tenant"))

    async def update(
        self,
        slug: str,
        *,
        callback_url: str | _Keep | None = _KEEP,
        allow_cidrs: tuple[str | Network, ...] | None = None,
        timezone: str | None = None,
    ) -> Tenant:
        """Change what is given: ``callback_url`` (None: none), ``allow_cidrs`` (replaces
        the list; ``()`` empties it), ``timezone`` (of the stats' buckets; None keeps it).
        The resulting URL is checked against the resulting
        allowance (:class:`InvalidInput` naming ``callback_url`` or ``allow_cidr``)."""
        async with self._db.transaction() as conn:
            row = await conn.fetchrow(
                f"SELECT {_TENANT_COLS} FROM tenant WHERE slug = $1 FOR NO KEY UPDATE", slug
            )
            if row is None:
                raise NotFound("tenant", slug)
            current = _tenant(row)
            policy = current.policy if allow_cidrs is None else OutboundPolicy.allowing(allow_cidrs)
            url = current.callback_url if isinstance(callback_url, _Keep) else callback_url
            if url is not None:
                check_url(url, policy, field="callback_url")
            row = await conn.fetchrow(
                f"UPDATE tenant SET callback_url = $2, outbound_allow_cidrs = $3, "
                f"timezone = coalesce($4, timezone) WHERE id = $1 RETURNING {_TENANT_COLS}",
                current.id,
                url,
                list(policy.allow),
                timezone,
            )
        if row is None:
            raise NotFound("tenant", slug)
        self.forget()  # this process sees the change at once
        if self._on_change is not None:
            self._on_change()
        return _tenant(row)

    def forget(self) -> None:
        """Forget the tenants read so far (this process changed their rows)."""
        self._cache.clear()

    async def by_slug(self, slug: str) -> Tenant:
        """The tenant; while PostgreSQL is away, the last one found (calls go on)."""

        async def read() -> Tenant:
            row = await self._db.fetchrow(
                f"SELECT {_TENANT_COLS} FROM tenant WHERE slug = $1", slug
            )
            if row is None:
                raise NotFound("tenant", slug)
            return _tenant(row)

        return await self._cache.get(f"slug:{slug}", read)

    async def callback_secret(self, tenant_id: uuid.UUID) -> str:
        secret: str | None = await self._db.fetchval(
            "SELECT callback_secret FROM tenant WHERE id = $1", tenant_id
        )
        if secret is None:
            raise NotFound("tenant", tenant_id)
        return self._keyring.unseal(secret, what=f"callback_secret of tenant {tenant_id}")

    async def rotate_callback_secret(
        self, slug: str, *, grace_seconds: float, callback_secret: str | None = None
    ) -> SecretRotation:
        """Give tenant ``slug`` a new callback secret (``callback_secret``, else a random
        one). The current one keeps signing callbacks beside it for ``grace_seconds`` (0:
        dropped at once); a secret still in its grace period from an earlier rotation is
        dropped now."""
        secret = callback_secret or new_callback_secret()
        row = await self._db.fetchrow(
            f"UPDATE tenant SET "
            f"previous_callback_secret = CASE WHEN $3::float8 > 0 THEN callback_secret END, "
            f"previous_callback_secret_until = CASE WHEN $3::float8 > 0 "
            f"    THEN now() + $3::float8 * interval '1 second' END, "
            f"callback_secret = $2 "
            f"WHERE slug = $1 RETURNING {_TENANT_COLS}, previous_callback_secret_until",
            slug,
            self._keyring.seal_if_configured(secret),
            float(grace_seconds),
        )
        if row is None:
            raise NotFound("tenant", slug)
        return SecretRotation(_tenant(row), secret, row["previous_callback_secret_until"])

    async def tokens(self, tenant_id: uuid.UUID) -> list[ApiTokenInfo]:
        """The tenant's tokens, newest first, revoked ones included."""
        rows = await self._db.fetch(
            "SELECT id, name, token_prefix AS prefix, created_at, last_used_at, revoked_at "
            "FROM api_token WHERE tenant_id = $1 ORDER BY created_at DESC, id",
            tenant_id,
        )
        return [ApiTokenInfo(**dict(row)) for row in rows]

    async def revoke_token(self, tenant_id: uuid.UUID, token_id: uuid.UUID) -> ApiTokenInfo:
        """Revoke the tenant's token (a revoked one stays as it was); NotFound for a token
        of another tenant. This process refuses it at once, others within the cache time."""
        row = await self._db.fetchrow(
            "UPDATE api_token SET revoked_at = COALESCE(revoked_at, now()) "
            "WHERE tenant_id = $1 AND id = $2 "
            "RETURNING id, name, token_prefix AS prefix, created_at, last_used_at, revoked_at",
            tenant_id,
            token_id,
        )
        if row is None:
            raise NotFound("api token", token_id)
        self._cache.clear()
        return ApiTokenInfo(**dict(row))

    async def issue_token(self, tenant_slug: str, name: str = "") -> IssuedToken:
        tenant = await self.by_slug(tenant_slug)
        token = _TOKEN_PREFIX + secrets.token_urlsafe(32)
        token_id = await self._db.fetchval(
            "INSERT INTO api_token (tenant_id, name, token_hash, token_prefix) "
            "VALUES ($1, $2, $3, $4) RETURNING id",
            tenant.id,
            name,
            hash_token(token),
            token[: len(_TOKEN_PREFIX) + 6],
        )
        return IssuedToken(token_id, tenant, token)

    async def by_token(self, token: str) -> Tenant | None:
        """The active tenant a valid, unrevoked token belongs to, else None."""
        digest = hash_token(token)

        async def read() -> Tenant:
            row = await self._token_row(digest)
            if row is None:
                raise NotFound("api token", digest[:8])
            return _tenant(row)

        with contextlib.suppress(NotFound):
            # a revoked token must not outlive the cache time: never served expired
            return await self._cache.get(f"token:{digest}", read, serve_expired=False)
        return None

    async def _token_row(self, digest: str) -> asyncpg.Record | None:
        """The token's tenant row, if the token is valid; its ``last_used_at`` is set."""
        row = await self._db.fetchrow(
            f"SELECT {_TENANT_COLS_OF_T}, "
            "       k.id AS token_id, k.last_used_at IS NULL "
            "       OR k.last_used_at < now() - $2::float8 * interval '1 second' AS stale "
            "FROM api_token k JOIN tenant t ON t.id = k.tenant_id "
            "WHERE k.token_hash = $1 AND k.revoked_at IS NULL AND t.is_active",
            digest,
            float(LAST_USED_GRANULARITY),
        )
        if row is not None and row["stale"]:
            await self._touch(row["token_id"])
        return row

    async def _touch(self, token_id: uuid.UUID) -> None:
        """Set ``last_used_at``; bookkeeping only, so a failure does not refuse the request:
        any engine error (database away, pool closed) or PostgreSQL error is logged."""
        try:
            await self._db.execute(
                "UPDATE api_token SET last_used_at = now() WHERE id = $1 "
                "AND (last_used_at IS NULL "
                "     OR last_used_at < now() - $2::float8 * interval '1 second')",
                token_id,
                float(LAST_USED_GRANULARITY),
            )
        except (CtcError, asyncpg.PostgresError) as exc:
            log.warning("api_token.last_used_not_written", token_id=str(token_id), error=str(exc))
