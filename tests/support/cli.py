"""The ``ctc`` command as an administrator runs it: a subprocess of this virtualenv's ``ctc``.

:func:`cli_environment` is the environment every CLI test starts from: a config file that
turns off what needs Asterisk (ARI, and FastAGI, whose port 4573 the e2e engines use), the
test's database, and a control socket in the test's own directory.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

__all__ = ["CTC", "cli_environment", "run_ctc"]

CTC = Path(sys.executable).with_name("ctc")
"""The ``ctc`` entry point installed beside the interpreter running the tests."""


def cli_environment(db_url: str, workdir: Path) -> dict[str, str]:
    """The environment of a ``ctc`` run over ``db_url`` without Asterisk, its config and
    control socket in ``workdir``."""
    config = workdir / "engine.yaml"
    config.write_text("ari:\n  enabled: false\nagi:\n  enabled: false\n")
    return {
        **os.environ,
        "CTC_CONFIG": str(config),
        "CTC_DATABASE_URL": db_url,
        "CTC_API_SOCKET": str(workdir / "ctc.sock"),
        "CTC_ENV_FILE": "",  # not this machine's /etc/ctc/engine.env
    }


async def run_ctc(*args: str, env: dict[str, str], within: float = 60.0) -> tuple[int, str, str]:
    """Run ``ctc *args`` to its end; (exit code, stdout, stderr)."""
    proc = await asyncio.create_subprocess_exec(
        CTC, *args, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), within)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()
