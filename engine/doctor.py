"""``ctc doctor``: what in this host's Asterisk, database or config stops the engine.

Two halves, so the judging is unit-testable without Asterisk:

- :func:`gather` asks the real world with the configured settings and returns plain
  :class:`Facts`: ARI (``GET /ari/asterisk/info``, ``GET /ari/applications``,
  ``GET /ari/asterisk/modules/{name}.so``, ``GET /ari/endpoints/PJSIP/{endpoint}`` and its
  ``send_pai`` from ``GET /ari/asterisk/config/dynamic/res_pjsip/endpoint/{endpoint}`` for
  every active ``sip_trunk`` provider's trunk), AMI (login, ``ModuleCheck`` when ARI cannot
  answer), the database (reachable, migrations current, stored secrets encrypted under
  the primary key) and the recording directory;
- :func:`judge` turns facts into :class:`Check` lines, pure: ``ok   …``, ``warn …`` (the
  engine would still run) or ``FAIL …: how to fix``, naming the file and setting to change.

``ctc doctor`` prints every line and exits 1 if any is a FAIL.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import aiohttp

from engine.asterisk.links.ami import AmiLink, AmiLoginError, AmiResponseError
from engine.asterisk.links.ari import basic_auth
from engine.config.settings import AmiSettings, AriSettings, Settings, redacted_summary
from engine.domain.providers import ProviderType
from engine.domain.sip_trunk import parse_sip_trunk_config
from engine.errors import AmiError, CtcError, InvalidInput, describe
from engine.secrets import NO_KEY_HINT
from engine.store.compliance import CallerIdProfileRepository
from engine.store.database import Database
from engine.store.migrations import default_migrations_dir, migration_status
from engine.store.providers import ProviderRepository
from engine.store.stored_secrets import StoredSecrets

__all__ = [
    "REQUIRED_MODULES",
    "AmiFacts",
    "AriFacts",
    "CallerIdFacts",
    "Check",
    "DatabaseFacts",
    "DirFacts",
    "Facts",
    "ModuleFacts",
    "SecretsFacts",
    "TrunkFacts",
    "gather",
    "judge",
    "judge_caller_id",
    "run_doctor",
    "trunk_endpoint",
]

#: Asterisk modules the engine cannot work without (names without ``.so``).
REQUIRED_MODULES: tuple[str, ...] = (
    "res_ari",
    "res_stasis",
    "res_ari_channels",
    "res_ari_bridges",
    "res_ari_recordings",
    "app_stasis",
    "chan_pjsip",
    "res_agi",
    "res_musiconhold",
)

Level = Literal["ok", "warn", "fail"]
_LABELS: dict[Level, str] = {"ok": "ok", "warn": "warn", "fail": "FAIL"}


@dataclass(frozen=True, slots=True)
class Check:
    level: Level
    text: str

    @property
    def failed(self) -> bool:
        return self.level == "fail"

    @property
    def line(self) -> str:
        return f"{_LABELS[self.level]:<4} {self.text}"


# ----------------------------------------------------------------------------- facts


@dataclass(frozen=True, slots=True)
class DatabaseFacts:
    url: str  # password masked
    error: str | None = None
    applied: int = 0
    pending: tuple[str, ...] = ()  # file names
    changed: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class SecretsFacts:
    primary_id: str | None  # None: no key configured
    not_current: Mapping[str, int]  # table.column -> values in plaintext or under an old key


@dataclass(frozen=True, slots=True)
class AriFacts:
    url: str
    username: str
    app: str
    password_set: bool
    error: str | None = None  # no HTTP answer at all (refused, timeout, DNS)
    status: int | None = None  # of GET /asterisk/info
    message: str | None = None  # ARI's error message, when status is not 200
    version: str | None = None
    apps: tuple[str, ...] | None = None  # registered Stasis apps; None: unknown


@dataclass(frozen=True, slots=True)
class AmiFacts:
    where: str  # host:port
    username: str
    password_set: bool
    error: str | None = None
    login_refused: bool = False  # connected, but Asterisk refused the login
    hangup_handler: str = ""  # calls.hangup_handler ("" = off)
    handler_found: bool | None = None  # its dialplan location exists; None: unknown


@dataclass(frozen=True, slots=True)
class ModuleFacts:
    source: Literal["ARI", "AMI"]
    loaded: Mapping[str, bool]  # module -> loaded; a module absent here is unknown


@dataclass(frozen=True, slots=True)
class DirFacts:
    path: Path
    exists: bool
    is_dir: bool
    writable: bool


@dataclass(frozen=True, slots=True)
class CallerIdFacts:
    """Whether the trunk presents a caller-ID profile's choice as P-Asserted-Identity."""

    profiles: int  # the tenants' active caller-ID profiles
    endpoint: str | None  # the PJSIP endpoint calls.customer_endpoint_template dials
    send_pai: bool | None = None  # its send_pai; None: not known (ARI could not say)


