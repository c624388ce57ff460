"""Which engine embeds, for a model, a device and a precision; one per process.

ECAPA-TDNN models run as ONNX files through ONNX Runtime (:mod:`speakerid.voice.onnx_engine`):
int8 products where the CPU has int8 dot-product units, fp32 elsewhere, and no torch in the
process. Other architectures, and devices other than the CPU, run through SpeechBrain itself
(:mod:`speakerid.voice.speechbrain_engine`). Loading costs far more than embedding a clip, so
:func:`load_embedder` keeps one engine per (model, device, precision) for the life of the process.

>>> emb = load_embedder()             # SPEAKERID_MODEL, else the published model (fetched once)
>>> emb.embed([np.zeros(16_000, dtype=np.float32)]).shape, emb.sample_rate
((1, 192), 16000)
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

import numpy as np  # noqa: F401 -- the example above

from speakerid.base.errors import ModelError
from speakerid.voice.engine import Embedder
from speakerid.voice.models import ModelFolder, requested_model, resolve
from speakerid.voice.onnx_engine import OnnxEmbedder
from speakerid.voice.onnx_model import NotConvertible, default_precision
from speakerid.voice.speechbrain_engine import SpeechBrainEmbedder

log = logging.getLogger(__name__)

# SpeechBrain sets each of its loggers to INFO unless told otherwise; its chatter is not our output.
os.environ.setdefault("SB_LOG_LEVEL", "WARNING")

PRECISIONS = ("auto", "fp32", "int8")
_loaded: dict[tuple, Embedder] = {}
_load_lock = threading.Lock()

__all__ = ["PRECISIONS", "Embedder", "load_embedder", "make_embedder"]


def load_embedder(
    model: str | None = None, device: str = "cpu", precision: str | None = None, threads: int | None = None
) -> Embedder:
    """The process-wide engine for ``model`` (hub id or folder; see :mod:`speakerid.voice.models`).

    ``precision``: ``auto`` (``SPEAKERID_PRECISION``, else int8 where the CPU has VNNI or AMX-INT8
    and the model has measured int8 activations, else fp32), ``fp32`` or ``int8``. ``threads``: cores
    one embedding may use (default: all this process may run on).
    """
    spec = requested_model(model)
    if Path(spec).expanduser().is_dir():
        spec = str(Path(spec).expanduser().resolve())
    key = (spec, device, precision or os.environ.get("SPEAKERID_PRECISION"), threads)
    with _load_lock:
        if key not in _loaded:
            folder = resolve(spec)
            log.info("loading %s from %s (%s)", folder.id, folder.path, folder.origin)
            _loaded[key] = make_embedder(folder, device, precision, threads)
        return _loaded[key]


def make_embedder(
    model: ModelFolder, device: str = "cpu", precision: str | None = None, threads: int | None = None
) -> Embedder:
    """A new engine for a resolved model folder (see :func:`load_embedder` for the arguments)."""
    precision = precision or os.environ.get("SPEAKERID_PRECISION") or "auto"
    if precision not in PRECISIONS:
        raise ModelError(f"precision must be {', '.join(PRECISIONS[:-1])} or {PRECISIONS[-1]}, not {precision!r}")
    threads = threads or _usable_cores()
    engine: Embedder | None = None
    if device == "cpu":
        try:
            engine = OnnxEmbedder(model, default_precision(model) if precision == "auto" else precision, threads)
        except NotConvertible as exc:
            log.info("%s; embedding through SpeechBrain", exc)
    if engine is None:
        if precision == "int8":
            raise ModelError(f"{model.id}: int8 runs only for ECAPA-TDNN models on the CPU")
        engine = SpeechBrainEmbedder(model, device, threads)
    _leave_the_cores_to_the_model()
    return engine


def _usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _leave_the_cores_to_the_model() -> None:
    """Run numpy's and FAISS's BLAS on one thread from now on.

    OpenBLAS workers spin for a long while after each call; after scoring 10^4 profiles they took
    the cores the next embedding needed (identify p50 133 ms instead of 63 ms here). The BLAS work
    left to numpy and FAISS (one query's scores) is small enough for one thread.
    """
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1, user_api="blas")
