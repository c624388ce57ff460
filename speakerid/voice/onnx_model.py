"""The embedding model as ONNX files, built once per model and machine, run by ONNX Runtime.

Why: ONNX Runtime's int8 products run twice as fast as bf16 ones on CPUs with VNNI (826 vs 430
GFLOP/s for 3072 x 3072 x 512 on an AMD EPYC Zen 4), and running the model needs neither torch nor
SpeechBrain, so a new process embeds a clip after ~0.5 s of imports instead of ~2.5 s.

The files live in the cache (``<cache>/onnx/<model id>/<precision>.onnx``, private to the user),
written atomically on first use from the model's own SpeechBrain checkpoint
(:mod:`speakerid.voice.ecapa_graph`; that one conversion imports torch and SpeechBrain). Precisions:

- ``fp32``: the same arithmetic as SpeechBrain up to float rounding (cosine 1.000000);
- ``int8``: the large per-frame products with int8 weights (per output channel) and activations
  quantised per call; only for models with activations measured on speech (the published ECAPA
  model: ``speakerid/voice/data``), and chosen by default only on CPUs with VNNI or AMX-INT8 (the
  CPU kinds it was measured faster on). Cosine to fp32 >= 0.999 on real speech, same decisions.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from speakerid.base.digest import sha256_file
from speakerid.base.errors import ModelError, one_line
from speakerid.base.paths import cache_dir
from speakerid.voice.models import DEFAULT_MODEL, ModelFolder

if TYPE_CHECKING:  # the graph needs torch, imported only when a file is built
    from speakerid.voice.ecapa_graph import EcapaGraph

log = logging.getLogger(__name__)

CONVERTER = (
    7  # bump when the graph changes (7: the cohort is written beside the files): files of another version are rebuilt
)
RESTATER = 1  # the same for restated_file()
ACTIVATIONS = {DEFAULT_MODEL: Path(__file__).parent / "data" / "ecapa-voxceleb-int8-activations.npz"}
SMOOTHING = 0.7  # SmoothQuant's alpha (benchmarks/int8_calibration.py: 0.5 and 0.7 measured)
INT8_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")
_build_lock = threading.Lock()


class NotConvertible(ModelError):
    """The model is not an ECAPA-TDNN on Fbank features: it runs through SpeechBrain instead."""


def cpu_flags() -> set[str]:
    """The CPU's feature flags (Linux ``/proc/cpuinfo``); empty where they cannot be read."""
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def default_precision(model: ModelFolder) -> str:
    """int8 where the CPU has int8 dot-product units and the model has measured activations, else fp32."""
    return "int8" if model.id in ACTIVATIONS and cpu_flags() & set(INT8_FLAGS) else "fp32"


def engine_here(model_id: str | None = DEFAULT_MODEL) -> str:
    """Which path embeddings take on this machine, and why, in one line (``speakerid doctor``)."""
    forced = os.environ.get("SPEAKERID_PRECISION")
    if forced and forced != "auto":
        return f"ONNX Runtime {forced} (SPEAKERID_PRECISION={forced})"
    found = sorted(cpu_flags() & set(INT8_FLAGS))
    if model_id is not None and model_id not in ACTIVATIONS:
        return (
            f"ONNX Runtime fp32 ({model_id} has no int8 activations measured on speech; "
            "architectures other than ECAPA-TDNN run through SpeechBrain)"
        )
    if found:
        return f"ONNX Runtime int8 (this CPU has {', '.join(found)})"
    return (
        f"ONNX Runtime fp32 (this CPU has none of {', '.join(INT8_FLAGS)}: int8 would not be faster; "
        "about plain SpeechBrain's speed)"
    )