@dataclass(frozen=True, slots=True)
class TrunkFacts:
    """An active ``sip_trunk`` provider and whether its PJSIP endpoint is on the Asterisk."""

    provider: str  # name
    tenant_id: str
    endpoint: str | None  # None: the config is not usable (``error`` says why)
    error: str | None = None
    exists: bool | None = None  # None: ARI could not say
    send_pai: bool | None = None  # the endpoint's send_pai; None: ARI could not say
    caller_id_profiles: bool = False  # the tenant has active caller-ID profiles


@dataclass(frozen=True, slots=True)
class Facts:
    database: DatabaseFacts
    ari: AriFacts | None = None  # None: ari.enabled is false
    ami: AmiFacts | None = None  # None: not used (ari or ami disabled)
    modules: ModuleFacts | None = None  # None: neither ARI nor AMI could answer
    recording_dir: DirFacts | None = None
    secrets: SecretsFacts | None = None  # None: not checked (the database is not usable)
    caller_id: CallerIdFacts | None = None  # None: not checked (no ARI, or no database)
    trunks: tuple[TrunkFacts, ...] | None = None  # None: not checked (database or ARI)


# ----------------------------------------------------------------------------- judging


def judge(facts: Facts) -> list[Check]:
    """Every check's line, in a fixed order: database, stored secrets, ARI, Stasis app,
    modules, recording directory, AMI, sip_trunk providers' endpoints."""
    out = judge_database(facts.database)
    if facts.secrets is not None:
        out += judge_secrets(facts.secrets)
    if facts.ari is None:
        out.append(Check("ok", "ARI disabled (ari.enabled: false): Asterisk not checked"))
        return out
    out += judge_ari(facts.ari)
    out += judge_modules(facts.modules)
    if facts.recording_dir is not None:
        out += judge_recording_dir(facts.recording_dir)
    if facts.caller_id is not None:
        out += judge_caller_id(facts.caller_id)
    if facts.ami is None:
        out.append(Check("ok", "AMI not used (ami.enabled: false)"))
    else:
        out += judge_ami(facts.ami)
    if facts.trunks is not None:
        out += judge_trunks(facts.trunks)
    return out


def judge_trunks(trunks: tuple[TrunkFacts, ...]) -> list[Check]:
    out: list[Check] = []
    for t in trunks:
        which = f"sip_trunk provider {t.provider} (tenant {t.tenant_id})"
        if t.endpoint is None:
            out.append(
                Check("fail", f"{which}: {t.error}: fix its config (calls skip this provider)")
            )
        elif t.exists is None:
            out.append(
                Check("warn", f"{which}: ARI could not say whether PJSIP/{t.endpoint} exists")
            )
        elif t.exists:
            out.append(Check("ok", f"{which}: PJSIP endpoint {t.endpoint} exists"))
            if t.send_pai is False and t.caller_id_profiles:
                out.append(
                    Check(
                        "warn",
                        f"{which}: PJSIP endpoint {t.endpoint} has send_pai = no while the "
                        "tenant has caller-ID profiles: the chosen caller ID goes out as From "
                        f"only; pjsip.conf [{t.endpoint}]: send_pai = yes if the carrier "
                        "reads P-Asserted-Identity",
                    )
                )
        else:
            out.append(
                Check(
                    "fail",
                    f"{which}: no PJSIP endpoint {t.endpoint} on the Asterisk: pjsip.conf: add "
                    f"[{t.endpoint}] (type = endpoint, with its aor and identify), or fix the "
                    "provider's config.endpoint; until then its calls go to the next trunk",
                )
            )
    return out


