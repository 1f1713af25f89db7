"""The ``ctc`` command. Thin: parse arguments, call the engine, print one line per error.

Only :class:`~engine.errors.CtcError` is caught: it prints ``error: …`` and exits 1.
Anything else is a bug and shows its traceback.
"""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
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
    # one line per problem (a file with several problems: ConfigErrors)
    for line in str(err).splitlines() or [""]:
        click.echo(f"error: {line}", err=True)
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
@click.option(
    "--env-file",
    "env_file",
    type=click.Path(dir_okay=False),
    default=None,
    help="KEY=VALUE file read into the environment first, as the systemd unit does "
    "(default: $CTC_ENV_FILE, else /etc/ctc/engine.env when it exists; '' for none). "
    "Variables already set win.",
)
@click.version_option(package_name="ctc-engine")
@click.pass_context
def cli(ctx: click.Context, config: str | None, env_file: str | None) -> None:
    """CTC Engine: click-to-call and IVR for Asterisk."""
    import os

    from engine.config.env_file import ENV_FILE_VAR, apply_env_file

    try:
        _, warning = apply_env_file(
            env_file if env_file is not None else os.environ.get(ENV_FILE_VAR)
        )
    except CtcError as err:
        _fail(err)
    if warning is not None:
        click.echo(f"warn: {warning}", err=True)
    ctx.obj = _Context(config)


@cli.command()
@pass_ctx
def run(ctx: _Context) -> None:
    """Run the engine daemon until SIGTERM/SIGINT."""
    from engine.daemon import run_until_signalled
    from engine.event_loop import run_daemon_loop

    settings = ctx.settings
    configure_logging(settings.log.level, settings.log.format)
    run_daemon_loop(run_until_signalled(settings))


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
        f"number lists     {_count_text(due.expired_list_entries)} entries expired",
    ]


def _count_text(count: int | None) -> str:
    return f"{'-' if count is None else count:>10}"


def _retention_report_lines(report: PruneReport) -> list[str]:
    files = report.recordings
    return [
        f"call_event       {report.call_events:>10} rows deleted",
        f"callback_outbox  {report.delivered_callbacks:>10} delivered rows deleted",
        f"number lists     {report.expired_list_entries:>10} expired entries deleted",
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
    """Create tenant SLUG; print its callback signing secret once."""
    created = _run(
        _with_use_cases(
            ctx.settings,
            lambda app: app.tenants.create(
                slug, name or slug, callback_url, allow_cidrs=allow_cidrs
            ),
        )
    )
    _echo_tenant(created.tenant)
    click.echo(f"callback secret: {created.callback_secret}")
    click.echo(
        "give the callback secret to the ERP now (it verifies X-CTC-Signature with it): it "
        "is not shown again; `ctc tenant rotate-secret` makes a new one",
        err=True,
    )


@tenant.command("rotate-secret")
@click.argument("slug")
@click.option(
    "--grace",
    "grace_seconds",
    type=click.FloatRange(0, 30 * 86400),
    default=86400,
    show_default=True,
    help="Seconds the current secret keeps signing callbacks beside the new one (0: stop at once).",
)
@pass_ctx
def tenant_rotate_secret(ctx: _Context, slug: str, grace_seconds: float) -> None:
    """Give tenant SLUG a new callback signing secret, printed once.

    Until the grace period ends every callback carries two signatures (two v1= values in
    X-CTC-Signature), one per secret, so the ERP can switch to the new secret at any time
    meanwhile without refusing a callback.
    """
    rotation = _run(
        _with_use_cases(
            ctx.settings,
            lambda app: app.tenants.rotate_callback_secret(slug, grace_seconds=grace_seconds),
        )
    )
    click.echo(f"callback secret: {rotation.callback_secret}")
    until = rotation.previous_valid_until
    click.echo(
        "the previous secret no longer signs"
        if until is None
        else f"the previous secret also signs until {until.isoformat(timespec='seconds')}",
        err=True,
    )


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
@click.option("--timezone", default=None, help="IANA zone of the stats' hours and days.")
@pass_ctx
def tenant_update(
    ctx: _Context,
    slug: str,
    callback_url: str | None,
    allow_cidrs: tuple[str, ...],
    no_allow_cidrs: bool,
    timezone: str | None,
) -> None:
    """Change tenant SLUG's callback URL, allowed networks or time zone (what is not given
    stays)."""
    if allow_cidrs and no_allow_cidrs:
        raise click.UsageError("--allow-cidr and --no-allow-cidrs exclude each other")
    networks = allow_cidrs if allow_cidrs or no_allow_cidrs else None
    if callback_url is None and networks is None and timezone is None:
        raise click.UsageError("nothing to change: give --callback-url, --allow-cidr or --timezone")
    updated = _run(
        _with_use_cases(
            ctx.settings,
            lambda app: app.tenants.update(
                slug, callback_url=callback_url, allow_cidrs=networks, timezone=timezone
            ),
        )
    )
    _echo_tenant(updated)


@cli.group()
def provider() -> None:
    """VoIP providers (carriers) of a tenant."""


def _key_values(option: str, pairs: tuple[str, ...]) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint=option)
        out[key] = value
    return out


def _config_value(text: str) -> Any:
    """A --config value: JSON when it parses (numbers, lists, true), else the text."""
    try:
        return json.loads(text)
    except ValueError:
        return text


