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
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import tempfile
from pathlib import Path

from engine.errors import CtcError

__all__ = ["bind_unix_socket"]


def bind_unix_socket(path: Path, mode: int) -> socket.socket:
    """A bound (not yet listening) Unix stream socket at ``path`` with exactly ``mode``.

    A stale socket at ``path`` (from a run that did not clean up) is replaced; any other kind
    of file there is refused, as is a path in a missing directory.
    """
    if path.exists() and not path.is_socket():
        raise CtcError(f"cannot listen on {path}: a file that is not a socket is in the way")
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