def judge_database(db: DatabaseFacts) -> list[Check]:
    if db.error is not None:
        return [
            Check(
                "fail",
                f"database {db.url}: {db.error}: check database.url (or CTC_DATABASE_URL) "
                "and that PostgreSQL runs and accepts this user",
            )
        ]
    if db.changed:
        return [
            Check(
                "fail",
                f"database schema: applied migration(s) changed on disk: {', '.join(db.changed)}:"
                " restore the original files; changes go in a new migration",
            )
        ]
    if db.pending:
        return [
            Check(
                "fail",
                f"database schema: {len(db.pending)} migration(s) pending "
                f"({', '.join(db.pending)}): run `ctc db migrate`",
            )
        ]
    return [Check("ok", f"database {db.url}: reachable, schema current ({db.applied} migrations)")]


def judge_secrets(s: SecretsFacts) -> list[Check]:
    stale = {column: n for column, n in s.not_current.items() if n}
    listed = ", ".join(f"{column}: {n}" for column, n in stale.items())
    if s.primary_id is None:
        where = f" ({listed} stored in plaintext)" if stale else ""
        return [
            Check(
                "warn",
                f"{NO_KEY_HINT}, then run `ctc secrets rotate`{where}; until then provider "
                "credentials cannot be stored",
            )
        ]
    if stale:
        return [
            Check(
                "warn",
                f"stored secrets not encrypted under the primary key {s.primary_id} ({listed}):"
                " run `ctc secrets rotate`",
            )
        ]
    return [Check("ok", f"stored secrets encrypted under the primary key {s.primary_id}")]


def judge_ari(ari: AriFacts) -> list[Check]:
    where = f"ARI {ari.url}"
    if ari.error is not None:
        return [
            Check(
                "fail",
                f"{where} unreachable ({ari.error}): http.conf: enabled=yes and "
                "bindaddr/bindport must match ari.url; is Asterisk running?",
            )
        ]
    if ari.status == 401:
        unset = " (ari.password is not set)" if not ari.password_set else ""
        return [
            Check(
                "fail",
                f"{where}: 401 Unauthorized{unset}: ari.conf: user {ari.username} missing or "
                "wrong password (ari.password, CTC_ARI_PASSWORD or password_file must hold "
                f"the password of ari.conf [{ari.username}])",
            )
        ]
    if ari.status == 404:
        return [
            Check(
                "fail",
                f"{where}: 404, no ARI there: ari.conf: [general] enabled=yes, and res_ari "
                "loaded (modules.conf: require = res_ari.so); check the path in ari.url",
            )
        ]
    if ari.status == 503:
        return [
            Check(
                "fail",
                f"{where}: {ari.message or 'Asterisk not booted'}: Asterisk is still starting; "
                "run `ctc doctor` again in a few seconds",
            )
        ]
    if ari.status != 200:
        return [
            Check(
                "fail",
                f"{where}: HTTP {ari.status} {ari.message or ''}".rstrip()
                + ": check http.conf and ari.conf",
            )
        ]
    out = [Check("ok", f"{where}: Asterisk {ari.version or '?'}, user {ari.username}")]
    if ari.apps is None:
        out.append(Check("warn", f"Stasis app {ari.app}: could not list ARI applications"))
    elif ari.app in ari.apps:
        out.append(Check("ok", f"Stasis app {ari.app} registered (the engine is connected)"))
    else:
        out.append(
            Check(
                "warn",
                f"app {ari.app} not registered: is `ctc run` running? "
                f"(Stasis({ari.app},…) in dialplan fails until it is)",
            )
        )
    return out


