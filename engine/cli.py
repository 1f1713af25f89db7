"""The ``ctc`` command. Thin: parse arguments, call the engine, print one line per error.

Only :class:`~engine.errors.CtcError` is caught: it prints ``error: …`` and exits 1.
Anything else is a bug and shows its traceback.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Coroutine
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click

from engine.config.loader import load_settings
from engine.config.settings import Settings, exposure_warnings, redacted_summary
from engine.errors import CtcError
from engine.logs import configure_logging

if TYPE_CHECKING:
    from engine.app.retention import PrunePlan, PruneReport
    from engine.app.use_cases import UseCases
    from engine.domain.ivr import IvrMenu
    from engine.store.records import StoredIvrMenu

__all__ = ["main"]

T = TypeVar("T")


def _run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def _fail(err: CtcError) -> NoReturn:
    click.echo(f"error: {err}", err=True)
    sys.exit(1)


class _Context:
    def __init__(self, config: str | None) -> None:
        self.config_path = config
        self._settings: Settings | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load_settings(self.config_path)
        return self._settings


pass_ctx = click.make_pass_decorator(_Context)


class _Group(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except CtcError as err:
            _fail(err)


@click.group(cls=_Group)
@click.option(
    "--config",
    "config",
    type=click.Path(dir_okay=False),
    default=None,
    help="Engine YAML (default: $CTC_CONFIG, else /etc/ctc/engine.yaml).",
)
@click.version_option(package_name="ctc-engine")
@click.pass_context
def cli(ctx: click.Context, config: str | None) -> None:
    """CTC Engine: click-to-call and IVR for Asterisk."""
    ctx.obj = _Context(config)


@cli.command()
@pass_ctx
def run(ctx: _Context) -> None:
    """Run the engine daemon until SIGTERM/SIGINT."""
    from engine.daemon import run_until_signalled

    settings = ctx.settings
    configure_logging(settings.log.level, settings.log.format)
    _run(run_until_signalled(settings))


# -- config ------------------------------------------------------------------------------------


@cli.group()
def config() -> None:
    """Check configuration."""


@config.command("check")
@click.argument("file", type=click.Path(dir_okay=False))
def config_check(file: str) -> None:
    """Validate FILE; print the effective settings with secrets masked.

    Settings that work but expose the engine get a `warn:` line each (exit code still 0).
    """
    settings = load_settings(file)
    click.echo(json.dumps(redacted_summary(settings), indent=2, default=str))
    for warning in exposure_warnings(settings):
        click.echo(f"warn: {warning}", err=True)
    click.echo(f"ok: {file}", err=True)


# -- doctor ------------------------------------------------------------------------------------


@cli.command()
@pass_ctx
def doctor(ctx: _Context) -> None:
    """Check Asterisk (ARI, AMI, modules), the database and the recording directory.

    Prints one line per check (ok / warn / FAIL with the fix); exits 1 if any FAIL.
    """
    from engine.doctor import run_doctor

    settings = ctx.settings
    configure_logging("error", settings.log.format)  # the lines below are the output
    checks = _run(run_doctor(settings))
    for check in checks:
        click.echo(check.line)
    if any(check.failed for check in checks):
        sys.exit(1)


# -- database ----------------------------------------------------------------------------------


def _migrations_dir(settings: Settings) -> Path:
    from engine.store.migrations import default_migrations_dir

    return Path(settings.database.migrations_dir or default_migrations_dir())


@cli.group()
def db() -> None:
    """Database schema migrations and retention."""


@db.command("migrate")
@pass_ctx
def db_migrate(ctx: _Context) -> None:
    """Apply pending migrations (safe to run concurrently)."""
    from engine.store.migrations import migrate

    settings = ctx.settings
    applied = _run(migrate(settings.database.url, _migrations_dir(settings)))
    for m in applied:
        click.echo(f"applied {m.path.name}")
    click.echo(f"{len(applied)} migration(s) applied; schema is current")


@db.command("status")
@pass_ctx
def db_status(ctx: _Context) -> None:
    """List applied and pending migrations."""
    from engine.store.migrations import migration_status

    settings = ctx.settings
    status = _run(migration_status(settings.database.url, _migrations_dir(settings)))
    changed = {m.version for m in status.changed}
    for a in status.applied:
        mark = "CHANGED" if a.version in changed else "applied"
        click.echo(f"{mark:8} {a.version:04d}_{a.name}.sql  {a.applied_at.isoformat()}")
    for m in status.pending:
        click.echo(f"pending  {m.path.name}")
    if status.changed:
        raise CtcError("an applied migration changed on disk; add a new migration instead")


@db.command("prune")
@click.option("--dry-run", is_flag=True, help="Only say what would be deleted, and the cut-offs.")
@pass_ctx
def db_prune(ctx: _Context, dry_run: bool) -> None:
    """Delete what the retention: settings say has been kept long enough, once.

    Old call events, delivered callbacks and recording files, in small batches that do not
    block calls (the running engine does the same every retention.interval seconds).
    """
    settings = ctx.settings
    # the lines below are the output; warnings (a recording not deleted) go to stderr
    configure_logging("warning", settings.log.format)
    if dry_run:
        plan = _run(_with_retention(settings, lambda service: service.plan()))
        for line in _retention_plan_lines(plan, settings):
            click.echo(line)
        return
    report = _run(_with_retention(settings, lambda service: service.prune()))
    for line in _retention_report_lines(report):
        click.echo(line)


async def _with_retention(settings: Settings, work: Any) -> Any:
    """Run ``work(retention_service)`` over a small pool, once the schema is current."""
    from engine.app.retention import RetentionService
    from engine.asterisk.recording_files import SpoolRecordingFiles
    from engine.store.database import Database
    from engine.store.migrations import migration_status
    from engine.store.retention import RetentionRepository

    status = await migration_status(settings.database.url, _migrations_dir(settings))
    if status.pending:
        raise CtcError(f"{len(status.pending)} migration(s) pending: run `ctc db migrate` first")
    async with Database(settings.database.url, min_size=1, max_size=2) as database:
        service = RetentionService.from_settings(
            RetentionRepository(database),
            settings.retention,
            SpoolRecordingFiles(settings.ari.recording_dir),
        )
        return await work(service)


def _cutoff_text(cutoff: datetime | None, key: str, days: int | None) -> str:
    if cutoff is None:
        return f"kept forever (retention.{key}: null)"
    return f"before {cutoff.isoformat(timespec='seconds')} (retention.{key}: {days})"


def _retention_plan_lines(plan: PrunePlan, settings: Settings) -> list[str]:
    kept = settings.retention
    cutoffs, due = plan.cutoffs, plan.due
    return [
        "dry run: nothing is deleted",
        f"call_event       {_count_text(due.call_events)} recorded "
        + _cutoff_text(cutoffs.call_events, "call_events_days", kept.call_events_days),
        f"callback_outbox  {_count_text(due.delivered_callbacks)} delivered "
        + _cutoff_text(
            cutoffs.delivered_callbacks, "delivered_callbacks_days", kept.delivered_callbacks_days
        ),
        f"recordings       {_count_text(due.recordings)} of calls ended "
        + _cutoff_text(cutoffs.recordings, "recordings_days", kept.recordings_days),
    ]


def _count_text(count: int | None) -> str:
    return f"{'-' if count is None else count:>10}"


def _retention_report_lines(report: PruneReport) -> list[str]:
    files = report.recordings
    return [
        f"call_event       {report.call_events:>10} rows deleted",
        f"callback_outbox  {report.delivered_callbacks:>10} delivered rows deleted",
        f"recordings       {files.get('deleted', 0):>10} files deleted,"
        f" {files.get('missing', 0)} already missing, {files.get('refused', 0)} outside"
        f" the recording directory (kept), {files.get('failed', 0)} not deletable (kept)",
        f"done in {report.seconds:.1f} s, {report.batches} batches",
    ]


# -- tenants and tokens ------------------------------------------------------------------------


async def _with_use_cases(settings: Settings, work: Any) -> Any:
    """Run ``work(use_cases)`` over a small pool of the configured database."""
    from engine.app.use_cases import UseCases
    from engine.providers.directory import CarrierDirectory
    from engine.store.database import Database
    from engine.store.repositories import Store

    keyring = settings.secrets.keyring()
    carriers = CarrierDirectory()
    try:
        async with Database(settings.database.url, min_size=1, max_size=2) as database:
            store = Store.over(database, keyring=keyring)
            return await work(UseCases.over(store, carriers=carriers))
    finally:
        await carriers.close()


@cli.group()
def tenant() -> None:
    """Manage tenants."""


_ALLOW_CIDR_HELP = (
    "A non-global network (loopback, private...) the tenant's callbacks and IVR lookups "
    "may reach, e.g. 10.20.0.0/16; repeat for several. Global addresses need none."
)


def _echo_tenant(tenant: Any) -> None:
    click.echo(f"tenant {tenant.slug} {tenant.id}")
    if tenant.outbound_allow_cidrs:
        click.echo("allowed outbound: " + ", ".join(map(str, tenant.outbound_allow_cidrs)))


@tenant.command("create")
@click.argument("slug")
@click.option("--name", default=None, help="Display name (default: the slug).")
@click.option("--callback-url", default=None, help="Where status callbacks are POSTed.")
@click.option("--allow-cidr", "allow_cidrs", multiple=True, metavar="CIDR", help=_ALLOW_CIDR_HELP)
@pass_ctx
def tenant_create(
    ctx: _Context,
    slug: str,
    name: str | None,
    callback_url: str | None,
    allow_cidrs: tuple[str, ...],
) -> None:
    """Create tenant SLUG."""
    created = _run(
        _with_use_cases(
            ctx.settings,
            lambda app: app.tenants.create(
                slug, name or slug, callback_url, allow_cidrs=allow_cidrs
            ),
        )
    )
    _echo_tenant(created)


@tenant.command("update")
@click.argument("slug")
@click.option(
    "--callback-url", default=None, help="Where status callbacks are POSTed ('' for none)."
)
@click.option(
    "--allow-cidr",
    "allow_cidrs",
    multiple=True,
    metavar="CIDR",
    help=_ALLOW_CIDR_HELP + " Replaces the tenant's list.",
)
@click.option("--no-allow-cidrs", is_flag=True, help="Empty the tenant's list of networks.")
@pass_ctx
def tenant_update(
    ctx: _Context,
    slug: str,
    callback_url: str | None,
    allow_cidrs: tuple[str, ...],
    no_allow_cidrs: bool,
) -> None:
    """Change tenant SLUG's callback URL or allowed networks (what is not given stays)."""
    if allow_cidrs and no_allow_cidrs:
        raise click.UsageError("--allow-cidr and --no-allow-cidrs exclude each other")
    networks = allow_cidrs if allow_cidrs or no_allow_cidrs else None
    if callback_url is None and networks is None:
        raise click.UsageError("nothing to change: give --callback-url or --allow-cidr")
    updated = _run(
        _with_use_cases(
            ctx.settings,
            lambda app: app.tenants.update(slug, callback_url=callback_url, allow_cidrs=networks),
        )
    )
    _echo_tenant(updated)


