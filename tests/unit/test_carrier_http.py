"""The one table of carrier errors, and credentials resolved from env: and file: references."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.domain.providers import ProviderType
from engine.errors import (
    CarrierAuthFailed,
    CarrierRateLimited,
    CarrierRefused,
    CarrierUnavailable,
    ConfigError,
)
from engine.providers.http import carrier_error, resolve_credentials


@pytest.mark.parametrize(
    ("status", "kind", "may_exist"),
    [
        (400, CarrierRefused, False),
        (404, CarrierRefused, False),
        (401, CarrierAuthFailed, False),
        (403, CarrierAuthFailed, False),
        (429, CarrierRateLimited, False),
        (500, CarrierUnavailable, True),
        (503, CarrierUnavailable, True),
    ],
)
def test_each_status_maps_to_one_error(status: int, kind: type, may_exist: bool) -> None:
    err = carrier_error(ProviderType.TWILIO, status, {"code": 1, "message": "why"})
    assert type(err) is kind
    assert err.call_may_exist is may_exist
    assert str(err) == f"twilio: HTTP {status}: why"


def test_the_carriers_own_messages_are_read() -> None:
    vonage = {"type": "x", "title": "Bad Request", "detail": "to is required"}
    assert "to is required" in str(carrier_error(ProviderType.VONAGE, 400, vonage))
    exotel = {"RestException": {"Status": 400, "Message": "Invalid To"}}
    assert "Invalid To" in str(carrier_error(ProviderType.EXOTEL, 400, exotel))
    assert "no message" in str(carrier_error(ProviderType.MCUBE, 502, ""))


def test_credentials_from_env_and_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = tmp_path / "token"
    secret.write_text("from-file\n")
    monkeypatch.setenv("CTC_TEST_TWILIO_TOKEN", "from-env")
    resolved = resolve_credentials(
        "p1", {"a": "env:CTC_TEST_TWILIO_TOKEN", "b": f"file:{secret}", "c": "literal"}
    )
    assert resolved == {"a": "from-env", "b": "from-file", "c": "literal"}
    with pytest.raises(ConfigError, match=r"p1\.a: environment variable NOPE_X is not set"):
        resolve_credentials("p1", {"a": "env:NOPE_X"})
    with pytest.raises(ConfigError, match=r"p1\.b: cannot read") as caught:
        resolve_credentials("p1", {"b": f"file:{tmp_path / 'missing'}"})
    assert "from-file" not in str(caught.value)