def judge_modules(modules: ModuleFacts | None) -> list[Check]:
    if modules is None:
        return [Check("warn", "Asterisk modules not checked: neither ARI nor AMI let us in")]
    out: list[Check] = []
    unknown = [m for m in REQUIRED_MODULES if m not in modules.loaded]
    missing = [m for m in REQUIRED_MODULES if modules.loaded.get(m) is False]
    loaded = [m for m in REQUIRED_MODULES if modules.loaded.get(m)]
    if loaded:
        out.append(Check("ok", f"modules loaded ({modules.source}): {', '.join(loaded)}"))
    for m in missing:
        out.append(
            Check(
                "fail",
                f"module {m} not loaded: modules.conf: `require = {m}.so` and no "
                f"`noload = {m}.so` (Debian package asterisk-modules), then restart Asterisk",
            )
        )
    if unknown:
        out.append(Check("warn", f"modules not checked ({modules.source}): {', '.join(unknown)}"))
    return out


def judge_recording_dir(d: DirFacts) -> list[Check]:
    fix = (
        f"create it owned by the asterisk user (mkdir -p {d.path} && chown asterisk: {d.path}),"
        " or set ari.recording_dir to Asterisk's astspooldir/recording"
    )
    if not d.exists:
        return [Check("fail", f"recording dir {d.path} does not exist: {fix}")]
    if not d.is_dir:
        return [Check("fail", f"recording dir {d.path} is not a directory: {fix}")]
    if not d.writable:
        return [Check("fail", f"recording dir {d.path} is not writable: {fix}")]
    return [Check("ok", f"recording dir {d.path}")]


def judge_caller_id(c: CallerIdFacts) -> list[Check]:
    """With caller-ID profiles, the trunk must send P-Asserted-Identity: carriers that
    screen the From header present the PAI (the chosen number) only when it is sent."""
    if c.profiles == 0:
        return []
    what = f"{c.profiles} caller-ID profile(s)"
    if c.endpoint is None:
        return [
            Check(
                "warn",
                f"{what}, but calls.customer_endpoint_template names no PJSIP endpoint: "
                "send_pai not checked (the chosen number reaches the carrier as From only)",
            )
        ]
    if c.send_pai is None:
        return [
            Check(
                "warn",
                f"{what}: the trunk endpoint {c.endpoint}'s send_pai could not be read over "
                "ARI (is the endpoint in pjsip.conf?)",
            )
        ]
    if not c.send_pai:
        return [
            Check(
                "warn",
                f"{what}, but trunk endpoint {c.endpoint} has send_pai = no: pjsip.conf "
                f"[{c.endpoint}]: set send_pai = yes so the chosen caller ID is also sent as "
                "P-Asserted-Identity",
            )
        ]
    return [Check("ok", f"{what}: trunk endpoint {c.endpoint} sends P-Asserted-Identity")]


def trunk_endpoint(template: str) -> str | None:
    """The PJSIP endpoint ``calls.customer_endpoint_template`` dials: ``trunk`` of
    ``PJSIP/{number}@trunk`` or ``PJSIP/trunk/sip:{number}@host``; None for another
    technology or a template that names none."""
    if not template.startswith("PJSIP/"):
        return None
    rest = template.removeprefix("PJSIP/")
    if rest.startswith("{number}@"):
        name = rest.removeprefix("{number}@").split("/", 1)[0]
    elif "/" in rest:
        name = rest.split("/", 1)[0]
    else:
        return None
    return name if name and "{" not in name else None


