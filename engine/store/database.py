"""The asyncpg pool, wrapped: one place that opens, closes and translates database errors.

``Database`` is a :class:`~engine.lifecycle.Lifecycle`: ``start()`` creates the pool,
``close()`` closes it (bounded and cancellation-safe); using it before ``start()`` or after
``close()`` raises :class:`~engine.errors.ClosedResourceError`. asyncpg connection errors
become :class:`~engine.errors.DatabaseUnavailable` at this boundary.

Why a retry of its own (:class:`ConnectRetry`): the daemon serves its API (and ``/healthz``)
while PostgreSQL is still unreachable. With a retry, ``start()`` keeps trying with capped
backoff and reports each failure; until it has connected, using the pool raises
``DatabaseUnavailable`` (the API answers 503). Without one, ``start()`` fails at the first
refusal, which is what the CLI and tests want.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeAlias

import asyncpg
import structlog
from asyncpg.pool import PoolConnectionProxy

from engine import json_text
from engine.errors import ClosedResourceError, DatabaseUnavailable, StoreError
from engine.lifecycle import Lifecycle

__all__ = ["CONNECTION_ERRORS", "ConnectRetry", "Connection", "Database", "returned"]

log = structlog.get_logger(__name__)

# A pooled connection; repositories take this and never open their own.
Connection: TypeAlias = "PoolConnectionProxy[asyncpg.Record]"

# What "the database is not there" looks like from asyncpg and the OS.
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.exceptions.ConnectionDoesNotExistError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.TooManyConnectionsError,
    asyncpg.exceptions.InterfaceError,
    asyncpg.exceptions.InvalidCatalogNameError,
    asyncpg.exceptions.InvalidAuthorizationSpecificationError,
)


def returned(row: asyncpg.Record | None, statement: str) -> asyncpg.Record:
    """The row a statement that always returns one returned (an ``INSERT ... RETURNING``,
    an aggregate); StoreError naming ``statement`` if PostgreSQL returned none."""
    if row is None:
        raise StoreError(f"{statement} returned no row")
    return row


async def _init_connection(conn: asyncpg.Connection) -> None:
    # jsonb in and out as Python objects, so repositories never json.dumps by hand; read
    # with the standard library: it holds what callers sent (integers of any length)
    for kind in ("jsonb", "json"):
        await conn.set_type_codec(
            kind, encoder=json_text.dumps, decoder=json.loads, schema="pg_catalog"
        )


async def _keep_session_state(conn: asyncpg.Connection) -> None:
    """Replace asyncpg's per-release reset (a ``RESET ALL; UNLISTEN *; …`` round trip).

    We never change session state on pooled connections (no SET, LISTEN or advisory locks:
    the migration runner uses its own connection), and asyncpg still rolls back an open
    transaction before calling this, so there is nothing to reset.
    """


@dataclasses.dataclass(frozen=True, slots=True)
class ConnectRetry:
    """Keep connecting until PostgreSQL answers: wait ``initial`` seconds after the first
    failure, doubling up to ``maximum``; ``on_failure(error, retry_in)`` hears each one."""

    initial: float = 0.2
    maximum: float = 10.0
    on_failure: Callable[[DatabaseUnavailable, float], None] | None = None


class Database(Lifecycle):
    """A connection pool to the engine's PostgreSQL database."""

    def __init__(
        self,
        url: str,
        *,
        min_size: int = 1,
        max_size: int = 10,
        command_timeout: float = 10.0,
        close_timeout: float = 10.0,
        retry: ConnectRetry | None = None,
        node: str | None = None,
    ) -> None:
        self._url = url
        self.node = node  # the engine's node name (None: a tool's connection)
        # every connection says which engine opened it: the sessions it creates default
        # their `node` column to ctc.node (sql/0017_nodes.sql); pg_stat_activity shows
        # application_name
        self._server_settings = (
            {"ctc.node": node, "application_name": f"ctc-engine {node}"} if node else None
        )
        self._min_size = min_size
        self._max_size = max_size
        self._command_timeout = command_timeout
        self._close_timeout = close_timeout
        self._retry = retry
        self._pool: asyncpg.Pool | None = None
        # while start() retries: why the last attempt failed (what "not connected" means)
        self._connect_error: DatabaseUnavailable | None = None

    @property
    def url(self) -> str:
        return self._url

    async def _open(self) -> None:
        """Create the pool; with a retry, keep trying until it is made or ``close()`` is
        called (then ClosedResourceError: a pool made after close is not kept)."""
        retry = self._retry
        delay = 0.0 if retry is None else retry.initial
        while True:
            try:
                pool = await self._create_pool()
            except DatabaseUnavailable as exc:
                if retry is None:
                    raise
                self._connect_error = exc
                if retry.on_failure is not None:
                    retry.on_failure(exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, retry.maximum)
                self._refuse_if_closed()
                continue
            if self.is_closed:  # closed while the pool was being made
                pool.terminate()
                self._refuse_if_closed()
            self._pool, self._connect_error = pool, None
            return

    def _refuse_if_closed(self) -> None:
        if self.is_closed:
            raise ClosedResourceError("Database was closed while connecting to PostgreSQL")

    async def _create_pool(self) -> asyncpg.Pool:
        try:
            return await asyncpg.create_pool(
                self._url,
                min_size=self._min_size,
                max_size=self._max_size,
                command_timeout=self._command_timeout,
                init=_init_connection,
                reset=_keep_session_state,
                timeout=self._command_timeout,
                server_settings=self._server_settings,
            )
        except CONNECTION_ERRORS as exc:
            raise DatabaseUnavailable(f"cannot connect to PostgreSQL: {exc}") from exc

    async def _close(self) -> None:
        """Close the pool: graceful within ``close_timeout``, then terminate."""
        pool, self._pool = self._pool, None
        if pool is None:
            return
        try:
            await asyncio.shield(asyncio.wait_for(pool.close(), self._close_timeout))
        except TimeoutError:
            # connections still busy after the grace period: cut them, shutdown goes on
            log.warning("database.close_timeout", timeout=self._close_timeout)
            pool.terminate()
        except asyncio.CancelledError:
            pool.terminate()
            raise
        except Exception:  # a broken connection must not stop shutdown
            log.warning("database.close_failed", exc_info=True)
            pool.terminate()

    def pool_usage(self) -> tuple[int, int, int]:
        """Connections borrowed, connections open and free, and the pool's limit; all 0
        until the pool exists (``ctc_db_pool_*``, read at each scrape)."""
        pool = self._pool
        if pool is None:
            return 0, 0, 0
        idle = pool.get_idle_size()
        return pool.get_size() - idle, idle, pool.get_max_size()

    def _require_pool(self) -> asyncpg.Pool:
        self.require_open()
        if self._pool is None:  # start() is still connecting (with a retry)
            why = f": {self._connect_error}" if self._connect_error is not None else ""
            raise DatabaseUnavailable(f"not connected to PostgreSQL yet{why}")
        return self._pool

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[Connection]:
        """Borrow a connection; connection failures become DatabaseUnavailable."""
        pool = self._require_pool()
        try:
            async with pool.acquire() as conn:
                yield conn
        except CONNECTION_ERRORS as exc:
            raise DatabaseUnavailable(f"database connection failed: {exc}") from exc

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Connection]:
        """A connection inside one transaction, committed on success."""
        async with self.connection() as conn, conn.transaction():
            yield conn

    async def ping(self) -> None:
        async with self.connection() as conn:
            await conn.fetchval("SELECT 1")

    async def fetch(self, query: str, *args: Any) -> list[asyncpg.Record]:
        async with self.connection() as conn:
            return list(await conn.fetch(query, *args))

    async def fetchrow(self, query: str, *args: Any) -> asyncpg.Record | None:
        async with self.connection() as conn:
            row: asyncpg.Record | None = await conn.fetchrow(query, *args)
            return row

    async def fetchval(self, query: str, *args: Any) -> Any:
        async with self.connection() as conn:
            return await conn.fetchval(query, *args)

    async def execute(self, query: str, *args: Any) -> str:
        async with self.connection() as conn:
            status: str = await conn.execute(query, *args)
            return status
