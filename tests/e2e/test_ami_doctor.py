"""AMI and ``ctc doctor`` against the sandbox Asterisk.

AmiLink logs in as the sandbox's AMI user (dialplan/manager.conf), runs actions, keeps the
link alive with pings and survives an async Originate (whose OriginateResponse is an event
carrying a Response header: the DESIGN.md pitfall). ``ctc doctor`` runs as a subprocess
with a config written here.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from engine.asterisk.links.ami import AmiEvent, AmiLink
from engine.config.settings import AmiSettings, ApiSettings, AriSettings, DatabaseSettings, Settings
from engine.daemon import Engine
from engine.devtools.databases import create_database, drop_database
from engine.devtools.sandbox import ARI_PASSWORD, ARI_URL, Sandbox
from engine.health import HealthReport
from engine.secrets import Keyring
from engine.store.migrations import default_migrations_dir, migrate
from tests.e2e.helpers import AMI_PASSWORD
from tests.support.cli import run_ctc

pytestmark = pytest.mark.e2e

SECRETS_KEY = Keyring.generate_key()
WITHIN = 15.0


@pytest.fixture
async def booted(sandbox: Sandbox) -> AsyncIterator[tuple[AmiLink, list[AmiEvent], HealthReport]]:
    """A started AmiLink (fast keepalive) and the FullyBooted events it has seen."""
    health = HealthReport()
    link = AmiLink("127.0.0.1", 5038, "ctc", AMI_PASSWORD, ping_interval=0.2, health=health)
    seen: list[AmiEvent] = []
    link.on_event("FullyBooted", seen.append)
    async with link:
        await link.wait_connected(WITHIN)
        yield link, seen, health


async def test_login_core_status_and_fully_booted(
    booted: tuple[AmiLink, list[AmiEvent], HealthReport],
) -> None:
    link, seen, health = booted
    status = await link.action("CoreStatus")
    assert status["Response"] == "Success"
    assert status["CoreStartupDate"]
    assert int(status["CoreCurrentCalls"]) >= 0
    ami = health.get("ami")
    assert ami is not None
    assert (ami.state, ami.required) == ("up", False)
    # Asterisk greets every login of an already booted Asterisk with FullyBooted
    await link.action("Ping")  # FullyBooted was sent right after the login answer
    assert seen
    assert seen[0]["Status"] == "Fully Booted"
    assert int(seen[0]["Uptime"]) >= 0


async def test_keepalive_pings_succeed(
    booted: tuple[AmiLink, list[AmiEvent], HealthReport],
) -> None:
    link, _, _ = booted
    start = link.pongs
    async with asyncio.timeout(WITHIN):
        while link.pongs < start + 3:
            link.pong.clear()
            await link.pong.wait()
    assert link.connections == 1
    assert link.connected.is_set()


async def test_async_originate_does_not_break_the_link(
    booted: tuple[AmiLink, list[AmiEvent], HealthReport],
) -> None:
    link, _, _ = booted
    responses: list[AmiEvent] = []
    arrived = asyncio.Event()

    def on_response(event: AmiEvent) -> None:
        responses.append(event)
        arrived.set()

    link.on_event("OriginateResponse", on_response)
    hangups: list[AmiEvent] = []
    hung_up = asyncio.Event()

    def on_hangup(event: AmiEvent) -> None:
        if event.get("Channel", "").startswith("Local/answer@ctc-sandbox"):
            hangups.append(event)
            hung_up.set()

    link.on_event("Hangup", on_hangup)
    reply = await link.action(
        "Originate",
        Channel="Local/answer@ctc-sandbox",
        Application="Wait",
        Data="1",
        Async=True,
        Timeout=10000,
    )
    assert reply["Response"] == "Success"
    assert "queued" in reply["Message"]
    async with asyncio.timeout(WITHIN):
        while not any(r["ActionID"] == reply["ActionID"] for r in responses):
            arrived.clear()
            await arrived.wait()
    mine = next(r for r in responses if r["ActionID"] == reply["ActionID"])
    assert mine["Response"] == "Success"
    assert mine["Channel"].startswith("Local/answer@ctc-sandbox")
    # Wait(1) ends and the Local channel hangs up: still the same, healthy connection
    await asyncio.wait_for(hung_up.wait(), WITHIN)
    status = await link.action("CoreStatus")
    assert status["Response"] == "Success"
    assert link.connections == 1
    assert link.unparsable == 0


async def test_engine_runs_the_ami_link(migrated_db: str, sandbox: Sandbox, tmp_path: Path) -> None:
    settings = Settings(
        database=DatabaseSettings(url=migrated_db),
        api=ApiSettings(socket=tmp_path / "engine.sock", socket_mode="0600"),
        ari=AriSettings(
            password=ARI_PASSWORD,
            app=f"ctc-ami-{uuid.uuid4().hex[:8]}",
            recording_dir=sandbox.root / "var/spool/asterisk/recording",
        ),
        ami=AmiSettings(password=AMI_PASSWORD),
    )
    async with Engine(settings) as engine:
        await asyncio.wait_for(engine.database_ready.wait(), WITHIN)
        assert engine.ami is not None
        await engine.ami.wait_connected(WITHIN)
        await engine.ami.action("Ping")  # FullyBooted (sent at login) has been handled
        assert engine.restart_watch is not None
        assert engine.restart_watch.booted_at is not None
        ami = engine.health.get("ami")
        assert ami is not None
        assert ami.state == "up"


# --------------------------------------------------------------------------- ctc doctor


def _config(
    tmp_path: Path,
    db_url: str,
    sandbox: Sandbox,
    *,
    app: str,
    ari_password: str,
    hangup_handler: str = "ctc-hangup,s,1",
) -> Path:
    path = tmp_path / "engine.yaml"
    path.write_text(
        f"""\
