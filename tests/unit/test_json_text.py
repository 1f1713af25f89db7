"""json_text writes what the standard library wrote for what the engine stores."""

from __future__ import annotations

import decimal
import json
import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest

from engine import json_text
from engine.domain.call import CallStatus


def _stdlib(value: object) -> str:
    def default(v: object) -> str:
        return v.isoformat() if isinstance(v, datetime) else str(v)

    return json.dumps(value, default=default)


@pytest.mark.parametrize(
    "value",
    [
        {"id": uuid.UUID("5f0c6c9e-0000-4000-8000-000000000001")},
        {"at": datetime(2026, 11, 30, 8, 0, 0, 123456, tzinfo=UTC)},
        {"at": datetime(2026, 11, 30, 8, 0, 0, tzinfo=timezone(timedelta(hours=2)))},
        {"status": CallStatus.CONNECTED},
        {"options": {1: "sales", "#": "hangup"}},  # YAML menus may have integer keys
        {"amount": decimal.Decimal("1.50")},  # unknown types: str()
        {"order": 123456789012345678901234, "at": datetime(2026, 1, 1, tzinfo=UTC)},
        [None, True, 3, 2.5, "ünïcode", {"nested": [1, 2]}],
    ],
)
def test_the_same_json_as_the_standard_library(value: object) -> None:
    assert json.loads(json_text.dumps(value)) == json.loads(_stdlib(value))


def test_text_that_is_not_json_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="line 1 column 2"):
        json_text.loads("{not json")
