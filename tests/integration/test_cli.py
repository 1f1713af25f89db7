"""The `ctc` command as an administrator runs it: a real `ctc run` process and its clients."""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from engine.domain.call import Direction
from engine.store.database import Database
from engine.store.records import NewSession
from engine.store.repositories import Store
from tests.support.cli import CTC, run_ctc
from tests.support.yaml_bombs import BILLION_LAUGHS


@pytest.fixture
async def ctc_run(cli_env: dict[str, str]) -> AsyncIterator[asyncio.subprocess.Process]:
    proc = await asyncio.create_subprocess_exec(
        CTC, "run", env=cli_env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
    )
    assert proc.stderr is not None

    async def until_connected() -> None:
        assert proc.stderr is not None
        while line := await proc.stderr.readline():
            if json.loads(line).get("event") == "database.connected":
                return
        raise AssertionError("ctc run exited before connecting to the database")

    try:
        await asyncio.wait_for(until_connected(), 30)
        yield proc
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_run_serves_call_and_calls_then_stops_on_sigterm(
    ctc_run: asyncio.subprocess.Process, cli_env: dict[str, str]
) -> None:
    code, out, err = await run_ctc(
        "call", "1001", "+14155550100", "--external-ref", "cli-1", env=cli_env
    )
    assert code == 0, err
    session_id, status = out.split()
    assert status == "queued"

    # an inbound caller without a number lists too
    async with Database(cli_env["CTC_DATABASE_URL"]) as db:
        store = Store.over(db)
        tenant = await store.tenants.by_slug("default")
        inbound, _ = await store.sessions.create(
            NewSession(
                tenant_id=tenant.id,
                agent_number=None,
                customer_number=None,
                direction=Direction.INBOUND,
                caller_number="anonymous",
            )
        )
    code, out, err = await run_ctc("calls", env=cli_env)
    assert code == 0, err
    assert str(inbound.id) in out
    assert "anonymous" in out
    assert session_id in out
    assert "queued" in out

    code, out, err = await run_ctc("call", "1001", "555", env=cli_env)
    assert code == 1
    assert err.startswith("error: validation_error")
    assert "customer_number" in err
    assert len(err.strip().splitlines()) == 1

    ctc_run.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(ctc_run.wait(), 30) == 0
    assert not await asyncio.to_thread(Path(cli_env["CTC_API_SOCKET"]).exists)


async def test_client_without_engine_says_so(cli_env: dict[str, str]) -> None:
    code, _, err = await run_ctc("calls", env=cli_env)
    assert code == 1
    assert "cannot reach the engine" in err
    assert "ctc run" in err


async def test_config_check(tmp_path: Path, cli_env: dict[str, str]) -> None:
    good = tmp_path / "good.yaml"
    good.write_text("ari:\n  password: hunter2\n")
    code, out, err = await run_ctc("config", "check", str(good), env=cli_env)
    assert code == 0, err
    assert "hunter2" not in out
    bad = tmp_path / "engine.yaml"
    bad.write_text("api:\n  socket: /tmp/x.sock\n  socket_mode: 660\n")
    code, out, err = await run_ctc("config", "check", str(bad), env=cli_env)
    assert code == 1
    assert err.strip() == f"error: {bad}:3: api.socket_mode: expected octal string"


async def test_config_check_refuses_a_yaml_alias_bomb(
    tmp_path: Path, cli_env: dict[str, str]
) -> None:
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(BILLION_LAUGHS)
    code, _, err = await run_ctc("config", "check", str(bomb), env=cli_env)
    assert code == 1
    assert err.strip() == f"error: {bomb}:9: more than 64 YAML aliases"


async def test_tenant_and_token_create(cli_env: dict[str, str]) -> None:
    code, out, err = await run_ctc("tenant", "create", "acme-cli", "--name", "Acme", env=cli_env)
    assert code == 0, err
    code, out, err = await run_ctc("token", "create", "--tenant", "acme-cli", env=cli_env)
    assert code == 0, err
    assert out.strip().startswith("ctc_")
    assert "not shown again" in err
    code, _, err = await run_ctc("token", "create", "--tenant", "nobody", env=cli_env)
    assert code == 1
    assert err.startswith("error: tenant nobody not found")
    code, _, err = await run_ctc("tenant", "create", "acme-cli", env=cli_env)
    assert code == 1
    assert "already exists" in err


