"""An ARI failure says what happened: method, path and the cause, never an empty reason.

asyncio's TimeoutError and several aiohttp errors carry no message; a log line built from
``{exc}`` alone read ``ARI POST /channels/…/answer: `` under load. The class name is the
reason then.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from engine.asterisk.links.ari import AriClient
from engine.errors import AriError, describe


@pytest.fixture
async def silent_port() -> AsyncIterator[int]:
    """A TCP port that accepts connections and never answers."""
    held: list[asyncio.StreamWriter] = []

    async def hold(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()


async def test_a_timed_out_ari_request_names_the_timeout(silent_port: int) -> None:
    async with AriClient(f"http://127.0.0.1:{silent_port}", "ctc", "x", timeout=0.2) as ari:
        with pytest.raises(AriError, match=r"^ARI POST /channels/c1/answer: TimeoutError$"):
            await ari.request("POST", "/channels/c1/answer")


async def test_a_refused_ari_request_names_the_error_and_its_message() -> None:
    probe = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = probe.sockets[0].getsockname()[1]
    probe.close()
    await probe.wait_closed()  # nothing listens there now
    async with AriClient(f"http://127.0.0.1:{port}", "ctc", "x", timeout=2) as ari:
        with pytest.raises(AriError, match=r"^ARI GET /asterisk/info: ClientConnectorError: .+"):
            await ari.request("GET", "/asterisk/info")


def test_describe_gives_the_class_and_the_message_or_the_class_alone() -> None:
    assert describe(TimeoutError()) == "TimeoutError"
    assert describe(ConnectionResetError("reset by peer")) == "ConnectionResetError: reset by peer"