def judge_ami(ami: AmiFacts) -> list[Check]:
    where = f"AMI {ami.where}"
    if ami.login_refused:
        unset = " (ami.password is not set)" if not ami.password_set else ""
        return [
            Check(
                "fail",
                f"{where}: login as {ami.username} refused{unset}: manager.conf: user "
                f"[{ami.username}] missing or wrong secret (ami.password / CTC_AMI_PASSWORD), "
                "or its permit/deny refuses this host",
            )
        ]
    if ami.error is not None:
        return [
            Check(
                "fail",
                f"{where}: {ami.error}: manager.conf: [general] enabled=yes, bindaddr and port "
                "must match ami.host and ami.port",
            )
        ]
    out = [Check("ok", f"{where}: logged in as {ami.username}")]
    if ami.hangup_handler and ami.handler_found is False:
        context, exten = ami.hangup_handler.split(",")[:2]
        out.append(
            Check(
                "warn",
                f"hangup handler {ami.hangup_handler} not in the dialplan: extensions.conf: "
                f"copy [{context}] (extension {exten}) from the engine's dialplan/"
                "extensions.conf, or hangups while the engine is down are estimated",
            )
        )
    elif ami.hangup_handler and ami.handler_found:
        out.append(Check("ok", f"hangup handler {ami.hangup_handler} is in the dialplan"))
    return out


# ----------------------------------------------------------------------------- gathering


async def gather(settings: Settings, *, wait: float = 5.0) -> Facts:
    """Ask PostgreSQL, ARI and AMI (concurrently) and look at the recording directory."""
    ari_on = settings.ari.enabled
    ami_on = ari_on and settings.ami.enabled
    database, (ari, ari_modules), (ami, ami_modules) = await asyncio.gather(
        _gather_database(settings, wait),
        _gather_ari(settings.ari, wait) if ari_on else _nothing(),
        _gather_ami(settings.ami, settings.calls.hangup_handler, wait) if ami_on else _nothing(),
    )
    modules: ModuleFacts | None = None
    if ari_modules is not None:
        modules = ModuleFacts("ARI", ari_modules)
    elif ami_modules is not None:  # ARI could not say (e.g. its password is wrong): AMI can
        modules = ModuleFacts("AMI", ami_modules)
    secrets = caller_id = None
    trunks = None
    if database.error is None and not database.pending and not database.changed:
        secrets = await _gather_secrets(settings, wait)
        if ari is not None and ari.status == 200:
            caller_id = await _gather_caller_id(settings, wait)
            trunks = await _gather_trunks(settings, wait)
    return Facts(
        database=database,
        secrets=secrets,
        ari=ari,
        ami=ami,
        modules=modules,
        recording_dir=_dir_facts(settings.ari.recording_dir) if ari_on else None,
        caller_id=caller_id,
        trunks=trunks,
    )


async def run_doctor(settings: Settings, *, wait: float = 5.0) -> list[Check]:
    return judge(await gather(settings, wait=wait))


async def _nothing() -> tuple[None, None]:
    return None, None


async def _gather_database(settings: Settings, wait: float) -> DatabaseFacts:
    url = str(redacted_summary(settings)["database"]["url"])
    directory = Path(settings.database.migrations_dir or default_migrations_dir())
    try:
        status = await asyncio.wait_for(
            migration_status(settings.database.url, directory), wait * 3
        )
    except TimeoutError:
        return DatabaseFacts(url, error=f"no answer within {wait * 3:g} s")
    except CtcError as exc:
        return DatabaseFacts(url, error=str(exc))
    return DatabaseFacts(
        url,
        applied=len(status.applied),
        pending=tuple(m.path.name for m in status.pending),
        changed=tuple(m.path.name for m in status.changed),
    )


async def _gather_secrets(settings: Settings, wait: float) -> SecretsFacts | None:
    keyring = settings.secrets.keyring()
    try:
        async with Database(settings.database.url, min_size=1, max_size=1) as db:
            counts = await asyncio.wait_for(StoredSecrets(db, keyring).not_current(), wait * 3)
    except (TimeoutError, CtcError):
        return None  # the database line already says what is wrong with it
    return SecretsFacts(keyring.primary_id, counts)


