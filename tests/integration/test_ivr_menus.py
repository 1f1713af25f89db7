"""IVR menus: the repository against PostgreSQL, the API over the Unix socket, `ctc ivr`."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import yaml

from engine.daemon import Engine
from engine.domain.ivr import IvrAction, IvrMenu, IvrOption, TransferTargetType
from engine.errors import Conflict, InvalidInput, NotFound
from engine.ivr_yaml import dump_menus, load_menus
from tests.support.cli import run_ctc
from tests.support.http import Api
from tests.support.tenants import new_tenant, tenant_headers
from tests.support.yaml_bombs import BILLION_LAUGHS

IVR = "/api/v1/ivr-menus"

# Every field the loader accepts, option order not sorted, an explicit silent hangup
# fallback (main), the default fallback (support) and a transfer fallback (billing).
# Menus are in name order: that is the order they are loaded back in.
MENUS_YAML = """\
menus:
  billing:
    description: Billing questions
    greeting: Please enter your account number, then hash
    inter_digit_timeout_ms: 2000
    input_mode: until_terminator
    input_length: 10
    terminator: "#"
    variable: account
    options:
      collected:
        action: http_lookup
        prompt: sound:one-moment
        url: https://erp.example/balance?acct={account}
        method: POST
        params: {acct: "{account}", kind: balance}
        timeout_ms: 1500
        result_variable: balance
        say: number
        routes: {overdue: main, blocked: support}
        next: main
        failure_prompt: sound:lookup-failed
      timeout: {action: back}
    fallback:
      action: transfer
      target_type: number
      target: "+14155550100"
      failure_prompt: sound:sorry
  main:
    greeting: sound:main-menu
    invalid_prompt: sound:invalid
    timeout_prompt: sound:timeout
    timeout_ms: 4000
    max_retries: 2
    options:
      "1": {action: submenu, menu: billing, prompt: sound:billing}
      "2": {action: transfer, target_type: agent, target: 1001}
      "0": {action: record_message, max_duration_s: 60, beep: false, silence_s: 5, next: main}
      "*": {action: repeat}
      "#": {action: set_variable, name: lang, value: en, next: support}
      invalid: {action: hangup, prompt: sound:bye}
    fallback: {action: hangup}
  support:
    input_mode: fixed_length
    input_length: 4
    variable: pin
    options:
      collected: {action: transfer, target_type: endpoint, target: PJSIP/1001}
