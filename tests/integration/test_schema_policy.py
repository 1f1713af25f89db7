"""Schema tests for sql/0001_init.sql + sql/0002_call_policy.sql on a real PostgreSQL.

A fresh database (unique name) on 127.0.0.1:5432 gets both migrations, each applied by
``psql -1`` exactly as the runner does (one transaction per file), and a small data set:
tenant A with a row in every policy table, tenant B with its own provider, session and
menu. Every constraint case is a pair: the same statement with a good value must succeed
(and is rolled back), with the bad value it must fail with the expected SQLSTATE and
constraint, so a case cannot pass because something else was wrong with the statement.
"""

from __future__ import annotations

import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.ci import IN_CI

# scripts/bootstrap installs psql; under CI a missing psql must fail, not skip
pytestmark = pytest.mark.skipif(
    shutil.which("psql") is None and not IN_CI,
    reason="psql is not installed",
)

ROOT = Path(__file__).resolve().parents[2]
# 0011 reshapes phone_number_list (prefix entries) and caller_id_profile (daily cap)
MIGRATIONS = [
    ROOT / "sql" / "0001_init.sql",
    ROOT / "sql" / "0002_call_policy.sql",
    ROOT / "sql" / "0011_compliance.sql",
]
SERVER = ["-h", "127.0.0.1", "-p", "5432", "-U", "postgres"]

INFRA_TABLES = {"tenant", "api_token", "call_event", "callback_outbox"}
POLICY_TABLES = {
    "ivr_menu",
    "ivr_menu_option",
    "call_routing_rule",
    "call_dtmf_interaction",
    "call_recording_config",
    "call_quality_metric",
    "call_transfer",
    "phone_number_list",
    "caller_id_profile",
    "call_compliance_rule",
    "call_rate_config",
    "call_usage_billing",
}
# the 16 tables of the original Go module
MODULE_TABLES = {
    "voip_provider",
    "click_to_call_session",
    "agent_activity_log",
    "click_to_call_webhook_log",
} | POLICY_TABLES

# Fixed ids, passed to psql as variables and used in SQL as :'NAME'.
IDS = {
    "A": "aaaaaaaa-0000-4000-8000-000000000001",  # tenant A
    "B": "bbbbbbbb-0000-4000-8000-000000000001",  # tenant B
    "PA": "aaaaaaaa-0000-4000-8000-000000000002",  # providers
    "PB": "bbbbbbbb-0000-4000-8000-000000000002",
    "SA": "aaaaaaaa-0000-4000-8000-000000000003",  # sessions
    "SB": "bbbbbbbb-0000-4000-8000-000000000003",
    "MA": "aaaaaaaa-0000-4000-8000-000000000004",  # menus: A main, A sales, B main
    "MA2": "aaaaaaaa-0000-4000-8000-000000000005",
    "MB": "bbbbbbbb-0000-4000-8000-000000000004",
    "RA": "aaaaaaaa-0000-4000-8000-000000000006",  # routing rules
    "RB": "bbbbbbbb-0000-4000-8000-000000000006",
    "OA": "aaaaaaaa-0000-4000-8000-000000000007",  # option '1' of A's main menu
    "RCA": "aaaaaaaa-0000-4000-8000-000000000008",  # A's rate for +91
}

