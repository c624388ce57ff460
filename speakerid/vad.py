"""Find the speech in a clip (silero-vad): to count it, to refuse clips without enough of it, and
optionally to embed only the speech.

Embedding the whole clip is the default because it measured better: on mini-voxceleb1's
veri_test.txt the ECAPA model gives EER 0.21 % on whole clips, 0.63 % on speech-only audio and
0.63 % with only leading/trailing silence trimmed (the model was trained on whole utterances).

silero-vad ships its model inside the wheel, so this never touches the network.
"""

from __future__ import annotations

import importlib
import sys
import threading
from dataclasses import dataclass

import numpy as np

from .audio import SAMPLE_RATE, Audio
from .errors import AudioError, InsufficientSpeechError

# Seconds of speech needed to identify or verify. Where accuracy collapses with probe length
# (benchmarks/calibration.py, 16 speakers enrolled): top-1 at 16 kHz 0.89 / 0.93 / 1.00 with 0.4 /
# 0.5 / 0.75 s of speech; at 8 kHz 0.61 / 0.75 / 0.93 / 0.98 / 1.00 with 0.4 / 0.5 / 0.75 / 1 / 1.5 s.
DEFAULT_MIN_SPEECH = 1.0


@dataclass(frozen=True)
class Speech:
    """What gets embedded: the speech samples of one clip, and how many seconds of speech it holds."""

    samples: np.ndarray
    seconds: float
    source: str
    regions: tuple[tuple[int, int], ...] = ()  # speech as (start, end) offsets into the decoded clip


class SpeechDetector:
    """silero-vad's sequence model: one ONNX Runtime call per 16 s of audio instead of a Python loop
    over 32 ms frames (7 ms instead of 29 ms for a 5 s clip here, same regions on all of
    mini-voxceleb1). It keeps no state between calls, so threads may share one detector."""

    def __init__(self, threshold: float = 0.5, min_silence_ms: int = 100, pad_ms: int = 30):
        self.threshold = threshold
        self.min_silence_ms = min_silence_ms
        self.pad_ms = pad_ms
        self._model = None
        self._lock = threading.Lock()

    def segments(self, audio: Audio) -> list[tuple[int, int]]:
        """Speech regions as ``(start, end)`` sample offsets into ``audio.samples``."""
        silero = _import_silero()
        with self._lock:
            if self._model is None:
                self._model = silero.load_silero_vad(sequence=True)
        stamps = silero.get_speech_timestamps_sequence(
            audible(audio.samples),
            self._model,
            threshold=self.threshold,
            sampling_rate=SAMPLE_RATE,
            min_silence_duration_ms=self.min_silence_ms,
            speech_pad_ms=self.pad_ms,
        )
        return [(int(s["start"]), int(s["end"])) for s in stamps]


QUIET_PEAK = 0.1  # a clip whose loud parts stay under -20 dBFS is brought up before detection
TARGET_PEAK = 0.5
MAX_GAIN = 1000.0  # 60 dB


def audible(samples: np.ndarray) -> np.ndarray:
    """``samples`` as speech detection should hear them: quiet recordings raised to a normal level.

    silero-vad is not level-independent: a far-field meeting recording (reverberant, noisy, speech at
    -41 dBFS, simulated from conversations/sample.wav) had 0 % of its speech found as recorded and
    70 % once its loud parts were raised to -6 dBFS (85 % with the timeline's threshold 0.35).
    Clips at a normal level are left exactly as they are.
    """
    if not len(samples):
        return samples
    peak = float(np.percentile(np.abs(samples), 99.9))
    if peak >= QUIET_PEAK or peak == 0:
        return samples
    return samples * np.float32(min(TARGET_PEAK / peak, MAX_GAIN))


_import_lock = threading.Lock()


def _import_silero():
    """Import silero_vad without its side effect: it calls ``torch.set_num_threads(1)`` on import,
    which halved the embedder's speed for the rest of the process. Under a lock, so a second
    thread never sees the module half imported (evaluation decodes on two threads)."""
    with _import_lock:
        if "silero_vad" not in sys.modules:
            import torch

            threads = torch.get_num_threads()
            importlib.import_module("silero_vad")
            torch.set_num_threads(threads)
        return sys.modules["silero_vad"]


_default_detector: SpeechDetector | None = None


def default_detector() -> SpeechDetector:
    global _default_detector
    if _default_detector is None:
        _default_detector = SpeechDetector()
    return _default_detector


def extract_speech(
    audio: Audio,
    *,
    min_speech: float | None = DEFAULT_MIN_SPEECH,
    speech_only: bool = False,
    detector: SpeechDetector | None = None,
) -> Speech:
    """Find the speech of ``audio``; refuse silence and clips with less than ``min_speech`` seconds
    (``min_speech=None``: measure only and refuse nothing, as evaluation does).

    With ``speech_only=True`` only the detected speech is kept for embedding; by default the whole
    clip is (see the module docstring for the measurement).
    """
    silent = not np.any(audio.samples)
    regions = [] if silent else (detector or default_detector()).segments(audio)
    seconds = sum(end - start for start, end in regions) / SAMPLE_RATE
    if min_speech is not None:
        if silent:
            raise AudioError(audio.source, "no speech found (the audio is digital silence)")
        if seconds == 0:
            raise AudioError(audio.source, "no speech found")
        if seconds < min_speech:
            raise InsufficientSpeechError(audio.source, got=seconds, need=min_speech)
    if speech_only and regions:
        samples = np.concatenate([audio.samples[start:end] for start, end in regions])
    else:
        samples = audio.samples
    return Speech(samples=samples, seconds=seconds, source=audio.source, regions=tuple(regions))
