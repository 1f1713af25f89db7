"""The better transcriber, for admins who provide a model: faster-whisper (CTranslate2).

``pip install 'ctc-engine[whisper]'`` and a CTranslate2 Whisper model directory
(``transcripts.model_dir``: a faster-whisper model such as ``base`` or ``small.en``,
i.e. ``model.bin``, ``config.json``, ``tokenizer.json``, ``vocabulary.txt``; the engine
never downloads one: it runs offline). The model is loaded once per worker process, on
the CPU with int8 weights and one thread, and asked for word timestamps.

The model is made by a factory (``faster_whisper.WhisperModel`` unless told otherwise),
so its contract (``transcribe(path, language=…, word_timestamps=True, …)`` giving
segments with ``words`` of ``word``/``start``/``end``/``probability`` in seconds, and an
info with ``duration``) is what the tests hold a fake model to, where no model exists.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from engine.domain.transcripts import Transcript, Word
from engine.errors import TranscriptionError
from engine.transcription.audio import read_recording, to_16k

__all__ = ["WhisperTranscriber", "faster_whisper_model"]

ModelFactory = Callable[[Path], Any]

# loaded models, per worker process: (factory, directory) -> model
_MODELS: dict[tuple[ModelFactory, Path], Any] = {}


def faster_whisper_model(model_dir: Path) -> Any:
    """faster-whisper's model from ``model_dir`` on the CPU (int8), offline."""
    try:
        from faster_whisper import WhisperModel
    except ImportError as exc:
        raise TranscriptionError(
            "faster-whisper is not installed: pip install 'ctc-engine[whisper]'"
        ) from exc
    if not (model_dir / "model.bin").is_file():
        raise TranscriptionError(f"{model_dir}: no CTranslate2 model (model.bin) there")
    try:
        # one thread: a worker process is one unit of transcripts.concurrency
        return WhisperModel(
            str(model_dir), device="cpu", compute_type="int8", cpu_threads=1, local_files_only=True
        )
    except Exception as exc:  # the library's own errors: a damaged or foreign model
        raise TranscriptionError(f"{model_dir}: cannot load the model: {exc}") from exc


class WhisperTranscriber:
    """:class:`~engine.app.ports.Transcriber` over a Whisper model (faster-whisper)."""

    name = "whisper"

    def __init__(
        self,
        model_dir: Path,
        language: str = "en",
        *,
        factory: ModelFactory = faster_whisper_model,
    ) -> None:
        self.model_dir = model_dir
        self.language = language
        self.factory = factory

    @property
    def model(self) -> str:
        return self.model_dir.name

    def _load(self) -> Any:
        key = (self.factory, self.model_dir)
        if key not in _MODELS:
            _MODELS[key] = self.factory(self.model_dir)
        return _MODELS[key]

    def transcribe(self, path: Path) -> Transcript:
        pcm, rate = read_recording(path)
        model = self._load()
        # Whisper resamples what it reads; a 16 kHz copy spares it decoding the 8 kHz file
        with tempfile.NamedTemporaryFile(suffix=".wav") as wide:
            _write_wav(Path(wide.name), to_16k(pcm, rate))
            segments, _info = model.transcribe(
                wide.name,
                language=self.language,
                word_timestamps=True,
                beam_size=5,
                vad_filter=False,
            )
            words = [
                Word(
                    str(w.word).strip(),
                    start_ms=round(float(w.start) * 1000),
                    end_ms=round(float(w.end) * 1000),
                    confidence=round(float(w.probability), 3),
                )
                for segment in segments
                for w in (segment.words or ())
                if str(w.word).strip()
            ]
        return Transcript(
            text=" ".join(w.word for w in words),
            words=tuple(words),
            backend=self.name,
            model=self.model,
            language=self.language,
            audio_ms=len(pcm) * 1000 // (2 * rate),
        )


def _write_wav(path: Path, pcm: bytes) -> None:
    import wave

    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(16000)
        wav.writeframes(pcm)
