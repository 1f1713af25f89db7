"""Transcripts over PostgreSQL: the queue (filled by the recording.finished trigger for
tenants that turned transcripts on), its claim with lease and SKIP LOCKED, the worker's
outcomes and retries with a transcriber behind the port, the faster-whisper backend held
to its library's contract with a fake model, and the API and CLI that read and switch.

Each test has its own database: the run's shared engine (``api_engine``) runs a worker
that would take jobs queued in the shared one.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from engine.config.settings import (
    AgiSettings,
    ApiSettings,
    AriSettings,
    DatabaseSettings,
    Settings,
    TranscriptSettings,
)
from engine.daemon import Engine
from engine.devtools.databases import create_database, drop_database
from engine.devtools.rtp_audio import silence_pcm, write_wav_pcm
from engine.domain.event_types import CallEventType
from engine.domain.transcripts import Transcript, Word
from engine.errors import TranscriptionError
from engine.store.database import Database
from engine.store.migrations import default_migrations_dir, migrate
from engine.store.records import NewSession, StoredSession
from engine.store.repositories import Store
from engine.transcription.whisper_backend import WhisperTranscriber
from engine.transcription.worker import TranscriptWorker
from tests.support.cli import cli_environment, run_ctc
from tests.support.http import socket_api
from tests.support.waiting import eventually


@pytest.fixture
async def store() -> AsyncIterator[Store]:
    url = await create_database()
    try:
        await migrate(url, default_migrations_dir())
        async with Database(url, min_size=1, max_size=4) as db:
            yield Store.over(db)
    finally:
        await drop_database(url)


async def recorded_call(store: Store, path: Path, *, failure: str | None = None) -> StoredSession:
    """A call of the default tenant whose recording at ``path`` started and ended."""
    tenant = await store.tenants.by_slug("default")
    session, _ = await store.sessions.create(NewSession(tenant.id, "1001", "+14155550100"))
    await store.sessions.append_event(
        tenant.id,
        session.id,
        CallEventType.RECORDING_STARTED,
        payload={"path": str(path)},
        changes={"recording_path": str(path)},
    )
    payload: dict[str, Any] = {"duration_ms": 1000}
    if failure is not None:
        payload["failure"] = failure
    updated, _ = await store.sessions.append_event(
        tenant.id,
        session.id,
        CallEventType.RECORDING_FINISHED,
        payload=payload,
        changes={"recording_duration_ms": 1000},
    )
    return updated


async def set_default_enabled(store: Store, enabled: bool) -> uuid.UUID:
    tenant = await store.tenants.by_slug("default")
    await store.transcripts.set_enabled(tenant.id, enabled)
    return tenant.id


class FakeTranscriber:
    """A transcriber behind the port: says what it is told, or fails ``fail`` times."""

    name = "fake"
    model = "fake-1"

    def __init__(self, fail: int = 0) -> None:
        self.fail = fail
        self.calls: list[Path] = []

    def transcribe(self, path: Path) -> Transcript:
        self.calls.append(path)
        if len(self.calls) <= self.fail:
            raise TranscriptionError(f"{path}: cannot decode (attempt {len(self.calls)})")
        words = (Word("call", 100, 400, 0.9), Word("me", 420, 600, 0.8))
        return Transcript("call me", words, self.name, self.model, "en", audio_ms=1000)


def worker(store: Store, transcriber: FakeTranscriber, **settings: Any) -> TranscriptWorker:
    values = {"poll_interval": 0.05, "backoff_initial": 0.01, **settings}
    return TranscriptWorker(
        store,
        transcriber,
        TranscriptSettings(**values),
        executor=concurrent.futures.ThreadPoolExecutor(max_workers=2),
    )


async def test_only_a_tenant_with_transcripts_on_gets_its_recordings_queued(
    store: Store, tmp_path: Path
) -> None:
    off = await recorded_call(store, tmp_path / "off.wav")
    assert await store.transcripts.for_session(off.tenant_id, off.id) is None
    tenant_id = await set_default_enabled(store, True)
    assert await store.transcripts.enabled(tenant_id)
    on = await recorded_call(store, tmp_path / "on.wav")
    queued = await store.transcripts.for_session(tenant_id, on.id)
    assert queued is not None
    assert (queued.state, queued.attempts, queued.text) == ("queued", 0, None)
    failed = await recorded_call(store, tmp_path / "failed.wav", failure="disk full")
    assert await store.transcripts.for_session(tenant_id, failed.id) is None


async def test_a_job_is_claimed_once_and_again_after_its_lease(
    store: Store, tmp_path: Path
) -> None:
    await set_default_enabled(store, True)
    call = await recorded_call(store, tmp_path / "a.wav")
    first, second = await asyncio.gather(
        store.transcripts.claim(timedelta(minutes=5)), store.transcripts.claim(timedelta(minutes=5))
    )
    claimed = [job for job in (first, second) if job is not None]
    assert len(claimed) == 1  # SKIP LOCKED: the other claim found nothing due
    assert claimed[0].session_id == call.id
    assert claimed[0].recording_path == str(tmp_path / "a.wav")
    assert claimed[0].attempts == 1
    assert await store.transcripts.claim(timedelta(minutes=5)) is None  # leased
    await store.db.execute("UPDATE call_transcript SET leased_until = now() - interval '1 s'")
    again = await store.transcripts.claim(timedelta(minutes=5))
    assert again is not None
    assert (again.id, again.attempts) == (claimed[0].id, 2)


async def test_the_worker_stores_text_words_and_an_event(store: Store, tmp_path: Path) -> None:
    tenant_id = await set_default_enabled(store, True)
    call = await recorded_call(store, tmp_path / "a.wav")
    fake = FakeTranscriber()
    async with worker(store, fake) as running:
        running.wake()
        await eventually(lambda: running.completed == 1, within=10)
    found = await store.transcripts.for_session(tenant_id, call.id)
    assert found is not None
    assert found.state == "completed"
    assert (found.text, found.backend, found.model, found.audio_ms) == (
        "call me",
        "fake",
        "fake-1",
        1000,
    )
    assert found.words == [
        {"word": "call", "start_ms": 100, "end_ms": 400, "confidence": 0.9},
        {"word": "me", "start_ms": 420, "end_ms": 600, "confidence": 0.8},
    ]
    assert found.decode_ms is not None
    assert fake.calls == [tmp_path / "a.wav"]
    events = await store.sessions.events(tenant_id, call.id)
    done = [e for e in events if e.event_type == CallEventType.TRANSCRIPT_COMPLETED]
    assert [e.payload["words"] for e in done] == [2]


async def test_a_failing_job_is_retried_then_failed(store: Store, tmp_path: Path) -> None:
    tenant_id = await set_default_enabled(store, True)
    retried = await recorded_call(store, tmp_path / "retried.wav")
    async with worker(store, FakeTranscriber(fail=1), max_attempts=3) as running:
        await eventually(lambda: running.completed == 1, within=10)
    found = await store.transcripts.for_session(tenant_id, retried.id)
    assert found is not None
    assert (found.state, found.attempts, found.last_error) == ("completed", 2, None)

    hopeless = await recorded_call(store, tmp_path / "hopeless.wav")
    async with worker(store, FakeTranscriber(fail=99), max_attempts=2) as running:
        await eventually(lambda: running.failed == 1, within=10)
    failed = await store.transcripts.for_session(tenant_id, hopeless.id)
    assert failed is not None
    assert (failed.state, failed.attempts) == ("failed", 2)
    assert failed.last_error is not None
    assert "hopeless.wav: cannot decode (attempt 2)" in failed.last_error
    events = await store.sessions.events(tenant_id, hopeless.id)
    gave_up = [e for e in events if e.event_type == CallEventType.TRANSCRIPT_FAILED]
    assert [e.payload["attempts"] for e in gave_up] == [2]


@dataclasses.dataclass
class _FakeWord:
    word: str
    start: float
    end: float
    probability: float


@dataclasses.dataclass
class _FakeSegment:
    words: list[_FakeWord]


class FakeWhisperModel:
    """faster-whisper's ``WhisperModel`` as the backend uses it: ``transcribe`` gives a
    lazy iterator of segments (with ``words`` in seconds, leading spaces as Whisper puts
    them) and an info object."""

    def __init__(self, model_dir: Path) -> None:
        self.model_dir = model_dir
        self.asked: list[dict[str, Any]] = []

    def transcribe(self, audio: str, **options: Any) -> tuple[Any, Any]:
        self.asked.append({"audio": audio, **options})
        assert Path(audio).is_file()
        segments = iter(
            [
                _FakeSegment(
                    [_FakeWord(" Call", 0.1, 0.42, 0.91), _FakeWord(" me", 0.42, 0.6, 0.88)]
                ),
                _FakeSegment([_FakeWord(" back.", 0.7, 1.05, 0.95)]),
            ]
        )
        return segments, {"duration": 1.5}


def test_the_whisper_backend_follows_faster_whispers_contract(tmp_path: Path) -> None:
    made: list[FakeWhisperModel] = []

    def factory(model_dir: Path) -> FakeWhisperModel:
        made.append(FakeWhisperModel(model_dir))
        return made[-1]

    wav = write_wav_pcm(tmp_path / "call.wav", silence_pcm(1.5))
    backend = WhisperTranscriber(tmp_path / "small.en", "en", factory=factory)
    transcript = backend.transcribe(wav)
    again = backend.transcribe(wav)
    assert len(made) == 1  # the model is loaded once per process
    assert transcript == again
    assert transcript.text == "Call me back."
    assert [(w.word, w.start_ms, w.end_ms, w.confidence) for w in transcript.words] == [
        ("Call", 100, 420, 0.91),
        ("me", 420, 600, 0.88),
        ("back.", 700, 1050, 0.95),
    ]
    assert (transcript.backend, transcript.model, transcript.audio_ms) == (
        "whisper",
        "small.en",
        1500,
    )
    asked = made[0].asked[0]
    assert asked["language"] == "en"
    assert asked["word_timestamps"] is True


def test_the_whisper_backend_without_its_library_or_model_says_so(tmp_path: Path) -> None:
    wav = write_wav_pcm(tmp_path / "call.wav", silence_pcm(0.2))
    with pytest.raises(TranscriptionError, match=r"faster-whisper is not installed|model\.bin"):
        WhisperTranscriber(tmp_path / "nothing-here").transcribe(wav)


async def test_the_api_returns_a_transcript_and_the_cli_switches_it(
    store: Store, tmp_path: Path
) -> None:
    url = store.db.url
    env = cli_environment(url, tmp_path)
    code, out, err = await run_ctc("transcripts", "enable", "default", env=env)
    assert code == 0, err
    assert "transcripts on for tenant default" in out
    code, _, err = await run_ctc("transcripts", "enable", "nobody", env=env)
    assert code == 1
    assert "tenant nobody not found" in err
    call = await recorded_call(store, tmp_path / "a.wav")
    async with worker(store, FakeTranscriber()) as running:
        await eventually(lambda: running.completed == 1, within=10)
    settings = Settings(
        agi=AgiSettings(enabled=False),
        ari=AriSettings(enabled=False),
        database=DatabaseSettings(url=url),
        api=ApiSettings(socket=tmp_path / "engine.sock", socket_mode="0600"),
        transcripts=TranscriptSettings(enabled=False),
    )
    async with Engine(settings) as engine:
        await asyncio.wait_for(engine.database_ready.wait(), 30)
        async with socket_api(settings.api.socket) as api:
            base = f"/api/v1/click-to-call/sessions/{call.id}"
            status, body, _ = await api.call("GET", f"{base}/transcript")
            assert status == 200, body
            assert body["state"] == "completed"
            assert body["words"][0] == {
                "word": "call",
                "start_ms": 100,
                "end_ms": 400,
                "confidence": 0.9,
            }
            status, body, _ = await api.call("GET", f"{base}/quality")
            assert (status, body) == (200, {"items": []})
            status, body, _ = await api.call(
                "GET", f"/api/v1/click-to-call/sessions/{uuid.uuid4()}/transcript"
            )
            assert status == 404, body
        code, out, err = await run_ctc(
            "transcripts", "show", str(call.id), "--socket", str(settings.api.socket), env=env
        )
        assert code == 0, err
        assert out.startswith("completed (fake): call me")
    code, out, _ = await run_ctc("transcripts", "disable", "default", env=env)
    assert code == 0
    assert not await store.transcripts.enabled(call.tenant_id)
