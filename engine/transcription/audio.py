"""Reading a call recording for a speech recogniser.

Asterisk records a bridge as 8 kHz, 16-bit mono WAV (``wav``; ``gsm`` recordings cannot
be transcribed). Recognisers' models want 16 kHz: the samples are doubled by linear
interpolation, which needs no library and, for narrow-band telephone speech, costs the
recognisers nothing measurable against a proper resampler (nothing above 4 kHz is there to
keep).
"""

from __future__ import annotations

import array
import sys
import wave
from pathlib import Path

from engine.errors import TranscriptionError

__all__ = ["read_recording", "to_16k"]


def read_recording(path: Path) -> tuple[bytes, int]:
    """The recording's 16-bit mono samples (little-endian) and their rate."""
    try:
        with wave.open(str(path), "rb") as wav:
            if wav.getnchannels() != 1 or wav.getsampwidth() != 2:
                raise TranscriptionError(f"{path}: not 16-bit mono WAV")
            return wav.readframes(wav.getnframes()), wav.getframerate()
    except (OSError, EOFError, wave.Error) as exc:
        raise TranscriptionError(f"{path}: cannot read the recording: {exc}") from exc


def to_16k(pcm: bytes, rate: int) -> bytes:
    """``pcm`` at ``rate`` (8000 or 16000) as 16 kHz samples."""
    if rate == 16000:
        return pcm
    if rate != 8000:
        raise TranscriptionError(f"sample rate {rate} Hz: expected 8000 or 16000")
    samples = array.array("h")
    samples.frombytes(pcm[: len(pcm) - len(pcm) % 2])
    if sys.byteorder == "big":
        samples.byteswap()
    out = array.array("h", bytes(4 * len(samples)))
    out[0::2] = samples
    following = samples[1:] + samples[-1:]
    out[1::2] = array.array("h", ((a + b) >> 1 for a, b in zip(samples, following, strict=True)))
    if sys.byteorder == "big":
        out.byteswap()
    return out.tobytes()
