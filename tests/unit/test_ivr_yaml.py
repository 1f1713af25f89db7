"""Loading IVR menus from YAML: every validation error names its file, line and field."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from engine.domain.ivr import (
    InputMode,
    IvrAction,
    IvrMenu,
    IvrOption,
    SayMode,
    TransferTargetType,
)
from engine.errors import ConfigError
from engine.ivr_yaml import dump_menus, load_menus, load_menus_file

GOOD = """\
menus:
  main:
    description: front door
    greeting: sound:main
    invalid_prompt: sound:invalid
    timeout_prompt: sound:timeout
    timeout_ms: 4000
    max_retries: 2
    options:
      1: {action: submenu, menu: sales}
      2: {action: submenu, menu: account}
      0: {action: transfer, target_type: agent, target: 1001, failure_prompt: sound:busy}
      "#": {action: repeat}
      timeout: {action: transfer, target_type: routing_rule, target: after-hours}
    fallback: {action: hangup, prompt: sound:vm-goodbye}
  sales:
    greeting: sound:sales
    options:
      1: {action: transfer, target_type: number, target: "+14155550100"}
      3: {action: record_message, prompt: sound:leave-message, max_duration_s: 60, beep: false}
      4: {action: set_variable, name: skill, value: sales, next: main}
      "*": {action: back}
  account:
    greeting: sound:enter-account
    input_mode: until_terminator
    terminator: "#"
    input_length: 6
    inter_digit_timeout_ms: 2000
    variable: acct
    options:
      collected:
        action: http_lookup
        url: https://erp.example/balance/{acct}
        method: POST
        params: {account: "{acct}"}
        result_variable: balance
        say: number
        routes: {"0": main}
        next: main
