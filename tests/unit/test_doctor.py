"""Unit tests for ``ctc doctor``'s judging: facts in, lines out (no Asterisk, no database)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from engine.doctor import (
    REQUIRED_MODULES,
    AmiFacts,
    AriFacts,
    CallerIdFacts,
    Check,
    DatabaseFacts,
    DirFacts,
    Facts,
    ModuleFacts,
    SecretsFacts,
    TrunkFacts,
    _dir_facts,
    judge,
    trunk_endpoint,
)

REC = Path("/var/spool/asterisk/recording")


BASE_ARI = AriFacts(
    url="http://127.0.0.1:8088",
    username="ctc",
    app="ctc",
    password_set=True,
    status=200,
    version="22.10.1",
    apps=("ctc", "other"),
)
BASE_AMI = AmiFacts(where="127.0.0.1:5038", username="ctc", password_set=True)


def healthy(**changes: object) -> Facts:
    facts = Facts(
        database=DatabaseFacts("postgresql://ctc:***@db/ctc", applied=2),
        ari=BASE_ARI,
        ami=BASE_AMI,
        modules=ModuleFacts("ARI", dict.fromkeys(REQUIRED_MODULES, True)),
        recording_dir=DirFacts(REC, exists=True, is_dir=True, writable=True),
    )
    return dataclasses.replace(facts, **changes)  # type: ignore[arg-type]


def ari(**changes: object) -> AriFacts:
    return dataclasses.replace(BASE_ARI, **changes)  # type: ignore[arg-type]


def ami(**changes: object) -> AmiFacts:
    return dataclasses.replace(BASE_AMI, **changes)  # type: ignore[arg-type]


def lines(facts: Facts) -> list[str]:
    return [c.line for c in judge(facts)]


def failures(facts: Facts) -> list[str]:
    return [c.line for c in judge(facts) if c.failed]


def only_failure(facts: Facts) -> str:
    found = failures(facts)
    assert len(found) == 1, found
    return found[0]


# --------------------------------------------------------------------------- format


def test_line_format() -> None:
    assert Check("ok", "fine").line == "ok   fine"
    assert Check("warn", "hmm").line == "warn hmm"
    assert Check("fail", "broken: fix it").line == "FAIL broken: fix it"
    assert Check("fail", "x").failed
    assert not Check("warn", "x").failed


def test_all_good_is_all_ok() -> None:
    out = lines(healthy())
    assert all(line.startswith("ok   ") for line in out), out
    assert out == [
        "ok   database postgresql://ctc:***@db/ctc: reachable, schema current (2 migrations)",
        "ok   ARI http://127.0.0.1:8088: Asterisk 22.10.1, user ctc",
        "ok   Stasis app ctc registered (the engine is connected)",
        "ok   modules loaded (ARI): " + ", ".join(REQUIRED_MODULES),
        f"ok   recording dir {REC}",
        "ok   AMI 127.0.0.1:5038: logged in as ctc",
    ]


# --------------------------------------------------------------------------- database


def test_database_unreachable() -> None:
    line = only_failure(
        healthy(database=DatabaseFacts("postgresql://db/ctc", error="cannot connect: refused"))
    )
    assert line.startswith("FAIL database postgresql://db/ctc: cannot connect: refused: ")
    assert "database.url" in line


def test_database_pending_migrations() -> None:
    facts = healthy(database=DatabaseFacts("u", applied=1, pending=("0002_call_policy.sql",)))
    line = only_failure(facts)
    assert "1 migration(s) pending (0002_call_policy.sql)" in line
    assert line.endswith("run `ctc db migrate`")


def test_database_changed_migration() -> None:
    line = only_failure(healthy(database=DatabaseFacts("u", applied=2, changed=("0001_init.sql",))))
    assert "changed on disk: 0001_init.sql" in line
    assert "new migration" in line


# --------------------------------------------------------------------------- ARI


def test_ari_unreachable_names_http_conf() -> None:
    facts = healthy(
        ari=ari(status=None, error="Cannot connect to host 127.0.0.1:8088"), modules=None
    )
    line = failures(facts)[0]
    assert "ARI http://127.0.0.1:8088 unreachable (Cannot connect to host 127.0.0.1:8088)" in line
    assert "http.conf: enabled=yes and bindaddr" in line


def test_ari_401_names_ari_conf_user() -> None:
    facts = healthy(ari=ari(status=401, message="Authentication required"))
    line = only_failure(facts)
    assert "401 Unauthorized" in line
    assert "ari.conf: user ctc missing or wrong password" in line
    assert "(ari.password is not set)" not in line


def test_ari_401_says_when_no_password_is_configured() -> None:
    line = only_failure(healthy(ari=ari(status=401, password_set=False)))
    assert "(ari.password is not set)" in line


def test_ari_404_names_ari_conf_general() -> None:
    line = only_failure(healthy(ari=ari(status=404)))
    assert "ari.conf: [general] enabled=yes" in line


def test_ari_not_booted_says_retry() -> None:
    line = only_failure(healthy(ari=ari(status=503, message="Asterisk not booted")))
    assert "Asterisk not booted" in line
    assert "again" in line


def test_ari_other_status() -> None:
    line = only_failure(healthy(ari=ari(status=500, message="boom")))
    assert "HTTP 500 boom" in line


def test_app_not_registered_is_a_warning_not_a_failure() -> None:
    checks = judge(healthy(ari=ari(apps=("someone-else",))))
    assert not any(c.failed for c in checks)
    warns = [c.line for c in checks if c.level == "warn"]
    assert warns == [
        "warn app ctc not registered: is `ctc run` running? "
        "(Stasis(ctc,…) in dialplan fails until it is)"
    ]


def test_app_list_unknown_is_a_warning() -> None:
    checks = judge(healthy(ari=ari(apps=None)))
    assert [c.level for c in checks].count("warn") == 1
    assert not any(c.failed for c in checks)


def test_ari_disabled_checks_only_the_database() -> None:
    out = lines(healthy(ari=None, ami=None, modules=None, recording_dir=None))
    assert out[1:] == ["ok   ARI disabled (ari.enabled: false): Asterisk not checked"]


# --------------------------------------------------------------------------- modules


@pytest.mark.parametrize("module", REQUIRED_MODULES)
def test_missing_module_names_the_modules_conf_fix(module: str) -> None:
    loaded = dict.fromkeys(REQUIRED_MODULES, True)
    loaded[module] = False
    line = only_failure(healthy(modules=ModuleFacts("AMI", loaded)))
    assert line.startswith(
        f"FAIL module {module} not loaded: modules.conf: `require = {module}.so`"
    )
    assert f"`noload = {module}.so`" in line
    ok = next(
        c.line for c in judge(healthy(modules=ModuleFacts("AMI", loaded))) if "loaded (" in c.line
    )
    assert module not in ok.split(": ", 1)[1].split(", ")
    assert "(AMI)" in ok


def test_modules_unknown_are_warned_about() -> None:
    checks = judge(healthy(modules=ModuleFacts("ARI", {"res_ari": True})))
    assert not any(c.failed for c in checks)
    warn = next(c.line for c in checks if c.level == "warn")
    assert warn.startswith("warn modules not checked (ARI): res_stasis, ")


def test_no_module_source_is_a_warning() -> None:
    checks = judge(healthy(ari=ari(status=401), modules=None))
    assert [c.line for c in checks if c.level == "warn"] == [
        "warn Asterisk modules not checked: neither ARI nor AMI let us in"
    ]


# --------------------------------------------------------------------------- recording dir


@pytest.mark.parametrize(
    ("facts", "says"),
    [
        (DirFacts(REC, exists=False, is_dir=False, writable=False), "does not exist"),
        (DirFacts(REC, exists=True, is_dir=False, writable=False), "is not a directory"),
        (DirFacts(REC, exists=True, is_dir=True, writable=False), "is not writable"),
    ],
)
def test_recording_dir_problems(facts: DirFacts, says: str) -> None:
    line = only_failure(healthy(recording_dir=facts))
    assert line.startswith(f"FAIL recording dir {REC} {says}: ")
    assert "chown asterisk" in line
    assert "ari.recording_dir" in line


def test_dir_facts_reads_the_file_system(tmp_path: Path) -> None:
    assert _dir_facts(tmp_path) == DirFacts(tmp_path, exists=True, is_dir=True, writable=True)
    missing = tmp_path / "nope"
    assert _dir_facts(missing) == DirFacts(missing, exists=False, is_dir=False, writable=False)
    file = tmp_path / "file"
    file.write_text("")
    assert _dir_facts(file) == DirFacts(file, exists=True, is_dir=False, writable=False)


# --------------------------------------------------------------------------- AMI


def test_ami_login_refused_names_manager_conf() -> None:
    line = only_failure(healthy(ami=ami(error="Authentication failed", login_refused=True)))
    assert line.startswith("FAIL AMI 127.0.0.1:5038: login as ctc refused: ")
    assert "manager.conf: user [ctc] missing or wrong secret" in line


def test_ami_login_refused_without_password() -> None:
    line = only_failure(
        healthy(ami=ami(error="Authentication failed", login_refused=True, password_set=False))
    )
    assert "(ami.password is not set)" in line


def test_ami_unreachable_names_manager_conf_general() -> None:
    line = only_failure(healthy(ami=ami(error="AMI 127.0.0.1:5038 unreachable: refused")))
    assert "manager.conf: [general] enabled=yes, bindaddr and port" in line


def test_a_hangup_handler_missing_from_the_dialplan_is_a_warning_naming_the_context() -> None:
    checks = judge(healthy(ami=ami(hangup_handler="ctc-hangup,s,1", handler_found=False)))
    warns = [c.line for c in checks if c.level == "warn"]
    assert warns == [
        "warn hangup handler ctc-hangup,s,1 not in the dialplan: extensions.conf: copy "
        "[ctc-hangup] (extension s) from the engine's dialplan/extensions.conf, or hangups "
        "while the engine is down are estimated"
    ]


def test_a_hangup_handler_in_the_dialplan_is_ok() -> None:
    text = lines(healthy(ami=ami(hangup_handler="ctc-hangup,s,1", handler_found=True)))
    assert "ok   hangup handler ctc-hangup,s,1 is in the dialplan" in text


def test_ami_disabled() -> None:
    assert lines(healthy(ami=None))[-1] == "ok   AMI not used (ami.enabled: false)"


def test_every_failure_says_how_to_fix() -> None:
    broken = Facts(
        database=DatabaseFacts("u", error="down"),
        ari=ari(status=401),
        ami=ami(error="x", login_refused=True),
        modules=ModuleFacts("AMI", dict.fromkeys(REQUIRED_MODULES, False)),
        recording_dir=DirFacts(REC, exists=False, is_dir=False, writable=False),
    )
    found = failures(broken)
    assert len(found) == 3 + len(REQUIRED_MODULES) + 1
    for line in found:
        assert line.startswith("FAIL ")
        assert ": " in line


# -- stored secrets


NONE_STALE = {"tenant.callback_secret": 0, "voip_provider.credentials": 0}


def test_secrets_all_under_the_primary_key_is_ok() -> None:
    checks = judge(healthy(secrets=SecretsFacts("ab12cd34", NONE_STALE)))
    assert checks[1] == Check("ok", "stored secrets encrypted under the primary key ab12cd34")


def test_secrets_under_an_old_key_or_plaintext_say_rotate() -> None:
    stale = {**NONE_STALE, "tenant.callback_secret": 3}
    check = judge(healthy(secrets=SecretsFacts("ab12cd34", stale)))[1]
    assert check.level == "warn"
    assert "(tenant.callback_secret: 3): run `ctc secrets rotate`" in check.text


def test_no_secrets_key_is_a_warning_naming_the_setting_and_the_plaintext() -> None:
    stale = {**NONE_STALE, "tenant.callback_secret": 1}
    check = judge(healthy(secrets=SecretsFacts(None, stale)))[1]
    assert check.level == "warn"
    assert "CTC_SECRET_KEY or secrets.key_file" in check.text
    assert "tenant.callback_secret: 1 stored in plaintext" in check.text
    assert not any(c.failed for c in judge(healthy(secrets=SecretsFacts(None, stale))))


@pytest.mark.parametrize(
    ("template", "endpoint"),
    [
        ("PJSIP/{number}@trunk", "trunk"),
        ("PJSIP/carrier/sip:{number}@sip.example.com", "carrier"),
        ("PJSIP/{number}", None),
        ("SIP/{number}@trunk", None),
    ],
)
def test_the_trunk_endpoint_is_read_from_the_customer_template(
    template: str, endpoint: str | None
) -> None:
    assert trunk_endpoint(template) == endpoint


@pytest.mark.parametrize(
    ("facts", "level", "words"),
    [
        (CallerIdFacts(0, "trunk", False), None, ""),
        (CallerIdFacts(2, "trunk", True), "ok", "trunk endpoint trunk sends P-Asserted-Identity"),
        (CallerIdFacts(2, "trunk", False), "warn", "[trunk]: set send_pai = yes"),
        (CallerIdFacts(1, "trunk", None), "warn", "send_pai could not be read"),
        (CallerIdFacts(1, None), "warn", "names no PJSIP endpoint"),
    ],
)
def test_caller_id_profiles_need_the_trunk_to_send_pai(
    facts: CallerIdFacts, level: str | None, words: str
) -> None:
    checks = [c for c in judge(healthy(caller_id=facts)) if "caller-ID profile" in c.text]
    if level is None:
        assert checks == []
        return
    [check] = checks
    assert check.level == level
    assert words in check.text
    assert not check.failed  # a warning: calls still go out, with From only


# --------------------------------------------------------------------------- sip trunks


def test_every_active_sip_trunks_endpoint_is_checked_on_the_asterisk() -> None:
    trunks = (
        TrunkFacts("a", "t1", "trunk-a", exists=True),
        TrunkFacts("gone", "t1", "carrier-x", exists=False),
        TrunkFacts("unknown", "t2", "trunk-b", exists=None),
        TrunkFacts("broken", "t2", None, error="config.endpoint: the name of a PJSIP endpoint"),
    )
    out = [line for line in lines(healthy(trunks=trunks)) if "sip_trunk" in line]
    assert out == [
        "ok   sip_trunk provider a (tenant t1): PJSIP endpoint trunk-a exists",
        "FAIL sip_trunk provider gone (tenant t1): no PJSIP endpoint carrier-x on the Asterisk:"
        " pjsip.conf: add [carrier-x] (type = endpoint, with its aor and identify), or fix the"
        " provider's config.endpoint; until then its calls go to the next trunk",
        "warn sip_trunk provider unknown (tenant t2): ARI could not say whether PJSIP/trunk-b"
        " exists",
        "FAIL sip_trunk provider broken (tenant t2): config.endpoint: the name of a PJSIP"
        " endpoint: fix its config (calls skip this provider)",
    ]


def test_no_sip_trunk_lines_when_trunks_were_not_checked() -> None:
    assert not [line for line in lines(healthy()) if "sip_trunk" in line]


def test_a_trunk_without_send_pai_warns_only_when_its_tenant_has_caller_id_profiles() -> None:
    plain = TrunkFacts("a", "t1", "trunk-a", exists=True, send_pai=False)
    chosen = dataclasses.replace(plain, caller_id_profiles=True)
    with_pai = dataclasses.replace(chosen, send_pai=True)
    assert not [line for line in lines(healthy(trunks=(plain, with_pai))) if "send_pai" in line]
    assert [line for line in lines(healthy(trunks=(chosen,))) if "send_pai" in line] == [
        "warn sip_trunk provider a (tenant t1): PJSIP endpoint trunk-a has send_pai = no while"
        " the tenant has caller-ID profiles: the chosen caller ID goes out as From only;"
        " pjsip.conf [trunk-a]: send_pai = yes if the carrier reads P-Asserted-Identity"
    ]