def frames(samples: np.ndarray, n_fft: int = 400, hop: int = 160) -> np.ndarray:
    """The windows SpeechBrain's centred STFT reads: ``n_fft`` samples every ``hop``, the clip
    zero-padded by ``n_fft // 2`` at both ends. ``(..., samples)`` -> ``(..., frames, n_fft)``.

    >>> frames(np.arange(800, dtype=np.float32)).shape
    (6, 400)
    """
    padded = np.pad(samples, [(0, 0)] * (samples.ndim - 1) + [(n_fft // 2, n_fft // 2)])
    count = 1 + (padded.shape[-1] - n_fft) // hop
    windows = np.lib.stride_tricks.sliding_window_view(padded, n_fft, axis=-1)[..., ::hop, :][..., :count, :]
    return np.ascontiguousarray(windows, dtype=np.float32)


def onnx_file(model: ModelFolder, precision: str) -> Path:
    """The ONNX file of ``model`` at ``precision``, built now if the cache does not hold it.

    Raises :class:`NotConvertible` (remembered in the cache) for models this graph does not
    restate, and :class:`ModelError` when int8 is asked of a model without measured activations.
    """
    if precision == "int8" and model.id not in ACTIVATIONS:
        raise ModelError(
            f"{model.id}: int8 needs activations measured on speech; only {', '.join(ACTIVATIONS)} has them"
        )
    folder = cache_dir() / "onnx" / model.id.replace("/", "--")
    path, marker = folder / f"{precision}.onnx", folder / "not-convertible.json"
    stamp = {
        "converter": CONVERTER,
        "model": model.id,
        "smoothing": SMOOTHING,
        "activations": sha256_file(ACTIVATIONS[model.id]) if precision == "int8" else None,
    }
    with _build_lock:
        known = _read_json(marker)
        if known and known.get("converter") == CONVERTER:  # a newer converter may restate the model
            raise NotConvertible(known.get("reason", "not convertible"))
        if path.is_file() and _read_json(folder / f"{precision}.json") == stamp:
            return path
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        log.info("building the %s ONNX model of %s in %s (once)", precision, model.id, folder)
        try:
            _build(model, precision, path)
        except NotConvertible as exc:
            _write_private(marker, json.dumps({"reason": str(exc), **stamp}).encode())
            raise
        _write_private(folder / f"{precision}.json", json.dumps(stamp).encode())
        return path


def restated_file(source: Path) -> Path:
    """``source`` with its 1-D convolutions restated as products (:mod:`speakerid.voice.onnx_convolutions`;
    silero-vad's model: 9.6 -> 3.8 ms per 5 s on an AMD EPYC Zen 4), built once into the cache and
    named by the source's digest. ``source`` itself when the rewrite does not apply or the cache
    cannot be written."""
    path = cache_dir() / "onnx" / "restated" / f"{source.stem}-{RESTATER}-{sha256_file(source)[:16]}.onnx"
    with _build_lock:
        if path.is_file():
            return path
        from speakerid.voice.onnx_convolutions import restate

        try:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            _write_private(path, restate(source.read_bytes()))
        except Exception as exc:  # onnx, onnxruntime and the file system raise many kinds
            log.warning("%s: running it as published (cannot restate its convolutions: %s)", source.name, one_line(exc))
            return source
    return path


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _write_private(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def prepared_graph(model: ModelFolder, precision: str) -> tuple[EcapaGraph, set[str]]:
    """The graph ``precision``'s file is exported from (torch + SpeechBrain, this once), and the
    names of the weights :func:`quantise` turns to int8 (empty for fp32)."""
    from speakerid.voice import ecapa_graph, ecapa_int8, ecapa_recipe
    from speakerid.voice.cohort import save_cohort
    from speakerid.voice.speechbrain_engine import flush_denormals, load_speechbrain

    classifier = load_speechbrain(model.path)
    classifier.eval()
    flush_denormals(classifier.mods)  # the same outputs; no microcode assists on Intel CPUs
    save_cohort(model, classifier)  # the training speakers' prototypes, for evaluations' s-norm
    if reasons := ecapa_recipe.unsupported(classifier):
        raise NotConvertible(f"{model.id}: {'; '.join(reasons)}")
    graph = ecapa_graph.EcapaGraph(classifier).eval()
    if precision != "int8":
        return graph, set()
    return graph, ecapa_int8.prepare(graph, ecapa_int8.Activations.load(ACTIVATIONS[model.id]), SMOOTHING)


def _build(model: ModelFolder, precision: str, path: Path) -> None:
    """Convert the checkpoint and write ``path``."""
    from speakerid.voice import ecapa_graph

    graph, weights = prepared_graph(model, precision)
    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
        fp32 = Path(tmp) / "fp32.onnx"
        try:
            ecapa_graph.export(graph, fp32)
            if precision == "int8":
                quantise(fp32, Path(tmp) / "int8.onnx", weights)
        except Exception as exc:  # the exporter and quantiser raise many kinds
            raise ModelError(f"{model.id}: cannot build the {precision} ONNX model ({one_line(exc)})") from None
        _write_private(path, (Path(tmp) / f"{precision}.onnx").read_bytes())


def quantise(source: Path, target: Path, weights: set[str]) -> None:
    """int8 products for the MatMul nodes whose weight is in ``weights``; all else stays fp32."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    graph = onnx.load(str(source)).graph
    chosen = [node.name for node in graph.node if node.op_type == "MatMul" and node.input[1] in weights]
    if len(chosen) != len(weights):
        raise ModelError(f"found {len(chosen)} of the {len(weights)} int8 products in the exported graph")
    others = [node.name for node in graph.node if node.op_type == "MatMul" and node.name not in chosen]
    logging.disable(logging.WARNING)  # the quantiser's advice to pre-process is for image models
    try:
        quantize_dynamic(
            str(source),
            str(target),
            weight_type=QuantType.QInt8,
            per_channel=True,
            op_types_to_quantize=["MatMul"],
            nodes_to_exclude=others,
        )
    finally:
        logging.disable(logging.NOTSET)


def session(path: Path, threads: int):
    """An ONNX Runtime session on ``threads`` cores. Its workers spin briefly between the graph's
    parallel sections (not sleeping there: 44 instead of 66 ms for a 5 s clip here)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception kinds
        raise ModelError(f"{path}: cannot load the ONNX model ({one_line(exc)})") from None
