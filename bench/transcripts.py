"""Transcripts: word error rate and real-time factor per backend, on speech that went
through a real call.

Each sentence is spoken by espeak-ng and played by the customer's SIPp phone as G.711 RTP
into a recorded click-to-call on the sandbox Asterisk (the engine in this process places
it); the recordings Asterisk writes are then transcribed by each backend, one after the
other on an otherwise idle engine, and compared with the sentence. The same sentences
straight from espeak-ng (8 kHz, no call) are transcribed too, so what the call path costs
shows apart from what the recogniser cannot do. The calls' quality rows (MOS per leg) are
printed beside.

    .venv/bin/python -m bench.transcripts                       # PocketSphinx
    .venv/bin/python -m bench.transcripts --whisper-model DIR   # and faster-whisper

WER is (substitutions + deletions + insertions) over the reference's words, summed over
the set; the real-time factor is decode time over audio time (below 1: faster than the
call lasted), on one core, the model loaded beforehand. Run it under the sandbox lock.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from engine.app.ports import Transcriber
from engine.config.settings import (
    AgiSettings,
    ApiSettings,
    AriSettings,
    DatabaseSettings,
    QualitySettings,
    Settings,
    TranscriptSettings,
)
from engine.daemon import Engine
from engine.devtools.databases import create_database, drop_database
from engine.devtools.rtp_audio import (
    RATE,
    pcap_from_pcm,
    silence_pcm,
    speech_pcm,
    write_wav_pcm,
)
from engine.devtools.sandbox import ARI_PASSWORD, ARI_URL, Sandbox
from engine.devtools.sipp import SippPhone
from engine.domain.transcripts import normalize_words, word_error_rate
from engine.store.migrations import default_migrations_dir, migrate
from engine.transcription.pocketsphinx_backend import PocketsphinxTranscriber
from engine.transcription.whisper_backend import WhisperTranscriber

SENTENCES = (
    "please call me back tomorrow morning about my order",
    "my account number is four five six seven",
    "I would like to cancel my subscription",
    "the delivery arrived late and the box was damaged",
    "can you send the invoice to my email address",
    "I need to speak to someone about my bill",
    "thank you for calling have a nice day",
    "the meeting has been moved to next friday at ten",
)
AGENT_PORT, CUSTOMER_PORT = 5071, 5080  # dialplan/pjsip.conf: agent1, the trunk's customer


@dataclass
class Sample:
    sentence: str
    recording: Path  # through the call
    clean: Path  # espeak-ng's audio at 8 kHz, no call


async def record_calls(engine: Engine, work: Path) -> tuple[list[Sample], list[float]]:
    """One recorded call per sentence; the samples and every leg's final MOS."""
    tenant = await engine.store.tenants.by_slug("default")
    await engine.store.recording.set_default(tenant.id, is_enabled=True, fmt="wav")
    samples: list[Sample] = []
    moses: list[float] = []
    for n, sentence in enumerate(SENTENCES):
        speech = silence_pcm(0.5) + speech_pcm(sentence) + silence_pcm(0.5)
        seconds = len(speech) / (2 * RATE)
        clean = write_wav_pcm(work / f"clean-{n}.wav", speech)
        dirs = work / f"call-{n}-agent", work / f"call-{n}-customer"
        for d in dirs:
            d.mkdir()
        pcap_from_pcm(silence_pcm(seconds + 3), dirs[0] / "talk.pcap")
        pcap_from_pcm(speech, dirs[1] / "talk.pcap")
        hold = round(seconds * 1000) + 300
        events = engine.events.subscribe()
        try:
            with (
                SippPhone("uas_talk.xml", port=AGENT_PORT, workdir=dirs[0]),
                SippPhone(
                    "uas_talk_then_hangup.xml", port=CUSTOMER_PORT, workdir=dirs[1], hold_ms=hold
                ),
            ):
                session_id = await _initiate(engine)
                async with asyncio.timeout(seconds + 60):
                    async for event in events:
                        if (
                            event.session_id == session_id
                            and event.event_type == "recording.finished"
                        ):
                            break
        finally:
            events.close()
        session = await engine.store.sessions.get(tenant.id, session_id)
        assert session.recording_path is not None, session
        samples.append(Sample(sentence, Path(session.recording_path), clean))
        moses += await _final_quality(engine, tenant.id, session_id)
    await engine.store.recording.set_default(tenant.id, is_enabled=False)
    return samples, moses


