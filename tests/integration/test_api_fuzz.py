"""The control API under schemathesis: cases generated from the served OpenAPI document and
sent to the real engine over TCP with a real token (less ``callback_url``, and a tenant's
callback URL only removed: no callbacks to generated hosts), by schemathesis's own engine
(what its CLI runs: the document's examples, boundary values of every parameter and unexpected
methods ("coverage"), random valid and invalid inputs ("fuzzing"), and short sequences that
follow the ``Location`` headers ("stateful")). The rule: no input makes a 500, and every
answer (status, media type, body, ``Allow`` on a 405) is one the document describes.

schemathesis speaks blocking HTTP, so it runs in a worker thread while the test's event loop
keeps serving the engine. Two runs: one with a fixed seed (the same cases every time) and
one with a random seed, printed so a failure can be replayed with ``CTC_FUZZ_SEED=<seed>``.
Shrinking is off: a finding is reported as first found, with the curl command that
reproduces it, and the run goes on to collect the rest.

``GET /api/v1/events`` is a stream that stays open: each case reads it for
``STREAM_READ_S`` and it gets a few fuzzed cases only (its caps have their own tests in
test_api_hardening.py). A read of it that times out is counted, not an error: the engine
runs in this test process, whose heap (the whole suite's) made the collector pause it for
up to 0.6 s under load, and a stream that says nothing for a while breaks no contract.
This engine runs without Asterisk, so in-call controls and transfers answer 503 by design:
there a 503 is expected.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import random
from typing import Any

import schemathesis

from engine.daemon import Engine
from tests.support.tenants import bearer_headers, new_token

# examples per operation and generation mode in the fuzzing phase, per run
EXAMPLES = 25
FIXED_SEED = 20260801
STREAM_READ_S = 1.5
EVENTS = "GET /api/v1/events"
NEEDS_ASTERISK = r"/sessions/\{session_id\}/(hold|unhold|mute|unmute|dtmf|recording|transfer)"


@dataclasses.dataclass
class FuzzReport:
    cases: int = 0
    by_phase: dict[str, int] = dataclasses.field(default_factory=dict)
    by_status: dict[int, int] = dataclasses.field(default_factory=dict)
    findings: dict[str, str] = dataclasses.field(default_factory=dict)  # key -> reproduction
    errors: list[str] = dataclasses.field(default_factory=list)
    stream_timeouts: int = 0  # reads of the event stream that ended by their timeout
    stream_answers: int = 0  # event-stream cases that got an answer


def _config(base: str, token: str, seed: int) -> Any:
    checks = (
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_schema_conformance",
        "unsupported_method",  # a 405 carries Allow
    )
    return schemathesis.Config.from_dict(
        {
            "seed": seed,
            # Hypothesis's health checks time the data generation, not the API: on a busy CI
            # machine one fired at random (free-form object bodies are slow to generate)
            "suppress-health-check": ["all"],
            "base-url": base,
            "headers": bearer_headers(token),
            "continue-on-failure": True,
            "request-timeout": 10,
            "generation": {
                "mode": "all",
                "max-examples": EXAMPLES,
                "no-shrink": True,
                "database": "none",
            },
            "phases": {"stateful": {"max-steps": 6}},
            "checks": {"enabled": False, **{name: {"enabled": True} for name in checks}},
            "operations": [
                {
                    # a stream stays open: read it for a moment, and try it a few times only
                    "include-path": "/api/v1/events",
                    "request-timeout": STREAM_READ_S,
                    "max-stream-events": 5,
                    "generation": {"max-examples": 4},
                    "phases": {"coverage": {"enabled": False}},
                },
                {
                    "include-path-regex": NEEDS_ASTERISK,
                    "checks": {
                        "not_a_server_error": {"expected-statuses": ["2XX", "3XX", "4XX", 503]}
                    },
                },
            ],
        }
    )


def _fuzz(base: str, token: str, seed: int) -> FuzzReport:
    import requests
    from schemathesis.engine import events, from_schema

    document = requests.get(f"{base}/api/v1/openapi.json", timeout=10).json()
    # the engine would deliver status callbacks to a generated URL (somewhere on the
    # internet): the fuzzer does not send one (test_callbacks covers them, on 127.0.0.1)
    del document["components"]["schemas"]["InitiateIn"]["properties"]["callback_url"]
    # for the same reason the tenant's callback URL is only ever removed (null; test_callbacks
    # sets one)
    document["components"]["schemas"]["TenantUpdateIn"]["properties"]["callback_url"] = {
        "type": "null"
    }
    schema = schemathesis.openapi.from_dict(document, config=_config(base, token, seed))
    report = FuzzReport()
    for event in from_schema(schema).execute():
        if isinstance(event, events.NonFatalError):
            # the cause is at the end of a long traceback: keep both ends
            text = event.info.format()
            if event.label == EVENTS and "Read timed out" in text:
                report.stream_timeouts += 1
                continue
            text = text if len(text) <= 4000 else f"{text[:1000]}\n…\n{text[-3000:]}"
            report.errors.append(f"{event.label}: {text}")
        elif isinstance(event, events.FatalError):
            report.errors.append(repr(event)[:1000])
        if not isinstance(event, events.ScenarioFinished):
            continue
        recorder = event.recorder
        report.cases += len(recorder.interactions)
        phase = event.phase.name.lower()
        report.by_phase[phase] = report.by_phase.get(phase, 0) + len(recorder.interactions)
        for interaction in recorder.interactions.values():
            if interaction.response is not None:
                status = interaction.response.status_code
                report.by_status[status] = report.by_status.get(status, 0) + 1
                report.stream_answers += recorder.label == EVENTS
        for case_id, checks in recorder.checks.items():
            for check in checks:
                if check.failure_info is None:
                    continue
                interaction = recorder.interactions.get(case_id)
                response = interaction.response if interaction is not None else None
                status = response.status_code if response is not None else None
                failure = check.failure_info.failure
                report.findings.setdefault(
                    f"{recorder.label} [{phase}] {check.name} -> {status}: {failure.title}",
                    f"{failure.message[:600]}\n{check.failure_info.code_sample[:1500]}",
                )
    return report


async def _run(engine: Engine, seed: int) -> None:
    base = f"http://127.0.0.1:{engine.api.tcp_port}"
    report = await asyncio.to_thread(_fuzz, base, await new_token(engine.store, name="fuzz"), seed)
    print(
        f"schemathesis seed {seed}: {report.cases} cases {report.by_phase}, "
        f"statuses {sorted(report.by_status.items())}, "
        f"event-stream reads timed out: {report.stream_timeouts}"
    )
    for key, how in report.findings.items():
        print(f"FINDING {key}\n{how}\n")
    assert not report.errors, report.errors
    assert report.cases > 500
    assert report.stream_answers > 0  # the stream's timeouts above are not all it did
    assert not report.findings, f"seed {seed}: {len(report.findings)} findings (see output)"


async def test_fuzzed_requests_never_get_a_500_or_an_undocumented_answer_fixed_seed(
    api_engine: Engine,
) -> None:
    await _run(api_engine, FIXED_SEED)


async def test_fuzzed_requests_never_get_a_500_or_an_undocumented_answer_random_seed(
    api_engine: Engine,
) -> None:
    seed = int(os.environ.get("CTC_FUZZ_SEED") or random.SystemRandom().getrandbits(32))
    print(f"schemathesis seed: {seed} (replay with CTC_FUZZ_SEED={seed})")
    await _run(api_engine, seed)