"""


HANGUP = IvrOption(IvrAction.HANGUP)


def _menu(name: str, **options: IvrOption) -> IvrMenu:
    return IvrMenu(name, options=options or {"1": HANGUP})


# -- repository -------------------------------------------------------------------------------


async def test_yaml_to_db_to_yaml_round_trip(api_engine: Engine) -> None:
    tid = (await new_tenant(api_engine.store)).id
    original = load_menus(MENUS_YAML)
    saved = await api_engine.store.ivr.save(tid, original)
    assert {n: s.version for n, s in saved.items()} == {"billing": 1, "main": 1, "support": 1}

    loaded = await api_engine.store.ivr.all(tid)
    assert loaded == original
    assert dump_menus(loaded) == dump_menus(original)
    assert list(loaded["main"].options) == ["1", "2", "0", "*", "#", "invalid"]
    assert loaded["main"].fallback == HANGUP  # explicit, silent
    assert loaded["support"].fallback is None  # the default (goodbye prompt)

    # the row really holds the columns, not one blob
    conn = await asyncpg.connect(api_engine.settings.database.url)
    try:
        row = await conn.fetchrow(
            "SELECT o.action, o.transfer_target_type, o.transfer_target, o.position "
            "FROM ivr_menu_option o JOIN ivr_menu m ON m.id = o.menu_id "
            "WHERE m.tenant_id = $1 AND m.name = 'main' AND o.digit = '2'",
            tid,
        )
        assert row is not None
        assert tuple(row) == ("transfer", "agent", "1001", 1)
        submenu = await conn.fetchval(
            "SELECT t.name FROM ivr_menu_option o JOIN ivr_menu m ON m.id = o.menu_id "
            "JOIN ivr_menu t ON t.id = o.target_menu_id "
            "WHERE m.tenant_id = $1 AND m.name = 'main' AND o.digit = '1'",
            tid,
        )
        assert submenu == "billing"
    finally:
        await conn.close()


async def test_save_replaces_by_name_and_bumps_version(api_engine: Engine) -> None:
    tid = (await new_tenant(api_engine.store)).id
    await api_engine.store.ivr.save(tid, load_menus(MENUS_YAML))
    main = (await api_engine.store.ivr.get(tid, "main")).menu
    smaller = IvrMenu("main", greeting="sound:new", options={"9": HANGUP})
    saved = await api_engine.store.ivr.save(tid, {"main": smaller})
    assert saved["main"].version == 2
    assert (await api_engine.store.ivr.get(tid, "main")).menu == smaller
    assert (await api_engine.store.ivr.get(tid, "billing")).version == 1  # untouched
    assert main != smaller


async def test_save_refuses_unknown_targets_and_routing_rules(api_engine: Engine) -> None:
    tid = (await new_tenant(api_engine.store)).id
    bad = _menu("m", **{"1": IvrOption(IvrAction.SUBMENU, menu="nope")})
    with pytest.raises(InvalidInput) as err:
        await api_engine.store.ivr.save(tid, {"m": bad})
    assert err.value.field == "m.options.1.menu"

    to_rule = IvrOption(
        IvrAction.TRANSFER, target_type=TransferTargetType.ROUTING_RULE, target="sales"
    )
    with pytest.raises(InvalidInput) as err:
        await api_engine.store.ivr.save(tid, {"m": _menu("m", **{"5": to_rule})})
    assert err.value.field == "m.options.5.target"
    assert await api_engine.store.ivr.all(tid) == {}  # nothing half-saved

    conn = await asyncpg.connect(api_engine.settings.database.url)
    try:
        await conn.execute(
            "INSERT INTO call_routing_rule (tenant_id, name, match_type, strategy, target) "
            "VALUES ($1, 'sales', 'tenant_default', 'ring_agent', '1001')",
            tid,
        )
    finally:
        await conn.close()
    menu = IvrMenu("m", options={"5": to_rule}, fallback=to_rule)
    await api_engine.store.ivr.save(tid, {"m": menu})
    assert (await api_engine.store.ivr.get(tid, "m")).menu == menu


async def test_delete_refuses_while_referenced(api_engine: Engine) -> None:
    tid = (await new_tenant(api_engine.store)).id
    await api_engine.store.ivr.save(tid, load_menus(MENUS_YAML))
    with pytest.raises(Conflict, match=r"main\.options\.1\.menu"):
        await api_engine.store.ivr.delete(tid, "billing")  # main's submenu
    with pytest.raises(Conflict, match="'support' is in use"):
        await api_engine.store.ivr.delete(tid, "support")  # main's set_variable next
    with pytest.raises(NotFound):
        await api_engine.store.ivr.delete(tid, "nope")

    other = _menu("other")
    saved = await api_engine.store.ivr.save(tid, {"other": other})
    conn = await asyncpg.connect(api_engine.settings.database.url)
    try:
        await conn.execute(
            "INSERT INTO call_routing_rule (tenant_id, name, match_type, strategy, ivr_menu_id) "
            "VALUES ($1, 'ivr', 'tenant_default', 'ivr_menu', $2)",
            tid,
            saved["other"].id,
        )
        with pytest.raises(Conflict, match="call_routing_rule"):
            await api_engine.store.ivr.delete(tid, "other")  # the FK says so
        await conn.execute("DELETE FROM call_routing_rule WHERE tenant_id = $1", tid)
    finally:
        await conn.close()
    await api_engine.store.ivr.delete(tid, "other")
    assert "other" not in await api_engine.store.ivr.all(tid)


# -- API --------------------------------------------------------------------------------------

MAIN = {
    "greeting": "sound:main-menu",
    "options": {
        "1": {"action": "submenu", "menu": "sales"},
        "2": {"action": "transfer", "target_type": "agent", "target": "1001"},
    },
    "fallback": {"action": "hangup", "prompt": "sound:bye"},
}
SALES = {"options": {"9": {"action": "back"}, "0": {"action": "hangup"}}}


async def test_api_crud(api_engine: Engine, unix_api: Api) -> None:
    t = (await new_tenant(api_engine.store)).slug
    status, body, _ = await unix_api.call(
        "PUT", f"{IVR}/sales", json=SALES, headers=tenant_headers(t)
    )
    assert status == 201, body
    assert body == {"name": "sales", "version": 1, "menu": SALES}

    status, body, headers = await unix_api.call(
        "PUT", f"{IVR}/main", json=MAIN, headers=tenant_headers(t)
    )
    assert status == 201, body
    assert headers["Location"] == f"{IVR}/main"
    assert body["menu"] == MAIN

    status, body, _ = await unix_api.call("GET", IVR, headers=tenant_headers(t))
    assert status == 200
    assert [(m["name"], m["version"]) for m in body["items"]] == [("main", 1), ("sales", 1)]

    changed = {**MAIN, "max_retries": 1}
    status, body, _ = await unix_api.call(
        "PUT", f"{IVR}/main", json=changed, headers=tenant_headers(t)
    )
    assert status == 200, body
    assert body["version"] == 2
    status, body, _ = await unix_api.call("GET", f"{IVR}/main", headers=tenant_headers(t))
    assert status == 200
    assert body["menu"] == changed

    # a GET body PUTs back unchanged (apart from the version)
    status, again, _ = await unix_api.call(
        "PUT", f"{IVR}/main", json=body["menu"], headers=tenant_headers(t)
    )
    assert (status, again["menu"], again["version"]) == (200, changed, 3)

    status, err, _ = await unix_api.call("DELETE", f"{IVR}/sales", headers=tenant_headers(t))
    assert status == 409, err
    assert err["error"]["code"] == "conflict"
    assert "main.options.1.menu" in err["error"]["message"]

    status, body, _ = await unix_api.call("DELETE", f"{IVR}/main", headers=tenant_headers(t))
    assert (status, body) == (204, None)
    status, err, _ = await unix_api.call("GET", f"{IVR}/main", headers=tenant_headers(t))
    assert (status, err["error"]["code"]) == (404, "not_found")
    status, err, _ = await unix_api.call("DELETE", f"{IVR}/main", headers=tenant_headers(t))
    assert status == 404
    status, _, _ = await unix_api.call("DELETE", f"{IVR}/sales", headers=tenant_headers(t))
    assert status == 204


def _with_option(key: str, option: Any) -> dict[str, Any]:
    return {"options": {"0": {"action": "hangup"}, key: option}}


def _lookup(url: str) -> dict[str, Any]:
    return {"action": "http_lookup", "url": url}


TO_NOBODY = {"action": "transfer", "target_type": "agent"}
TO_BAD_NUMBER = {"action": "transfer", "target_type": "number", "target": "555"}


@pytest.mark.parametrize(
    ("name", "body", "field"),
    [
        ("m", _with_option("x", {"action": "hangup"}), "options.x"),
        ("m", _with_option("12", {"action": "hangup"}), "options.12"),
        ("m", _with_option("1", {"action": "submenu", "menu": "nope"}), "options.1.menu"),
        ("m", _with_option("1", {"action": "submenu"}), "options.1.menu"),
        ("m", _with_option("1", TO_NOBODY), "options.1.target"),
        ("m", _with_option("1", TO_BAD_NUMBER), "options.1.target"),
        ("m", _with_option("1", {"action": "hangup", "menu": "m"}), "options.1.menu"),
        ("m", _with_option("1", {"action": "explode"}), "options.1.action"),
        # lookups only to http(s), and not to the engine's neighbours (netpolicy)
        ("m", _with_option("1", _lookup("file:///etc/passwd")), "options.1.url"),
        ("m", _with_option("1", _lookup("gopher://erp/x")), "options.1.url"),
        ("m", _with_option("1", _lookup("http://169.254.169.254/x")), "options.1.url"),
        ("m", {"fallback": _lookup("http://[fd00::1]/{caller}")}, "fallback.url"),
        ("m", {"greeting": "hi", "colour": "red"}, "colour"),
        ("m", {"timeout_ms": 5}, "timeout_ms"),
        ("m", {"options": {"1": {"action": "repeat"}}, "fallback": {"action": "repeat"}}, "name"),
        ("bad name!", _with_option("1", {"action": "hangup"}), "name"),
    ],
)  # fmt: skip
async def test_api_put_rejects_bad_menus_naming_the_field(
    api_engine: Engine, unix_api: Api, name: str, body: dict[str, Any], field: str
) -> None:
    t = (await new_tenant(api_engine.store)).slug
    status, err, _ = await unix_api.call(
        "PUT", f"{IVR}/{name}", json=body, headers=tenant_headers(t)
    )
    assert status == 422, err
    assert err["error"]["code"] == "validation_error"
    assert err["error"]["details"][0]["field"] == field, err
    status, body, _ = await unix_api.call("GET", IVR, headers=tenant_headers(t))
    assert body["items"] == []


async def test_api_put_reports_every_problem_of_a_menu_in_document_order(
    api_engine: Engine, unix_api: Api
) -> None:
    t = (await new_tenant(api_engine.store)).slug
    body = {
        "greeting": "hello-world",
        "timeout_s": "soon",
        "options": {"1": {"action": "hangup", "colour": "red"}, "2": {"action": "dance"}},
    }
    status, err, _ = await unix_api.call("PUT", f"{IVR}/m", json=body, headers=tenant_headers(t))
    assert status == 422, err
    fields = [d["field"] for d in err["error"]["details"]]
    assert len(fields) >= 3, err
    assert fields[0] == "timeout_s", err
    assert "options.1.colour" in fields, err
    assert "options.2.action" in fields, err
    assert err["error"]["message"].startswith("timeout_s: "), err


async def test_api_put_rejects_duplicate_digits_and_non_json(
    api_engine: Engine, unix_api: Api
) -> None:
    t = (await new_tenant(api_engine.store)).slug
    text = '{"options": {"1": {"action": "hangup"}, "1": {"action": "repeat"}}}'
    headers = {**tenant_headers(t), "Content-Type": "application/json"}
    status, err, _ = await unix_api.call("PUT", f"{IVR}/m", data=text, headers=headers)
    assert status == 422, err
    assert err["error"]["details"][0] == {"field": "options.1", "message": "duplicate key"}

    # any JSON whitespace and escapes
    text = '{\n\t"greeting":\t"a\\/b \\u00e9",\r\n "options": {"1": {"action": "hangup"}}}'
    status, body, _ = await unix_api.call("PUT", f"{IVR}/m", data=text, headers=headers)
    assert status == 201, body
    assert body["menu"]["greeting"] == "a/b \u00e9"

    status, err, _ = await unix_api.call("PUT", f"{IVR}/m", data="{nope", headers=headers)
    assert (status, err["error"]["code"]) == (400, "invalid_json")
    status, err, _ = await unix_api.call("PUT", f"{IVR}/m", json=[1], headers=tenant_headers(t))
    assert (status, err["error"]["code"]) == (422, "validation_error")


async def test_api_menus_are_per_tenant(api_engine: Engine, unix_api: Api) -> None:
    a = (await new_tenant(api_engine.store)).slug
    b = (await new_tenant(api_engine.store)).slug
    status, _, _ = await unix_api.call("PUT", f"{IVR}/sales", json=SALES, headers=tenant_headers(a))
    assert status == 201
    status, _, _ = await unix_api.call("GET", f"{IVR}/sales", headers=tenant_headers(b))
    assert status == 404
    status, body, _ = await unix_api.call("GET", IVR, headers=tenant_headers(b))
    assert body["items"] == []
    status, err, _ = await unix_api.call("DELETE", f"{IVR}/sales", headers=tenant_headers(b))
    assert status == 404
    # b cannot point at a's menu
    status, err, _ = await unix_api.call("PUT", f"{IVR}/main", json=MAIN, headers=tenant_headers(b))
    assert status == 422
    assert err["error"]["details"][0]["field"] == "options.1.menu"
    # the same name in b is b's own
    status, _, _ = await unix_api.call("PUT", f"{IVR}/sales", json=SALES, headers=tenant_headers(b))
    assert status == 201
    status, body, _ = await unix_api.call("GET", f"{IVR}/sales", headers=tenant_headers(a))
    assert body["version"] == 1


# -- ctc ivr ----------------------------------------------------------------------------------


async def test_ctc_ivr_import_and_export(
    api_engine: Engine, cli_env: dict[str, str], tmp_path: Path
) -> None:
    tenant = await new_tenant(api_engine.store)
    slug, tid = tenant.slug, tenant.id
    good = tmp_path / "menus.yaml"
    good.write_text(MENUS_YAML)
    code, out, err = await run_ctc("ivr", "import", str(good), "--tenant", slug, env=cli_env)
    assert code == 0, err
    assert out.strip() == (
        f"imported 3 menu(s) into tenant {slug}: billing (v1), main (v1), support (v1)"
    )
    assert await api_engine.store.ivr.all(tid) == load_menus(MENUS_YAML)

    code, out, err = await run_ctc("ivr", "export", "--tenant", slug, env=cli_env)
    assert code == 0, err
    assert out == dump_menus(load_menus(MENUS_YAML))
    assert load_menus(out) == load_menus(MENUS_YAML)

    # the export imports again (into another tenant, and over itself)
    tenant = await new_tenant(api_engine.store)
    other, other_id = tenant.slug, tenant.id
    exported = tmp_path / "exported.yaml"
    exported.write_text(out)
    code, _, err = await run_ctc("ivr", "import", str(exported), "--tenant", other, env=cli_env)
    assert code == 0, err
    assert await api_engine.store.ivr.all(other_id) == load_menus(MENUS_YAML)
    code, out, err = await run_ctc("ivr", "import", str(exported), "--tenant", slug, env=cli_env)
    assert code == 0, err
    assert "main (v2)" in out

    code, out, err = await run_ctc("ivr", "export", "support", "--tenant", slug, env=cli_env)
    assert code == 0, err
    assert list(yaml.safe_load(out)["menus"]) == ["support"]
    code, _, err = await run_ctc("ivr", "export", "nope", "--tenant", slug, env=cli_env)
    assert code == 1
    assert err.strip() == "error: ivr menu nope not found"


async def test_ctc_ivr_import_bad_file_is_one_line_with_file_and_line(
    api_engine: Engine, cli_env: dict[str, str], tmp_path: Path
) -> None:
    tenant = await new_tenant(api_engine.store)
    slug, tid = tenant.slug, tenant.id
    bad = tmp_path / "bad.yaml"
    bad.write_text(MENUS_YAML.replace("menu: billing", "menu: biling"))
    code, out, err = await run_ctc("ivr", "import", str(bad), "--tenant", slug, env=cli_env)
    assert code == 1
    assert out == ""
    assert err.strip() == f"error: {bad}:36: menus.main.options.1.menu: unknown menu 'biling'"
    assert len(err.strip().splitlines()) == 1
    assert await api_engine.store.ivr.all(tid) == {}

    # valid on its own, but a transfer to a routing rule the tenant does not have
    rule = tmp_path / "rule.yaml"
    rule.write_text(
        "menus:\n  m:\n    options:\n"
        '      "1": {action: transfer, target_type: routing_rule, target: sales}\n'
    )
    code, _, err = await run_ctc("ivr", "import", str(rule), "--tenant", slug, env=cli_env)
    assert code == 1
    assert err.strip() == (f"error: {rule}: menus.m.options.1.target: unknown routing rule 'sales'")

    missing = tmp_path / "missing.yaml"
    code, _, err = await run_ctc("ivr", "import", str(missing), "--tenant", slug, env=cli_env)
    assert code == 1
    assert str(missing) in err


async def test_ctc_ivr_import_refuses_a_yaml_alias_bomb(
    api_engine: Engine, cli_env: dict[str, str], tmp_path: Path
) -> None:
    tenant = await new_tenant(api_engine.store)
    slug, tid = tenant.slug, tenant.id
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("menus:\n" + textwrap.indent(BILLION_LAUGHS, "  "))
    code, _, err = await run_ctc("ivr", "import", str(bomb), "--tenant", slug, env=cli_env)
    assert code == 1
    assert err.strip() == f"error: {bomb}:10: more than 64 YAML aliases"
    assert await api_engine.store.ivr.all(tid) == {}


async def test_api_menu_body_is_json_so_yaml_aliases_never_reach_the_loader(
    api_engine: Engine, unix_api: Api
) -> None:
    t = (await new_tenant(api_engine.store)).slug
    headers = {**tenant_headers(t), "Content-Type": "application/json"}
    body = '{"greeting": &a "x", "description": *a}'
    status, err, _ = await unix_api.call("PUT", f"{IVR}/m", data=body, headers=headers)
    assert (status, err["error"]["code"]) == (400, "invalid_json")


async def test_api_put_refusing_a_file_lookup_says_why(api_engine: Engine, unix_api: Api) -> None:
    t = (await new_tenant(api_engine.store)).slug
    body = _with_option("1", {"action": "http_lookup", "url": "file:///etc/passwd"})
    status, err, _ = await unix_api.call("PUT", f"{IVR}/m", json=body, headers=tenant_headers(t))
    assert status == 422, err
    assert err["error"]["details"] == [
        {"field": "options.1.url", "message": "must be an http or https URL, not file://"}
    ]


async def test_a_lookup_to_a_private_address_saves_once_the_tenant_allows_it(
    api_engine: Engine,
) -> None:
    tenant = await new_tenant(api_engine.store)
    slug, tid = tenant.slug, tenant.id
    lookup = IvrOption(IvrAction.HTTP_LOOKUP, url="http://10.1.2.3/balance/{caller}")
    with pytest.raises(InvalidInput) as refused:
        await api_engine.store.ivr.save(tid, {"m": _menu("m", **{"1": lookup})})
    assert refused.value.field == "m.options.1.url"
    assert refused.value.reason.startswith("10.1.2.3 is a private address")
    await api_engine.store.tenants.update(slug, allow_cidrs=("10.1.0.0/16",))
    saved = await api_engine.store.ivr.save(tid, {"m": _menu("m", **{"1": lookup})})
    assert saved["m"].menu.options["1"].url == "http://10.1.2.3/balance/{caller}"


async def test_ctc_ivr_import_refuses_a_file_lookup_at_its_line(
    api_engine: Engine, cli_env: dict[str, str], tmp_path: Path
) -> None:
    tenant = await new_tenant(api_engine.store)
    slug, tid = tenant.slug, tenant.id
    bad = tmp_path / "lookup.yaml"
    bad.write_text(
        'menus:\n  m:\n    options:\n      "1": {action: http_lookup, url: "file:///etc/passwd"}\n'
    )
    code, _, err = await run_ctc("ivr", "import", str(bad), "--tenant", slug, env=cli_env)
    assert code == 1
    assert err.strip() == (
        f"error: {bad}:4: menus.m.options.1.url: must be an http or https URL, not file://"
    )
    assert await api_engine.store.ivr.all(tid) == {}
