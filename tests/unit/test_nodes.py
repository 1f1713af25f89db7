"""Node states and node names: the rules ``ctc nodes`` and the heartbeat apply."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.config.loader import load_settings
from engine.config.settings import NodeSettings
from engine.domain.nodes import NodeState, name_taken, node_state
from engine.errors import ConfigError


def test_a_node_that_beat_within_stale_after_is_alive() -> None:
    assert node_state(heartbeat_age=29.9, stopped=False, stale_after=30) is NodeState.ALIVE


def test_a_node_whose_last_beat_is_older_than_stale_after_is_stale() -> None:
    assert node_state(heartbeat_age=30.1, stopped=False, stale_after=30) is NodeState.STALE


def test_a_node_that_stopped_gracefully_is_stopped_whatever_its_beat() -> None:
    assert node_state(heartbeat_age=0.0, stopped=True, stale_after=30) is NodeState.STOPPED


def test_an_alive_name_held_by_another_process_is_taken() -> None:
    assert name_taken(NodeState.ALIVE, holder=("pbx1", 10), claimant=("pbx1", 11))
    assert name_taken(NodeState.ALIVE, holder=("pbx1", 10), claimant=("pbx2", 10))


def test_a_name_is_free_to_its_own_holder_and_once_stale_or_stopped() -> None:
    assert not name_taken(NodeState.ALIVE, holder=("pbx1", 10), claimant=("pbx1", 10))
    assert not name_taken(NodeState.STALE, holder=("pbx1", 10), claimant=("pbx2", 11))
    assert not name_taken(NodeState.STOPPED, holder=("pbx1", 10), claimant=("pbx2", 11))


def test_the_node_name_defaults_to_a_valid_name() -> None:
    assert NodeSettings().name  # the host name, or "ctc" when that is not a valid name


@pytest.mark.parametrize("name", ["pbx-1", "pbx1.example", "a", "node_2", "x" * 63])
def test_node_names_admins_use_are_accepted(name: str) -> None:
    assert NodeSettings(name=name).name == name


def test_a_bad_node_name_is_reported_with_its_file_line_and_key(tmp_path: Path) -> None:
    config = tmp_path / "engine.yaml"
    config.write_text("node:\n  name: 'pbx 1'\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(config, env={})
    assert ":2: node.name: must be 1 to 63 letters" in str(caught.value)


def test_the_node_name_comes_from_ctc_node_name(tmp_path: Path) -> None:
    config = tmp_path / "engine.yaml"
    config.write_text("")
    assert load_settings(config, env={"CTC_NODE_NAME": "pbx7"}).node.name == "pbx7"


def test_stale_after_must_cover_two_heartbeats(tmp_path: Path) -> None:
    config = tmp_path / "engine.yaml"
    config.write_text("node:\n  heartbeat_interval: 10\n  stale_after: 15\n")
    with pytest.raises(ConfigError, match="at least twice heartbeat_interval"):
        load_settings(config, env={})


def test_a_crashed_holder_on_the_same_host_does_not_hold_the_name() -> None:
    """An engine restarted at once after a crash takes its name back without waiting."""
    assert not name_taken(
        NodeState.ALIVE, holder=("pbx1", 10), claimant=("pbx1", 11), holder_exists=False
    )


def test_on_another_host_only_staleness_frees_a_name() -> None:
    assert name_taken(
        NodeState.ALIVE, holder=("pbx1", 10), claimant=("pbx2", 11), holder_exists=False
    )
