"""The sandbox's root build and mirror discovery, without root, mmdebstrap or a network."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.devtools.apt_sources import apt_mirror
from engine.devtools.sandbox import Sandbox
from engine.devtools.sandbox_root import ROOT_PACKAGES, SUITE, build_root, root_key
from engine.errors import SandboxError


def test_the_cache_key_ignores_package_order_and_follows_suite_and_packages() -> None:
    assert root_key(SUITE, ROOT_PACKAGES) == root_key(SUITE, tuple(reversed(ROOT_PACKAGES)))
    assert root_key(SUITE, ROOT_PACKAGES) != root_key("trixie", ROOT_PACKAGES)
    assert root_key(SUITE, ROOT_PACKAGES) != root_key(SUITE, (*ROOT_PACKAGES, "sngrep"))
    assert len(root_key(SUITE, ROOT_PACKAGES)) == 16


def test_the_sandbox_root_lives_in_the_cache_under_its_key(tmp_path: Path) -> None:
    sandbox = Sandbox(cache_dir=tmp_path, state_dir=tmp_path / "state")
    assert sandbox.root == tmp_path / root_key(SUITE, ROOT_PACKAGES)


def test_a_built_root_is_reused_without_root_privileges(tmp_path: Path) -> None:
    root = tmp_path / root_key(SUITE, ROOT_PACKAGES)
    root.mkdir()
    (root / ".ctc-sandbox.json").write_text("{}\n")
    assert build_root(tmp_path, SUITE, ROOT_PACKAGES) == root


def test_the_mirror_comes_from_a_one_line_debian_source(tmp_path: Path) -> None:
    sources = tmp_path / "sources.list"
    sources.write_text(
        "# deb http://commented.example/debian bookworm main\n"
        "deb [signed-by=/usr/share/keyrings/vendor.gpg] http://vendor.example/apt bookworm main\n"
        "deb http://security.debian.org/debian-security bookworm-security main\n"
        "deb http://mirror.example/debian bookworm main\n"
    )
    assert apt_mirror(sources, tmp_path / "absent.d") == "http://mirror.example/debian"


def test_the_mirror_comes_from_a_deb822_source(tmp_path: Path) -> None:
    sources_dir = tmp_path / "sources.list.d"
    sources_dir.mkdir()
    (sources_dir / "debian.sources").write_text(
        "Types: deb\n"
        "URIs: http://deb.example/debian\n"
        "Suites: bookworm bookworm-updates\n"
        "Components: main\n"
        "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
        "\n"
        "Types: deb\n"
        "URIs: http://deb.example/debian-security\n"
        "Suites: bookworm-security\n"
        "Components: main\n"
    )
    assert apt_mirror(tmp_path / "absent.list", sources_dir) == "http://deb.example/debian"


def test_no_debian_source_names_the_override(tmp_path: Path) -> None:
    with pytest.raises(SandboxError, match="set CTC_SANDBOX_MIRROR"):
        apt_mirror(tmp_path / "absent.list", tmp_path / "absent.d")
