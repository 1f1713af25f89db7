"""The ERP contract (engine/contract.py): the status-callback body and the event-stream
body, built from records, checked against their models and the OpenAPI document."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

from jsonschema import Draft202012Validator
from openapi_spec_validator import validate

from engine.api.server import openapi_document
from engine.contract import (
    EVENT_ID_HEADER,
    SIGNATURE_HEADER,
    StatusCallback,
    StreamEventOut,
    status_callback,
    stream_event,
)
from engine.domain.call import CallStatus, Direction
from engine.domain.event_types import CallEventType
from engine.store.records import CallEvent, StoredSession

TENANT, SESSION = uuid.uuid4(), uuid.uuid4()
AT = datetime(2026, 11, 30, 5, 6, 7, 890123, tzinfo=UTC)


def _session() -> StoredSession:
    return StoredSession(
        id=SESSION,
        tenant_id=TENANT,
        provider_id=None,
        direction=Direction.CLICK_TO_CALL,
        status=CallStatus.COMPLETED,
        agent_number="+15550001",
        customer_number="+15550002",
        caller_id=None,
        agent_id="a1",
        external_ref="crm-42",
        callback_url=None,
        metadata={},
        idempotency_key=None,
        request_hash=None,
        agent_channel_id=None,
        customer_channel_id=None,
        bridge_id=None,
        provider_call_id=None,
        hangup_cause=16,
        hangup_cause_text="Normal Clearing",
        end_reason="customer hung up",
        recording_path=None,
        recording_duration_ms=None,
        ring_ms=1200,
        talk_ms=34000,
        created_at=AT,
        dialing_agent_at=AT,
        agent_answered_at=AT,
        dialing_customer_at=AT,
        connected_at=AT,
        ended_at=AT,
        updated_at=AT,
        version=6,
    )


def _event() -> CallEvent:
    return CallEvent(
        id=77,
        tenant_id=TENANT,
        session_id=SESSION,
        seq=6,
        event_type=CallEventType.CUSTOMER_HANGUP,
        status_from="connected",
        status_to="completed",
        payload={"hangup_cause": 16},
        occurred_at=AT,
    )


def _schema(doc: dict[str, Any], name: str) -> Draft202012Validator:
    return Draft202012Validator(
        {"$ref": f"#/components/schemas/{name}", "components": doc["components"]}
    )


def test_the_callback_body_is_the_documented_json() -> None:
    body = status_callback(_session(), _event()).model_dump(mode="json")
    # the bytes ERPs have always received: these keys and values, isoformat timestamps
    assert body == {
        "event_id": 77,
        "event_type": "customer.hangup",
        "session_id": str(SESSION),
        "seq": 6,
        "status": "completed",
        "previous_status": "connected",
        "occurred_at": "2026-11-30T05:06:07.890123+00:00",
        "direction": "click_to_call",
        "external_ref": "crm-42",
        "agent_id": "a1",
        "metadata": {},
        "agent_number": "+15550001",
        "customer_number": "+15550002",
        "caller_id": None,
        "caller_number": None,
        "dialed_number": None,
        "hangup_cause": 16,
        "end_reason": "customer hung up",
        "end_estimated": False,
        "ring_ms": 1200,
        "talk_ms": 34000,
        "recording_path": None,
    }
    assert StatusCallback.model_validate(body).model_dump(mode="json") == body
    _schema(openapi_document(), "StatusCallback").validate(json.loads(json.dumps(body)))


def test_the_stream_body_is_the_documented_json() -> None:
    data = json.loads(stream_event(_event()).model_dump_json())
    assert data["event_type"] == CallEventType.CUSTOMER_HANGUP
    assert data["session_id"] == str(SESSION)
    _schema(openapi_document(), "StreamEventOut").validate(data)
    assert StreamEventOut.model_validate(data) == stream_event(_event())


def test_the_openapi_document_has_both_wire_formats() -> None:
    doc = openapi_document()
    validate(doc)
    sse = doc["paths"]["/api/v1/events"]["get"]["responses"]["200"]["content"]
    assert sse["text/event-stream"]["schema"]["properties"]["data"]["contentSchema"] == {
        "$ref": "#/components/schemas/StreamEventOut"
    }
    webhook = doc["webhooks"]["callStatus"]["post"]
    assert webhook["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/StatusCallback"
    }
    headers = {p["name"] for p in webhook["parameters"] if p["in"] == "header"}
    assert headers == {SIGNATURE_HEADER, EVENT_ID_HEADER}
    # every event type the engine writes is listed, so an ERP can switch on them
    assert set(doc["components"]["schemas"]["CallEventType"]["enum"]) == {
        t.value for t in CallEventType
    }
