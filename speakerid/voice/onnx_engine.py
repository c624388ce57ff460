"""The ECAPA model run by ONNX Runtime from its ONNX file (fp32 or int8): no torch in the process."""

from __future__ import annotations

import numpy as np

from speakerid.voice.engine import Embedder
from speakerid.voice.models import ModelFolder
from speakerid.voice.onnx_model import frames, onnx_file, session


class OnnxEmbedder(Embedder):
    """``precision``: ``fp32`` (SpeechBrain's arithmetic, cosine 1.000000) or ``int8`` (the large
    products in int8; cosine >= 0.999 to fp32 on real speech). Raises
    :class:`~speakerid.voice.onnx_model.NotConvertible` for a model the graph does not restate."""

    def __init__(self, model: ModelFolder, precision: str, threads: int):
        self.onnx_file = onnx_file(model, precision)
        self._session = session(self.onnx_file, threads)
        self.model, self.model_id, self.device = model, model.id, "cpu"
        self.precision, self.threads = precision, threads
        self.dimension = self._measure_dimension()

    def _run(self, clips: np.ndarray) -> np.ndarray:
        return self._session.run(None, {"frames": frames(clips)})[0].astype(np.float32, copy=False)
