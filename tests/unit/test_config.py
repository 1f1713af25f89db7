"""Unit tests for engine.config (settings, loader) and engine.yaml_lines: loading, env
overrides, errors with file:line, secrets."""

from __future__ import annotations

import json
import textwrap
import typing
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel, SecretStr

import engine.config.loader as loader_module
import engine.yaml_lines as yaml_lines_module
from engine.config.loader import DEFAULT_CONFIG_PATH, load_settings
from engine.config.settings import Settings, redacted_summary
from engine.errors import ConfigError
from tests.support.yaml_bombs import BILLION_LAUGHS

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "engine.example.yaml"
SECRET = "s3cr3t-Pa55"


def write(tmp_path: Path, text: str, name: str = "engine.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def load_error(path: Path, env: dict[str, str] | None = None) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_settings(path, env={} if env is None else env)
    return info.value


# --------------------------------------------------------------------------- loading


def test_example_file_loads_and_equals_defaults() -> None:
    settings = load_settings(EXAMPLE, env={})
    assert settings == Settings()


def _model_paths(model: type[BaseModel], prefix: str = "") -> set[str]:
    """Every key a settings file may hold, dotted (``agi.enabled``), sections included."""
    paths: set[str] = set()
    for name, field in model.model_fields.items():
        path = prefix + (field.alias or name)
        paths.add(path)
        for kind in (field.annotation, *typing.get_args(field.annotation)):
            if isinstance(kind, type) and issubclass(kind, BaseModel):
                paths |= _model_paths(kind, f"{path}.")
    return paths


def _yaml_paths(tree: dict[str, Any], prefix: str = "") -> set[str]:
    """Every key of a YAML mapping, dotted, nested mappings included."""
    paths: set[str] = set()
    for key, value in tree.items():
        path = f"{prefix}{key}"
        paths.add(path)
        if isinstance(value, dict):
            paths |= _yaml_paths(value, f"{path}.")
    return paths


def test_example_file_has_exactly_the_settings_key_paths() -> None:
    example = _yaml_paths(yaml.safe_load(EXAMPLE.read_text(encoding="utf-8")))
    settings = _model_paths(Settings)
    assert sorted(settings - example) == [], "missing from config/engine.example.yaml"
    assert sorted(example - settings) == [], "in config/engine.example.yaml, not in Settings"


def test_empty_file_means_defaults(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, ""), env={})
    assert settings == Settings()
    assert settings.database.url == "postgresql://postgres@127.0.0.1:5432/ctc"
    assert settings.database.min_size == 1
    assert settings.database.max_size == 10
    assert settings.database.migrations_dir is None
    assert settings.api.socket == Path("/run/ctc/engine.sock")
    assert settings.api.socket_mode == 0o660
    assert settings.api.tcp.enabled is False
    assert settings.api.tcp.port == 8470
    assert settings.log.level == "info"
    assert settings.log.format == "auto"
    assert settings.ari.url == "http://127.0.0.1:8088"
    assert settings.ari.password is None
    assert settings.ami.port == 5038
    assert settings.ami.ping_interval == 20.0
    assert settings.agi.enabled is True
    assert settings.agi.port == 4573
    assert settings.calls.agent_endpoint_template == "PJSIP/{number}"
    assert settings.calls.default_caller_id is None
    assert settings.callbacks.max_attempts == 12
    assert settings.callbacks.backoff_max == 300.0


def test_comment_only_file_and_empty_section_mean_defaults(tmp_path: Path) -> None:
    path = write(tmp_path, "# nothing\napi:\n  # socket: /x\nlog:\n")
    assert load_settings(path, env={}) == Settings()