async def test_tenant_callback_url_and_allowed_networks(cli_env: dict[str, str]) -> None:
    hook = "http://127.0.0.1:9000/hook"
    code, _, err = await run_ctc("tenant", "create", "erp-cli", "--callback-url", hook, env=cli_env)
    assert code == 1
    assert err.strip() == (
        "error: callback_url: 127.0.0.1 is a loopback address "
        "(the tenant's outbound_allow_cidrs does not include it)"
    )
    code, _, err = await run_ctc(
        "tenant", "create", "erp-cli", "--callback-url", "file:///etc/passwd", env=cli_env
    )
    assert code == 1
    assert err.strip() == "error: callback_url: must be an http or https URL, not file://"
    code, out, err = await run_ctc(
        "tenant", "create", "erp-cli", "--callback-url", hook,
        "--allow-cidr", "127.0.0.1/32", "--allow-cidr", "10.20.0.0/16", env=cli_env,
    )  # fmt: skip
    assert code == 0, err
    assert out.splitlines()[1] == "allowed outbound: 10.20.0.0/16, 127.0.0.1/32"

    # the URL must stay allowed: the list cannot drop its network while the URL needs it
    code, _, err = await run_ctc("tenant", "update", "erp-cli", "--no-allow-cidrs", env=cli_env)
    assert code == 1
    assert err.startswith("error: callback_url: 127.0.0.1 is a loopback address")
    code, out, err = await run_ctc(
        "tenant", "update", "erp-cli", "--callback-url", "https://erp.example/hook",
        "--no-allow-cidrs", env=cli_env,
    )  # fmt: skip
    assert code == 0, err
    assert out.splitlines() == [out.splitlines()[0]]  # no networks listed any more
    async with Database(cli_env["CTC_DATABASE_URL"]) as db:
        tenant = await Store.over(db).tenants.by_slug("erp-cli")
    assert (tenant.callback_url, tenant.outbound_allow_cidrs) == ("https://erp.example/hook", ())

    code, _, err = await run_ctc(
        "tenant", "update", "erp-cli", "--allow-cidr", "10.0.0.1/8", env=cli_env
    )
    assert code == 1
    assert err.startswith("error: allow_cidr: not a CIDR like 10.0.0.0/8: '10.0.0.1/8'")
    code, _, err = await run_ctc(
        "tenant", "update", "nobody", "--allow-cidr", "10.0.0.0/8", env=cli_env
    )
    assert code == 1
    assert err.strip() == "error: tenant nobody not found"


async def test_db_unreachable_is_one_line(cli_env: dict[str, str]) -> None:
    env = {**cli_env, "CTC_DATABASE_URL": "postgresql://postgres@127.0.0.1:1/nowhere"}
    code, _, err = await run_ctc("db", "status", env=env)
    assert code == 1
    assert err.startswith("error: cannot connect to PostgreSQL")
    assert len(err.strip().splitlines()) == 1


async def test_config_check_warns_about_exposure_but_still_passes(
    tmp_path: Path, cli_env: dict[str, str]
) -> None:
    exposed = tmp_path / "exposed.yaml"
    exposed.write_text(
        'api:\n  socket_mode: "0666"\n  tcp:\n    enabled: true\n    host: 0.0.0.0\n'
    )
    code, _, err = await run_ctc("config", "check", str(exposed), env=cli_env)
    assert code == 0, err
    warns = [line for line in err.splitlines() if line.startswith("warn: ")]
    assert len(warns) == 3
    assert warns[0].startswith("warn: api.socket_mode 0666")
    assert "put TLS in front (reverse proxy) or bind to loopback" in warns[1]
    assert "no secrets key is configured" in warns[2]
    assert err.splitlines()[-1] == f"ok: {exposed}"


async def test_secrets_generate_key_then_rotate_encrypts_stored_secrets(
    tmp_path: Path, cli_env: dict[str, str]
) -> None:
    from engine.devtools.databases import create_database, drop_database
    from engine.store.migrations import default_migrations_dir, migrate

    code, key, err = await run_ctc("secrets", "generate-key", env=cli_env)
    assert code == 0, err
    url = await create_database("ctc_cli_sec")  # rotation touches every tenant
    try:
        await migrate(url, default_migrations_dir())
        env = {**cli_env, "CTC_DATABASE_URL": url}
        code, _, err = await run_ctc("secrets", "rotate", env=env)
        assert code == 1
        assert err.startswith("error: cannot rotate: no secrets key is configured")
        key_file = tmp_path / "secret.key"
        key_file.write_text(key)
        key_file.chmod(0o600)
        config = tmp_path / "with-key.yaml"
        config.write_text(f"ari:\n  enabled: false\nsecrets:\n  key_file: {key_file}\n")
        env["CTC_CONFIG"] = str(config)
        code, out, err = await run_ctc("secrets", "rotate", env=env)
        assert code == 0, err
        assert "tenant.callback_secret: 1 re-encrypted" in out.splitlines()
        async with Database(url) as db:
            stored = await db.fetchval("SELECT callback_secret FROM tenant")
        assert stored.startswith("ctc-enc:v1:")
        code, out, err = await run_ctc("secrets", "rotate", env=env)
        assert "tenant.callback_secret: 0 re-encrypted" in out.splitlines()
    finally:
        await drop_database(url)
