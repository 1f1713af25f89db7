"""engine.api.unix_socket: the API socket exists only with its configured mode."""

from __future__ import annotations

import contextlib
import os
import re
import socket
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

import engine.api.unix_socket as unix_socket
from engine.api.unix_socket import bind_unix_socket
from engine.errors import CtcError


@contextlib.contextmanager
def permissive_umask() -> Iterator[None]:
    """umask 0: a socket bound at the target would appear as 0777 until chmod."""
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


@pytest.mark.parametrize("mode", [0o600, 0o660, 0o640])
def test_the_socket_has_exactly_the_configured_mode(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "engine.sock"
    with permissive_umask(), contextlib.closing(bind_unix_socket(path, mode)):
        assert path.is_socket()
        assert mode_of(path) == mode
    assert sorted(p.name for p in tmp_path.iterdir()) == ["engine.sock"]  # no staging left


def test_the_target_path_appears_already_with_its_final_mode(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The path comes into being by the rename; before it, the staged socket already has
    the final mode and sits in a directory only its owner may enter."""
    path = tmp_path / "engine.sock"
    seen: list[tuple[bool, int, int]] = []
    real_rename = os.rename

    def watching_rename(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        staged = Path(src)
        seen.append((path.exists(), mode_of(staged), mode_of(staged.parent)))
        real_rename(src, dst)

    monkeypatch.setattr(unix_socket.os, "rename", watching_rename)
    with permissive_umask(), contextlib.closing(bind_unix_socket(path, 0o600)):
        assert mode_of(path) == 0o600
    assert seen == [(False, 0o600, 0o700)]


def test_a_stale_socket_is_replaced_and_the_new_one_accepts(tmp_path: Path) -> None:
    path = tmp_path / "engine.sock"
    with socket.socket(socket.AF_UNIX) as stale:
        stale.bind(str(path))
    with contextlib.closing(bind_unix_socket(path, 0o660)) as sock:
        sock.listen()
        with socket.socket(socket.AF_UNIX) as client:
            client.connect(str(path))
        assert mode_of(path) == 0o660


def test_a_socket_another_engine_listens_on_is_refused_and_left_in_place(tmp_path: Path) -> None:
    path = tmp_path / "engine.sock"
    with socket.socket(socket.AF_UNIX) as running:
        running.bind(str(path))
        running.listen()
        with pytest.raises(
            CtcError, match=f"another engine is listening on {re.escape(str(path))}"
        ):
            bind_unix_socket(path, 0o660)
        # the path still leads to the running one
        with socket.socket(socket.AF_UNIX) as client:
            client.connect(str(path))
            accepted, _ = running.accept()
            accepted.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["engine.sock"]  # no staging left


def test_a_socket_nothing_listens_on_yet_is_stale_and_replaced(tmp_path: Path) -> None:
    """Bound but never listening (a run that died before listen): connecting is refused."""
    path = tmp_path / "engine.sock"
    with socket.socket(socket.AF_UNIX) as half_started:
        half_started.bind(str(path))
        with contextlib.closing(bind_unix_socket(path, 0o600)) as sock:
            sock.listen()
            with socket.socket(socket.AF_UNIX) as client:
                client.connect(str(path))
            assert mode_of(path) == 0o600


def test_a_regular_file_in_the_way_is_not_replaced(tmp_path: Path) -> None:
    path = tmp_path / "engine.sock"
    path.write_text("keep me")
    with pytest.raises(CtcError, match="not a socket is in the way"):
        bind_unix_socket(path, 0o660)
    assert path.read_text() == "keep me"


def test_a_missing_directory_is_an_error_naming_the_path(tmp_path: Path) -> None:
    path = tmp_path / "absent" / "engine.sock"
    with pytest.raises(CtcError, match=f"cannot listen on {path}"):
        bind_unix_socket(path, 0o660)
