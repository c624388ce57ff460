"""Speaker embeddings from a SpeechBrain model (ECAPA-TDNN by default, x-vector and others too).

Loading costs far more than embedding a clip, so :meth:`Embedder.load` keeps one instance per
(model, device) for the life of the process.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Sequence

import numpy as np

from .audio import SAMPLE_RATE
from .errors import ModelError, one_line
from .models import ModelFolder, requested_model, resolve

log = logging.getLogger(__name__)

# SpeechBrain sets each of its loggers to INFO unless told otherwise; its chatter is not our output.
os.environ.setdefault("SB_LOG_LEVEL", "WARNING")

_loaded: dict[tuple[str, str, str | None], "Embedder"] = {}
_load_lock = threading.Lock()


class Embedder:
    """Clips of 16 kHz mono float32 samples in, L2-normalised float32 embeddings ``(N, D)`` out.

    Example
    -------
    >>> emb = Embedder.load()                       # doctest: +SKIP
    >>> emb.embed([samples]).shape                  # doctest: +SKIP
    (1, 192)
    """

    sample_rate = SAMPLE_RATE

    def __init__(self, model: ModelFolder, device: str = "cpu", precision: str | None = None):
        import torch

        from .fast_model import bf16_is_native, keep_freed_memory, speed_up

        precision = precision or os.environ.get("SPEAKERID_PRECISION", "auto")
        if precision not in ("auto", "fp32", "bf16"):
            raise ModelError(f"precision must be auto, fp32 or bf16, not {precision!r}")
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise ModelError(f"device {device} requested, but no CUDA device is available")
        if precision == "auto":  # bf16 only where the CPU multiplies it natively (AVX512-BF16 / AMX)
            precision = "bf16" if device == "cpu" and bf16_is_native() else "fp32"
        self._classifier = load_speechbrain(model.path, device)
        self._classifier.eval()
        _flush_denormals(self._classifier.mods)
        speed_up(self._classifier.mods.embedding_model, bf16=precision == "bf16")
        keep_freed_memory()
        _leave_the_cores_to_torch()
        self.model = model
        self.model_id = model.id
        self.device = device
        self.precision = precision
        probe = np.random.default_rng(0).standard_normal(SAMPLE_RATE).astype(np.float32) * 0.1
        self.dimension = int(self._embed_one(probe).shape[-1])

    @classmethod
    def load(cls, model: str | None = None, device: str = "cpu", precision: str | None = None) -> "Embedder":
        """The process-wide embedder for ``model`` (hub id or folder; see :mod:`speakerid.models`)."""
        spec = requested_model(model)
        if Path(spec).expanduser().is_dir():
            spec = str(Path(spec).expanduser().resolve())
        key = (spec, device, precision)
        with _load_lock:
            if key not in _loaded:
                folder = resolve(spec)
                log.info("loading %s from %s (%s)", folder.id, folder.path, folder.origin)
                _loaded[key] = cls(folder, device, precision)
            return _loaded[key]

    def embed(self, clips: Sequence[np.ndarray]) -> np.ndarray:
        """Embed each clip on its own, so a clip's embedding never depends on its batch-mates."""
        out = np.empty((len(clips), self.dimension), dtype=np.float32)
        for i, clip in enumerate(clips):
            out[i] = self._embed_one(clip)
        return out

    def embed_equal(self, clips: np.ndarray) -> np.ndarray:
        """Embed clips of one length ``(N, samples)`` in one pass: nothing is padded, so each result
        is what :meth:`embed` gives for that clip alone (up to float rounding), several times faster
        for short windows. Timelines and streams use it."""
        import torch

        wav = torch.from_numpy(np.ascontiguousarray(clips, dtype=np.float32)).to(self.device)
        with torch.inference_mode():
            vecs = self._classifier.encode_batch(wav).reshape(len(clips), -1).float().cpu().numpy()
        norms = np.linalg.norm(vecs, axis=1, keepdims=True)
        return vecs / np.where(norms > 0, norms, 1)

    def _embed_one(self, samples: np.ndarray) -> np.ndarray:
        import torch

        wav = torch.from_numpy(np.ascontiguousarray(samples, dtype=np.float32))[None].to(self.device)
        with torch.inference_mode():
            vec = self._classifier.encode_batch(wav).reshape(-1).float().cpu().numpy()
        norm = float(np.linalg.norm(vec))
        return vec / norm if norm > 0 else vec


def load_speechbrain(folder, device: str = "cpu"):
    """SpeechBrain's own ``EncoderClassifier`` from a local folder, offline, weights untouched.

    ``hyperparams.yaml`` names the hub; pointing ``pretrained_path`` at the folder keeps loading
    offline, and ``NO_LINK`` writes nothing anywhere. Benchmarks and tests use this as "plain".
    """
    from speechbrain.inference.speaker import EncoderClassifier
    from speechbrain.utils.fetching import LocalStrategy

    folder = str(folder)
    try:
        classifier = EncoderClassifier.from_hparams(source=folder, savedir=None, overrides={"pretrained_path": folder},
                                                    run_opts={"device": device}, local_strategy=LocalStrategy.NO_LINK)
    except Exception as exc:  # SpeechBrain raises anything from yaml, torch or its fetcher
        raise ModelError(f"{folder}: cannot load the model ({one_line(exc)})") from None
    if classifier is None:
        raise ModelError(f"{folder}: SpeechBrain returned no model")
    return classifier


def _leave_the_cores_to_torch() -> None:
    """Run numpy's and FAISS's BLAS on one thread from now on.

    OpenBLAS workers spin for a long while after each call; after scoring 10^4 profiles they took
    the cores the next embedding needed (identify p50 133 ms instead of 63 ms here). The BLAS work
    left to numpy and FAISS (one query's scores) is small enough for one thread.
    """
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1, user_api="blas")


def _flush_denormals(module) -> None:
    """Set subnormal weights to zero: same embeddings (bit for bit), about 5x faster on Intel CPUs.

    The published ECAPA checkpoint holds ~74k subnormal weights (46k in the attentive pooling
    layer). x86 cores take a microcode assist on every subnormal operand, which made plain
    ``encode_batch`` run at a real-time factor of 0.11 here instead of 0.023; zeroing them
    changes no output bit on mini-voxceleb1 (see tests/test_embedder.py).
    """
    import torch

    with torch.no_grad():
        for tensor in list(module.parameters()) + list(module.buffers()):
            if tensor.is_floating_point():
                tensor[tensor.abs() < torch.finfo(tensor.dtype).tiny] = 0
