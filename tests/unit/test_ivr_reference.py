"""The IVR designer's reference (docs/ivr/reference.md) names every action, field, key and
choice a menu file may hold, and links every recipe."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from engine.domain.ivr import (
    BUILTIN_VARIABLES,
    SPECIAL_KEYS,
    InputMode,
    IvrAction,
    SayMode,
    TransferTargetType,
)
from engine.ivr_yaml import _ACTION_KEYS, _MENU_KEYS

DOCS = Path(__file__).resolve().parents[2] / "docs" / "ivr"
REFERENCE = (DOCS / "reference.md").read_text()
NAMED = set(re.findall(r"`([^`\s]+)`", REFERENCE))

WORDS = sorted(
    {
        *(a.value for a in IvrAction),
        *(t.value for t in TransferTargetType),
        *(m.value for m in InputMode),
        *(s.value for s in SayMode),
        *SPECIAL_KEYS,
        *BUILTIN_VARIABLES,
        *_MENU_KEYS,
        *(key for keys in _ACTION_KEYS.values() for key in keys),
        "action",
        "prompt",
        "menus",
    }
)


@pytest.mark.parametrize("word", WORDS)
def test_the_reference_names_it(word: str) -> None:
    assert word in NAMED, f"docs/ivr/reference.md never names `{word}`"


def test_the_reference_links_every_recipe() -> None:
    for recipe in sorted((DOCS / "recipes").glob("*.yaml")):
        assert f"(recipes/{recipe.name})" in REFERENCE, recipe.name