def test_values_are_read(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        database:
          url: postgres://ctc@db:5432/ctc
          min_size: 2
          max_size: 2
        api:
          tcp: {enabled: true, host: 0.0.0.0, port: 9000}
        log:
          level: WARNING
          format: json
        calls:
          default_caller_id: "+14155550100"
          customer_endpoint_template: "PJSIP/{number}@carrier"
        """,
    )
    settings = load_settings(path, env={})
    assert settings.database.url == "postgres://ctc@db:5432/ctc"
    assert (settings.database.min_size, settings.database.max_size) == (2, 2)
    assert settings.api.tcp.enabled is True
    assert settings.api.tcp.host == "0.0.0.0"
    assert settings.api.tcp.port == 9000
    assert settings.log.level == "warning"
    assert settings.log.format == "json"
    assert settings.calls.default_caller_id == "+14155550100"
    assert settings.calls.customer_endpoint_template == "PJSIP/{number}@carrier"


def test_settings_are_frozen() -> None:
    settings = Settings()
    with pytest.raises(ValueError, match="frozen"):
        settings.log.level = "debug"  # type: ignore[misc]


def test_default_path_missing_means_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(loader_module, "DEFAULT_CONFIG_PATH", tmp_path / "absent.yaml")
    settings = load_settings(env={"CTC_LOG_LEVEL": "debug"})
    assert settings.log.level == "debug"
    assert settings.database == Settings().database


def test_default_path_constant() -> None:
    assert Path("/etc/ctc/engine.yaml") == DEFAULT_CONFIG_PATH


def test_default_path_is_used_when_present(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, "log:\n  level: error\n")
    monkeypatch.setattr(loader_module, "DEFAULT_CONFIG_PATH", path)
    assert load_settings(env={}).log.level == "error"


def test_explicit_missing_file_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    err = load_error(missing)
    assert str(err) == f"{missing}: config file not found"
    assert err.file == str(missing)


def test_ctc_config_env_is_used(tmp_path: Path) -> None:
    path = write(tmp_path, "log:\n  level: debug\n")
    assert load_settings(env={"CTC_CONFIG": str(path)}).log.level == "debug"


def test_ctc_config_missing_file_is_named(tmp_path: Path) -> None:
    missing = str(tmp_path / "gone.yaml")
    with pytest.raises(ConfigError, match=r"gone\.yaml: config file not found"):
        load_settings(env={"CTC_CONFIG": missing})


def test_explicit_path_beats_ctc_config(tmp_path: Path) -> None:
    explicit = write(tmp_path, "log:\n  level: error\n", "a.yaml")
    other = write(tmp_path, "log:\n  level: debug\n", "b.yaml")
    assert load_settings(str(explicit), env={"CTC_CONFIG": str(other)}).log.level == "error"


def test_env_defaults_to_os_environ(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CTC_LOG_LEVEL", "warning")
    assert load_settings(write(tmp_path, "")).log.level == "warning"


def test_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    path = write(tmp_path, "- a\n- b\n")
    assert str(load_error(path)) == f"{path}:1: top level must be a mapping"


# --------------------------------------------------------------------------- errors


def test_yaml_syntax_error_names_line(tmp_path: Path) -> None:
    path = write(tmp_path, "log:\n  level: info\napi: [1, 2\n")
    err = load_error(path)
    assert err.file == str(path)
    assert err.line == 4
    assert str(err).startswith(f"{path}:4: ")
    assert "expected ',' or ']'" in str(err)


def test_yaml_bad_indentation_names_line(tmp_path: Path) -> None:
    path = write(tmp_path, "api:\n  socket: /x\n tcp: 1\n")
    err = load_error(path)
    assert err.line == 3
    assert "\n" not in str(err)


def test_unknown_top_level_key(tmp_path: Path) -> None:
    path = write(tmp_path, "log:\n  level: info\ndatbase: {}\n")
    assert str(load_error(path)) == f"{path}:3: datbase: unknown key"


def test_unknown_nested_key_names_line_and_dotted_field(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        # comment
        api:
          socket: /run/ctc/engine.sock
          tcp:
            enabled: true

            prot: 9000
        """,
    )
    err = load_error(path)
    assert str(err) == f"{path}:7: api.tcp.prot: unknown key"
    assert (err.line, err.field, err.reason) == (7, "api.tcp.prot", "unknown key")


