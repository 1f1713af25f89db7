"""A small client of the control API over its Unix socket (used by the CLI and tests)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp

from engine.errors import ApiClientError, ClosedResourceError, CtcError
from engine.lifecycle import Lifecycle

__all__ = ["ControlClient"]


class ControlClient(Lifecycle):
    """Opened with ``async with`` (or :meth:`start`); one HTTP session over the socket."""

    def __init__(
        self,
        socket_path: Path,
        *,
        tenant: str | None = None,
        token: str | None = None,
        timeout: float = 30.0,
    ) -> None:
        self._socket_path = socket_path
        self._headers: dict[str, str] = {}
        if tenant:
            self._headers["X-CTC-Tenant"] = tenant
        if token:
            self._headers["Authorization"] = f"Bearer {token}"
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    async def _open(self) -> None:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.UnixConnector(path=str(self._socket_path)),
            timeout=self._timeout,
            headers=self._headers,
        )

    async def _close(self) -> None:
        """Close the HTTP session (no request is in flight: each is awaited by its caller)."""
        if self._session is not None:
            await self._session.close()

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: dict[str, Any] | None = None,
        params: list[tuple[str, str]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        """Send a request; return (status, decoded JSON); raise ApiClientError on 4xx/5xx."""
        self.require_open("used")
        session = self._session
        if session is None:
            raise ClosedResourceError("ControlClient is open without an HTTP session")
        try:
            async with session.request(
                method, f"http://ctc{path}", json=body, params=params, headers=headers
            ) as resp:
                text = await resp.text()
                status = resp.status
        except (aiohttp.ClientConnectionError, FileNotFoundError) as exc:
            raise CtcError(
                f"cannot reach the engine at {self._socket_path}: {exc} (is `ctc run` running?)"
            ) from exc
        data = json.loads(text) if text else None
        if status >= 400:
            err = (data or {}).get("error", {}) if isinstance(data, dict) else {}
            message = err.get("message", text[:200])
            details = err.get("details")
            if isinstance(details, list) and details:
                message += ": " + "; ".join(
                    f"{d.get('field')}: {d.get('message')}" for d in details if isinstance(d, dict)
                )
            raise ApiClientError(status, err.get("code", "http_error"), message)
        return status, data
