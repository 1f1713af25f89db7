"""The initiate use case's request keeps the fingerprint a retry is matched by."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from engine.api.models import InitiateIn
from engine.api.routes.calls import initiate_call_of
from engine.app.calls import request_fingerprint


@pytest.mark.parametrize(
    "body",
    [
        {"agent_number": "1001", "customer_number": "+14155550100"},
        {
            "agent_number": "+14155550101",
            "customer_number": "4155550100",
            "default_region": "US",
            "caller_id": "+14155550199",
            "provider_id": "6f1c2b1e-8d0a-4a57-9a35-3f4b1c9d2e10",
            "agent_id": "u-7",
            "external_ref": "lead-42",
            "callback_url": "https://erp.example.com/hook",
            "metadata": {"a": [1, 2.5, None, {"b": "c"}], "t": True},
        },
    ],
)
def test_the_fingerprint_is_the_api_bodys(body: dict[str, Any]) -> None:
    model = InitiateIn.model_validate(body)
    request = initiate_call_of(model)
    assert request_fingerprint(dataclasses.asdict(request)) == request_fingerprint(
        model.model_dump(mode="json")
    )