@cli.group()
def provider() -> None:
    """VoIP providers (carriers) of a tenant."""


@provider.command("test")
@click.argument("name")
@click.option("--tenant", "tenant_slug", default="default", show_default=True, help="Tenant slug.")
@pass_ctx
def provider_test(ctx: _Context, name: str, tenant_slug: str) -> None:
    """Check provider NAME's credentials with its carrier (no call is placed); exits 1
    unless the carrier accepted them."""

    async def work(app: Any) -> Any:
        tenant = await app.tenants.by_slug(tenant_slug)
        found = await app.providers.by_name(tenant, name)
        return await app.providers.check_credentials(tenant, found.id)

    check = _run(_with_use_cases(ctx.settings, work))
    click.echo(f"{check.outcome.value}: {check.detail}")
    if check.outcome.value != "ok":
        sys.exit(1)


@cli.group()
def token() -> None:
    """Manage API tokens."""


@token.command("create")
@click.option("--tenant", "tenant_slug", required=True, help="Tenant slug.")
@click.option("--name", default="", help="A label for the token.")
@pass_ctx
def token_create(ctx: _Context, tenant_slug: str, name: str) -> None:
    """Create a bearer token for TENANT; it is printed once and only its hash is kept."""
    issued = _run(
        _with_use_cases(ctx.settings, lambda app: app.tenants.issue_token(tenant_slug, name))
    )
    click.echo(issued.token)
    click.echo(
        f"token {issued.id} for tenant {issued.tenant.slug}: store it now, it is not shown again",
        err=True,
    )