"""


def error(text: str) -> str:
    with pytest.raises(ConfigError) as info:
        load_menus(textwrap.dedent(text), file="menus.yaml")
    return str(info.value)


def test_a_good_document_loads_into_the_domain_model() -> None:
    menus = load_menus(GOOD, file="menus.yaml")
    assert list(menus) == ["main", "sales", "account"]
    main = menus["main"]
    assert main.timeout_ms == 4000
    assert main.max_retries == 2
    assert main.options["1"] == IvrOption(IvrAction.SUBMENU, menu="sales")
    assert main.options["0"] == IvrOption(
        IvrAction.TRANSFER,
        target_type=TransferTargetType.AGENT,
        target="1001",  # an unquoted number is still text
        failure_prompt="sound:busy",
    )
    assert main.fallback == IvrOption(IvrAction.HANGUP, prompt="sound:vm-goodbye")
    account = menus["account"]
    assert account.input_mode is InputMode.UNTIL_TERMINATOR
    assert account.variable == "acct"
    lookup = account.options["collected"]
    assert lookup.method == "POST"
    assert lookup.say is SayMode.NUMBER
    assert lookup.params == {"account": "{acct}"}
    assert lookup.routes == {"0": "main"}
    assert menus["sales"].options["3"].beep is False


def test_dump_reads_back_to_equal_menus() -> None:
    menus = load_menus(GOOD)
    text = dump_menus(menus)
    assert load_menus(text) == menus
    assert "'#':" in text  # keys YAML would misread are quoted


def test_dump_leaves_defaults_out() -> None:
    menus = {"m": IvrMenu("m", greeting="sound:m", options={"1": IvrOption(IvrAction.HANGUP)})}
    assert dump_menus(menus) == (
        "menus:\n  m:\n    greeting: sound:m\n    options:\n      '1':\n        action: hangup\n"
    )


def test_load_menus_file_names_the_path(tmp_path: Path) -> None:
    path = tmp_path / "ivr.yaml"
    path.write_text("menus:\n  m:\n    options:\n      1: {action: submenu, menu: x}\n")
    with pytest.raises(ConfigError) as info:
        load_menus_file(path)
    assert str(info.value) == f"{path}:4: menus.m.options.1.menu: unknown menu 'x'"
    path.write_text(GOOD)
    assert set(load_menus_file(path)) == {"main", "sales", "account"}


def test_a_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_menus_file(tmp_path / "nope.yaml")


def test_unknown_target_menu() -> None:
    text = GOOD.replace("menu: sales}", "menu: salse}")
    assert error(text) == "menus.yaml:10: menus.main.options.1.menu: unknown menu 'salse'"


def test_unknown_menu_in_next_and_routes() -> None:
    assert error(GOOD.replace("next: main}", "next: mian}")) == (
        "menus.yaml:21: menus.sales.options.4.next: unknown menu 'mian'"
    )
    assert error(GOOD.replace('{"0": main}', '{"0": nowhere}')) == (
        "menus.yaml:38: menus.account.options.collected.routes.0: unknown menu 'nowhere'"
    )


def test_duplicate_digits() -> None:
    assert error(
        """\
        menus:
          m:
            options:
              1: {action: hangup}
              "1": {action: repeat}
        """
    ) == ("menus.yaml:5: menus.m.options.1: duplicate key")


def test_invalid_digit() -> None:
    assert error(
        """\
        menus:
          m:
            options:
              12: {action: hangup}
        """
    ) == (
        "menus.yaml:4: menus.m.options.12: not a key: use one of 0-9, * or # (quoted), "
        "or timeout, invalid, collected"
    )


def test_submenus_with_no_exit() -> None:
    assert error(
        """\
        menus:
          ok:
            options:
              1: {action: submenu, menu: a}
          a:
            options:
              1: {action: submenu, menu: b}
            fallback: {action: repeat}
          b:
            options:
              1: {action: submenu, menu: a}
              2: {action: repeat}
            fallback: {action: submenu, menu: a}
        """
    ) == (
        "menus.yaml:5: menus.a: no exit: from menu(s) a, b no option or fallback ever "
        "leads to transfer, record_message, http_lookup or hangup"
    )


def test_unknown_keys_anywhere() -> None:
    assert error("menus: {m: {options: {1: {action: hangup}}}}\nmenu: {}\n") == (
        "menus.yaml:2: menu: unknown key"
    )
    assert error(
        """\
        menus:
          m:
            greting: sound:m
        """
    ) == ("menus.yaml:3: menus.m.greting: unknown key")
    assert error(
        """\
        menus:
          m:
            options:
              1: {action: transfer, target_type: agent, target: "1", menu: m}
        """
    ) == ("menus.yaml:4: menus.m.options.1.menu: unknown key for action transfer")


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ("{prompt: sound:x}", "menus.m.options.1.action: required"),
        (
            "{action: jump}",
            "menus.m.options.1.action: must be one of: submenu, back, repeat, transfer, "
            "record_message, http_lookup, set_variable, hangup",
        ),
        ("{action: submenu}", "menus.m.options.1.menu: required for submenu"),
        ("{action: transfer, target: x}", "menus.m.options.1.target_type: required for transfer"),
        (
            "{action: transfer, target_type: agent}",
            "menus.m.options.1.target: required for transfer",
        ),
        (
            "{action: transfer, target_type: number, target: '555'}",
            "menus.m.options.1.target: must be an E.164 number like +14155550100",
        ),
        ("{action: http_lookup}", "menus.m.options.1.url: required for http_lookup"),
        (
            "{action: http_lookup, url: 'http://x', method: PUT}",
            "menus.m.options.1.method: must be one of: GET, POST",
        ),
        (
            "{action: set_variable, value: x}",
            "menus.m.options.1.name: must be a variable name (letters, digits, '_')",
        ),
        (
            "{action: record_message, beep: 'yes'}",
            "menus.m.options.1.beep: expected true or false",
        ),
        (
            "{action: record_message, silence_s: 0}",
            "menus.m.options.1.silence_s: must be greater than 0",
        ),
        ("hangup", "menus.m.options.1: expected a mapping"),
    ],
)
def test_missing_or_wrong_fields_per_action(option: str, message: str) -> None:
    text = f"menus:\n  m:\n    options:\n      1: {option}\n"
    assert error(text) == f"menus.yaml:4: {message}"


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("timeout_ms: soon", "menus.m.timeout_ms: expected an integer"),
        ("timeout_ms: 50", "menus.m.timeout_ms: must be between 100 and 600000"),
        ("max_retries: true", "menus.m.max_retries: expected an integer"),
        ("greeting: ''", "menus.m.greeting: expected a non-empty string"),
        (
            "input_mode: spoken",
            "menus.m.input_mode: must be one of: single_digit, fixed_length, until_terminator",
        ),
    ],
)
def test_wrong_menu_fields(line: str, message: str) -> None:
    text = f"menus:\n  m:\n    options: {{1: {{action: hangup}}}}\n    {line}\n"
    assert error(text) == f"menus.yaml:4: {message}"


def test_collect_mode_needs_its_fields() -> None:
    assert error(
        """\
        menus:
          m:
            input_mode: fixed_length
            input_length: 4
            options:
              collected: {action: hangup}
        """
    ) == ("menus.yaml:2: menus.m.variable: required: a variable name (letters, digits, '_')")
    assert error(
        """\
        menus:
          m:
            input_mode: fixed_length
            input_length: 4
            variable: pin
            options:
              collected: {action: hangup}
              1: {action: hangup}
        """
    ) == (
        "menus.yaml:8: menus.m.options.1: digit options are not allowed when the menu "
        "collects input"
    )


def test_document_shape_errors() -> None:
    assert error("menus: {}\n") == "menus.yaml:1: menus: must define at least one menu"
    assert error("other: 1\n") == (
        "menus.yaml:1: other: unknown key\nmenus.yaml:1: menus: required"
    )
    assert error("menus:\n") == "menus.yaml:1: menus: required"
    assert error("menus: [a]\n") == "menus.yaml:1: menus: expected a mapping"
    assert error("menus:\n  'bad name': {}\n") == (
        "menus.yaml:2: menus.bad name: menu names are letters, digits, '_', '.', '-' (at most 63)"
    )


def test_yaml_syntax_error_has_a_line() -> None:
    message = error("menus:\n  m: {options: {1: {action: hangup}\n")
    assert message.startswith("menus.yaml:3: ")


@pytest.mark.parametrize(
    ("escape", "problem"),
    [("\\ud800", "no lone surrogates"), ("\\0", "must not contain NUL")],
)
def test_text_the_database_cannot_store_is_refused_at_its_line(escape: str, problem: str) -> None:
    text = textwrap.dedent(
        f"""\
        menus:
          main:
            greeting: "hello{escape}"
            options:
              "1": {{action: hangup}}
        """
    )
    with pytest.raises(ConfigError) as caught:
        load_menus(text, file="menus.yaml")
    assert str(caught.value).startswith("menus.yaml:3: menus.main.greeting: ")
    assert problem in str(caught.value)
