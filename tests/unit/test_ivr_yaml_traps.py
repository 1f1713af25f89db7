"""What a menu designer is told: every problem of a file in file order, the YAML traps of
``*`` and ``#`` keys, placeholders no step sets, and ``ctc ivr validate``."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from engine.cli import cli
from engine.errors import ConfigError, ConfigErrors
from engine.ivr_yaml import load_menus, menu_warnings

MANY = """\
menus:
  main:
    greting: sound:hello-world
    timeout_ms: soon
    options:
      1: {action: submenu, menu: nowhere}
      2: {action: http_lookup, url: "https://erp.example.com/x/{acct}"}
      9: {action: jump}
  other:
    max_retries: -1
    options:
      1: {action: hangup}
"""

EVERY_PROBLEM = [
    "menus.yaml:3: menus.main.greting: unknown key",
    "menus.yaml:4: menus.main.timeout_ms: expected an integer",
    "menus.yaml:6: menus.main.options.1.menu: unknown menu 'nowhere'",
    "menus.yaml:7: menus.main.options.2.url: placeholder {acct} is set by no step: no menu "
    "collects into 'acct', no result_variable or set_variable names it (built in: caller)",
    "menus.yaml:8: menus.main.options.9.action: must be one of: submenu, back, repeat, "
    "transfer, record_message, http_lookup, set_variable, hangup",
    "menus.yaml:10: menus.other.max_retries: must be between 0 and 20",
]


def test_every_problem_is_reported_in_file_order() -> None:
    with pytest.raises(ConfigErrors) as caught:
        load_menus(MANY, file="menus.yaml")
    assert [str(e) for e in caught.value.errors] == EVERY_PROBLEM
    assert str(caught.value) == "\n".join(EVERY_PROBLEM)
    # whoever reports one problem reports the first
    assert (caught.value.line, caught.value.field) == (3, "menus.main.greting")


def test_one_problem_is_a_plain_config_error() -> None:
    with pytest.raises(ConfigError) as caught:
        load_menus("menus:\n  m:\n    greting: x\n    options: {1: {action: hangup}}\n")
    assert not isinstance(caught.value, ConfigErrors)
    assert str(caught.value) == "<string>:3: menus.m.greting: unknown key"


@pytest.mark.parametrize(
    "text",
    [
        "menus:\n  m:\n    options:\n      *: {action: back}\n      1: {action: hangup}\n",
        "menus:\n  m:\n    options: {1: {action: hangup}, *: {action: back}}\n",
    ],
    ids=["block", "flow"],
)
def test_an_unquoted_star_key_is_told_to_quote_star_and_hash(text: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_menus(text, file="menus.yaml")
    assert caught.value.reason == (
        'an unquoted * starts a YAML alias: quote * and # keys ("*": ..., "#": ...)'
    )
    assert (
        caught.value.line
        == text.splitlines().index(next(line for line in text.splitlines() if "*:" in line)) + 1
    )


HASH = textwrap.dedent(
    """\
    menus:
      m:
        options:
          1: {action: hangup}
          #: {action: repeat}
          "#": {action: repeat}
          # 2: {action: hangup}
        # greeting: sound:beep
        # Greeting recorded by Anna: sound:anna
    """
)


def test_an_unquoted_hash_key_loads_without_it_and_is_warned_about() -> None:
    menus = load_menus(HASH)
    assert sorted(menus["m"].options) == ["#", "1"]  # line 6, the quoted one
    assert menu_warnings(HASH, file="menus.yaml") == [
        "menus.yaml:5: an unquoted '#:' is a YAML comment: this line is ignored; "
        'quote the key ("#": ...)',
        "menus.yaml:7: looks like the key '2' commented out: YAML ignores this line",
        "menus.yaml:8: looks like the key 'greeting' commented out: YAML ignores this line",
    ]


@pytest.mark.parametrize(
    ("option", "set_by"),
    [
        ('{action: http_lookup, url: "https://erp.example.com/{caller}"}', None),
        ('{action: http_lookup, url: "https://erp.example.com/", params: {a: "{acct}"}}', None),
        ('{action: set_variable, name: skill, value: "x-{lang}"}', None),
        ('{action: http_lookup, url: "https://erp.example.com/{lang}"}', "set_variable"),
        ('{action: http_lookup, url: "https://erp.example.com/{acct}"}', "collect"),
        ('{action: http_lookup, url: "https://erp.example.com/{tier}"}', "result"),
    ],
)
def test_a_placeholder_must_be_set_by_some_step(option: str, set_by: str | None) -> None:
    extra = {
        None: "",
        "set_variable": "      8: {action: set_variable, name: lang, value: en}\n",
        "collect": "",
        "result": (
            "      8: {action: http_lookup, url: 'https://erp.example.com/t', "
            "result_variable: tier}\n"
        ),
    }[set_by]
    collect = (
        "  acct:\n    input_mode: fixed_length\n    input_length: 4\n    variable: acct\n"
        "    options: {collected: {action: hangup}}\n"
        if set_by == "collect"
        else ""
    )
    text = f"menus:\n  m:\n    options:\n      1: {option}\n{extra}{collect}"
    if set_by is not None or "{caller}" in option:
        assert "m" in load_menus(text)
        return
    with pytest.raises(ConfigError, match="is set by no step") as caught:
        load_menus(text)
    assert caught.value.line == 4


def test_ctc_ivr_validate_prints_every_problem_and_the_warnings(tmp_path: Path) -> None:
    bad = tmp_path / "menus.yaml"
    bad.write_text(MANY.replace("      9:", "      #: {action: hangup}\n      9:"))
    result = CliRunner().invoke(cli, ["ivr", "validate", str(bad)])
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert lines[0].startswith(f"warn: {bad}:8: an unquoted '#:' is a YAML comment")
    shifted = [p.replace("menus.yaml", str(bad)) for p in EVERY_PROBLEM]
    shifted[-2] = shifted[-2].replace(":8:", ":9:")
    shifted[-1] = shifted[-1].replace(":10:", ":11:")
    assert lines[1:] == [f"error: {p}" for p in shifted]


def test_ctc_ivr_validate_says_ok_for_a_good_file(tmp_path: Path) -> None:
    good = tmp_path / "menus.yaml"
    good.write_text("menus:\n  main:\n    options:\n      1: {action: hangup}\n")
    result = CliRunner().invoke(cli, ["ivr", "validate", str(good)])
    assert result.exit_code == 0, result.output
    assert result.stderr == f"ok: {good}: 1 menu(s): main\n"


def test_ctc_ivr_help_points_at_the_reference() -> None:
    result = CliRunner().invoke(cli, ["ivr", "--help"])
    assert "docs/ivr/reference.md" in result.output
    assert "ivr_yaml.py" not in result.output
