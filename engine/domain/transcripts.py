"""What a transcript is, how far it is from what was said, and when a failed one is tried
again. Pure: the transcribers (engine/transcription/) produce these, the store keeps
them, the API and ``bench/transcripts.py`` read them.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence

__all__ = [
    "Transcript",
    "Word",
    "normalize_words",
    "retry_delay",
    "text_of",
    "word_error_rate",
]


@dataclasses.dataclass(frozen=True, slots=True)
class Word:
    """One recognised word and when it was said (ms from the recording's start)."""

    word: str
    start_ms: int
    end_ms: int
    confidence: float | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class Transcript:
    """A recording's text, its words with timings, and what produced it."""

    text: str
    words: tuple[Word, ...]
    backend: str
    model: str
    language: str
    audio_ms: int


_WORD = re.compile(r"[a-z0-9']+")


def normalize_words(text: str) -> list[str]:
    """Lower-case words without punctuation, the form word error rates compare."""
    return _WORD.findall(text.lower())


def word_error_rate(reference: str, hypothesis: str) -> float:
    """(substitutions + deletions + insertions) / words in ``reference`` (Levenshtein over
    words); 0.0 for two empty texts, 1.0 for a hypothesis against an empty reference."""
    ref, hyp = normalize_words(reference), normalize_words(hypothesis)
    if not ref:
        return 0.0 if not hyp else 1.0
    previous = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        current = [i]
        for j, h in enumerate(hyp, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (r != h)))
        previous = current
    return previous[-1] / len(ref)


def retry_delay(attempts: int, initial: float, cap: float = 3600.0) -> float:
    """Seconds before a job that failed ``attempts`` times is tried again: ``initial``
    doubled per earlier failure, at most ``cap``."""
    return min(initial * 2.0 ** max(attempts - 1, 0), cap)


def text_of(words: Sequence[Word]) -> str:
    """The words as one line of text."""
    return " ".join(w.word for w in words)