@provider.command("add")
@click.argument("name")
@click.option(
    "--type",
    "provider_type",
    required=True,
    type=click.Choice(["asterisk", "sip_trunk", "twilio", "exotel", "vonage", "mcube"]),
    help="The carrier.",
)
@click.option("--tenant", "tenant_slug", default="default", show_default=True, help="Tenant slug.")
@click.option("--priority", type=click.IntRange(0, 10_000), default=100, show_default=True)
@click.option(
    "--weight",
    type=click.IntRange(0, 1000),
    default=1,
    show_default=True,
    help="Share of calls among providers of equal priority.",
)
@click.option("--default", "is_default", is_flag=True, help="The tenant's default provider.")
@click.option("--max-concurrent", type=click.IntRange(1), default=None, help="Live calls at most.")
@click.option(
    "--config", "config_pairs", multiple=True, metavar="KEY=VALUE", help="A setting (repeat)."
)
@click.option(
    "--credential",
    "credential_pairs",
    multiple=True,
    metavar="KEY=env:NAME|file:/path",
    help="A credential by reference (repeat); never the secret itself.",
)
@click.option(
    "--webhook-secret-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="File holding the webhook secret (Vonage signature secret, Exotel/mCube URL token).",
)
@pass_ctx
def provider_add(
    ctx: _Context,
    name: str,
    provider_type: str,
    tenant_slug: str,
    priority: int,
    weight: int,
    is_default: bool,
    max_concurrent: int | None,
    config_pairs: tuple[str, ...],
    credential_pairs: tuple[str, ...],
    webhook_secret_file: Path | None,
) -> None:
    """Add provider NAME to a tenant. Credentials are references (env:NAME, file:/path)
    resolved by the engine when it reaches the carrier: a secret typed here would stay in
    the shell's history."""
    from engine.app.providers import AddProvider
    from engine.domain.providers import ProviderType

    credentials = _key_values("--credential", credential_pairs)
    for key, value in credentials.items():
        if not value.startswith(("env:", "file:")):
            raise click.BadParameter(
                f"{key}: give env:NAME or file:/path, not the secret itself",
                param_hint="--credential",
            )
    config = {k: _config_value(v) for k, v in _key_values("--config", config_pairs).items()}
    secret = None
    if webhook_secret_file is not None:
        secret = webhook_secret_file.read_text(encoding="utf-8").strip()
    request = AddProvider(
        name=name,
        provider_type=ProviderType(provider_type),
        is_default=is_default,
        priority=priority,
        weight=weight,
        max_concurrent_calls=max_concurrent,
        config=config,
        credentials=credentials,
        webhook_secret=secret,
    )

    async def work(app: Any) -> Any:
        tenant = await app.tenants.by_slug(tenant_slug)
        return await app.providers.create(tenant, request)

    added = _run(_with_use_cases(ctx.settings, work))
    click.echo(f"provider {added.name} {added.id} ({added.provider_type})")


@provider.command("list")
@click.option("--tenant", "tenant_slug", default="default", show_default=True, help="Tenant slug.")
@pass_ctx
def provider_list(ctx: _Context, tenant_slug: str) -> None:
    """The tenant's providers in the order failover tries them (priority, then name)."""

    async def work(app: Any) -> Any:
        return await app.providers.all(await app.tenants.by_slug(tenant_slug))

    click.echo("name\ttype\tactive\tdefault\tpriority\tweight\tmax_concurrent\tcredentials")
    for found in _run(_with_use_cases(ctx.settings, work)):
        click.echo(
            "\t".join(
                str(v)
                for v in (
                    found.name,
                    found.provider_type,
                    "yes" if found.is_active else "no",
                    "yes" if found.is_default else "no",
                    found.priority,
                    found.weight,
                    found.max_concurrent_calls or "-",
                    "set" if found.has_credentials else "none",
                )
            )
        )


@provider.command("disable")
@click.argument("name")
@click.option("--tenant", "tenant_slug", default="default", show_default=True, help="Tenant slug.")
@pass_ctx
def provider_disable(ctx: _Context, name: str, tenant_slug: str) -> None:
    """Stop placing calls through provider NAME (inactive, no longer the default); its
    calls in progress go on, and its webhooks are still served."""
    from engine.store.records import ProviderChanges

    async def work(app: Any) -> Any:
        tenant = await app.tenants.by_slug(tenant_slug)
        found = await app.providers.by_name(tenant, name)
        changes = ProviderChanges(is_active=False, is_default=False)
        return await app.providers.update(tenant, found.id, changes)

    disabled = _run(_with_use_cases(ctx.settings, work))
    click.echo(f"provider {disabled.name} disabled")


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


@token.command("list")
@click.option("--tenant", "tenant_slug", required=True, help="Tenant slug.")
@pass_ctx
def token_list(ctx: _Context, tenant_slug: str) -> None:
    """List TENANT's tokens (id, prefix, name, created, last used, revoked)."""

    async def listed(app: UseCases) -> Any:
        return await app.tenants.tokens(await app.tenants.by_slug(tenant_slug))

    tokens = _run(_with_use_cases(ctx.settings, listed))
    for info in tokens:
        click.echo(
            f"{info.id}  {info.prefix}…  {info.name or '-':<16} "
            f"created {_when(info.created_at)}  last used {_when(info.last_used_at)}"
            + (f"  REVOKED {_when(info.revoked_at)}" if info.revoked_at else "")
        )
    if not tokens:
        click.echo(f"no tokens for tenant {tenant_slug}")


@token.command("revoke")
@click.argument("token_id", type=click.UUID)
@click.option("--tenant", "tenant_slug", required=True, help="Tenant slug.")
@pass_ctx
def token_revoke(ctx: _Context, token_id: Any, tenant_slug: str) -> None:
    """Revoke token TOKEN_ID (an id from `ctc token list`) of TENANT.

    The running engine refuses it within 5 seconds (its tenant cache)."""

    async def revoke(app: UseCases) -> Any:
        return await app.tenants.revoke_token(await app.tenants.by_slug(tenant_slug), token_id)

    info = _run(_with_use_cases(ctx.settings, revoke))
    click.echo(f"token {info.id} ({info.prefix}…) revoked {_when(info.revoked_at)}")


def _when(at: datetime | None) -> str:
    return "never" if at is None else at.isoformat(timespec="seconds")


# -- callbacks ---------------------------------------------------------------------------------


@cli.group()
def callbacks() -> None:
    """Status callbacks to the ERP: list them, send failed ones again."""