def test_string_for_port_names_line_and_field(tmp_path: Path) -> None:
    path = write(tmp_path, "ami:\n  host: pbx\n  port: manager\n")
    assert str(load_error(path)) == f"{path}:3: ami.port: expected an integer"


def test_quoted_number_is_not_coerced(tmp_path: Path) -> None:
    path = write(tmp_path, 'agi:\n  port: "4573"\n')
    assert str(load_error(path)) == f"{path}:2: agi.port: expected an integer"


def test_port_range(tmp_path: Path) -> None:
    path = write(tmp_path, "api:\n  tcp:\n    port: 70000\n")
    assert str(load_error(path)) == f"{path}:3: api.tcp.port: must be between 1 and 65535"


def test_section_of_wrong_type(tmp_path: Path) -> None:
    path = write(tmp_path, "api: 5\n")
    assert str(load_error(path)) == f"{path}:1: api: expected a mapping"


def test_unquoted_socket_mode_is_rejected(tmp_path: Path) -> None:
    path = write(tmp_path, "api:\n  socket: /run/ctc/engine.sock\n  socket_mode: 0660\n")
    assert str(load_error(path)) == f"{path}:3: api.socket_mode: expected octal string"


@pytest.mark.parametrize("value", ["660", '"rw-rw----"', '"0999"', '"12345"'])
def test_other_bad_socket_modes(tmp_path: Path, value: str) -> None:
    path = write(tmp_path, f"api:\n  socket_mode: {value}\n")
    assert str(load_error(path)) == f"{path}:2: api.socket_mode: expected octal string"


@pytest.mark.parametrize(
    ("value", "mode"), [('"0640"', 0o640), ("'600'", 0o600), ('"2770"', 0o2770)]
)
def test_quoted_socket_mode_is_octal(tmp_path: Path, value: str, mode: int) -> None:
    path = write(tmp_path, f"api:\n  socket_mode: {value}\n")
    assert load_settings(path, env={}).api.socket_mode == mode


def test_log_level_enum_message(tmp_path: Path) -> None:
    path = write(tmp_path, "log:\n  level: loud\n")
    assert (
        str(load_error(path)) == f"{path}:2: log.level: must be one of: debug, info, warning, error"
    )


def test_log_format_enum_message(tmp_path: Path) -> None:
    path = write(tmp_path, "log:\n  format: xml\n")
    assert str(load_error(path)) == f"{path}:2: log.format: must be one of: auto, json, console"


def test_max_size_below_min_size(tmp_path: Path) -> None:
    path = write(tmp_path, "database:\n  min_size: 5\n  max_size: 2\n")
    err = load_error(path)
    assert (err.line, err.field) == (3, "database.max_size")
    assert str(err) == f"{path}:3: database.max_size: must be at least min_size (5)"


def test_min_size_above_default_max_points_at_section(tmp_path: Path) -> None:
    path = write(tmp_path, "log: {}\ndatabase:\n  min_size: 20\n")
    err = load_error(path)
    assert (err.line, err.field) == (2, "database.max_size")


def test_backoff_max_below_initial(tmp_path: Path) -> None:
    path = write(tmp_path, "callbacks:\n  backoff_initial: 10\n  backoff_max: 5\n")
    err = load_error(path)
    assert (err.line, err.field) == (3, "callbacks.backoff_max")


