"""The README's first command, `ctc demo`, places a real call and says where it was recorded."""

from __future__ import annotations

import asyncio
import os
import re
from pathlib import Path

import pytest

from engine.devtools.databases import ADMIN_URL, drop_database
from engine.devtools.sandbox import Sandbox
from tests.support.cli import CTC

pytestmark = pytest.mark.e2e


async def test_ctc_demo_places_a_real_call(sandbox: Sandbox) -> None:
    url = ADMIN_URL.rpartition("/")[0] + "/ctc_demo_test"
    env = {**os.environ, "CTC_DATABASE_URL": url}
    try:
        proc = await asyncio.create_subprocess_exec(
            CTC,
            "demo",
            "--talk",
            "2",
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await asyncio.wait_for(proc.communicate(), 180)
    finally:
        await drop_database(url)
    text = out.decode()
    assert proc.returncode == 0, text
    for step in ("agent.dialing", "customer.answered -> connected", "recording.finished"):
        assert step in text, text
    m = re.search(r"recording: (\S+\.wav)", text)
    assert m is not None, text
    assert await asyncio.to_thread(Path(m.group(1)).is_file)
