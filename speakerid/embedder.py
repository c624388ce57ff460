"""Speaker embeddings from a SpeechBrain speaker model (ECAPA-TDNN by default, x-vector and others too).

ECAPA-TDNN models run as ONNX files through ONNX Runtime (:mod:`speakerid.onnx_model`): int8
products where the CPU has int8 dot-product units, fp32 elsewhere, and no torch in the process.
Other architectures, and devices other than the CPU, run through SpeechBrain itself. Loading costs
far more than embedding a clip, so :meth:`Embedder.load` keeps one instance per (model, device,
precision) for the life of the process.
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
from .onnx_model import NotConvertible, default_precision, frames, onnx_file, session

log = logging.getLogger(__name__)

# SpeechBrain sets each of its loggers to INFO unless told otherwise; its chatter is not our output.
os.environ.setdefault("SB_LOG_LEVEL", "WARNING")

PRECISIONS = ("auto", "fp32", "int8")
_loaded: dict[tuple, "Embedder"] = {}
_load_lock = threading.Lock()


class Embedder:
    """Clips of 16 kHz mono float32 samples in, L2-normalised float32 embeddings ``(N, D)`` out.

    ``precision``: ``auto`` (``SPEAKERID_PRECISION``, else int8 where the CPU has VNNI or AMX-INT8
    and the model has measured int8 activations, else fp32), ``fp32`` or ``int8``. ``threads``: cores
    one embedding may use (default: all this process may run on).

    Example
    -------
    >>> emb = Embedder.load()                       # doctest: +SKIP
    >>> emb.embed([samples]).shape                  # doctest: +SKIP
    (1, 192)
    """

    sample_rate = SAMPLE_RATE

    def __init__(self, model: ModelFolder, device: str = "cpu", precision: str | None = None,
                 threads: int | None = None):
        precision = precision or os.environ.get("SPEAKERID_PRECISION") or "auto"
        if precision not in PRECISIONS:
            raise ModelError(f"precision must be {', '.join(PRECISIONS[:-1])} or {PRECISIONS[-1]}, not {precision!r}")
        threads = threads or _usable_cores()
        self._run = None
        self.onnx_file: Path | None = None  # None: SpeechBrain runs the model
        if device == "cpu":
            try:
                chosen = default_precision(model) if precision == "auto" else precision
                self.onnx_file = onnx_file(model, chosen)
                self._session = session(self.onnx_file, threads)
                self._run = self._run_onnx
                precision = chosen
            except NotConvertible as exc:
                log.info("%s; embedding through SpeechBrain", exc)
        if self._run is None:
            if precision == "int8":
                raise ModelError(f"{model.id}: int8 runs only for ECAPA-TDNN models on the CPU")
            self._classifier = _speechbrain_on(model, device, threads)
            self._run = self._run_speechbrain
            precision = "fp32"
        _leave_the_cores_to_the_model()
        self.model = model
        self.model_id = model.id
        self.device = device
        self.precision = precision
        self.threads = threads
        probe = np.random.default_rng(0).standard_normal(SAMPLE_RATE).astype(np.float32) * 0.1
        self.dimension = int(self._run(probe[None]).shape[-1])

    @classmethod
    def load(cls, model: str | None = None, device: str = "cpu", precision: str | None = None,
             threads: int | None = None) -> "Embedder":
        """The process-wide embedder for ``model`` (hub id or folder; see :mod:`speakerid.models`)."""
        spec = requested_model(model)
        if Path(spec).expanduser().is_dir():
            spec = str(Path(spec).expanduser().resolve())
        key = (spec, device, precision or os.environ.get("SPEAKERID_PRECISION"), threads)
        with _load_lock:
            if key not in _loaded:
                folder = resolve(spec)
                log.info("loading %s from %s (%s)", folder.id, folder.path, folder.origin)
                _loaded[key] = cls(folder, device, precision, threads)
            return _loaded[key]

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

    def _run_onnx(self, clips: np.ndarray) -> np.ndarray:
        return self._session.run(None, {"frames": frames(clips)})[0].astype(np.float32, copy=False)

    def _run_speechbrain(self, clips: np.ndarray) -> np.ndarray:
        import torch

        wav = torch.from_numpy(clips).to(self.device)
        with torch.inference_mode():
            return self._classifier.encode_batch(wav).reshape(len(clips), -1).float().cpu().numpy()


def _usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _speechbrain_on(model: ModelFolder, device: str, threads: int):
    import torch

    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ModelError(f"device {device} requested, but no CUDA device is available")
    if device == "cpu":
        torch.set_num_threads(threads)
    classifier = load_speechbrain(model.path, device)
    classifier.eval()
    flush_denormals(classifier.mods)
    return classifier


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


def _leave_the_cores_to_the_model() -> None:
    """Run numpy's and FAISS's BLAS on one thread from now on.

    OpenBLAS workers spin for a long while after each call; after scoring 10^4 profiles they took
    the cores the next embedding needed (identify p50 133 ms instead of 63 ms here). The BLAS work
    left to numpy and FAISS (one query's scores) is small enough for one thread.
    """
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1, user_api="blas")


def flush_denormals(module) -> None:
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
