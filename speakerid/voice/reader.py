"""The one path from a clip to a vector: decode → find the speech → embed.

Queries, enrollment, evaluation, timelines and streams all read voices through a
:class:`VoiceReader`, so an option such as ``speech_only`` means the same for every one of them.
:meth:`VoiceReader.decode` does everything before the model and is thread-safe, so bulk work can
decode the next clips on a thread while the model embeds this one (:mod:`speakerid.base.prefetch`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from speakerid.voice.audio import DEFAULT_MAX_SECONDS, Audio, AudioInput, load_audio
from speakerid.voice.engine import Embedder
from speakerid.voice.vad import Speech, extract_speech


@dataclass(frozen=True)
class Voice:
    """One clip, read: its embedding (L2-normalised), the speech found in it, and the audio."""

    vector: np.ndarray
    speech: Speech
    audio: Audio


class VoiceReader:
    """Reads clips into voiceprint vectors with one set of options.

    ``speech_only``: embed only the detected speech (default: the whole clip, which measured
    better; see :mod:`speakerid.voice.vad`). ``max_seconds``: longer inputs are refused.
    """

    def __init__(self, embedder: Embedder, *, max_seconds: float = DEFAULT_MAX_SECONDS, speech_only: bool = False):
        self.embedder = embedder
        self.max_seconds = max_seconds
        self.speech_only = speech_only

    def decode(self, source: AudioInput, name: str | None = None, *, min_speech: float | None) -> tuple[Audio, Speech]:
        """Decode and find the speech; refuse clips with under ``min_speech`` seconds of it
        (``None``: measure only, refuse nothing). Thread-safe."""
        audio = load_audio(source, name, max_seconds=self.max_seconds)
        return audio, extract_speech(audio, min_speech=min_speech, speech_only=self.speech_only)

    def embed(self, speech: Speech) -> np.ndarray:
        return self.embedder.embed([speech.samples])[0]

    def read(self, source: AudioInput, name: str | None = None, *, min_speech: float | None) -> Voice:
        audio, speech = self.decode(source, name, min_speech=min_speech)
        return Voice(vector=self.embed(speech), speech=speech, audio=audio)
