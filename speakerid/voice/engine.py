"""The one small protocol every embedding engine implements.

16 kHz mono float32 clips in, L2-normalised float32 voiceprints ``(N, dimension)`` out. Engines:
:class:`~speakerid.voice.onnx_engine.OnnxEmbedder` (ONNX Runtime, fp32 or int8, no torch) and
:class:`~speakerid.voice.speechbrain_engine.SpeechBrainEmbedder` (SpeechBrain itself, for other
architectures and devices). :func:`speakerid.voice.embedder.load_embedder` picks one.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from speakerid.voice.audio import SAMPLE_RATE
from speakerid.voice.models import ModelFolder


class Embedder(ABC):
    """An embedding engine: ``sample_rate``, ``dimension``, ``embed(clips)``.

    ``model_id`` names the model (stored with every embedding); ``precision`` is ``fp32`` or
    ``int8``; ``onnx_file`` is the file ONNX Runtime runs (``None``: SpeechBrain runs the model).
    """

    sample_rate = SAMPLE_RATE
    dimension: int
    model: ModelFolder
    model_id: str
    device: str
    precision: str
    threads: int
    onnx_file: Path | None = None

    @abstractmethod
    def _run(self, clips: np.ndarray) -> np.ndarray:
        """Raw embeddings ``(N, D)`` of clips of one length ``(N, samples)``."""

    def embed(self, clips: Sequence[np.ndarray]) -> np.ndarray:
        """Embed each clip on its own, so a clip's embedding never depends on its batch-mates."""
        out = np.empty((len(clips), self.dimension), dtype=np.float32)
        for i, clip in enumerate(clips):
            out[i] = self.embed_equal(np.asarray(clip, dtype=np.float32)[None])[0]
        return out

    def embed_equal(self, clips: np.ndarray) -> np.ndarray:
        """Embed clips of one length ``(N, samples)`` in one pass: nothing is padded, so each result
        is what :meth:`embed` gives for that clip alone (up to float rounding), several times faster
        for short windows. Timelines and streams use it."""
        vecs = self._run(np.ascontiguousarray(clips, dtype=np.float32)).reshape(len(clips), -1)
        norms = np.linalg.norm(vecs, axis=1, keepdims=True)
        return vecs / np.where(norms > 0, norms, 1)

    def _measure_dimension(self) -> int:
        probe = np.random.default_rng(0).standard_normal(SAMPLE_RATE).astype(np.float32) * 0.1
        return int(self._run(probe[None]).shape[-1])
