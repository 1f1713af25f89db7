"""Create the control API's Unix socket with its final permissions from the first moment.

Why: binding at ``path`` and then ``chmod``-ing it leaves a window in which the socket exists
with the umask's permissions (often 0775 or 0777: anyone may connect, and a connection is
trusted as any tenant). Changing the umask around ``bind()`` would close the window, but
the umask is process-wide: another thread creating a file at that moment (the default
executor runs DNS look-ups and file work) would get the wrong mode.

So the socket is bound inside a private directory (``mkdtemp``: mode 0700, only our user
may even look inside it, so nobody else can connect during the window) created next to the
target, given its final mode there, and then ``rename``-d onto the target path, which is
atomic on one file system. The target path never exists with other bits than the
configured ones.

A socket already at the path is replaced only when it is stale (left by a run that did not
clean up): the rename would silently take the path from an engine still listening there
(its clients would reach us, its own socket file would be gone). So we first try to
connect to it; a refused connection means stale, anything that answers means another
engine, and we refuse to start. This is a check, not a lock: two engines started at the
same instant can still race.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import tempfile
from pathlib import Path

from engine.errors import CtcError

__all__ = ["PROBE_TIMEOUT", "bind_unix_socket"]

PROBE_TIMEOUT = 1.0
"""Seconds to wait for a connection to an existing socket at the path; a listener too busy
to take one within it (a full backlog) counts as listening."""


def bind_unix_socket(path: Path, mode: int) -> socket.socket:
    """A bound (not yet listening) Unix stream socket at ``path`` with exactly ``mode``.

    A stale socket at ``path`` (from a run that did not clean up, nothing accepts on it) is
    replaced; a socket something listens on is refused ("another engine is listening"), as
    is any other kind of file there and a path in a missing directory.
    """
    if path.exists() and not path.is_socket():
        raise CtcError(f"cannot listen on {path}: a file that is not a socket is in the way")
    if path.is_socket():
        _refuse_if_listened_on(path)
    try:
        private = Path(tempfile.mkdtemp(prefix=".ctc", dir=path.parent))
    except OSError as exc:
        raise CtcError(f"cannot listen on {path}: {exc.strerror or exc}") from exc
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        staged = private / "s"  # short: sun_path has ~107 bytes
        sock.bind(str(staged))
        os.chmod(staged, mode)
        os.rename(staged, path)
    except OSError as exc:
        sock.close()
        raise CtcError(f"cannot listen on {path}: {exc.strerror or exc}") from exc
    finally:
        with contextlib.suppress(OSError):
            shutil.rmtree(private)
    return sock


def _refuse_if_listened_on(path: Path) -> None:
    """Return if the socket at ``path`` is stale (the connection is refused) or gone."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(PROBE_TIMEOUT)
        try:
            probe.connect(str(path))
        except (ConnectionRefusedError, FileNotFoundError):
            return  # stale: nothing listens (or it went away meanwhile)
        except TimeoutError:
            pass  # a listener whose backlog is full: still a listener
        except OSError as exc:  # e.g. another user's socket we may not connect to
            raise CtcError(
                f"cannot listen on {path}: cannot tell whether another engine is listening "
                f"there ({exc.strerror or exc}); stop it or remove the socket"
            ) from exc
    raise CtcError(
        f"another engine is listening on {path}: stop it first, or give this one another api.socket"
    )