@pytest.mark.parametrize(
    ("yaml_text", "line", "field", "message"),
    [
        ("database:\n  url: mysql://x/y\n", 2, "database.url", "must start with"),
        ("database:\n  command_timeout: 0\n", 2, "database.command_timeout", "greater than 0"),
        ("database:\n  command_timeout: .inf\n", 2, "database.command_timeout", "finite"),
        ("database:\n  min_size: -1\n", 2, "database.min_size", "must be at least 0"),
        ("api:\n  max_body_bytes: 0\n", 2, "api.max_body_bytes", "greater than 0"),
        (
            "api:\n  max_event_streams_per_tenant: 0\n",
            2,
            "api.max_event_streams_per_tenant",
            "must be at least 1",
        ),
        ("api:\n  max_event_streams: -5\n", 2, "api.max_event_streams", "must be at least 1"),
        ("api:\n  socket: ''\n", 2, "api.socket", "must not be empty"),
        ("api:\n  tcp:\n    enabled: maybe\n", 3, "api.tcp.enabled", "expected true or false"),
        ("ari:\n  url: ws://pbx\n", 2, "ari.url", "http:// or https://"),
        ("ari:\n  app: my app\n", 2, "ari.app", "letters, digits"),
        ("ari:\n  password: 1234\n", 2, "ari.password", "expected a string"),
        ("ami:\n  ping_interval: -1\n", 2, "ami.ping_interval", "greater than 0"),
        ("ami:\n  username: ''\n", 2, "ami.username", "must not be empty"),
        ("calls:\n  agent_ring_timeout: 601\n", 2, "calls.agent_ring_timeout", "1 and 600"),
        ("calls:\n  customer_ring_timeout: 1.5\n", 2, "calls.customer_ring_timeout", "integer"),
        ("calls:\n  default_caller_id: '555-0100'\n", 2, "calls.default_caller_id", "E.164"),
        ("calls:\n  default_caller_id: +14155550100\n", 2, "calls.default_caller_id", "quoted"),
        (
            "calls:\n  agent_endpoint_template: PJSIP/x\n",
            2,
            "calls.agent_endpoint_template",
            "{number}",
        ),
        (
            "calls:\n  customer_endpoint_template: 'PJSIP/{number}@{trunk}'\n",
            2,
            "calls.customer_endpoint_template",
            "only use the {number}",
        ),
        ("callbacks:\n  max_attempts: 0\n", 2, "callbacks.max_attempts", "at least 1"),
    ],
)
def test_bad_values(tmp_path: Path, yaml_text: str, line: int, field: str, message: str) -> None:
    path = write(tmp_path, yaml_text)
    err = load_error(path)
    assert (err.file, err.line, err.field) == (str(path), line, field)
    assert message in err.reason
    assert str(err).startswith(f"{path}:{line}: {field}: ")


def test_first_error_in_file_order_with_count(tmp_path: Path) -> None:
    path = write(tmp_path, "log:\n  level: loud\napi:\n  socket_mode: 660\n  tcp:\n    prot: 1\n")
    err = load_error(path)
    assert str(err) == (
        f"{path}:2: log.level: must be one of: debug, info, warning, error (and 2 more)"
    )


def test_duplicate_key(tmp_path: Path) -> None:
    path = write(tmp_path, "api:\n  socket: /a\n  socket: /b\n")
    assert str(load_error(path)) == f"{path}:3: api.socket: duplicate key"