# -- stored secrets ----------------------------------------------------------------------------


@cli.group("secrets")
def secrets_group() -> None:
    """Encryption of stored secrets (provider credentials, webhook and callback secrets)."""


@secrets_group.command("generate-key")
def secrets_generate_key() -> None:
    """Print a new random key, for CTC_SECRET_KEY or secrets.key_file."""
    from engine.secrets import Keyring

    click.echo(Keyring.generate_key())


@secrets_group.command("rotate")
@pass_ctx
def secrets_rotate(ctx: _Context) -> None:
    """Re-encrypt every stored secret under the primary (first) key.

    Also encrypts secrets stored in plaintext (before a key was configured). Afterwards
    the other keys may be removed from the configuration.
    """
    resealed = _run(_with_use_cases(ctx.settings, lambda app: app.secrets.rotate()))
    for column, count in resealed.items():
        click.echo(f"{column}: {count} re-encrypted")
    click.echo("every stored secret is encrypted under the primary key", err=True)


# -- IVR menus ---------------------------------------------------------------------------------


@cli.group()
def ivr() -> None:
    """Manage IVR menus (YAML files, see engine/ivr_yaml.py)."""


@ivr.command("import")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--tenant", "tenant_slug", default="default", show_default=True)
@pass_ctx
def ivr_import(ctx: _Context, file: str, tenant_slug: str) -> None:
    """Validate FILE and create or replace its menus (by name); other menus stay."""
    from engine.errors import ConfigError, InvalidInput
    from engine.ivr_yaml import load_menus_file

    menus = load_menus_file(file)  # ConfigError names file:line: field

    async def save(app: UseCases) -> dict[str, StoredIvrMenu]:
        tenant = await app.tenants.by_slug(tenant_slug)
        try:
            return await app.ivr_menus.import_menus(tenant, menus)
        except InvalidInput as exc:  # against the tenant's stored menus or routing rules
            raise ConfigError(exc.reason, file=file, field=f"menus.{exc.field}") from None

    saved: dict[str, StoredIvrMenu] = _run(_with_use_cases(ctx.settings, save))
    listed = ", ".join(f"{name} (v{s.version})" for name, s in saved.items())
    click.echo(f"imported {len(saved)} menu(s) into tenant {tenant_slug}: {listed}")