async def _initiate(engine: Engine) -> uuid.UUID:
    from engine.api.client import ControlClient

    async with ControlClient(engine.settings.api.socket, tenant="default") as client:
        _, data = await client.request(
            "POST",
            "/api/v1/click-to-call/initiate",
            body={"agent_number": "agent1", "customer_number": "+14155550100"},
        )
    return uuid.UUID(data["id"])


async def _final_quality(
    engine: Engine, tenant_id: uuid.UUID, session_id: uuid.UUID
) -> list[float]:
    async with asyncio.timeout(15):
        while True:
            rows = [
                r
                for r in await engine.store.quality.for_session(tenant_id, session_id)
                if r.is_final
            ]
            if len(rows) >= 2:
                return [r.mos for r in rows if r.mos is not None]
            await asyncio.sleep(0.1)


@dataclass
class Score:
    words: int
    errors: float
    audio_s: float
    decode_s: float
    hypotheses: list[str]


def score(transcriber: Transcriber, paths: list[Path], sentences: list[str]) -> Score:
    words, errors, audio, decode, said = 0, 0.0, 0.0, 0.0, []
    for path, sentence in zip(paths, sentences, strict=True):
        started = time.perf_counter()
        transcript = transcriber.transcribe(path)
        decode += time.perf_counter() - started
        audio += transcript.audio_ms / 1000
        n = len(normalize_words(sentence))
        words += n
        errors += word_error_rate(sentence, transcript.text) * n
        said.append(transcript.text)
    return Score(words, errors, audio, decode, said)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--whisper-model", type=Path, help="a CTranslate2 Whisper model dir")
    parser.add_argument("--verbose", action="store_true", help="print every hypothesis")
    args = parser.parse_args()
    box = Sandbox()
    await asyncio.to_thread(box.up)
    db_url = await create_database("ctc_bench")
    try:
        await migrate(db_url, default_migrations_dir())
        with tempfile.TemporaryDirectory(prefix="ctc-bench-transcripts-") as tmp:
            work = Path(tmp)
            settings = Settings(
                agi=AgiSettings(enabled=False),
                database=DatabaseSettings(url=db_url),
                api=ApiSettings(socket=work / "engine.sock", socket_mode="0600"),
                ari=AriSettings(
                    url=ARI_URL.removesuffix("/ari"),
                    username="ctc",
                    password=ARI_PASSWORD,
                    app="ctc-bench",
                    recording_dir=box.root / "var/spool/asterisk/recording",
                ),
                quality=QualitySettings(sample_interval=0),
                transcripts=TranscriptSettings(enabled=False),  # timed here, one at a time
            )
            async with Engine(settings) as engine:
                await asyncio.wait_for(engine.database_ready.wait(), 30)
                assert engine.stasis is not None
                await asyncio.wait_for(engine.stasis.resync.completed.wait(), 30)
                samples, moses = await record_calls(engine, work)
            backends: list[Transcriber] = [PocketsphinxTranscriber()]
            if args.whisper_model is not None:
                backends.append(WhisperTranscriber(args.whisper_model))
            warmup = write_wav_pcm(work / "warmup.wav", silence_pcm(1.0))
            sentences = [s.sentence for s in samples]
            total = sum(len(normalize_words(s)) for s in sentences)
            print(f"\n{len(samples)} sentences, {total} words")
            print(f"{'backend':<14}{'audio':<8}{'WER':>7}{'RTF':>7}")
            for backend in backends:
                await asyncio.to_thread(backend.transcribe, warmup)  # loads the model
                for label, paths in (
                    ("call", [s.recording for s in samples]),
                    ("clean", [s.clean for s in samples]),
                ):
                    got = await asyncio.to_thread(score, backend, paths, sentences)
                    print(
                        f"{backend.name:<14}{label:<8}{got.errors / got.words:>7.2f}"
                        f"{got.decode_s / got.audio_s:>7.2f}"
                    )
                    if args.verbose:
                        for sentence, said in zip(sentences, got.hypotheses, strict=True):
                            print(f"    {sentence!r} -> {said!r}")
            if moses:
                print(
                    f"\ncall quality: {len(moses)} legs, MOS min {min(moses):.2f} "
                    f"median {statistics.median(moses):.2f} max {max(moses):.2f}"
                )
    finally:
        await drop_database(db_url)


if __name__ == "__main__":
    asyncio.run(main())