def test_yaml_merge_keys_work(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        agi: &loopback
          host: 127.0.0.2
          port: 4574
        ami:
          <<: *loopback
          port: 5039
        """,
    )
    settings = load_settings(path, env={})
    assert (settings.ami.host, settings.ami.port) == ("127.0.0.2", 5039)


def test_yaml_alias_bomb_is_refused_at_the_alias_past_the_budget(tmp_path: Path) -> None:
    path = write(tmp_path, BILLION_LAUGHS)
    assert str(load_error(path)) == f"{path}:9: more than 64 YAML aliases"


def test_yaml_aliases_within_the_count_budget_cannot_expand_past_the_value_budget(
    tmp_path: Path,
) -> None:
    # 8 levels of 8 aliases: 64 aliases, 8**9 values once expanded
    text = "a: &a [lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
        f"{n}: &{n} [{', '.join([f'*{p}'] * 8)}]\n"
        for p, n in zip("abcdefg", "bcdefgh", strict=True)
    )
    path = write(tmp_path, text)
    err = load_error(path)
    assert err.reason == "YAML aliases expand to more than 10000 values"
    assert (err.file, err.line) == (str(path), 1)


def test_nested_yaml_merge_keys_cannot_double_past_the_value_budget(tmp_path: Path) -> None:
    text = "l0: &l0 {x: 1, y: 2}\n" + "".join(
        f"l{i}: &l{i} {{<<: [*l{i - 1}, *l{i - 1}]}}\n" for i in range(1, 30)
    )
    path = write(tmp_path, text)
    err = load_error(path)
    assert err.reason == "YAML aliases expand to more than 10000 values"
    assert err.line == 13


def test_a_document_over_one_mebibyte_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "log:\n  level: info\n" + "#" * (1 << 20) + "\n")
    assert str(load_error(path)) == f"{path}: file larger than 1048576 bytes"
    with pytest.raises(ConfigError, match="document larger than 1048576 bytes"):
        yaml_lines_module.parse_yaml_with_lines(
            "#" * (1 << 20) + "\n", yaml_lines_module.YamlSource(file=None)
        )


def test_non_utf8_file(tmp_path: Path) -> None:
    path = tmp_path / "engine.yaml"
    path.write_bytes(b"log:\n  level: \xff\n")
    assert str(load_error(path)) == f"{path}:2: not valid UTF-8"


def test_error_never_spans_lines(tmp_path: Path) -> None:
    path = write(tmp_path, "a: b: c\n")
    err = load_error(path)
    assert "\n" not in str(err)
    assert err.line == 1


# --------------------------------------------------------------------------- environment


def test_env_overrides(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        database:
          url: postgresql://file@db/ctc
        api:
          socket: /file.sock
          tcp:
            port: 1000
        log:
          level: info
        ari:
          url: http://file:8088
          password: from-file
        """,
    )
    env = {
        "CTC_DATABASE_URL": "postgresql://env@db/ctc",
        "CTC_API_SOCKET": "/env.sock",
        "CTC_API_TCP_PORT": "9001",
        "CTC_LOG_LEVEL": "DEBUG",
        "CTC_ARI_URL": "https://pbx:8089",
        "CTC_ARI_PASSWORD": "ari-env",
        "CTC_AMI_PASSWORD": "ami-env",
    }
    settings = load_settings(path, env=env)
    assert settings.database.url == "postgresql://env@db/ctc"
    assert settings.api.socket == Path("/env.sock")
    assert settings.api.tcp.port == 9001
    assert settings.api.tcp.enabled is False  # the port alone enables nothing
    assert settings.log.level == "debug"
    assert settings.ari.url == "https://pbx:8089"
    assert settings.ari.password is not None
    assert settings.ari.password.get_secret_value() == "ari-env"
    assert settings.ami.password is not None
    assert settings.ami.password.get_secret_value() == "ami-env"


@pytest.mark.parametrize(
    ("var", "value", "attr"),
    [
        ("CTC_DATABASE_URL", "postgresql://x@y/z", ("database", "url")),
        ("CTC_API_SOCKET", "/tmp/x.sock", ("api", "socket")),
        ("CTC_API_TCP_PORT", "8471", ("api", "tcp", "port")),
        ("CTC_LOG_LEVEL", "error", ("log", "level")),
        ("CTC_ARI_URL", "http://10.0.0.1:8088", ("ari", "url")),
    ],
)
def test_each_env_override_without_file(
    tmp_path: Path, var: str, value: str, attr: tuple[str, ...]
) -> None:
    result: object = load_settings(write(tmp_path, ""), env={var: value})
    for part in attr:
        result = getattr(result, part)
    assert str(result) == value


def test_empty_env_value_is_ignored(tmp_path: Path) -> None:
    assert load_settings(write(tmp_path, ""), env={"CTC_API_TCP_PORT": ""}) == Settings()