@ivr.command("export")
@click.argument("names", nargs=-1)
@click.option("--tenant", "tenant_slug", default="default", show_default=True)
@pass_ctx
def ivr_export(ctx: _Context, names: tuple[str, ...], tenant_slug: str) -> None:
    """Print the tenant's menus (or just NAMES) as YAML that `ctc ivr import` reads."""
    from engine.errors import NotFound
    from engine.ivr_yaml import dump_menus

    async def load(app: UseCases) -> dict[str, IvrMenu]:
        tenant = await app.tenants.by_slug(tenant_slug)
        return await app.ivr_menus.menus(tenant)

    menus: dict[str, IvrMenu] = _run(_with_use_cases(ctx.settings, load))
    for name in names:
        if name not in menus:
            raise NotFound("ivr menu", name)
    selected = {n: m for n, m in menus.items() if not names or n in names}
    if not selected:
        raise NotFound("ivr menus for tenant", tenant_slug)
    click.echo(dump_menus(selected), nl=False)


# -- API clients -------------------------------------------------------------------------------


def _client_options(fn: Any) -> Any:
    fn = click.option("--socket", "socket_path", default=None, help="Control socket path.")(fn)
    return click.option("--tenant", "tenant_slug", default=None, help="Tenant slug.")(fn)


def _socket(ctx: _Context, socket_path: str | None) -> Path:
    return Path(socket_path) if socket_path else ctx.settings.api.socket