database:
  url: {db_url}
secrets:
  key: {SECRETS_KEY}
calls:
  hangup_handler: "{hangup_handler}"
ari:
  url: http://127.0.0.1:8088
  username: ctc
  password: {ari_password}
  app: {app}
  recording_dir: {sandbox.root / "var/spool/asterisk/recording"}
ami:
  host: 127.0.0.1
  port: 5038
  username: ctc
  password: {AMI_PASSWORD}
""",
        encoding="utf-8",
    )
    return path


@pytest.fixture
async def sealed_db(tmp_path: Path) -> AsyncIterator[str]:
    """A database of its own whose stored secrets are sealed under SECRETS_KEY (the shared
    one stays readable by the keyless engines of the other tests)."""
    url = await create_database()
    try:
        await migrate(url, default_migrations_dir())
        config = tmp_path / "rotate.yaml"
        config.write_text(f"database:\n  url: {url}\nsecrets:\n  key: {SECRETS_KEY}\n")
        code, lines, err = await _ctc(config, "secrets", "rotate")
        assert code == 0, (lines, err)
        yield url
    finally:
        await drop_database(url)


async def _doctor(config: Path) -> tuple[int, list[str], str]:
    return await _ctc(config, "doctor")


async def _ctc(config: Path, *command: str) -> tuple[int, list[str], str]:
    """``ctc --config config *command`` with no ``CTC_*`` variable of the test run's own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CTC_")}
    code, out, err = await run_ctc("--config", str(config), *command, env=env)
    return code, out.splitlines(), err


async def test_doctor_all_ok(
    sealed_db: str, sandbox: Sandbox, tmp_path: Path, ari: aiohttp.ClientSession
) -> None:
    app = f"ctc-doctor-{uuid.uuid4().hex[:8]}"
    config = _config(tmp_path, sealed_db, sandbox, app=app, ari_password=ARI_PASSWORD)
    # the Stasis app is registered while something holds its event socket, as `ctc run` would
    async with ari.ws_connect(f"{ARI_URL.replace('http', 'ws', 1)}/events?app={app}"):
        code, lines, err = await _doctor(config)
    assert code == 0, (lines, err)
    assert lines, err
    assert all(line.startswith("ok   ") for line in lines), lines
    text = "\n".join(lines)
    assert "database" in text
    assert f"Stasis app {app} registered" in text
    assert "modules loaded (ARI): res_ari, res_stasis" in text
    assert "AMI 127.0.0.1:5038: logged in as ctc" in text
    assert "hangup handler ctc-hangup,s,1 is in the dialplan" in text


async def test_doctor_reads_the_trunks_send_pai_when_caller_id_profiles_exist(
    sealed_db: str, sandbox: Sandbox, tmp_path: Path, ari: aiohttp.ClientSession
) -> None:
    app = f"ctc-doctor-{uuid.uuid4().hex[:8]}"
    config = _config(tmp_path, sealed_db, sandbox, app=app, ari_password=ARI_PASSWORD)
    conn = await asyncpg.connect(sealed_db)
    try:
        await conn.execute(
            "INSERT INTO caller_id_profile (tenant_id, name, caller_id) "
            "SELECT id, 'main', '+14155550100' FROM tenant WHERE slug = 'default'"
        )
    finally:
        await conn.close()
    async with ari.ws_connect(f"{ARI_URL.replace('http', 'ws', 1)}/events?app={app}"):
        code, lines, err = await _doctor(config)
    assert code == 0, (lines, err)
    # dialplan/pjsip.conf's [trunk] inherits send_pai = yes from [ctc-phone]
    assert "ok   1 caller-ID profile(s): trunk endpoint trunk sends P-Asserted-Identity" in lines


async def test_doctor_warns_when_the_app_is_not_registered_or_the_hangup_handler_missing(
    sealed_db: str, sandbox: Sandbox, tmp_path: Path
) -> None:
    app = f"ctc-nobody-{uuid.uuid4().hex[:8]}"
    config = _config(
        tmp_path,
        sealed_db,
        sandbox,
        app=app,
        ari_password=ARI_PASSWORD,
        hangup_handler="ctc-nowhere,s,1",
    )
    code, lines, err = await _doctor(config)
    assert code == 0, (lines, err)
    warns = [line for line in lines if not line.startswith("ok   ")]
    assert warns == [
        f"warn app {app} not registered: is `ctc run` running? "
        f"(Stasis({app},…) in dialplan fails until it is)",
        "warn hangup handler ctc-nowhere,s,1 not in the dialplan: extensions.conf: copy "
        "[ctc-nowhere] (extension s) from the engine's dialplan/extensions.conf, or hangups "
        "while the engine is down are estimated",
    ]


async def test_doctor_wrong_ari_password_fails_naming_ari_conf(
    migrated_db: str, sandbox: Sandbox, tmp_path: Path
) -> None:
    config = _config(tmp_path, migrated_db, sandbox, app="ctc", ari_password="not-the-password")
    code, lines, err = await _doctor(config)
    assert code == 1, (lines, err)
    failed = [line for line in lines if line.startswith("FAIL ")]
    assert len(failed) == 1, lines
    assert "401" in failed[0]
    assert "ari.conf: user ctc missing or wrong password" in failed[0]
    # ARI could not list modules: AMI did, and the database and AMI are still fine
    assert any(line.startswith("ok   modules loaded (AMI): res_ari") for line in lines), lines
    assert any(line.startswith("ok   AMI 127.0.0.1:5038") for line in lines), lines