@callbacks.command("list")
@click.option("--failed", is_flag=True, help="Only dead callbacks (retries exhausted).")
@click.option(
    "--state",
    "states",
    multiple=True,
    type=click.Choice(["pending", "delivered", "dead"]),
    help="Only these states (repeatable).",
)
@click.option("--tenant", "tenant_slug", default=None, help="Tenant slug (default: all).")
@click.option("--session", "session_id", type=click.UUID, default=None, help="One call's.")
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True)
@pass_ctx
def callbacks_list(
    ctx: _Context,
    failed: bool,
    states: tuple[str, ...],
    tenant_slug: str | None,
    session_id: Any,
    limit: int,
) -> None:
    """List callbacks, newest first: id, state, attempts, event, session, last error."""
    wanted = tuple(dict.fromkeys((*states, *(("dead",) if failed else ()))))

    async def listed(app: UseCases) -> Any:
        tenant = None if tenant_slug is None else await app.tenants.by_slug(tenant_slug)
        return await app.callbacks.listing(
            tenant, states=wanted, session_id=session_id, limit=limit
        )

    rows = _run(_with_use_cases(ctx.settings, listed))
    for row in rows:
        click.echo(
            f"{row.id:>8}  {row.state:<9} {row.attempts:>2}x  {row.event_type or '-':<20} "
            f"{row.session_id}  {_when(row.created_at)}  "
            + (row.last_error or (f"HTTP {row.last_status}" if row.last_status else ""))
        )
    if not rows:
        click.echo("no callbacks")


@callbacks.command("replay")
@click.argument("ids", nargs=-1, type=int)
@click.option("--all-failed", is_flag=True, help="Every dead callback (of --tenant, if given).")
@click.option("--tenant", "tenant_slug", default=None, help="Tenant slug (default: any).")
@pass_ctx
def callbacks_replay(
    ctx: _Context, ids: tuple[int, ...], all_failed: bool, tenant_slug: str | None
) -> None:
    """Send callbacks IDS (dead or delivered) again, or every dead one with --all-failed.

    They become pending with a fresh attempt count; the running engine sends them within
    a second, in order per call, with the same X-CTC-Event-Id (the ERP de-duplicates) and a
    fresh signature."""
    if not ids and not all_failed:
        raise click.UsageError("name callback ids (from `ctc callbacks list`) or --all-failed")

    async def replay(app: UseCases) -> Any:
        tenant = None if tenant_slug is None else await app.tenants.by_slug(tenant_slug)
        return await app.callbacks.replay(tenant, ids, all_dead=all_failed)

    rows = _run(_with_use_cases(ctx.settings, replay))
    missing = sorted(set(ids) - {row.id for row in rows})
    for row in rows:
        click.echo(f"{row.id:>8}  pending again  {row.event_type or '-':<20} {row.session_id}")
    click.echo(f"{len(rows)} callback(s) queued again", err=True)
    if missing:
        raise CtcError(
            "not replayed (unknown, of another tenant, or still pending): "
            + ", ".join(map(str, missing))
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
    """Manage IVR menus: YAML files described in docs/ivr/reference.md (every action and
    field, prompts, variables), with complete examples in docs/ivr/recipes/."""


def _menus_file(file: str) -> dict[str, IvrMenu]:
    """FILE's menus; its warnings (lines YAML drops as comments that look like keys) are
    printed as ``warn:`` lines first. ConfigError (ConfigErrors: every problem, in file
    order) names file:line: field."""
    from engine.ivr_yaml import load_menus_file, menu_warnings
    from engine.yaml_lines import read_text_file

    for warning in menu_warnings(read_text_file(Path(file), file, True), file=file):
        click.echo(f"warn: {warning}", err=True)
    return load_menus_file(file)


@ivr.command("validate")
@click.argument("file", type=click.Path(dir_okay=False))
def ivr_validate(file: str) -> None:
    """Check FILE without saving it: every problem, in file order, as file:line: field:
    reason (exit 1), and a warn: line for each line YAML ignores that looks like a key."""
    menus = _menus_file(file)
    click.echo(f"ok: {file}: {len(menus)} menu(s): {', '.join(menus)}", err=True)


@ivr.command("import")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--tenant", "tenant_slug", default="default", show_default=True)
@pass_ctx
def ivr_import(ctx: _Context, file: str, tenant_slug: str) -> None:
    """Validate FILE and create or replace its menus (by name); other menus stay."""
    from engine.errors import ConfigError, InvalidInput

    menus = _menus_file(file)  # ConfigError names file:line: field

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


# -- compliance and caller ID ------------------------------------------------------------------


@cli.group()
def compliance() -> None:
    """Number lists (blocklist, allowlist, dnc, vip), compliance rules, the pre-dial check."""


_TENANT_OPTION = click.option("--tenant", "tenant_slug", default="default", show_default=True)
_LISTS = click.Choice(["dnc", "blocklist", "allowlist", "vip"])


def _tenant_work(ctx: _Context, tenant_slug: str, work: Any) -> Any:
    async def run(app: UseCases) -> Any:
        return await work(app, await app.tenants.by_slug(tenant_slug))

    return _run(_with_use_cases(ctx.settings, run))


def _echo_entry(entry: Any) -> None:
    number = f"{entry.number}*" if entry.is_prefix else entry.number
    expires = f" until {entry.expires_at.isoformat()}" if entry.expires_at else ""
    reason = f" ({entry.reason})" if entry.reason else ""
    click.echo(f"{entry.id} {entry.list_type.value} {number}{expires}{reason}")


@compliance.command("import")
@click.argument("file", type=click.Path(dir_okay=False, exists=True))
@click.option("--list", "list_type", type=_LISTS, default=None, help="For rows without list_type.")
@_TENANT_OPTION
@pass_ctx
def compliance_import(ctx: _Context, file: str, list_type: str | None, tenant_slug: str) -> None:
    """Import list entries from CSV FILE (header: number and any of list_type, is_prefix,
    expires_at, reason): all or none; a bad row names FILE:line."""
    try:
        text = Path(file).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise click.FileError(file, str(exc)) from None
    stored = _tenant_work(
        ctx,
        tenant_slug,
        lambda app, t: app.compliance.import_csv(t, text, list_type=list_type, where=f"{file}:"),
    )
    click.echo(f"imported {len(stored)} entries into tenant {tenant_slug}")


@compliance.command("add")
@click.argument("number")
@click.option("--list", "list_type", type=_LISTS, required=True)
@click.option("--prefix", is_flag=True, help="NUMBER is a prefix (+1800): every number under it.")
@click.option("--expires", type=click.DateTime(["%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%d %H:%M:%S%z"]))
@click.option("--reason", default=None)
@_TENANT_OPTION
@pass_ctx
def compliance_add(
    ctx: _Context,
    number: str,
    list_type: str,
    prefix: bool,
    expires: datetime | None,
    reason: str | None,
    tenant_slug: str,
) -> None:
    """Put NUMBER (or a prefix) on a list."""
    from engine.app.compliance import NewListEntry

    new = NewListEntry(list_type, number, prefix, expires, reason, source="cli")
    for entry in _tenant_work(
        ctx, tenant_slug, lambda app, t: app.compliance.add_entries(t, [new])
    ):
        _echo_entry(entry)


@compliance.command("list")
@click.option("--list", "list_type", type=_LISTS, default=None)
@click.option("--number", default=None, help="Only the entries covering this number.")
@_TENANT_OPTION
@pass_ctx
def compliance_list(
    ctx: _Context, list_type: str | None, number: str | None, tenant_slug: str
) -> None:
    """The tenant's list entries, newest first (a prefix entry ends with *)."""
    found = _tenant_work(
        ctx, tenant_slug, lambda app, t: app.compliance.entries(t, list_type, number)
    )
    for entry in found:
        _echo_entry(entry)


@compliance.command("remove")
@click.argument("entry_id", type=click.UUID)
@_TENANT_OPTION
@pass_ctx
def compliance_remove(ctx: _Context, entry_id: Any, tenant_slug: str) -> None:
    """Remove list entry ENTRY_ID."""
    _tenant_work(ctx, tenant_slug, lambda app, t: app.compliance.remove_entry(t, entry_id))
    click.echo(f"removed {entry_id}")


def _echo_rule(rule: Any) -> None:
    state = "active" if rule.is_active else "inactive"
    window = ""
    if rule.allowed_start is not None:
        window = f" {rule.allowed_start:%H:%M}-{rule.allowed_end:%H:%M}"
    click.echo(
        f"{rule.id} {rule.name} {rule.rule_type.value} {rule.action.value} "
        f"priority {rule.priority} {state}{window}"
    )


@compliance.command("rule-add")
@click.argument("name")
@click.option(
    "--type",
    "rule_type",
    required=True,
    type=click.Choice(
        ["calling_hours", "dnc_check", "max_attempts", "consent_required", "country_block"]
    ),
)
@click.option("--start", default=None, help="calling_hours: HH:MM, the callee's local time.")
@click.option("--end", default=None, help="calling_hours: HH:MM (before --start: past midnight).")
@click.option("--days", default=None, help="ISO weekdays, e.g. 1,2,3,4,5 (1 = Monday).")
@click.option("--timezone", default=None, help="IANA zone (default: the callee number's).")
@click.option("--country", default=None, help="ISO country the rule applies to.")
@click.option("--max-attempts", type=click.IntRange(min=1), default=None)
@click.option("--action", type=click.Choice(["reject", "warn"]), default="reject")
@click.option("--priority", type=click.IntRange(min=0), default=100)
@click.option("--params", default=None, help='JSON object, e.g. {"lists": ["dnc"]}.')
@_TENANT_OPTION
@pass_ctx
def compliance_rule_add(
    ctx: _Context,
    name: str,
    rule_type: str,
    start: str | None,
    end: str | None,
    days: str | None,
    timezone: str | None,
    country: str | None,
    max_attempts: int | None,
    action: str,
    priority: int,
    params: str | None,
    tenant_slug: str,
) -> None:
    """Add compliance rule NAME."""
    try:
        day_list = [int(d) for d in days.split(",")] if days else None
    except ValueError:
        raise click.BadParameter("comma-separated numbers 1-7", param_hint="--days") from None
    if day_list is not None and not all(1 <= d <= 7 for d in day_list):
        raise click.BadParameter("ISO weekdays are 1-7", param_hint="--days")
    try:
        param_map = json.loads(params) if params else {}
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"not JSON: {exc}", param_hint="--params") from None
    if not isinstance(param_map, dict):
        raise click.BadParameter("a JSON object", param_hint="--params")
    fields = {
        "name": name,
        "rule_type": rule_type,
        "allowed_start": start,
        "allowed_end": end,
        "allowed_days": day_list,
        "timezone": timezone,
        "country_code": country,
        "max_attempts_per_day": max_attempts,
        "action": action,
        "priority": priority,
        "params": param_map,
    }
    _echo_rule(_tenant_work(ctx, tenant_slug, lambda app, t: app.compliance.create_rule(t, fields)))