@cli.command("call")
@click.argument("agent")
@click.argument("customer")
@click.option("--caller-id", default=None)
@click.option("--external-ref", default=None)
@click.option("--idempotency-key", default=None)
@_client_options
@pass_ctx
def call(
    ctx: _Context,
    agent: str,
    customer: str,
    caller_id: str | None,
    external_ref: str | None,
    idempotency_key: str | None,
    socket_path: str | None,
    tenant_slug: str | None,
) -> None:
    """Place a click-to-call from AGENT to CUSTOMER through the running engine."""
    from engine.api.client import ControlClient

    body: dict[str, Any] = {"agent_number": agent, "customer_number": customer}
    if caller_id:
        body["caller_id"] = caller_id
    if external_ref:
        body["external_ref"] = external_ref
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None

    async def go() -> Any:
        async with ControlClient(_socket(ctx, socket_path), tenant=tenant_slug) as client:
            _, data = await client.request(
                "POST", "/api/v1/click-to-call/initiate", body=body, headers=headers
            )
            return data

    data = _run(go())
    click.echo(f"{data['id']} {data['status']}")


@cli.command("calls")
@click.option("--status", "statuses", multiple=True, help="Filter by status (repeatable).")
@click.option("--limit", default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the raw JSON page.")
@_client_options
@pass_ctx
def calls(
    ctx: _Context,
    statuses: tuple[str, ...],
    limit: int,
    as_json: bool,
    socket_path: str | None,
    tenant_slug: str | None,
) -> None:
    """List recent calls, newest first."""
    from engine.api.client import ControlClient

    params = [("limit", str(limit)), *(("status", s) for s in statuses)]

    async def go() -> Any:
        async with ControlClient(_socket(ctx, socket_path), tenant=tenant_slug) as client:
            _, data = await client.request("GET", "/api/v1/click-to-call/sessions", params=params)
            return data

    data = _run(go())
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    for s in data["items"]:
        click.echo(
            f"{s['id']}  {s['status']:<16} {s['agent_number'] or '-':>14} -> "
            f"{s['customer_number'] or s.get('caller_number') or '-':<16}"
            f" {s['created_at']}"
        )
    if not data["items"]:
        click.echo("no calls")


@cli.command()
@click.option("--talk", "talk_seconds", default=4, show_default=True, help="Seconds of talk.")
@pass_ctx
def demo(ctx: _Context, talk_seconds: int) -> None:
    """Sandbox Asterisk + PostgreSQL + engine + SIPp phones: place a real click-to-call."""
    import os

    from engine.devtools.demo import run_demo

    url = os.environ.get("CTC_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/ctc_demo")
    configure_logging("warning", "console")
    sys.exit(_run(run_demo(url, click.echo, talk_seconds)))


# -- sandbox -----------------------------------------------------------------------------------


@cli.group()
def sandbox() -> None:
    """The sandbox Asterisk 22 (a Debian sid chroot) for development and tests; needs root."""


@sandbox.command("up")
def sandbox_up() -> None:
    """Build (once, cached) and start the sandbox; wait until ARI answers."""
    from engine.devtools.sandbox import Sandbox

    status = Sandbox().up()
    click.echo(f"sandbox up: Asterisk {status.version} pid {status.pid}, root {status.root}")


@sandbox.command("down")
def sandbox_down() -> None:
    """Stop the sandbox Asterisk and unmount what it mounted (harmless when down)."""
    from engine.devtools.sandbox import Sandbox

    Sandbox().down()
    click.echo("sandbox down")


@sandbox.command("status")
def sandbox_status() -> None:
    """Say whether the sandbox runs and ARI answers."""
    from engine.devtools.sandbox import Sandbox

    status = Sandbox().status()
    if status.running:
        click.echo(
            f"running: pid {status.pid}, ARI {'ok' if status.ari_ok else 'not answering'}, "
            f"Asterisk {status.version}, root {status.root}"
        )
    else:
        click.echo("not running")


def main() -> None:
    cli(prog_name="ctc")