def test_bad_tcp_port_env(tmp_path: Path) -> None:
    err = load_error(write(tmp_path, ""), env={"CTC_API_TCP_PORT": "80a"})
    assert str(err) == "CTC_API_TCP_PORT: expected an integer"
    assert err.field == "CTC_API_TCP_PORT"


def test_out_of_range_tcp_port_env(tmp_path: Path) -> None:
    err = load_error(write(tmp_path, ""), env={"CTC_API_TCP_PORT": "0"})
    assert str(err) == "CTC_API_TCP_PORT: must be between 1 and 65535"


def test_bad_env_values_name_the_variable(tmp_path: Path) -> None:
    path = write(tmp_path, "")
    err = load_error(path, env={"CTC_LOG_LEVEL": "verbose"})
    assert str(err) == "CTC_LOG_LEVEL: must be one of: debug, info, warning, error"
    err = load_error(path, env={"CTC_DATABASE_URL": "mysql://u:pw@h/db"})
    assert str(err) == "CTC_DATABASE_URL: must start with postgres:// or postgresql://"
    assert "pw" not in str(err)


def test_file_error_reported_before_env_error(tmp_path: Path) -> None:
    path = write(tmp_path, "log:\n  format: xml\n")
    err = load_error(path, env={"CTC_LOG_LEVEL": "verbose"})
    assert str(err).startswith(f"{path}:2: log.format: ")
    assert str(err).endswith("(and 1 more)")


def test_env_overrides_a_file_section_that_is_null(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, "api:\n"), env={"CTC_API_TCP_PORT": "8000"})
    assert settings.api.tcp.port == 8000


# --------------------------------------------------------------------------- secrets


def test_password_file_is_read_and_stripped(tmp_path: Path) -> None:
    secret_file = tmp_path / "ari.secret"
    secret_file.write_text(SECRET + "\n", encoding="utf-8")
    path = write(tmp_path, f"ari:\n  password_file: {secret_file}\n")
    settings = load_settings(path, env={})
    assert isinstance(settings.ari.password, SecretStr)
    assert settings.ari.password.get_secret_value() == SECRET
    assert settings.ari.password_file == secret_file


def test_relative_password_file_is_relative_to_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    conf_dir = tmp_path / "etc"
    conf_dir.mkdir()
    (conf_dir / "ami.secret").write_text(SECRET + "\r\n", encoding="utf-8")
    path = write(conf_dir, "ami:\n  password_file: ami.secret\n")
    monkeypatch.chdir(tmp_path)
    settings = load_settings(path, env={})
    assert settings.ami.password is not None
    assert settings.ami.password.get_secret_value() == SECRET


def test_unreadable_password_file_names_field(tmp_path: Path) -> None:
    missing = tmp_path / "missing.secret"
    path = write(tmp_path, f"log: {{}}\nami:\n  password_file: {missing}\n")
    err = load_error(path)
    assert (err.file, err.line, err.field) == (str(path), 3, "ami.password_file")
    assert str(missing) in str(err)


def test_empty_password_file_is_an_error(tmp_path: Path) -> None:
    secret_file = tmp_path / "empty.secret"
    secret_file.write_text("\n", encoding="utf-8")
    path = write(tmp_path, f"ari:\n  password_file: {secret_file}\n")
    assert load_error(path).field == "ari.password_file"


def test_password_and_password_file_together(tmp_path: Path) -> None:
    secret_file = tmp_path / "ari.secret"
    secret_file.write_text(SECRET, encoding="utf-8")
    path = write(tmp_path, f"ari:\n  password: x\n  password_file: {secret_file}\n")
    err = load_error(path)
    assert (err.line, err.field) == (3, "ari.password_file")
    assert "password" in err.reason


def test_env_password_replaces_password_file(tmp_path: Path) -> None:
    path = write(tmp_path, f"ami:\n  password_file: {tmp_path / 'absent'}\n")
    settings = load_settings(path, env={"CTC_AMI_PASSWORD": SECRET})
    assert settings.ami.password is not None
    assert settings.ami.password.get_secret_value() == SECRET
    assert settings.ami.password_file is None