@compliance.command("rules")
@_TENANT_OPTION
@pass_ctx
def compliance_rules(ctx: _Context, tenant_slug: str) -> None:
    """The tenant's compliance rules in evaluation order."""
    for rule in _tenant_work(ctx, tenant_slug, lambda app, t: app.compliance.rules(t)):
        _echo_rule(rule)


@compliance.command("rule-active")
@click.argument("rule_id", type=click.UUID)
@click.option("--on/--off", "active", required=True)
@_TENANT_OPTION
@pass_ctx
def compliance_rule_active(ctx: _Context, rule_id: Any, active: bool, tenant_slug: str) -> None:
    """Activate or deactivate rule RULE_ID (rules are never deleted)."""
    _echo_rule(
        _tenant_work(
            ctx, tenant_slug, lambda app, t: app.compliance.set_rule_active(t, rule_id, active)
        )
    )


@compliance.command("check")
@click.argument("number")
@_TENANT_OPTION
@pass_ctx
def compliance_check(ctx: _Context, number: str, tenant_slug: str) -> None:
    """What the pre-dial check says about NUMBER now, and the caller ID it would present."""
    normal, verdict, choice = _tenant_work(
        ctx, tenant_slug, lambda app, t: app.compliance.explain(t, number)
    )
    if verdict.refusal is None:
        click.echo(f"{normal}: allowed")
    else:
        click.echo(f"{normal}: rejected by {verdict.refusal.rule}: {verdict.refusal.reason}")
    for warning in verdict.warnings:
        click.echo(f"warning from {warning.rule}: {warning.reason}")
    if choice is not None:
        click.echo(f"caller ID {choice.number} (profile {choice.profile}: {choice.reason})")


