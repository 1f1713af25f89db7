"""The zero-download transcriber: PocketSphinx with the English model its wheel carries.

Weak on telephone audio (an 8 kHz recording resampled to 16 kHz for a wide-band model):
see the README's figures. It is the default because it needs nothing but ``pip install
'ctc-engine[transcripts]'``; admins who can provide a model use the whisper backend.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from engine.domain.transcripts import Transcript, Word, text_of
from engine.errors import TranscriptionError
from engine.transcription.audio import read_recording, to_16k

__all__ = ["PocketsphinxTranscriber"]

# PocketSphinx counts frames of 10 ms
_FRAME_MS = 10
# what its segmentation gives besides words: sentence marks, silence, fillers
_NOT_WORDS = ("<", "[", "++")


class PocketsphinxTranscriber:
    """:class:`~engine.app.ports.Transcriber` over PocketSphinx (English). The decoder is
    made on first use, in the process that transcribes (the worker's), and kept."""

    name = "pocketsphinx"

    def __init__(self, language: str = "en") -> None:
        if language != "en":
            raise TranscriptionError(f"pocketsphinx ships an English model only, not {language!r}")
        self.language = language
        self._decoder: Any = None

    def __getstate__(self) -> dict[str, Any]:
        return {"language": self.language}  # the decoder stays in its process

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.language = state["language"]
        self._decoder = None

    @property
    def model(self) -> str:
        return "en-us (pocketsphinx wheel)"

    def _load(self) -> Any:
        if self._decoder is None:
            try:
                import pocketsphinx
            except ImportError as exc:
                raise TranscriptionError(
                    "pocketsphinx is not installed: pip install 'ctc-engine[transcripts]'"
                ) from exc
            pocketsphinx.set_loglevel("FATAL")
            self._decoder = pocketsphinx.Decoder(samprate=16000)
        return self._decoder

    def transcribe(self, path: Path) -> Transcript:
        pcm, rate = read_recording(path)
        audio = to_16k(pcm, rate)
        decoder = self._load()
        decoder.start_utt()
        decoder.process_raw(audio, full_utt=True)
        decoder.end_utt()
        words: list[Word] = []
        for seg in decoder.seg():
            token = str(seg.word)
            if token.startswith(_NOT_WORDS):
                continue
            word = token.split("(", 1)[0]  # "read(2)": the second pronunciation of "read"
            # the word's posterior probability, as the decoder's segmentation gives it
            confidence = min(max(float(seg.prob), 0.0), 1.0)
            words.append(
                Word(
                    word,
                    start_ms=int(seg.start_frame) * _FRAME_MS,
                    end_ms=(int(seg.end_frame) + 1) * _FRAME_MS,
                    confidence=round(confidence, 3),
                )
            )
        return Transcript(
            text=text_of(words),
            words=tuple(words),
            backend=self.name,
            model=self.model,
            language=self.language,
            audio_ms=len(pcm) * 1000 // (2 * rate),
        )