async def _gather_caller_id(settings: Settings, wait: float) -> CallerIdFacts | None:
    """How many caller-ID profiles are active and, when any, the trunk's send_pai (ARI's
    dynamic configuration of the endpoint: ``res_pjsip``/``endpoint``)."""
    try:
        async with Database(settings.database.url, min_size=1, max_size=1) as db:
            profiles = await asyncio.wait_for(
                db.fetchval("SELECT count(*) FROM caller_id_profile WHERE is_active"), wait * 3
            )
    except (TimeoutError, CtcError):
        return None  # the database line already says what is wrong with it
    endpoint = trunk_endpoint(settings.calls.customer_endpoint_template)
    facts = CallerIdFacts(int(profiles), endpoint)
    if not profiles or endpoint is None:
        return facts
    async with _ari_http(settings.ari, wait) as http:
        url = f"{_ari_base(settings.ari.url)}/asterisk/config/dynamic/res_pjsip/endpoint/{endpoint}"
        try:
            status, tuples = await _get(http, url)
        except (aiohttp.ClientError, TimeoutError):
            return facts
    if status != 200 or not isinstance(tuples, list):
        return facts
    values = {t.get("attribute"): t.get("value") for t in tuples if isinstance(t, dict)}
    if "send_pai" not in values:
        return facts
    return replace(facts, send_pai=str(values["send_pai"]).lower() in ("yes", "true", "1", "on"))


async def _gather_trunks(settings: Settings, wait: float) -> tuple[TrunkFacts, ...] | None:
    try:
        async with Database(settings.database.url, min_size=1, max_size=1) as db:
            repo = ProviderRepository(db, keyring=settings.secrets.keyring())
            providers = await asyncio.wait_for(
                repo.active_everywhere(ProviderType.SIP_TRUNK), wait * 3
            )
            profiles = CallerIdProfileRepository(db)
            with_profiles = {
                tenant_id
                for tenant_id in {p.tenant_id for p in providers}
                if await profiles.profiles(tenant_id)
            }
    except (TimeoutError, CtcError):
        return None  # the database line already says what is wrong with it
    facts: list[TrunkFacts] = []
    async with _ari_http(settings.ari, wait) as http:
        for p in providers:
            try:
                endpoint = parse_sip_trunk_config(p.config).endpoint
            except InvalidInput as exc:
                facts.append(TrunkFacts(p.name, str(p.tenant_id), None, error=str(exc)))
                continue
            exists, send_pai = await _ari_trunk(http, _ari_base(settings.ari.url), endpoint)
            facts.append(
                TrunkFacts(
                    p.name,
                    str(p.tenant_id),
                    endpoint,
                    exists=exists,
                    send_pai=send_pai,
                    caller_id_profiles=p.tenant_id in with_profiles,
                )
            )
    return tuple(facts)


async def _ari_trunk(
    http: aiohttp.ClientSession, base: str, endpoint: str
) -> tuple[bool | None, bool | None]:
    """Whether the PJSIP ``endpoint`` exists, and its ``send_pai`` (None: unknown)."""
    try:
        status, _ = await _get(http, f"{base}/endpoints/PJSIP/{endpoint}")
        if status != 200:
            return (False if status == 404 else None), None
        status, fields = await _get(
            http, f"{base}/asterisk/config/dynamic/res_pjsip/endpoint/{endpoint}"
        )
    except (aiohttp.ClientError, TimeoutError):
        return None, None
    if status != 200 or not isinstance(fields, list):
        return True, None
    for field in fields:
        if isinstance(field, dict) and field.get("attribute") == "send_pai":
            return True, str(field.get("value")).lower() in ("true", "yes", "1", "on")
    return True, None