@cli.group("caller-id")
def caller_id_group() -> None:
    """Caller-ID profiles: fixed, round-robin or local-presence pools with daily caps."""


def _echo_profile(p: Any) -> None:
    pool = f" pool {','.join(p.pool)}" if p.pool else ""
    state = "active" if p.is_active else "inactive"
    click.echo(f"{p.id} {p.name} {p.rotation.value} {p.caller_id}{pool} {state}")


@caller_id_group.command("add")
@click.argument("name")
@click.option("--caller-id", required=True, help="Presented for fixed, and when the pool has none.")
@click.option(
    "--rotation", type=click.Choice(["fixed", "round_robin", "local_presence"]), default="fixed"
)
@click.option("--pool", multiple=True, help="A number of the pool; repeat for several.")
@click.option("--match-prefix", default=None, help="Only for callee numbers starting with it.")
@click.option("--priority", type=click.IntRange(min=0), default=100)
@click.option("--default", "is_default", is_flag=True, help="The tenant's default profile.")
@click.option("--daily-cap", type=click.IntRange(min=1), default=None)
@_TENANT_OPTION
@pass_ctx
def caller_id_add(
    ctx: _Context,
    name: str,
    caller_id: str,
    rotation: str,
    pool: tuple[str, ...],
    match_prefix: str | None,
    priority: int,
    is_default: bool,
    daily_cap: int | None,
    tenant_slug: str,
) -> None:
    """Add caller-ID profile NAME."""
    fields = {
        "name": name,
        "caller_id": caller_id,
        "rotation": rotation,
        "pool": list(pool),
        "match_prefix": match_prefix,
        "priority": priority,
        "is_default": is_default,
        "daily_cap": daily_cap,
    }
    _echo_profile(
        _tenant_work(ctx, tenant_slug, lambda app, t: app.compliance.create_profile(t, fields))
    )


@caller_id_group.command("list")
@_TENANT_OPTION
@pass_ctx
def caller_id_list(ctx: _Context, tenant_slug: str) -> None:
    """The tenant's caller-ID profiles."""
    for profile in _tenant_work(ctx, tenant_slug, lambda app, t: app.compliance.profiles(t)):
        _echo_profile(profile)


# -- billing and stats -------------------------------------------------------------------------


def _instant(value: str, option: str) -> datetime:
    """An ISO 8601 date or date and time; a bare date or time without a zone is UTC."""
    from datetime import UTC

    from engine.errors import InvalidInput

    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidInput(option, f"{value!r} is not an ISO 8601 date or date and time") from None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


@cli.group()
def billing() -> None:
    """Rate cards, billing lines, rerating and the monthly export."""


@billing.group("rates")
def billing_rates() -> None:
    """A tenant's rate cards (CSV, see engine/rate_cards.py)."""


@billing_rates.command("import")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--tenant", "tenant_slug", default="default", show_default=True)
@pass_ctx
def billing_rates_import(ctx: _Context, file: str, tenant_slug: str) -> None:
    """Add the cards of the CSV FILE (all or none; a bad cell names FILE:line: column)."""
    from engine.errors import ConfigError

    try:
        text = Path(file).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read: {exc}", file=file) from None

    async def save(app: UseCases) -> int:
        tenant = await app.tenants.by_slug(tenant_slug)
        return await app.billing.import_rates(tenant, text, source=file)

    count: int = _run(_with_use_cases(ctx.settings, save))
    click.echo(f"imported {count} rate card(s) into tenant {tenant_slug}")


@billing_rates.command("list")
@click.option("--tenant", "tenant_slug", default="default", show_default=True)
@click.option("--at", default=None, help="Only the cards effective then (ISO 8601).")
@click.option("--ids", is_flag=True, help="Each card's id first (for update and end).")
@pass_ctx
def billing_rates_list(ctx: _Context, tenant_slug: str, at: str | None, ids: bool) -> None:
    """Print the tenant's cards as CSV (what `ctc billing rates import` reads; with --ids,
    what `update` and `end` name)."""
    from engine.rate_cards import dump_rates

    when = _instant(at, "--at") if at else None

    async def load(app: UseCases) -> str:
        tenant = await app.tenants.by_slug(tenant_slug)
        rates = await app.billing.rates(tenant, at=when)
        return dump_rates(rates, await app.billing.provider_names(tenant), ids=ids)

    click.echo(_run(_with_use_cases(ctx.settings, load)), nl=False)


def _rate_id(value: str) -> uuid.UUID:
    from engine.errors import InvalidInput

    try:
        return uuid.UUID(value)
    except ValueError:
        raise InvalidInput("RATE_ID", f"{value!r} is not a card id (`rates list --ids`)") from None


@billing_rates.command("update")
@click.argument("rate_id")
@click.option(
    "--set",
    "settings_",
    multiple=True,
    metavar="COLUMN=VALUE",
    help="A rate deck column and its new value (repeat for several; an empty value is "
    "the column's default).",
)
@click.option(
    "--as-of",
    default=None,
    help="The change starts then (ISO 8601): the card "
    "ends at it and a new card with the changes begins.",
)
@click.option("--tenant", "tenant_slug", default="default", show_default=True)
@pass_ctx
def billing_rates_update(
    ctx: _Context, rate_id: str, settings_: tuple[str, ...], as_of: str | None, tenant_slug: str
) -> None:
    """Change card RATE_ID: price, currency, pulse, fees, priority, name or dates. Without
    --as-of the card is corrected in place; run `ctc billing rerate` to charge the legs it
    rated again."""
    from engine.errors import InvalidInput

    card = _rate_id(rate_id)
    changes: dict[str, str] = {}
    for item in settings_:
        column, sep, value = item.partition("=")
        if not sep or not column.strip():
            raise InvalidInput("--set", f"{item!r} is not COLUMN=VALUE")
        changes[column.strip()] = value
    since = _instant(as_of, "--as-of") if as_of else None

    async def go(app: UseCases) -> Any:
        tenant = await app.tenants.by_slug(tenant_slug)
        return await app.billing.update_rate(tenant, card, changes, as_of=since)

    rate = _run(_with_use_cases(ctx.settings, go))
    if since is None:
        click.echo(f"updated rate card {rate.id}")
    else:
        click.echo(f"rate card {card} ends at {since.isoformat()}; new card {rate.id} from then")