SEED = """
INSERT INTO tenant (id, slug, name) VALUES (:'A', 'tenant-a', 'A'), (:'B', 'tenant-b', 'B');
INSERT INTO voip_provider (id, tenant_id, name, provider_type)
    VALUES (:'PA', :'A', 'trunk', 'sip_trunk'), (:'PB', :'B', 'trunk', 'sip_trunk');
INSERT INTO click_to_call_session (id, tenant_id, provider_id, agent_number, customer_number)
    VALUES (:'SA', :'A', :'PA', 'PJSIP/1001', '+919876543210'),
           (:'SB', :'B', :'PB', 'PJSIP/1001', '+919876543210');
INSERT INTO ivr_menu (id, tenant_id, name, greeting_prompt)
    VALUES (:'MA', :'A', 'main', 'sound:hello-world'),
           (:'MA2', :'A', 'sales', 'Welcome to sales'),
           (:'MB', :'B', 'main', 'sound:hello-world');
INSERT INTO ivr_menu (tenant_id, name, input_mode, terminator, input_length, variable_name,
                      fallback_action, fallback_transfer_target_type, fallback_transfer_target)
    VALUES (:'A', 'account', 'until_terminator', '#', 12, 'account_no',
            'transfer', 'number', '+14155550100');
INSERT INTO call_routing_rule (id, tenant_id, name, match_type, strategy, ivr_menu_id)
    VALUES (:'RA', :'A', 'default', 'tenant_default', 'ivr_menu', :'MA'),
           (:'RB', :'B', 'default', 'tenant_default', 'ivr_menu', :'MB');
INSERT INTO call_routing_rule (tenant_id, name, match_type, match_value, strategy, members,
                               fallback_rule_id)
    VALUES (:'A', 'delhi', 'caller_prefix', '+9111', 'ring_group_round_robin',
            '["PJSIP/1001", "PJSIP/1002"]', :'RA');
INSERT INTO ivr_menu_option (id, tenant_id, menu_id, digit, action, target_menu_id)
    VALUES (:'OA', :'A', :'MA', '1', 'submenu', :'MA2');
INSERT INTO ivr_menu_option (tenant_id, menu_id, digit, action, transfer_target_type,
                             routing_rule_id)
    VALUES (:'A', :'MA', '0', 'transfer', 'routing_rule', :'RA');
INSERT INTO ivr_menu_option (tenant_id, menu_id, digit, action, action_params)
    VALUES (:'A', :'MA', '*', 'set_variable', '{"name": "lang", "value": "hi"}');
INSERT INTO call_dtmf_interaction (tenant_id, session_id, menu_id, menu_version, option_id,
                                   digit, outcome, ms_since_prompt, channel_id)
    VALUES (:'A', :'SA', :'MA', 1, :'OA', '1', 'option', 850, 'chan-1');
INSERT INTO call_recording_config (tenant_id, is_default) VALUES (:'A', true);
INSERT INTO call_recording_config (tenant_id, provider_id, direction, record, format)
    VALUES (:'A', :'PA', 'inbound', 'customer', 'gsm');
INSERT INTO call_quality_metric (tenant_id, session_id, channel_id, leg, rx_packets,
                                 rx_lost_packets, jitter_ms, rtt_ms, mos, codec, is_final)
    VALUES (:'A', :'SA', 'chan-1', 'customer', 1500, 3, 3.5, 40.2, 4.21, 'ulaw', true);
INSERT INTO call_transfer (tenant_id, session_id, transfer_type, initiated_by, option_id,
                           from_leg, target_type, target, state)
    VALUES (:'A', :'SA', 'blind', 'ivr', :'OA', 'customer', 'number', '+14155550100',
            'completed');
INSERT INTO phone_number_list (tenant_id, list_type, phone_number, reason)
    VALUES (:'A', 'dnc', '+14155550199', 'asked not to be called');
INSERT INTO caller_id_profile (tenant_id, name, caller_id, is_default, provider_id,
                               match_prefix, rotation, pool)
    VALUES (:'A', 'india', '+918000000000', true, :'PA', '+9180', 'local_presence',
            '["+918000000001", "+918000000002"]');
INSERT INTO call_compliance_rule (tenant_id, name, rule_type, country_code, timezone,
                                  allowed_start, allowed_end, allowed_days)
    VALUES (:'A', 'in-hours', 'calling_hours', 'IN', 'Asia/Kolkata', '09:00', '21:00',
            '{1,2,3,4,5,6}');
INSERT INTO call_rate_config (id, tenant_id, provider_id, destination_prefix,
                              rate_per_minute_minor, currency)
    VALUES (:'RCA', :'A', :'PA', '+91', 45, 'INR');
INSERT INTO call_usage_billing (tenant_id, session_id, leg, rate_config_id, provider_id,
                                duration_s, billable_seconds, rate_per_minute_minor,
                                amount_minor, currency)
    VALUES (:'A', :'SA', 'customer', :'RCA', :'PA', 75, 120, 45, 90, 'INR');
"""