def _ari_http(s: AriSettings, wait: float) -> aiohttp.ClientSession:
    """A session that asks ARI as ``s``'s user, each request given ``wait`` seconds."""
    password = s.password.get_secret_value() if s.password else ""
    return aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=wait),
        headers={"Authorization": basic_auth(s.username, password)},
    )


def _ari_base(url: str) -> str:
    base = url.rstrip("/")
    return base if base.endswith("/ari") else base + "/ari"


async def _get(http: aiohttp.ClientSession, url: str) -> tuple[int, Any]:
    async with http.get(url) as resp:
        text = await resp.text()
        status = resp.status
    try:
        return status, json.loads(text) if text else None
    except ValueError:
        return status, text


async def _gather_ari(s: AriSettings, wait: float) -> tuple[AriFacts, dict[str, bool] | None]:
    base = _ari_base(s.url)
    password_set = bool(s.password.get_secret_value()) if s.password else False
    facts = AriFacts(url=s.url, username=s.username, app=s.app, password_set=password_set)
    async with _ari_http(s, wait) as http:
        try:
            status, info = await _get(http, f"{base}/asterisk/info")
        except (aiohttp.ClientError, TimeoutError) as exc:
            return replace(facts, error=describe(exc)), None
        if status != 200:
            message = info.get("message") if isinstance(info, dict) else None
            return replace(facts, status=status, message=message), None
        system = info.get("system") if isinstance(info, dict) else None
        version = system.get("version") if isinstance(system, dict) else None
        apps: tuple[str, ...] | None = None
        try:
            status, listed = await _get(http, f"{base}/applications")
            if status == 200 and isinstance(listed, list):
                apps = tuple(str(a.get("name")) for a in listed if isinstance(a, dict))
        except (aiohttp.ClientError, TimeoutError):
            pass
        answers = await asyncio.gather(*(_ari_module(http, base, m) for m in REQUIRED_MODULES))
    modules = {
        m: loaded for m, loaded in zip(REQUIRED_MODULES, answers, strict=True) if loaded is not None
    }
    return replace(facts, status=200, version=version, apps=apps), modules


async def _ari_module(http: aiohttp.ClientSession, base: str, module: str) -> bool | None:
    try:
        status, body = await _get(http, f"{base}/asterisk/modules/{module}.so")
    except (aiohttp.ClientError, TimeoutError):
        return None
    if status == 200 and isinstance(body, dict):
        return body.get("status") == "Running"
    if status == 404:
        return False
    return None


async def _gather_ami(
    s: AmiSettings, hangup_handler: str, wait: float
) -> tuple[AmiFacts, dict[str, bool] | None]:
    facts = AmiFacts(
        where=f"{s.host}:{s.port}",
        username=s.username,
        password_set=bool(s.password),
        hangup_handler=hangup_handler,
    )
    link = AmiLink.from_settings(
        s, reconnect=False, connect_timeout=wait, action_timeout=wait, events="off"
    )
    async with link:
        try:
            await link.wait_connected(wait * 2)
        except AmiLoginError as exc:
            return replace(facts, error=str(exc), login_refused=True), None
        except AmiError as exc:
            return replace(facts, error=str(exc)), None
        modules: dict[str, bool] = {}
        for m in REQUIRED_MODULES:
            try:
                await link.action("ModuleCheck", Module=m)
                modules[m] = True
            except AmiResponseError:
                modules[m] = False  # "Module not loaded"
            except AmiError:
                break  # the link went away: the rest stay unknown
        if hangup_handler:
            context, exten = hangup_handler.split(",")[:2]
            try:
                await link.action("ShowDialPlan", Context=context, Extension=exten)
                facts = replace(facts, handler_found=True)
            except AmiResponseError:
                facts = replace(facts, handler_found=False)  # "Did not find context"
            except AmiError:
                pass  # unknown
    return facts, modules


def _dir_facts(path: Path) -> DirFacts:
    exists = path.exists()
    is_dir = path.is_dir()
    return DirFacts(path, exists, is_dir, is_dir and os.access(path, os.W_OK | os.X_OK))