@billing_rates.command("end")
@click.argument("rate_id")
@click.option("--at", default=None, help="When it stops rating legs (ISO 8601; default now).")
@click.option("--tenant", "tenant_slug", default="default", show_default=True)
@pass_ctx
def billing_rates_end(ctx: _Context, rate_id: str, at: str | None, tenant_slug: str) -> None:
    """End card RATE_ID (cards are never deleted: billing lines name them). A card already
    ended by then is left as it is."""
    from datetime import UTC

    card = _rate_id(rate_id)
    when = _instant(at, "--at") if at else datetime.now(UTC)

    async def go(app: UseCases) -> Any:
        tenant = await app.tenants.by_slug(tenant_slug)
        return await app.billing.end_rate(tenant, card, when)

    rate = _run(_with_use_cases(ctx.settings, go))
    ended = rate.effective_to.isoformat() if rate.effective_to else "never"
    click.echo(f"rate card {rate.id} ends at {ended}")


# -- routing rules -----------------------------------------------------------------------------


@cli.group()
def routing() -> None:
    """Manage routing rules (YAML files, see engine/routing_yaml.py) and explain decisions."""


@routing.command("import")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--tenant", "tenant_slug", default="default", show_default=True)
@pass_ctx
def routing_import(ctx: _Context, file: str, tenant_slug: str) -> None:
    """Validate FILE and create or replace its rules (by name) and settings; other rules
    stay."""
    from engine.errors import InvalidInput
    from engine.routing_yaml import load_rules_file

    document = load_rules_file(file)  # ConfigError names file:line: field

    async def save(app: UseCases) -> dict[str, Any]:
        tenant = await app.tenants.by_slug(tenant_slug)
        try:
            return await app.routing.import_document(tenant, document)
        except InvalidInput as exc:  # a menu, provider or fallback the tenant does not have
            raise document.error(exc.reason, f"rules.{exc.field}") from None

    saved: dict[str, Any] = _run(_with_use_cases(ctx.settings, save))
    listed = ", ".join(f"{n} ({'new' if new else 'replaced'})" for n, (_, new) in saved.items())
    settings = " and its settings" if document.settings is not None else ""
    click.echo(f"imported {len(saved)} rule(s){settings} into tenant {tenant_slug}: {listed}")


@routing.command("export")
@click.option("--tenant", "tenant_slug", default="default", show_default=True)
@pass_ctx
def routing_export(ctx: _Context, tenant_slug: str) -> None:
    """Print the tenant's settings and rules as YAML that `ctc routing import` reads."""
    from engine.routing_yaml import dump_rules

    async def load(app: UseCases) -> str:
        tenant = await app.tenants.by_slug(tenant_slug)
        rules = {r.name: r for r in await app.routing.rules(tenant)}
        return dump_rules(rules, await app.routing.settings(tenant))

    click.echo(_run(_with_use_cases(ctx.settings, load)), nl=False)


@billing.command("rerate")
@click.option("--from", "since", required=True, help="Calls that ended at or after (ISO 8601).")
@click.option("--to", "until", required=True, help="...and before (ISO 8601).")
@click.option("--tenant", "tenant_slug", default=None, help="One tenant (default: every one).")
@pass_ctx
def billing_rerate(ctx: _Context, since: str, until: str, tenant_slug: str | None) -> None:
    """Rate the answered calls that ended in [--from, --to) again at today's cards: missing
    lines are written, changed ones rewritten, invoiced ones left. Safe to run again."""
    start, end = _instant(since, "--from"), _instant(until, "--to")

    async def go(app: UseCases) -> Any:
        tenant = await app.tenants.by_slug(tenant_slug) if tenant_slug else None
        return await app.billing.rerate(start, end, tenant=tenant)

    report = _run(_with_use_cases(ctx.settings, go))
    lines = report.lines
    click.echo(
        f"rerated {report.sessions} call(s): {lines.inserted} line(s) added, "
        f"{lines.changed} changed, {lines.unchanged} unchanged, {lines.invoiced} invoiced (kept)"
    )


@billing.command("export")
@click.option("--tenant", "tenant_slug", default="default", show_default=True)
@click.option("--month", required=True, help="YYYY-MM (UTC): lines of legs that ended then.")
@click.option("--output", "-o", default=None, type=click.Path(dir_okay=False), help="File.")
@pass_ctx
def billing_export(ctx: _Context, tenant_slug: str, month: str, output: str | None) -> None:
    """The tenant's billing lines of MONTH as CSV (to stdout, or --output)."""

    async def go(app: UseCases) -> str:
        tenant = await app.tenants.by_slug(tenant_slug)
        return await app.billing.export(tenant, month)

    text: str = _run(_with_use_cases(ctx.settings, go))
    if output is None:
        click.echo(text, nl=False)
        return
    Path(output).write_text(text, encoding="utf-8")
    click.echo(f"wrote {text.count(chr(10)) - 1} line(s) to {output}", err=True)


