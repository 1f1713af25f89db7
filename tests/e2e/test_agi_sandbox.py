"""FastAGI against the real sandbox Asterisk: dialplan's AGI() reaches our AgiServer.

The dialplan context ``[ctc-sandbox-agi]`` (dialplan/extensions.conf) runs
``AGI(agi://127.0.0.1:${EXTEN}/ivr/test?x=1,sandbox)``: originating a Local channel to
``<port>@ctc-sandbox-agi`` makes Asterisk connect to a test server on that port. A running
sandbox may predate that context, so the fixture installs the current extensions.conf and
reloads the dialplan first.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from engine.asterisk.links.agi_protocol import AgiCommandError, AgiHangup
from engine.asterisk.links.agi_server import AgiChannel, AgiServer
from engine.devtools.sandbox import DIALPLAN_DIR, Sandbox

pytestmark = pytest.mark.e2e

WITHIN = 20.0


@pytest.fixture
def agi_dialplan(sandbox: Sandbox) -> Sandbox:
    root = sandbox.status().root
    assert root is not None
    # copyfile over the existing file keeps its owner (the root's asterisk user) and mode
    shutil.copyfile(DIALPLAN_DIR / "extensions.conf", root / "etc/asterisk/extensions.conf")
    sandbox.asterisk_cli("dialplan reload")
    shown = sandbox.asterisk_cli("dialplan show ctc-sandbox-agi")
    assert "agi://127.0.0.1" in shown, shown
    return sandbox


async def _run_call(
    sandbox: Sandbox, handler: Callable[[AgiChannel], Awaitable[None]], done: asyncio.Event
) -> AgiServer:
    async with AgiServer("127.0.0.1", 0, handler) as server:
        await asyncio.to_thread(
            sandbox.asterisk_cli,
            f"channel originate Local/{server.port}@ctc-sandbox-agi application Wait 30",
        )
        await asyncio.wait_for(done.wait(), WITHIN)
    return server


async def test_asterisk_runs_a_fastagi_script(agi_dialplan: Sandbox) -> None:
    seen: dict[str, Any] = {}
    done = asyncio.Event()

    async def handler(channel: AgiChannel) -> None:
        try:
            seen["request"] = channel.request
            await channel.answer()
            seen["playback"] = await channel.stream_file("beep", "")
            with pytest.raises(AgiCommandError):
                await channel.stream_file("ctc-no-such-sound", "")
            await channel.set_variable("CTC_AGI_TEST", "ok with spaces")
            seen["variable"] = await channel.get_variable("CTC_AGI_TEST")
            seen["missing"] = await channel.get_variable("CTC_NOT_SET_ANYWHERE")
            seen["exec"] = await channel.exec("NoOp", "ctc", "agi test")
            await channel.verbose("ctc agi e2e")
            await channel.hangup()
        except BaseException as exc:
            seen["error"] = exc
            raise
        finally:
            done.set()

    server = await _run_call(agi_dialplan, handler, done)

    assert "error" not in seen, repr(seen.get("error"))
    request = seen["request"]
    assert request.script == "ivr/test"
    assert request.query == {"x": "1"}
    assert request.args == ("sandbox",)
    assert request.channel.startswith("Local/")
    assert request.channel.endswith(";2")
    assert request.context == "ctc-sandbox-agi"
    assert request.extension == str(server.port)
    assert request.uniqueid
    assert request.request.startswith(f"agi://127.0.0.1:{server.port}/ivr/test")
    assert seen["playback"].digit is None
    assert seen["playback"].endpos > 0  # the beep played to its end
    assert seen["variable"] == "ok with spaces"
    assert seen["missing"] is None
    assert seen["exec"] == 0
    assert server.served == 1


async def test_hangup_during_a_command_raises_agi_hangup(agi_dialplan: Sandbox) -> None:
    seen: dict[str, Any] = {}
    waiting = asyncio.Event()
    done = asyncio.Event()

    async def handler(channel: AgiChannel) -> None:
        try:
            await channel.answer()
            waiting.set()
            seen["digit"] = await channel.wait_for_digit(int(WITHIN * 1000))
        except BaseException as exc:
            seen["error"] = exc
            # dead-channel commands still work after the hang-up; media ones do not
            seen["name"] = await channel.get_variable("CHANNEL")
            with pytest.raises(AgiHangup):
                await channel.stream_file("beep")
            raise
        finally:
            seen["hung_up"] = channel.hung_up
            done.set()

    async with AgiServer("127.0.0.1", 0, handler) as server:
        await asyncio.to_thread(
            agi_dialplan.asterisk_cli,
            f"channel originate Local/{server.port}@ctc-sandbox-agi application Wait 30",
        )
        await asyncio.wait_for(waiting.wait(), WITHIN)
        channels = await asyncio.to_thread(agi_dialplan.asterisk_cli, "core show channels concise")
        ours = [
            line.split("!")[0]
            for line in channels.splitlines()
            if line.startswith(f"Local/{server.port}@ctc-sandbox-agi-") and ";2!" in line
        ]
        assert ours, channels
        await asyncio.to_thread(agi_dialplan.asterisk_cli, f"channel request hangup {ours[0]}")
        await asyncio.wait_for(done.wait(), WITHIN)

    assert isinstance(seen.get("error"), AgiHangup), seen
    assert seen["hung_up"] is True
    assert seen["name"].endswith(";2")
