"""The sandbox's root build and mirror discovery, without root, mmdebstrap or a network."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.devtools.apt_sources import apt_mirror
from engine.devtools.sandbox import DIALPLAN_DIR, Sandbox, instance_names
from engine.devtools.sandbox_root import ROOT_PACKAGES, SUITE, build_root, rebind, root_key
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


def test_an_instance_binds_ari_ami_sip_and_the_phones_rtp_to_its_address() -> None:
    confs = {p.name: p.read_text() for p in DIALPLAN_DIR.glob("*.conf")}
    http = rebind("http.conf", confs["http.conf"], "127.0.0.3")
    manager = rebind("manager.conf", confs["manager.conf"], "127.0.0.3")
    pjsip = rebind("pjsip.conf", confs["pjsip.conf"], "127.0.0.3")
    assert "bindaddr = 127.0.0.3" in _settings(http)
    assert "bindaddr = 127.0.0.3" in _settings(manager)
    assert "bind = 127.0.0.3:5060" in _settings(pjsip)
    template = pjsip.split("[ctc-phone](!)", 1)[1].splitlines()
    assert template[1:3] == ["media_address = 127.0.0.3", "bind_rtp_to_media_address = yes"]
    # the phones stay where they are: every instance reaches the same SIPp processes
    assert "contact = sip:agent1@127.0.0.1:5071" in pjsip
    assert "match = 127.0.0.1:5071/32" in pjsip
    assert (
        rebind("extensions.conf", confs["extensions.conf"], "127.0.0.3") == confs["extensions.conf"]
    )


def test_a_configuration_that_cannot_move_off_127_0_0_1_is_refused() -> None:
    with pytest.raises(SandboxError, match=r"^http.conf: no line matching .* to bind to 127.0.0.2"):
        rebind("http.conf", "[general]\nbindaddr = 0.0.0.0\n", "127.0.0.2")


@pytest.mark.parametrize(
    ("address", "message"),
    [
        ("10.0.0.2", "sandbox instance 'b': address 10.0.0.2 is not in 127.0.0.0/8"),
        ("127.0.0.1", "sandbox instance 'b': 127.0.0.1 is the default sandbox's address"),
        ("localhost", "sandbox instance 'b': address 'localhost' is not an IPv4 address"),
    ],
)
def test_an_instance_needs_a_loopback_address_of_its_own(
    tmp_path: Path, address: str, message: str
) -> None:
    with pytest.raises(SandboxError, match=f"^{message}"):
        Sandbox(cache_dir=tmp_path, state_dir=tmp_path / "state", instance="b", address=address)


def test_instances_keep_their_state_apart_and_share_the_built_root(tmp_path: Path) -> None:
    state = tmp_path / "state"
    default = Sandbox(cache_dir=tmp_path, state_dir=state)
    b = Sandbox(cache_dir=tmp_path, state_dir=state, instance="b", address="127.0.0.3")
    assert (default.address, default.ari_url) == ("127.0.0.1", "http://127.0.0.1:8088/ari")
    assert (b.address, b.ari_url) == ("127.0.0.3", "http://127.0.0.3:8088/ari")
    assert b.built_root == default.root == tmp_path / root_key(SUITE, ROOT_PACKAGES)
    assert b.root == state / "instances" / "b" / "root"
    assert b.log_path == state / "instances" / "b" / "asterisk.log"
    with pytest.raises(SandboxError, match=r"^the default sandbox listens on 127.0.0.1, not"):
        Sandbox(cache_dir=tmp_path, state_dir=state, address="127.0.0.2")
    with pytest.raises(SandboxError, match="has no address: start it with one"):
        _ = Sandbox(cache_dir=tmp_path, state_dir=state, instance="c").address
    (state / "instances" / "b").mkdir(parents=True)
    assert instance_names(state) == ["b"]


def _settings(conf: str) -> list[str]:
    """A configuration file's lines without their ``;`` comments."""
    return [line.split(";", 1)[0].strip() for line in conf.splitlines()]
