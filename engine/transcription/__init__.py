"""Offline transcription of call recordings: the backends behind
:class:`~engine.app.ports.Transcriber` and the daemon's worker that feeds them."""

from __future__ import annotations

from engine.app.ports import Transcriber
from engine.config.settings import TranscriptSettings
from engine.errors import ConfigError

__all__ = ["transcriber_from_settings"]


def transcriber_from_settings(settings: TranscriptSettings) -> Transcriber:
    """The backend ``transcripts.backend`` names (its model is loaded when first used, in
    the worker process)."""
    if settings.backend == "whisper":
        from engine.transcription.whisper_backend import WhisperTranscriber

        if settings.model_dir is None:
            raise ConfigError("transcripts.model_dir: the whisper backend needs a model directory")
        return WhisperTranscriber(settings.model_dir, settings.language)
    from engine.transcription.pocketsphinx_backend import PocketsphinxTranscriber

    return PocketsphinxTranscriber(settings.language)