@cli.command("stats")
@click.option("--tenant", "tenant_slug", default="default", show_default=True)
@click.option("--from", "since", default=None, help="Calls created at or after (ISO 8601).")
@click.option("--to", "until", default=None, help="...and before (ISO 8601).")
@click.option("--agent", "agent_id", default=None, help="One agent's calls (agent_id).")
@click.option("--timezone", default=None, help="IANA zone of the buckets (default: tenant's).")
@click.option("--bucket", type=click.Choice(["hour", "day"]), default="day", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the API's JSON answer.")
@pass_ctx
def stats(
    ctx: _Context,
    tenant_slug: str,
    since: str | None,
    until: str | None,
    agent_id: str | None,
    timezone: str | None,
    bucket: str,
    as_json: bool,
) -> None:
    """A manager's report of a period: counts by status, answer rate (ASR), ring time, talk
    time (ACD), by agent, provider, direction and hour or day; cost and MOS."""
    from engine.api.routes.common import stats_out

    start = _instant(since, "--from") if since else None
    end = _instant(until, "--to") if until else None

    async def go(app: UseCases) -> Any:
        tenant = await app.tenants.by_slug(tenant_slug)
        return await app.stats.report(
            tenant,
            created_after=start,
            created_before=end,
            agent_id=agent_id,
            timezone=timezone,
            bucket=bucket,
        )

    out = stats_out(_run(_with_use_cases(ctx.settings, go)), bucket)
    if as_json:
        click.echo(out.model_dump_json(indent=2))
        return
    for line in _stats_lines(out):
        click.echo(line)


def _pct(rate: float | None) -> str:
    return "-" if rate is None else f"{rate * 100:.1f}%"


def _secs(ms: int | None) -> str:
    return "-" if ms is None else f"{ms / 1000:.1f}s"


def _stats_lines(out: Any) -> list[str]:
    lines = [
        f"calls {out.total}  live {out.live}  connected {out.connected}  "
        f"ASR {_pct(out.connect_rate)}  avg ring {_secs(out.avg_ring_ms)}  "
        f"ACD {_secs(out.avg_talk_ms)}  talk {_secs(out.total_talk_ms)}",
        "by status: " + (", ".join(f"{k} {v}" for k, v in sorted(out.by_status.items())) or "-"),
    ]
    sections = (
        ("agent", out.by_agent),
        ("provider", out.by_provider),
        ("direction", out.by_direction),
        (f"{out.bucket} ({out.timezone})", out.buckets),
    )
    for title, groups in sections:
        lines.append(f"by {title}:")
        for g in groups:
            lines.append(
                f"  {g.key or '-':<32} calls {g.total:>7}  ASR {_pct(g.connect_rate):>6}  "
                f"ring {_secs(g.avg_ring_ms):>7}  ACD {_secs(g.avg_talk_ms):>7}"
            )
    cost = ", ".join(f"{c.amount_minor} {c.currency} ({c.legs} legs)" for c in out.cost)
    lines.append(f"cost (minor units): {cost or '-'}")
    mos = "-" if out.avg_mos is None else f"{out.avg_mos:.2f} over {out.mos_legs} legs"
    lines.append(f"average MOS: {mos}")
    return lines


@routing.command("explain")
@click.option("--number", default=None, help="The number called (E.164), also the DID.")
@click.option("--caller", default=None, help="The caller's number (E.164).")
@click.option("--dialed", default=None, help="The DID or extension dialled (default --number).")
@click.option("--ivr-choice", default=None, help="The caller's IVR input.")
@click.option("--skill", "skills", multiple=True, help="A skill the call needs (repeatable).")
@click.option(
    "--direction",
    type=click.Choice(["inbound", "outbound", "click_to_call"]),
    default="inbound",
    show_default=True,
)
@click.option(
    "--at",
    "at_text",
    default=None,
    help="When (ISO 8601; without an offset: the tenant's local time). Default: now.",
)
@click.option("--tenant", "tenant_slug", default="default", show_default=True)
@pass_ctx
def routing_explain(
    ctx: _Context,
    number: str | None,
    caller: str | None,
    dialed: str | None,
    ivr_choice: str | None,
    skills: tuple[str, ...],
    direction: str,
    at_text: str | None,
    tenant_slug: str,
) -> None:
    """Print the rule a call would follow and what it would ring now; nothing is placed."""
    from datetime import UTC

    from engine.app.routing_rules import Explanation
    from engine.domain.routing import plan_summary
    from engine.domain.routing_rules import CallFacts
    from engine.domain.schedule import at_local
    from engine.errors import InvalidInput

    when: datetime | None = None
    if at_text is not None:
        try:
            when = datetime.fromisoformat(at_text)
        except ValueError:
            raise InvalidInput("--at", f"not an ISO 8601 time: {at_text!r}") from None
    for option, value in (("--number", number), ("--caller", caller)):
        if value is not None and not value.startswith("+"):
            raise InvalidInput(option, "an E.164 number: '+' and digits")

    async def explain(app: UseCases) -> Explanation:
        tenant = await app.tenants.by_slug(tenant_slug)
        zone = (await app.routing.settings(tenant)).time_zone
        facts = CallFacts(
            at=at_local(when, zone) if when is not None else datetime.now(UTC),
            direction=direction,
            caller=caller,
            callee=number,
            dialed=dialed or number,
            ivr_choice=ivr_choice,
            skills=frozenset(skills),
        )
        return await app.routing.explain(tenant, facts)

    explained: Explanation = _run(_with_use_cases(ctx.settings, explain))
    click.echo(f"at {explained.facts.at.isoformat()} ({explained.time_zone})")
    for verdict in explained.decision.considered:
        mark = "MATCH" if verdict.applies else "skip "
        click.echo(f"  {mark} {verdict.rule} (priority {verdict.priority}): {verdict.why}")
    click.echo(explained.decision.reason)
    if explained.plan is not None:
        click.echo(f"plan: {plan_summary(explained.plan)}")


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


@cli.group()
def transcripts() -> None:
    """Offline transcripts of recorded calls (per tenant; off by default)."""


@transcripts.command("enable")
@click.argument("slug")
@pass_ctx
def transcripts_enable(ctx: _Context, slug: str) -> None:
    """Transcribe tenant SLUG's recordings that end from now on."""
    _run(_with_use_cases(ctx.settings, lambda app: app.transcripts.set_enabled(slug, True)))
    click.echo(f"transcripts on for tenant {slug}")


@transcripts.command("disable")
@click.argument("slug")
@pass_ctx
def transcripts_disable(ctx: _Context, slug: str) -> None:
    """Stop queuing tenant SLUG's recordings (what is queued is still transcribed)."""
    _run(_with_use_cases(ctx.settings, lambda app: app.transcripts.set_enabled(slug, False)))
    click.echo(f"transcripts off for tenant {slug}")


@transcripts.command("show")
@click.argument("session_id")
@click.option("--json", "as_json", is_flag=True, help="Print the raw JSON, words included.")
@_client_options
@pass_ctx
def transcripts_show(
    ctx: _Context,
    session_id: str,
    as_json: bool,
    socket_path: str | None,
    tenant_slug: str | None,
) -> None:
    """Print SESSION_ID's transcript (asks the running engine)."""
    from engine.api.client import ControlClient

    async def go() -> Any:
        async with ControlClient(_socket(ctx, socket_path), tenant=tenant_slug) as client:
            path = f"/api/v1/click-to-call/sessions/{session_id}/transcript"
            _, data = await client.request("GET", path)
            return data

    data = _run(go())
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    click.echo(f"{data['state']} ({data.get('backend') or '-'}): {data.get('text') or ''}")
    if data.get("last_error"):
        click.echo(f"last error: {data['last_error']}")


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


# -- nodes -------------------------------------------------------------------------------------


@cli.command("nodes")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per node.")
@pass_ctx
def nodes(ctx: _Context, as_json: bool) -> None:
    """List the engines that share the database: state, last heartbeat, live calls, capacity,
    queued calls each claimed and has not dialled, and the calls no engine claimed yet.

    A node is alive while it beats (every node.heartbeat_interval seconds), stale when its
    last beat is older than node.stale_after seconds, stopped after a graceful stop.
    """
    from engine.app.nodes import NodeService
    from engine.store.claims import ClaimRepository
    from engine.store.database import Database
    from engine.store.nodes import NodeRepository

    settings = ctx.settings

    async def listing() -> Any:
        async with Database(settings.database.url, min_size=1, max_size=1) as database:
            service = NodeService(
                NodeRepository(database),
                ClaimRepository(database),
                stale_after=settings.node.stale_after,
            )
            return await service.list(), await service.unclaimed()

    rows, unclaimed = _run(listing())
    if as_json:
        for row in rows:
            node = row.node
            record = {
                "node": node.name,
                "state": row.state.value,
                "heartbeat_age_s": round(node.heartbeat_age, 1),
                "live_calls": node.live_calls,
                "max_calls": node.max_calls,
                "claimed_calls": row.claimed,
                "unclaimed_calls": unclaimed,
                "asterisk": node.asterisk,
                "version": node.version,
                "host": node.host,
                "pid": node.pid,
                "started_at": node.started_at.isoformat(),
                "stopped_at": None if node.stopped_at is None else node.stopped_at.isoformat(),
            }
            click.echo(json.dumps(record))
        return
    if not rows:
        click.echo("no node has registered (an engine registers once its database is up)")
        return
    click.echo(
        f"{'NODE':<20} {'STATE':<8} {'LAST BEAT':>9} {'LIVE':>5} {'MAX':>5} {'CLAIMED':>7} "
        f"{'ASTERISK':<9} {'VERSION':<8} {'HOST':<20} {'PID':>7}  STARTED"
    )
    for row in rows:
        node = row.node
        capacity = "-" if node.max_calls is None else str(node.max_calls)
        click.echo(
            f"{node.name:<20} {row.state.value:<8} {node.heartbeat_age:>8.0f}s "
            f"{node.live_calls:>5} {capacity:>5} {row.claimed:>7} {node.asterisk:<9} "
            f"{node.version:<8} {node.host:<20} {node.pid:>7}  "
            f"{node.started_at.isoformat(timespec='seconds')}"
        )
    click.echo(f"queued, not claimed by any node: {unclaimed}")


# -- sandbox -----------------------------------------------------------------------------------


@cli.group()
def sandbox() -> None:
    """The sandbox Asterisk 22 (a Debian sid chroot) for development and tests; needs root."""


_INSTANCE_HELP = "a named sandbox instance (default: the sandbox on 127.0.0.1)"


@sandbox.command("up")
@click.option("--instance", default="default", show_default=True, help=_INSTANCE_HELP)
@click.option(
    "--address",
    default=None,
    help="a named instance's loopback address, e.g. 127.0.0.3 (ARI, AMI and SIP on their "
    "standard ports there)",
)
def sandbox_up(instance: str, address: str | None) -> None:
    """Build (once, cached) and start the sandbox; wait until ARI answers."""
    import time

    from engine.devtools.sandbox import Sandbox

    started = time.monotonic()
    box = Sandbox(instance=instance, address=address)
    status = box.up()
    click.echo(
        f"sandbox {instance} up on {box.address}: Asterisk {status.version} pid {status.pid}, "
        f"root {status.root} ({time.monotonic() - started:.1f} s)"
    )


@sandbox.command("down")
@click.option("--instance", default="default", show_default=True, help=_INSTANCE_HELP)
@click.option("--all", "every", is_flag=True, help="the default sandbox and every instance")
def sandbox_down(instance: str, every: bool) -> None:
    """Stop the sandbox Asterisk and unmount what it mounted (harmless when down)."""
    from engine.devtools.sandbox import DEFAULT_INSTANCE, Sandbox, instance_names

    for name in [DEFAULT_INSTANCE, *instance_names()] if every else [instance]:
        Sandbox(instance=name).down()
        click.echo(f"sandbox {name} down")


@sandbox.command("status")
@click.option("--instance", default="default", show_default=True, help=_INSTANCE_HELP)
@click.option("--all", "every", is_flag=True, help="the default sandbox and every instance")
def sandbox_status(instance: str, every: bool) -> None:
    """Say whether the sandbox runs and ARI answers."""
    from engine.devtools.sandbox import DEFAULT_INSTANCE, Sandbox, instance_names

    for name in [DEFAULT_INSTANCE, *instance_names()] if every else [instance]:
        box = Sandbox(instance=name)
        status = box.status()
        if status.running:
            click.echo(
                f"{name}: running on {box.address}: pid {status.pid}, "
                f"ARI {'ok' if status.ari_ok else 'not answering'}, "
                f"Asterisk {status.version}, root {status.root}"
            )
        else:
            click.echo(f"{name}: not running")


def main() -> None:
    cli(prog_name="ctc")