def psql(
    db: str, sql: str, *, single_transaction: bool = False
) -> subprocess.CompletedProcess[str]:
    args = ["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-v", "VERBOSITY=verbose"]
    for name, value in IDS.items():
        args += ["-v", f"{name}={value}"]
    if single_transaction:
        args.append("-1")
    return subprocess.run(
        [*args, *SERVER, "-d", db, "-f", "-"],
        input=sql,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def ok(db: str, sql: str) -> str:
    """Run ``sql`` and return its output; fail the test on any error."""
    result = psql(db, sql)
    if result.returncode != 0:
        pytest.fail(f"SQL failed:\n{sql}\n{result.stderr}")
    return result.stdout


def ok_rolled_back(db: str, sql: str) -> str:
    return ok(db, f"BEGIN;\n{sql};\nROLLBACK;\n")


def fails(db: str, sql: str, sqlstate: str, fragment: str) -> None:
    result = psql(db, f"BEGIN;\n{sql};\nROLLBACK;\n")
    assert result.returncode != 0, f"accepted, but should have been refused:\n{sql}"
    assert f"ERROR:  {sqlstate}:" in result.stderr, result.stderr
    assert fragment in result.stderr, result.stderr


@pytest.fixture(scope="module")
def db() -> Iterator[str]:
    name = f"ctc_test_policy_{uuid.uuid4().hex[:12]}"
    ok("postgres", f'CREATE DATABASE "{name}"')
    try:
        for path in MIGRATIONS:
            result = psql(name, path.read_text(), single_transaction=True)
            if result.returncode != 0:
                pytest.fail(f"{path.name} did not apply:\n{result.stderr}")
        ok(name, SEED)
        yield name
    finally:
        ok("postgres", f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def rows(output: str) -> list[list[str]]:
    return [line.split("|") for line in output.splitlines() if line]


def test_all_tables_exist(db: str) -> None:
    out = ok(
        db,
        "SELECT table_name FROM information_schema.tables "
        "WHERE table_schema = 'public' AND table_type = 'BASE TABLE'",
    )
    tables = {r[0] for r in rows(out)}
    assert len(MODULE_TABLES) == 16
    assert tables == MODULE_TABLES | INFRA_TABLES


def test_every_table_has_a_cascading_tenant_id(db: str) -> None:
    out = ok(
        db,
        """
        SELECT c.relname,
               a.attnotnull,
               EXISTS (SELECT 1 FROM pg_constraint f
                        WHERE f.conrelid = c.oid AND f.contype = 'f'
                          AND f.confrelid = 'tenant'::regclass
                          AND f.conkey = ARRAY[a.attnum] AND f.confdeltype = 'c')
          FROM pg_class c
          JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = 'public'
          LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'tenant_id'
         WHERE c.relkind = 'r' AND c.relname <> 'tenant'
        """,
    )
    found = rows(out)
    assert len(found) == len(MODULE_TABLES | INFRA_TABLES) - 1
    bad = [r for r in found if r[1:] != ["t", "t"]]
    assert not bad, f"tables without NOT NULL tenant_id REFERENCES tenant ON DELETE CASCADE: {bad}"


def test_policy_foreign_keys_never_cross_tenants(db: str) -> None:
    """Every reference from a 0002 table to a tenant-scoped table includes tenant_id."""
    names = ", ".join(f"'{t}'" for t in sorted(POLICY_TABLES))
    out = ok(
        db,
        f"""
        SELECT f.conrelid::regclass, f.conname
          FROM pg_constraint f
         WHERE f.contype = 'f' AND f.confrelid <> 'tenant'::regclass
           AND f.conrelid::regclass::text IN ({names})
           AND NOT (
               f.conkey[1] = (SELECT attnum FROM pg_attribute
                               WHERE attrelid = f.conrelid AND attname = 'tenant_id')
               AND f.confkey[1] = (SELECT attnum FROM pg_attribute
                                    WHERE attrelid = f.confrelid AND attname = 'tenant_id'))
        """,
    )
    assert rows(out) == []


# (template with {v}, a value that must be accepted, a value that must be refused,
#  the SQLSTATE of the refusal, a fragment of the error naming the constraint)
CASES = [
    pytest.param(
        "INSERT INTO ivr_menu_option (tenant_id, menu_id, digit, action) "
        "VALUES (:'A', :'MA', '9', {v})",
        "'hangup'",
        "'dance'",
        "23514",
        "ivr_action_check",
        id="invalid-ivr-action",
    ),
    pytest.param(
        "INSERT INTO ivr_menu_option (tenant_id, menu_id, digit, action) "
        "VALUES (:'A', :'MA', {v}, 'hangup')",
        "'9'",
        "'1'",
        "23505",
        "ivr_menu_option_menu_id_digit_key",
        id="duplicate-digit-in-menu",
    ),
    pytest.param(
        "INSERT INTO ivr_menu_option (tenant_id, menu_id, digit, action) "
        "VALUES (:'A', :'MA', {v}, 'hangup')",
        "'timeout'",
        "'12'",
        "23514",
        "ivr_menu_option_digit_check",
        id="digit-not-a-key",
    ),
    pytest.param(
        "INSERT INTO ivr_menu_option (tenant_id, menu_id, digit, action, target_menu_id) "
        "VALUES (:'A', :'MA', '2', 'submenu', {v})",
        ":'MA2'",
        "NULL",
        "23514",
        "ivr_menu_option_check",
        id="submenu-without-target",
    ),
    pytest.param(
        "INSERT INTO ivr_menu_option (tenant_id, menu_id, digit, action, target_menu_id) "
        "VALUES (:'A', :'MA', '2', 'submenu', {v})",
        ":'MA2'",
        ":'MB'",
        "23503",
        "ivr_menu_option_tenant_id_target_menu_id_fkey",
        id="cross-tenant-submenu",
    ),
    pytest.param(
        "INSERT INTO ivr_menu_option (tenant_id, menu_id, digit, action, "
        "transfer_target_type, transfer_target) VALUES (:'A', :'MA', '3', 'transfer', "
        "'number', {v})",
        "'+14155550100'",
        "'14155550100'",
        "23514",
        "ivr_menu_option_check",
        id="transfer-number-not-e164",
    ),
    pytest.param(
        "INSERT INTO ivr_menu (tenant_id, name, input_mode, variable_name, terminator) "
        "VALUES (:'A', 'pin', 'until_terminator', 'pin', {v})",
        "'#'",
        "NULL",
        "23514",
        "ivr_menu_check",
        id="until-terminator-needs-terminator",
    ),
    pytest.param(
        "INSERT INTO ivr_menu (tenant_id, name) VALUES ({v}, 'sales')",
        ":'B'",
        ":'A'",
        "23505",
        "ivr_menu_tenant_id_name_key",
        id="menu-name-unique-per-tenant",
    ),
    pytest.param(
        "INSERT INTO call_dtmf_interaction (tenant_id, session_id, menu_id, menu_version, "
        "digit, outcome) VALUES (:'A', {v}, :'MA', 1, '5', 'invalid')",
        ":'SA'",
        ":'SB'",
        "23503",
        "call_dtmf_interaction_tenant_id_session_id_fkey",
        id="cross-tenant-session",
    ),
    pytest.param(
        "INSERT INTO call_dtmf_interaction (tenant_id, session_id, menu_id, menu_version, "
        "option_id, digit, outcome) VALUES (:'A', :'SA', {v}, 1, :'OA', '1', 'option')",
        ":'MA'",
        ":'MA2'",
        "23503",
        "call_dtmf_interaction_tenant_id_menu_id_option_id_fkey",
        id="dtmf-option-of-another-menu",
    ),
    pytest.param(
        "INSERT INTO call_routing_rule (tenant_id, name, match_type, match_value, strategy, "
        "provider_id) VALUES (:'A', 'uk', 'caller_prefix', '+44', 'provider', {v})",
        ":'PA'",
        ":'PB'",
        "23503",
        "call_routing_rule_tenant_id_provider_id_fkey",
        id="cross-tenant-provider",
    ),
    pytest.param(
        "INSERT INTO call_routing_rule (tenant_id, name, match_type, strategy, members) "
        "VALUES (:'A', 'team', 'skill', 'least_recent', '[\"PJSIP/1001\"]') ",
        None,
        None,
        "23514",
        "call_routing_rule_check",
        id="skill-rule-needs-match-value",
    ),
    pytest.param(
        "INSERT INTO call_rate_config (tenant_id, destination_prefix, rate_per_minute_minor, "
        "currency) VALUES (:'A', '+44', 2, {v})",
        "'GBP'",
        "'gbp'",
        "23514",
        "currency_code_check",
        id="bad-currency-rate",
    ),
    pytest.param(
        "INSERT INTO call_usage_billing (tenant_id, session_id, leg, duration_s, "
        "billable_seconds, rate_per_minute_minor, amount_minor, currency) "
        "VALUES (:'A', :'SA', 'agent', 10, 60, 0, 0, {v})",
        "'INR'",
        "'IN'",
        "23514",
        "currency_code_check",
        id="bad-currency-billing",
    ),
    pytest.param(
        "INSERT INTO call_rate_config (tenant_id, destination_prefix, rate_per_minute_minor, "
        "currency, effective_from, effective_to) "
        "VALUES (:'A', '+44', 2, 'GBP', now(), {v})",
        "now() + interval '1 day'",
        "now() - interval '1 day'",
        "23514",
        "call_rate_config_check",
        id="effective-range-reversed",
    ),
    pytest.param(
        "INSERT INTO call_usage_billing (tenant_id, session_id, leg, rate_config_id, "
        "duration_s, billable_seconds, rate_per_minute_minor, amount_minor, currency) "
        "VALUES (:'B', :'SB', 'customer', {v}, 10, 60, 45, 45, 'INR')",
        "NULL",
        ":'RCA'",
        "23503",
        "call_usage_billing_tenant_id_rate_config_id_fkey",
        id="cross-tenant-rate",
    ),
    pytest.param(
        "INSERT INTO call_usage_billing (tenant_id, session_id, leg, duration_s, "
        "billable_seconds, rate_per_minute_minor, amount_minor, currency) "
        "VALUES (:'A', :'SA', {v}, 10, 60, 0, 0, 'INR')",
        "'agent'",
        "'customer'",
        "23505",
        "call_usage_billing_session_id_leg_key",
        id="billed-twice-per-leg",
    ),
    pytest.param(
        "INSERT INTO phone_number_list (tenant_id, list_type, phone_number) "
        "VALUES (:'A', 'blocklist', {v})",
        "'+14155550123'",
        "'14155550123'",
        "23514",
        "phone_number_list_number_check",
        id="list-number-not-e164",
    ),
    pytest.param(
        "INSERT INTO phone_number_list (tenant_id, list_type, phone_number) "
        "VALUES (:'A', {v}, '+14155550199')",
        "'blocklist'",
        "'dnc'",
        "23505",
        "phone_number_list_entry_key",
        id="number-listed-twice",
    ),
    pytest.param(
        "INSERT INTO caller_id_profile (tenant_id, name, caller_id) VALUES (:'A', 'x', {v})",
        "'+14155550100'",
        "'080-2345-6789'",
        "23514",
        "e164_check",
        id="caller-id-not-e164",
    ),
    pytest.param(
        "INSERT INTO caller_id_profile (tenant_id, name, caller_id, rotation, pool) "
        "VALUES (:'A', 'x', '+14155550100', 'round_robin', {v})",
        "'[\"+14155550101\"]'",
        "'[\"4155550101\"]'",
        "23514",
        "caller_id_profile_pool_check",
        id="pool-number-not-e164",
    ),
    pytest.param(
        "INSERT INTO caller_id_profile (tenant_id, name, caller_id, is_default) "
        "VALUES ({v}, 'x', '+14155550100', true)",
        ":'B'",
        ":'A'",
        "23505",
        "caller_id_profile_one_default_idx",
        id="two-default-caller-ids",
    ),
    pytest.param(
        "INSERT INTO call_recording_config (tenant_id, is_default) VALUES ({v}, true)",
        ":'B'",
        ":'A'",
        "23505",
        "call_recording_config_tenant_id_provider_id_direction_key",
        id="two-default-recording-configs",
    ),
    pytest.param(
        "INSERT INTO call_recording_config (tenant_id, provider_id, is_default) "
        "VALUES (:'A', :'PA', {v})",
        "false",
        "true",
        "23514",
        "call_recording_config_check",
        id="scoped-recording-config-as-default",
    ),
    pytest.param(
        "INSERT INTO call_quality_metric (tenant_id, session_id, channel_id, leg, mos) "
        "VALUES (:'A', :'SA', 'chan-1', 'agent', {v})",
        "5.00",
        "5.01",
        "23514",
        "call_quality_metric_mos_check",
        id="mos-above-5",
    ),
    pytest.param(
        "INSERT INTO call_quality_metric (tenant_id, session_id, channel_id, leg, mos) "
        "VALUES (:'A', :'SA', 'chan-1', 'agent', {v})",
        "1.00",
        "0.99",
        "23514",
        "call_quality_metric_mos_check",
        id="mos-below-1",
    ),
    pytest.param(
        "INSERT INTO call_compliance_rule (tenant_id, name, rule_type, allowed_start, "
        "allowed_end, allowed_days) VALUES (:'A', 'x', 'calling_hours', '09:00', '21:00', {v})",
        "'{1,7}'",
        "'{0,7}'",
        "23514",
        "call_compliance_rule_allowed_days_check",
        id="weekday-out-of-range",
    ),
    pytest.param(
        "INSERT INTO call_compliance_rule (tenant_id, name, rule_type, country_code) "
        "VALUES (:'A', 'x', 'country_block', {v})",
        "'PK'",
        "NULL",
        "23514",
        "call_compliance_rule_check",
        id="country-block-needs-country",
    ),
    pytest.param(
        "INSERT INTO call_transfer (tenant_id, session_id, transfer_type, initiated_by, "
        "from_leg, target_type, target) VALUES (:'A', :'SA', 'blind', 'api', 'customer', "
        "'agent', 'PJSIP/1002');\n"
        "INSERT INTO call_transfer (tenant_id, session_id, transfer_type, initiated_by, "
        "from_leg, target_type, target, state) VALUES (:'A', :'SA', 'attended', 'api', "
        "'customer', 'agent', 'PJSIP/1003', {v})",
        "'failed'",
        "'consulting'",
        "23505",
        "call_transfer_one_live_idx",
        id="two-live-transfers",
    ),
]


@pytest.mark.parametrize(("template", "good", "bad", "sqlstate", "constraint"), CASES)
def test_constraint_bites(
    db: str, template: str, good: str | None, bad: str | None, sqlstate: str, constraint: str
) -> None:
    if good is None or bad is None:  # a statement that is wrong as written
        fails(db, template, sqlstate, constraint)
        return
    ok_rolled_back(db, template.replace("{v}", good))
    fails(db, template.replace("{v}", bad), sqlstate, constraint)


def test_deleting_an_option_keeps_dtmf_history(db: str) -> None:
    out = ok_rolled_back(
        db,
        "DELETE FROM ivr_menu_option WHERE id = :'OA';\n"
        "SELECT menu_id, option_id IS NULL, digit FROM call_dtmf_interaction "
        "WHERE session_id = :'SA';\n"
        "SELECT option_id IS NULL FROM call_transfer WHERE session_id = :'SA'",
    )
    assert rows(out) == [[IDS["MA"], "t", "1"], ["t"]]


def test_a_billed_session_cannot_be_deleted(db: str) -> None:
    fails(
        db,
        "DELETE FROM click_to_call_session WHERE id = :'SA'",
        "23503",
        "call_usage_billing_tenant_id_session_id_fkey",
    )


def test_deleting_a_tenant_removes_all_its_rows(db: str) -> None:
    counts = " UNION ALL ".join(
        f"SELECT '{t}', count(*) FROM {t} WHERE tenant_id = :'A'"
        for t in sorted(MODULE_TABLES | INFRA_TABLES - {"tenant"})
    )
    before = rows(ok(db, counts))
    seeded = {t for t, n in before if int(n) > 0}
    assert seeded >= POLICY_TABLES  # the seed put a row in every policy table
    after = rows(ok_rolled_back(db, f"DELETE FROM tenant WHERE id = :'A';\n{counts}"))
    assert [(t, int(n)) for t, n in after if int(n) > 0] == []
    # tenant B untouched
    assert rows(ok(db, "SELECT count(*) FROM ivr_menu WHERE tenant_id = :'B'")) == [["1"]]
