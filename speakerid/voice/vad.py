"""Find the speech in a clip (silero-vad): to count it, to refuse clips without enough of it, and
optionally to embed only the speech.

Embedding the whole clip is the default because it measured better: on mini-voxceleb1's
veri_test.txt the ECAPA model gives EER 0.21 % on whole clips, 0.63 % on speech-only audio and
0.63 % with only leading/trailing silence trimmed (the model was trained on whole utterances).

silero-vad ships its model inside the wheel, so this never touches the network. Its ONNX
sequence model is run here with ONNX Runtime directly: importing the silero_vad package imports
torch (~1 s of every command's start), which nothing else on the identify path needs. Its
convolutions are restated as matrix products once per machine (:func:`speakerid.voice.onnx_model.restated_file`):
the same probabilities (within 1e-6), 2.5x faster on an AMD EPYC Zen 4.
"""

from __future__ import annotations

import importlib.util
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from speakerid.base.errors import AudioError, InsufficientSpeechError, ModelError
from speakerid.voice.audio import SAMPLE_RATE, Audio

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
    over 32 ms frames (4 ms instead of 29 ms for a 5 s clip, AMD EPYC), turned into regions by silero's
    rule (:func:`speech_regions`); tests/test_audio.py checks the regions against silero's own
    frame-by-frame model. It keeps no state between calls, so threads may share one detector."""

    FRAME, CONTEXT, BLOCK = 512, 64, 512  # samples per frame, samples of context, frames per call

    def __init__(self, threshold: float = 0.5, min_silence_ms: int = 100, pad_ms: int = 30):
        self.threshold = threshold
        self.min_silence_ms = min_silence_ms
        self.pad_ms = pad_ms
        self._session = None
        self._lock = threading.Lock()

    def segments(self, audio: Audio) -> list[tuple[int, int]]:
        """Speech regions as ``(start, end)`` sample offsets into ``audio.samples``."""
        samples = audible(audio.samples)
        return speech_regions(
            self.probabilities(samples),
            len(samples),
            threshold=self.threshold,
            min_silence=self.min_silence_ms / 1000,
            pad=self.pad_ms / 1000,
        )

    def probabilities(self, samples: np.ndarray) -> np.ndarray:
        """Speech probability of each 32 ms frame (the last one zero-padded)."""
        with self._lock:
            if self._session is None:
                self._session = _silero_session()
        count = -(-len(samples) // self.FRAME)
        padded = np.zeros(count * self.FRAME + self.CONTEXT, dtype=np.float32)
        padded[self.CONTEXT : self.CONTEXT + len(samples)] = samples
        # each row: the previous frame's last CONTEXT samples (zeros first), then the frame
        rows = np.lib.stride_tricks.sliding_window_view(padded, self.FRAME + self.CONTEXT)[:: self.FRAME]
        state = [np.zeros((1, 1, 128), dtype=np.float32) for _ in range(2)]
        out = []
        for first in range(0, count, self.BLOCK):
            block = np.ascontiguousarray(rows[first : first + self.BLOCK])
            probs, *state = self._session.run(
                ["speech_probs", "hn", "cn"], {"input": block, "h": state[0], "c": state[1]}
            )
            out.append(probs.reshape(-1))
        return np.concatenate(out) if out else np.zeros(0, dtype=np.float32)


def speech_regions(
    probabilities,
    length: int,
    *,
    threshold: float = 0.5,
    min_silence: float = 0.1,
    pad: float = 0.03,
    min_speech: float = 0.25,
    frame: int = 512,
) -> list[tuple[int, int]]:
    """silero-vad's rule from frame probabilities to regions (16 kHz, no length limit): speech
    starts at a frame >= ``threshold`` and ends where the probability stays below ``threshold -
    0.15`` for ``min_silence`` s; regions of ``min_speech`` s or less are dropped; each side is
    padded by ``pad`` s, or by half the gap when two regions are closer than twice that.

    >>> speech_regions([0] + [0.9] * 9 + [0.1] * 6, 8192)  # 32 ms frames: speech from 32 to 320 ms
    [(32, 5600)]
    """
    rate = SAMPLE_RATE
    quiet = max(threshold - 0.15, 0.01)
    regions: list[list[int]] = []
    start = silent_since = None
    for i, p in enumerate(probabilities):
        at = frame * i
        if p >= threshold:
            silent_since = None
            if start is None:
                start = at
        elif p < quiet and start is not None:
            silent_since = at if silent_since is None else silent_since
            if at - silent_since >= rate * min_silence:
                if silent_since - start > rate * min_speech:
                    regions.append([start, silent_since])
                start = silent_since = None
    if start is not None and length - start > rate * min_speech:
        regions.append([start, length])
    margin = rate * pad
    for i, region in enumerate(regions):
        if i == 0:
            region[0] = int(max(0, region[0] - margin))
        if i + 1 < len(regions):
            gap = regions[i + 1][0] - region[1]
            share = gap // 2 if gap < 2 * margin else margin
            region[1] = int(region[1] + share) if gap < 2 * margin else int(min(length, region[1] + share))
            regions[i + 1][0] = int(max(0, regions[i + 1][0] - share))
        else:
            region[1] = int(min(length, region[1] + margin))
    return [(a, b) for a, b in regions]


def _silero_file() -> Path:
    """silero-vad's sequence model, found in the installed package without importing it."""
    spec = importlib.util.find_spec("silero_vad")
    if spec is None or not spec.submodule_search_locations:
        raise ModelError("speech detection needs the silero-vad package, which is not installed")
    return Path(list(spec.submodule_search_locations)[0]) / "data" / "silero_vad_16k_sequence.onnx"


def _silero_session():
    from speakerid.voice.onnx_model import restated_file, session

    return session(restated_file(_silero_file()), threads=1)


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
