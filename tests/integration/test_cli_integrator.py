"""The `ctc` commands an admin runs for the ERP integrator: the callback secret shown once
and rotated, tokens listed and revoked, failed callbacks listed and replayed; and `ctc`
reading the service's environment file, so it finds what the service finds."""

from __future__ import annotations

import uuid
from pathlib import Path

from engine.store.database import Database
from engine.store.records import NewSession
from engine.store.repositories import Store
from tests.support.cli import run_ctc


def _without_db(env: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if k != "CTC_DATABASE_URL"}


async def test_ctc_reads_the_env_file_the_service_reads(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    env_file = tmp_path / "engine.env"
    env_file.write_text(
        "# as systemd's EnvironmentFile= reads it\n"
        "; a comment too\n"
        "\n"
        f'CTC_DATABASE_URL="{cli_env["CTC_DATABASE_URL"]}"\n'
        "CTC_LOG_LEVEL = warning\n"
    )
    bare = _without_db(cli_env)
    code, out, err = await run_ctc("--env-file", str(env_file), "db", "status", env=bare)
    assert code == 0, err
    assert "applied  0001_init.sql" in out
    # the same file named by CTC_ENV_FILE (the unit sets it empty: systemd read it already)
    code, out, err = await run_ctc("db", "status", env={**bare, "CTC_ENV_FILE": str(env_file)})
    assert code == 0, err
    # a variable set in the environment wins over the file
    wrong = cli_env["CTC_DATABASE_URL"].rsplit("/", 1)[0] + "/ctc_no_such_database"
    code, _, err = await run_ctc(
        "--env-file", str(env_file), "db", "status", env={**bare, "CTC_DATABASE_URL": wrong}
    )
    assert code == 1
    assert "ctc_no_such_database" in err, err


async def test_a_bad_env_file_is_one_error_naming_file_and_line(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    env_file = tmp_path / "engine.env"
    env_file.write_text("CTC_LOG_LEVEL=info\n\nexport CTC_SECRET_KEY=abc\n")
    code, _, err = await run_ctc("--env-file", str(env_file), "db", "status", env=cli_env)
    assert code == 1
    assert err.strip() == (
        f"error: {env_file}:3: expected KEY=VALUE (a name of letters, digits and _, then =)"
    )
    code, _, err = await run_ctc(
        "--env-file", str(tmp_path / "missing.env"), "db", "status", env=cli_env
    )
    assert (code, err.strip()) == (1, f"error: {tmp_path / 'missing.env'}: no such file")


async def test_the_callback_secret_is_shown_at_creation_and_rotation(
    cli_env: dict[str, str],
) -> None:
    slug = f"cli{uuid.uuid4().hex[:8]}"
    code, out, err = await run_ctc("tenant", "create", slug, env=cli_env)
    assert code == 0, err
    first = out.splitlines()[-1].removeprefix("callback secret: ")
    assert len(first) == 64
    assert "not shown again" in err
    async with Database(cli_env["CTC_DATABASE_URL"]) as db:
        tenants = Store.over(db).tenants
        tenant = await tenants.by_slug(slug)
        assert await tenants.callback_secret(tenant.id) == first

        code, out, err = await run_ctc(
            "tenant", "rotate-secret", slug, "--grace", "600", env=cli_env
        )
        assert code == 0, err
        second = out.strip().removeprefix("callback secret: ")
        assert second not in (first, "")
        assert "previous secret also signs until" in err
        assert await tenants.callback_secret(tenant.id) == second
        previous = await db.fetchrow(
            "SELECT previous_callback_secret, previous_callback_secret_until > now() AS live "
            "FROM tenant WHERE id = $1",
            tenant.id,
        )
        assert previous is not None
        assert tuple(previous) == (first, True)


async def test_tokens_are_listed_and_revoked(cli_env: dict[str, str]) -> None:
    slug = f"cli{uuid.uuid4().hex[:8]}"
    assert (await run_ctc("tenant", "create", slug, env=cli_env))[0] == 0
    code, token, err = await run_ctc(
        "token", "create", "--tenant", slug, "--name", "erp", env=cli_env
    )
    assert code == 0, err
    code, out, err = await run_ctc("token", "list", "--tenant", slug, env=cli_env)
    assert code == 0, err
    (line,) = out.splitlines()
    token_id = line.split()[0]
    assert token.strip()[:10] in line
    assert "erp" in line
    assert "REVOKED" not in line
    assert token.strip() not in out  # never the token itself
    code, out, err = await run_ctc("token", "revoke", token_id, "--tenant", "default", env=cli_env)
    assert code == 1
    assert "not found" in err
    code, out, err = await run_ctc("token", "revoke", token_id, "--tenant", slug, env=cli_env)
    assert code == 0, err
    assert f"token {token_id}" in out
    assert "revoked" in out
    code, out, _ = await run_ctc("token", "list", "--tenant", slug, env=cli_env)
    assert "REVOKED" in out
    async with Database(cli_env["CTC_DATABASE_URL"]) as db:
        assert await Store.over(db).tenants.by_token(token.strip()) is None


async def test_failed_callbacks_are_listed_and_replayed(cli_env: dict[str, str]) -> None:
    slug = f"cli{uuid.uuid4().hex[:8]}"
    url = "https://erp.example/ctc"
    assert (await run_ctc("tenant", "create", slug, "--callback-url", url, env=cli_env))[0] == 0
    async with Database(cli_env["CTC_DATABASE_URL"]) as db:
        store = Store.over(db)
        tenant = await store.tenants.by_slug(slug)
        session, _ = await store.sessions.create(
            NewSession(tenant.id, "1001", "+14155550100"), tenant_callback_url=url
        )
        row_id = await db.fetchval(
            "UPDATE callback_outbox SET state = 'dead', attempts = 12, last_status = 503, "
            "last_error = 'HTTP 503: down' WHERE session_id = $1 RETURNING id",
            session.id,
        )
        code, out, err = await run_ctc(
            "callbacks", "list", "--failed", "--tenant", slug, env=cli_env
        )
        assert code == 0, err
        (line,) = out.splitlines()
        assert line.split()[:4] == [str(row_id), "dead", "12x", "session.created"]
        assert "HTTP 503: down" in line

        code, out, err = await run_ctc(
            "callbacks", "replay", str(row_id), "999999999", "--tenant", slug, env=cli_env
        )
        assert code == 1  # one was replayed, the unknown one is named
        assert out.split()[:3] == [str(row_id), "pending", "again"]
        assert "999999999" in err
        # live again; the run's engine on this database may already have tried it (its
        # attempts then count from 0 again, its error is the new one's)
        row = await db.fetchrow(
            "SELECT state, attempts, next_attempt_at <= now() AS due, last_error "
            "FROM callback_outbox WHERE id = $1",
            row_id,
        )
        assert row is not None
        assert row["state"] == "pending"
        if row["attempts"] == 0:
            assert row["due"]
        else:
            assert row["attempts"] < 12
            assert row["last_error"] != "HTTP 503: down"
        code, out, _ = await run_ctc("callbacks", "list", "--failed", "--tenant", slug, env=cli_env)
        assert out.strip() == "no callbacks"
