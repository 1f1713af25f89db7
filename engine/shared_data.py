"""Where the data folders the engine ships beside its code are: ``sql/``, ``dialplan/``.

The product's layout keeps them at the top of the repository, not inside the ``engine``
package, so they are not package data: a wheel carries them as data files under
``<prefix>/share/ctc-engine/`` (pyproject's ``data-files``). A checkout or an editable
install reads them in place. This is the one place that knows both spots.
"""

from __future__ import annotations

import sys
from pathlib import Path

__all__ = ["shared_data_dir"]


def shared_data_dir(name: str) -> Path:
    """The top-level folder ``name`` beside the ``engine`` package in a checkout, else where
    a wheel installs it: ``<prefix>/share/ctc-engine/<name>``."""
    checkout = Path(__file__).resolve().parents[1] / name
    if checkout.is_dir():
        return checkout
    return Path(sys.prefix) / "share" / "ctc-engine" / name
