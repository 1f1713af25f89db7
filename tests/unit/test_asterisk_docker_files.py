"""asterisk-docker/'s files agree with each other and with dialplan/, checked without Docker.

The e2e test builds and runs the stack (minutes); these catch in a second what would
break it: a service that could make Docker create a bridge, a variable the env file does
not document, a dialplan/ line the Asterisk entrypoint no longer finds, a package list
that drifted from the sandbox's.
"""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import pytest
import yaml

from engine.devtools.docker_daemon import DAEMON_SETTINGS, write_daemon_settings
from engine.devtools.docker_stack import base_image_key
from engine.devtools.sandbox_root import ROOT_PACKAGES
from engine.errors import SandboxError

ROOT = Path(__file__).resolve().parents[2]
STACK = ROOT / "asterisk-docker"
COMPOSE_TEXT = (STACK / "docker-compose.yml").read_text()
COMPOSE = yaml.safe_load(COMPOSE_TEXT)


def _compose_variables() -> set[str]:
    return set(re.findall(r"(?<!\$)\$\{([A-Z0-9_]+)", COMPOSE_TEXT))


def _env_example_variables() -> set[str]:
    lines = (STACK / "env.example").read_text().splitlines()
    return {line.split("=", 1)[0] for line in lines if re.match(r"^[A-Z0-9_]+=", line)}


@pytest.mark.parametrize("service", sorted(COMPOSE["services"]))
def test_every_service_runs_and_builds_on_the_host_network_and_publishes_no_port(
    service: str,
) -> None:
    spec = COMPOSE["services"][service]
    assert spec["network_mode"] == "host"
    assert spec["build"]["network"] == "host"
    assert "ports" not in spec
    assert "networks" not in spec
    assert "links" not in spec
    assert "healthcheck" in spec


def test_the_compose_file_declares_no_network() -> None:
    assert "networks" not in COMPOSE


def test_the_engine_starts_once_postgres_and_asterisk_are_healthy_and_doctor_is_its_health() -> (
    None
):
    engine = COMPOSE["services"]["engine"]
    assert engine["depends_on"] == {
        "postgres": {"condition": "service_healthy"},
        "asterisk": {"condition": "service_healthy"},
    }
    assert engine["healthcheck"]["test"] == ["CMD", "ctc", "doctor"]


def test_every_variable_the_compose_file_reads_is_documented_in_env_example() -> None:
    assert _compose_variables() - _env_example_variables() == set()


def test_every_variable_in_env_example_is_used_by_the_compose_file() -> None:
    assert _env_example_variables() - _compose_variables() == set()


def test_every_substitution_of_the_asterisk_entrypoint_finds_its_line_in_dialplan() -> None:
    entrypoint = (STACK / "asterisk" / "entrypoint").read_text()
    rules = re.findall(r"^subst (\S+) '([^']+)'", entrypoint, flags=re.MULTILINE)
    assert len(rules) >= 14  # ports and secrets of http, ari, manager, extensions, rtp, pjsip
    for conf, pattern in rules:
        text = (ROOT / "dialplan" / conf).read_text()
        # sed's basic regexes here use only ^, \. and literals: Python reads them the same
        assert re.search(pattern, text, flags=re.MULTILINE), f"dialplan/{conf}: {pattern}"


def test_the_asterisk_image_installs_the_sandboxs_asterisk_packages() -> None:
    dockerfile = (STACK / "asterisk" / "Dockerfile").read_text()
    installed = set(re.findall(r"[a-z0-9][a-z0-9.+-]+", dockerfile.split("apt-get install")[1]))
    assert set(ROOT_PACKAGES) <= installed


@pytest.mark.parametrize("image", ["asterisk", "engine", "postgres"])
def test_every_image_is_built_from_the_base_image_build_argument(image: str) -> None:
    dockerfile = (STACK / image / "Dockerfile").read_text()
    assert re.search(r"^ARG BASE_IMAGE=", dockerfile, flags=re.MULTILINE)
    assert re.search(r"^FROM \$\{BASE_IMAGE\}$", dockerfile, flags=re.MULTILINE)


def test_daemon_settings_are_merged_into_an_existing_daemon_json_keeping_its_other_keys(
    tmp_path: Path,
) -> None:
    config = tmp_path / "daemon.json"
    config.write_text(json.dumps({"data-root": "/srv/docker", "iptables": True}))
    write_daemon_settings(config)
    assert json.loads(config.read_text()) == {"data-root": "/srv/docker", **DAEMON_SETTINGS}


def test_daemon_settings_are_written_when_there_is_no_daemon_json(tmp_path: Path) -> None:
    config = tmp_path / "docker" / "daemon.json"
    write_daemon_settings(config)
    assert json.loads(config.read_text()) == DAEMON_SETTINGS
    assert DAEMON_SETTINGS["bridge"] == "none"


def test_a_daemon_json_that_is_not_an_object_is_refused_naming_the_file(tmp_path: Path) -> None:
    config = tmp_path / "daemon.json"
    config.write_text("[1, 2]")
    with pytest.raises(SandboxError, match=r"daemon\.json"):
        write_daemon_settings(config)
    assert config.read_text() == "[1, 2]"


def test_the_base_images_cache_key_changes_with_its_inputs() -> None:
    assert base_image_key() == base_image_key("sid", "minbase")
    assert base_image_key("trixie") != base_image_key("sid")
    assert base_image_key("sid", "apt") != base_image_key("sid", "minbase")


def test_the_engine_image_has_debians_package_of_every_dependency() -> None:
    # the image installs the engine with --no-index: a dependency without a pure-Python
    # wheel (uvloop, asyncpg, orjson, ...) comes only from Debian's python3-* package
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = {
        re.split(r"[<>=!~;\s\[]", dep, maxsplit=1)[0].lower() for dep in project["dependencies"]
    }
    debian = {"pyyaml": "yaml"}  # where Debian's name differs
    apt = (STACK / "engine" / "Dockerfile").read_text()
    assert sorted(n for n in names if f"python3-{debian.get(n, n)}" not in apt) == []
