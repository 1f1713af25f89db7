"""What `ctc` reads before its configuration: the service's environment file
(engine/config/env_file.py), and `database.password_file` (engine/config/loader.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.config.env_file import apply_env_file, parse_env_file
from engine.config.loader import load_settings
from engine.config.settings import redacted_summary
from engine.errors import ConfigError


def test_the_systemd_format_is_read() -> None:
    text = (
        "# comment\n"
        "; comment\n"
        "\n"
        "CTC_DATABASE_URL=postgresql://ctc:pw@db/ctc\n"
        "  CTC_ARI_PASSWORD = 'a b#c'  \n"
        'CTC_SECRET_KEY="k\\"ey"\n'
        "EMPTY=\n"
    )
    assert parse_env_file(text, "engine.env") == {
        "CTC_DATABASE_URL": "postgresql://ctc:pw@db/ctc",
        "CTC_ARI_PASSWORD": "a b#c",
        "CTC_SECRET_KEY": 'k"ey',
        "EMPTY": "",
    }


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("export A=1", "expected KEY=VALUE"),
        ("1A=1", "expected KEY=VALUE"),
        ("JUSTAWORD", "expected KEY=VALUE"),
        ('A="open', 'A: unterminated " quote'),
    ],
)
def test_a_bad_line_names_file_and_line(line: str, reason: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_env_file(f"OK=1\n{line}\n", "/etc/ctc/engine.env")
    assert str(err.value).startswith(f"/etc/ctc/engine.env:2: {reason}")


def test_the_environment_wins_and_an_empty_name_reads_nothing(tmp_path: Path) -> None:
    env_file = tmp_path / "engine.env"
    env_file.write_text("A=from-file\nB=from-file\n")
    env = {"A": "set"}
    assert apply_env_file(str(env_file), env) == (env_file, None)
    assert env == {"A": "set", "B": "from-file"}
    untouched: dict[str, str] = {}
    assert apply_env_file("", untouched) == (None, None)
    assert untouched == {}
    with pytest.raises(ConfigError, match="no such file"):
        apply_env_file(str(tmp_path / "missing.env"), {})


def test_the_database_password_file_goes_into_the_url(tmp_path: Path) -> None:
    (tmp_path / "db.password").write_text("s3cr@t/:x\n")
    config = tmp_path / "engine.yaml"
    config.write_text(
        "database:\n  url: postgresql://ctc@db.example:5433/ctc\n  password_file: db.password\n"
    )
    settings = load_settings(config, env={})
    assert settings.database.url == "postgresql://ctc:s3cr%40t%2F%3Ax@db.example:5433/ctc"
    assert settings.database.password_file == tmp_path / "db.password"
    assert "s3cr" not in repr(settings)
    assert "s3cr" not in str(redacted_summary(settings))  # what `ctc config check` prints


def test_the_database_password_file_beside_a_password_in_the_url(tmp_path: Path) -> None:
    (tmp_path / "db.password").write_text("pw\n")
    config = tmp_path / "engine.yaml"
    config.write_text(
        "database:\n  url: postgresql://ctc:other@db/ctc\n  password_file: db.password\n"
    )
    with pytest.raises(ConfigError) as err:
        load_settings(config, env={})
    assert str(err.value) == (
        f"{config}:3: database.password_file: cannot be used with a password in "
        "database.url (set only one)"
    )
    # CTC_DATABASE_URL wins over the file, as the other CTC_* passwords do
    url = "postgresql://ctc:fromenv@db/ctc"
    assert load_settings(config, env={"CTC_DATABASE_URL": url}).database.url == url


def test_an_unreadable_database_password_file_is_named(tmp_path: Path) -> None:
    config = tmp_path / "engine.yaml"
    config.write_text("database:\n  password_file: /nonexistent/db.password\n")
    with pytest.raises(ConfigError, match=r"engine.yaml:2: database.password_file: cannot read"):
        load_settings(config, env={})
