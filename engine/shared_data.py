"""Where the data folders the engine ships beside its code are: ``sql/``, ``dialplan/``.

The product's layout keeps them at the top of the repository, not inside the ``engine``
package, so they are not package data: a wheel carries them as data files under
``<scheme data>/share/ctc-engine/`` (pyproject's ``data-files``). A checkout or an editable
install reads them in place. This is the one place that knows where they are.

The data root of an install is not always ``sys.prefix``: ``pip install --user`` puts the
files under the user base (``~/.local``), Debian's pip under ``/usr/local`` while
``sys.prefix`` is ``/usr``. The install's ``RECORD`` names every file it wrote, relative to
the site-packages folder it installed into (``../../../share/ctc-engine/sql/0001_init.sql``),
so that list is asked first; ``sys.prefix`` is the last resort (an install that kept no
``RECORD``).
"""

from __future__ import annotations

import importlib.metadata
import sys
from pathlib import Path

__all__ = ["shared_data_dir"]

_DISTRIBUTION = "ctc-engine"
_SHARE = ("share", "ctc-engine")


def shared_data_dir(name: str) -> Path:
    """The top-level folder ``name`` beside the ``engine`` package in a checkout, else
    where the installed distribution's ``RECORD`` puts it, else
    ``<sys.prefix>/share/ctc-engine/<name>``."""
    checkout = Path(__file__).resolve().parents[1] / name
    if checkout.is_dir():
        return checkout
    return _installed_dir(name) or Path(sys.prefix).joinpath(*_SHARE, name)


def _installed_dir(name: str) -> Path | None:
    """The folder of the installed files recorded under ``share/ctc-engine/<name>/``."""
    try:
        files = importlib.metadata.distribution(_DISTRIBUTION).files
    except importlib.metadata.PackageNotFoundError:
        return None
    for file in files or ():
        if file.parts[-4:-1] == (*_SHARE, name):
            folder = Path(file.locate()).resolve().parent
            if folder.is_dir():
                return folder
    return None
