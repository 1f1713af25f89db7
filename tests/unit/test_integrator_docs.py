"""The integrator's callback reference (docs/integrator/callbacks.md) says what the code
does: its generated blocks (the body's fields, every event type, the test vector, the retry
schedule) are rendered from the code here and must match, so adding an event type or a
field without documenting it fails this test. ``CTC_REFRESH_DOCS=1`` rewrites the blocks.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from engine.config.settings import CallbackSettings
from engine.contract import (
    CALLBACK_EVENT_TYPES,
    EVENT_DESCRIPTIONS,
    StatusCallback,
    callback_fields_markdown,
    event_reference_markdown,
)
from engine.domain.event_types import CallEventType
from engine.notifier import retry_schedule, sign, verify_signature

ROOT = Path(__file__).resolve().parents[2]
CALLBACKS_MD = ROOT / "docs" / "integrator" / "callbacks.md"
VECTOR = ROOT / "docs" / "integrator" / "verify" / "vector.json"
_BLOCK = re.compile(r"(<!-- generated:([a-z-]+)[^>]*-->\n)(.*?)(<!-- /generated -->)", re.S)


def _vector() -> dict[str, object]:
    loaded: dict[str, object] = json.loads(VECTOR.read_text(encoding="utf-8"))
    return loaded


def _test_vector_block() -> str:
    v = _vector()
    return (
        "```text\n"
        f"secret           {v['secret']}\n"
        f"timestamp        {v['timestamp']}\n"
        f"body             the {len(str(v['body']).encode())} bytes below (UTF-8, one line)\n"
        f"X-CTC-Signature  {v['header']}\n"
        "\n"
        "during a rotation, with the previous secret:\n"
        f"previous secret  {v['previous_secret']}\n"
        f"X-CTC-Signature  {v['rotation_header']}\n"
        "```\n"
        "\n"
        "```json\n"
        f"{v['body']}\n"
        "```\n"
    )


def _retry_block() -> str:
    settings = CallbackSettings()
    waits = retry_schedule(settings)
    lines = ["| After attempt | Next attempt in | Since the first |", "|---|---|---|"]
    total = 0.0
    for attempt, wait in enumerate(waits, start=1):
        total += wait
        lines.append(f"| {attempt} | {wait:g} s | {total:g} s |")
    lines.append("")
    lines.append(
        f"Attempt {settings.max_attempts} is the last: about {total / 60:.1f} minutes after "
        f"the first (plus up to {settings.timeout:g} s per attempt waiting for an answer). "
        "`callbacks.max_attempts`, `backoff_initial`, `backoff_max` and `timeout` in the "
        "engine's YAML change this."
    )
    return "\n".join(lines) + "\n"


RENDERERS: dict[str, Callable[[], str]] = {
    "callback-fields": callback_fields_markdown,
    "event-types": event_reference_markdown,
    "test-vector": _test_vector_block,
    "retry-schedule": _retry_block,
}


def test_the_generated_blocks_of_the_callback_reference_are_current() -> None:
    text = CALLBACKS_MD.read_text(encoding="utf-8")
    found = {m.group(2): m.group(3) for m in _BLOCK.finditer(text)}
    assert set(found) == set(RENDERERS), "a generated block is missing or unknown"
    if os.environ.get("CTC_REFRESH_DOCS") == "1":
        fresh = _BLOCK.sub(lambda m: m.group(1) + RENDERERS[m.group(2)]() + m.group(4), text)
        CALLBACKS_MD.write_text(fresh, encoding="utf-8")
        found = {m.group(2): m.group(3) for m in _BLOCK.finditer(fresh)}
    for name, render in RENDERERS.items():
        assert found[name] == render(), (
            f"docs/integrator/callbacks.md block {name!r} is out of date: run "
            "CTC_REFRESH_DOCS=1 .venv/bin/python -m pytest tests/unit/test_integrator_docs.py"
        )


def test_every_event_type_is_described_and_only_known_ones() -> None:
    assert set(EVENT_DESCRIPTIONS) == set(CallEventType)
    assert set(CallEventType) >= CALLBACK_EVENT_TYPES
    assert CallEventType.SESSION_CREATED in CALLBACK_EVENT_TYPES  # queued arrives


def test_the_openapi_document_lists_every_event_type_from_the_one_enum() -> None:
    from engine.api.server import openapi_document

    doc = openapi_document()
    schemas = doc["components"]["schemas"]
    assert schemas["CallEventType"]["enum"] == [t.value for t in CallEventType]
    body = schemas["StatusCallback"]
    assert body["properties"]["event_type"]["$ref"] == "#/components/schemas/CallEventType"
    assert set(body["required"]) == set(StatusCallback.model_fields)
    webhook = doc["webhooks"]["callStatus"]["post"]
    for event_type in CALLBACK_EVENT_TYPES:
        assert f"`{event_type.value}`" in webhook["description"]
    assert "18.5 minutes" in webhook["description"]


def test_the_retry_window_stated_in_openapi_is_the_defaults() -> None:
    assert round(sum(retry_schedule(CallbackSettings())) / 60, 1) == 18.5


def test_the_published_vector_is_what_the_engine_signs() -> None:
    v = _vector()
    body = str(v["body"]).encode()
    secret, timestamp = str(v["secret"]), int(str(v["timestamp"]))
    assert sign(secret, body, timestamp) == v["header"]
    assert (
        sign(secret, body, timestamp, previous=str(v["previous_secret"])) == (v["rotation_header"])
    )
    assert verify_signature(secret, body, str(v["header"]), now=timestamp)
    # the body is a real callback body, as the engine writes it
    StatusCallback.model_validate_json(body)


@pytest.mark.parametrize(
    "path",
    [
        "docs/integrator/callbacks.md",
        "docs/admin/install.md",
        "docs/admin/upgrade.md",
        "docs/admin/merge-asterisk.md",
    ],
)
def test_the_guides_are_linked_from_the_readme(path: str) -> None:
    assert (ROOT / path).is_file()
    assert f"]({path})" in (ROOT / "README.md").read_text(encoding="utf-8")


def test_every_relative_link_of_the_guides_resolves() -> None:
    for guide in [CALLBACKS_MD, *sorted((ROOT / "docs" / "admin").glob("*.md"))]:
        text = guide.read_text(encoding="utf-8")
        for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", text):
            assert (guide.parent / target).exists(), f"{guide.name}: broken link {target}"


def test_every_error_code_the_api_answers_with_is_declared() -> None:
    from engine.api.models import ERROR_CODES

    source = "\n".join(p.read_text(encoding="utf-8") for p in (ROOT / "engine/api").rglob("*.py"))
    # BadRequest(422, "validation_error", …) and _error(404, "not_found", …), also split
    # over lines
    used = set(re.findall(r"\(\s*[1-5][0-9]{2},\s*\"([a-z_]+)\"", source))
    assert "validation_error" in used
    assert used <= set(ERROR_CODES), used - set(ERROR_CODES)


def test_the_openapi_document_declares_the_headers_an_integrator_meets() -> None:
    from engine.api.models import ERROR_CODES
    from engine.api.server import openapi_document

    doc = openapi_document()
    initiate = doc["paths"]["/api/v1/click-to-call/initiate"]["post"]
    assert set(initiate["responses"]["202"]["headers"]) == {"Location", "Idempotent-Replayed"}
    assert any(p.get("name") == "Idempotency-Key" for p in initiate["parameters"])
    assert "503" in initiate["responses"]
    tenant = doc["components"]["parameters"]["TenantHeader"]
    assert (tenant["name"], tenant["in"]) == ("X-CTC-Tenant", "header")
    for path, operations in doc["paths"].items():
        for method, op in operations.items():
            if op.get("security"):
                assert {"$ref": "#/components/parameters/TenantHeader"} in op["parameters"], (
                    method,
                    path,
                )
    code = doc["components"]["schemas"]["ErrorBody"]["properties"]["code"]["description"]
    assert all(f"`{name}`" in code for name in ERROR_CODES)
    signature = doc["webhooks"]["callStatus"]["post"]["parameters"][1]
    assert signature["name"] == "X-CTC-Signature"
    assert re.fullmatch(signature["schema"]["pattern"], str(_vector()["rotation_header"]))