def test_secrets_never_shown(tmp_path: Path) -> None:
    secret_file = tmp_path / "ami.secret"
    secret_file.write_text(SECRET + "-ami\n", encoding="utf-8")
    path = write(
        tmp_path,
        f"""\
        database:
          url: postgresql://ctc:{SECRET}-db@db.example:5432/ctc
        ari:
          url: http://ari:{SECRET}-url@pbx:8088
          password: {SECRET}-ari
        ami:
          password_file: {secret_file}
        """,
    )
    settings = load_settings(path, env={})
    assert settings.ari.password is not None
    assert settings.ari.password.get_secret_value() == f"{SECRET}-ari"
    assert settings.database.url == f"postgresql://ctc:{SECRET}-db@db.example:5432/ctc"
    summary = redacted_summary(settings)
    for text in (repr(settings), str(settings), json.dumps(summary), repr(settings.database)):
        assert SECRET not in text
    assert summary["ari"]["password"] == "***"
    assert summary["ami"]["password"] == "***"
    assert summary["database"]["url"] == "postgresql://ctc:***@db.example:5432/ctc"
    assert summary["ari"]["url"] == "http://ari:***@pbx:8088"


def test_secret_not_leaked_by_validation_errors(tmp_path: Path) -> None:
    path = write(tmp_path, f"ari:\n  password: 12345\n  app: '{SECRET} x'\n")
    err = load_error(path)
    texts = [str(err), str(err.__cause__ or ""), repr(err.__cause__)]
    assert all(SECRET not in text and "12345" not in text for text in texts)


def test_database_url_password_masked_in_summary_and_repr() -> None:
    settings = Settings.model_validate({"database": {"url": "postgresql://user:pw@host/db"}})
    assert redacted_summary(settings)["database"]["url"] == "postgresql://user:***@host/db"
    assert "user:pw@" not in repr(settings)
    query = Settings.model_validate({"database": {"url": "postgresql://host/db?password=pw"}})
    assert redacted_summary(query)["database"]["url"] == "postgresql://host/db?password=***"


def test_redacted_summary_is_json_and_complete() -> None:
    summary = redacted_summary(Settings())
    assert json.loads(json.dumps(summary)) == summary
    assert summary["api"]["socket_mode"] == "0660"
    assert summary["api"]["socket"] == "/run/ctc/engine.sock"
    assert summary["ari"]["password"] is None
    assert set(summary) == {
        "database",
        "api",
        "log",
        "ari",
        "ami",
        "agi",
        "calls",
        "ivr",
        "callbacks",
        "retention",
        "quality",
        "stats",
        "transcripts",
        "secrets",
        "node",
    }


def test_summary_round_trips_through_a_file(tmp_path: Path) -> None:
    import yaml

    summary = redacted_summary(Settings())
    path = write(tmp_path, yaml.safe_dump(summary))
    assert load_settings(path, env={}) == Settings()


# --------------------------------------------------------------------------- secrets key


def test_secrets_key_file_is_read_and_masked(tmp_path: Path) -> None:
    from engine.secrets import Keyring

    key = Keyring.generate_key()
    key_file = tmp_path / "secret.key"
    key_file.write_text(f"# primary\n{key}\n", encoding="utf-8")
    key_file.chmod(0o600)
    settings = load_settings(write(tmp_path, "secrets:\n  key_file: secret.key\n"), env={})
    assert settings.secrets.key is not None
    assert Keyring.parse(settings.secrets.key.get_secret_value()).key_ids == Keyring((key,)).key_ids
    summary = redacted_summary(settings)
    assert summary["secrets"]["key"] == "***"
    assert key not in json.dumps(summary)
    assert key not in repr(settings)


