"""Transcripts on the sandbox: a recorded click-to-call whose customer speaks (espeak-ng
speech sent as G.711 RTP by the SIPp phone) is transcribed offline by the engine's worker
with the default backend (PocketSphinx), and the API returns the text with word timings.
The word error rate is printed (PocketSphinx is weak on telephone audio: only a loose
bound is asserted); ``bench/transcripts.py`` measures it on a larger set.
"""

from __future__ import annotations

from pathlib import Path

from engine.config.settings import QualitySettings, TranscriptSettings
from engine.devtools.rtp_audio import pcap_from_pcm, silence_pcm, speech_pcm
from engine.devtools.sandbox import Sandbox
from engine.devtools.sipp import SippPhone
from engine.domain.transcripts import word_error_rate
from tests.e2e.engine_fixtures import (
    AGENT_PORT,
    CUSTOMER_PORT,
    CallWatcher,
    call_api,
    initiate,
    running_engine,
)

SPEECH = "please call me back tomorrow morning about my order"


def talking_phone(workdir: Path, scenario: str, port: int, pcm: bytes, **kwargs: int) -> SippPhone:
    """A SIPp phone that sends ``pcm`` as RTP once answered (``talk.pcap`` in its own
    working directory)."""
    workdir.mkdir(parents=True)
    pcap_from_pcm(pcm, workdir / "talk.pcap")
    return SippPhone(scenario, port=port, workdir=workdir, **kwargs)


async def test_a_recorded_call_comes_back_with_a_transcript(
    migrated_db: str, sandbox: Sandbox, tmp_path: Path
) -> None:
    transcripts = TranscriptSettings(poll_interval=0.5)
    quality = QualitySettings(sample_interval=0)
    async with running_engine(
        migrated_db, sandbox, tmp_path, transcripts=transcripts, quality=quality
    ) as engine:
        tenant = await engine.store.tenants.by_slug("default")
        await engine.store.recording.set_default(tenant.id, is_enabled=True, fmt="wav")
        await engine.use_cases.transcripts.set_enabled("default", True)
        # half a second of silence first: the recording starts a moment after the answer
        speech = silence_pcm(0.5) + speech_pcm(SPEECH) + silence_pcm(0.5)
        agent = talking_phone(tmp_path / "agent", "uas_talk.xml", AGENT_PORT, silence_pcm(8))
        customer = talking_phone(
            tmp_path / "customer", "uas_talk_then_hangup.xml", CUSTOMER_PORT, speech, hold_ms=5000
        )
        watch = CallWatcher(engine)
        try:
            with agent, customer:
                placed = await initiate(engine)
                watch.session_id = session_id = placed["id"]
                done = await watch.until("completed", "failed", "canceled", within=40)
                assert done.status_to == "completed", watch.trail()
                await watch.until_event("recording.finished", within=30)
            # a fresh worker process loads the model first: allow for a slow, shared host
            finished = await watch.until_event("transcript.completed", within=180)
        finally:
            await engine.use_cases.transcripts.set_enabled("default", False)
            await engine.store.recording.set_default(tenant.id, is_enabled=False)
            watch.close()
        status, body = await call_api(
            engine, "GET", f"click-to-call/sessions/{session_id}/transcript"
        )
        assert status == 200, body
        assert body["state"] == "completed", body
        assert body["backend"] == "pocketsphinx"
        assert body["attempts"] == 1
        words = body["words"]
        assert words, body
        assert body["text"] == " ".join(w["word"] for w in words)
        audio_ms = body["audio_ms"]
        assert 4000 <= audio_ms <= 7000, body  # the customer talked ~5 s
        for word in words:
            assert 0 <= word["start_ms"] < word["end_ms"] <= audio_ms + 100, word
        starts = [w["start_ms"] for w in words]
        assert starts == sorted(starts)
        assert finished.payload["words"] == len(words)
        wer = word_error_rate(SPEECH, body["text"])
        rtf = body["decode_ms"] / audio_ms
        print(f"\npocketsphinx: {body['text']!r} WER {wer:.2f} real-time factor {rtf:.2f}")
        assert wer <= 1.5  # loose: PocketSphinx on 8 kHz speech is often mostly wrong