def test_a_secrets_key_file_others_may_read_is_refused(tmp_path: Path) -> None:
    from engine.secrets import Keyring

    key_file = tmp_path / "secret.key"
    key_file.write_text(Keyring.generate_key(), encoding="utf-8")
    key_file.chmod(0o644)
    err = load_error(write(tmp_path, "secrets:\n  key_file: secret.key\n"))
    assert err.field == "secrets.key_file"
    assert err.line == 2
    assert "accessible to other users (mode 0644)" in err.reason
    assert "chmod 600" in err.reason


def test_a_missing_secrets_key_file_names_the_file(tmp_path: Path) -> None:
    err = load_error(write(tmp_path, "secrets:\n  key_file: nowhere.key\n"))
    assert err.field == "secrets.key_file"
    assert f"cannot read {tmp_path / 'nowhere.key'}" in err.reason


def test_a_secrets_key_file_without_a_key_is_refused(tmp_path: Path) -> None:
    key_file = tmp_path / "secret.key"
    key_file.write_text("# to do\n", encoding="utf-8")
    key_file.chmod(0o600)
    err = load_error(write(tmp_path, "secrets:\n  key_file: secret.key\n"))
    assert str(err).endswith("secrets.key_file: holds no key")


def test_ctc_secret_key_overrides_the_key_file_and_is_checked(tmp_path: Path) -> None:
    from engine.secrets import Keyring

    key = Keyring.generate_key()
    path = write(tmp_path, "secrets:\n  key_file: /nonexistent.key\n")
    settings = load_settings(path, env={"CTC_SECRET_KEY": key})
    assert settings.secrets.key is not None
    assert settings.secrets.key.get_secret_value() == key
    assert settings.secrets.key_file is None
    err = load_error(path, env={"CTC_SECRET_KEY": f"{key},{SECRET}"})
    assert err.field == "CTC_SECRET_KEY"
    assert "secrets key #2 is not a Fernet key" in err.reason
    assert SECRET not in str(err)


# --------------------------------------------------------------------------- exposure warnings


def _warnings(**sections: object) -> list[str]:
    from engine.config.settings import exposure_warnings
    from engine.secrets import Keyring

    data = {"secrets": {"key": Keyring.generate_key()}, **sections}
    return exposure_warnings(Settings.model_validate(data, strict=False))


def test_safe_settings_give_no_exposure_warning() -> None:
    assert _warnings() == []
    assert _warnings(api={"socket_mode": "0600", "tcp": {"enabled": True}}) == []
    assert _warnings(api={"tcp": {"enabled": True, "host": "::1"}}) == []
    assert _warnings(api={"tcp": {"enabled": True, "host": "localhost"}}) == []


@pytest.mark.parametrize("mode", ["0666", "0664", "0670", "0661", "1660", "0770"])
def test_a_socket_mode_wider_than_0660_is_warned_about(mode: str) -> None:
    (warning,) = _warnings(api={"socket_mode": mode})
    assert warning.startswith(f"api.socket_mode {mode}")
    assert "outside 0660" in warning


@pytest.mark.parametrize("host", ["0.0.0.0", "192.0.2.10", "::", "pbx.example"])
def test_tcp_on_a_non_loopback_address_is_warned_about(host: str) -> None:
    (warning,) = _warnings(api={"tcp": {"enabled": True, "host": host}})
    assert f"api.tcp.host {host} is not a loopback address" in warning
    assert "put TLS in front (reverse proxy) or bind to loopback" in warning
    assert _warnings(api={"tcp": {"enabled": False, "host": host}}) == []
    open_metrics = {"enabled": True, "host": host, "metrics_token_required": False}
    assert any("metrics_token_required is false" in w for w in _warnings(api={"tcp": open_metrics}))


def test_no_secrets_key_is_warned_about() -> None:
    from engine.config.settings import exposure_warnings

    (warning,) = exposure_warnings(Settings())
    assert "no secrets key is configured" in warning
    assert "ctc secrets rotate" in warning
