"""The model's own cohort of impostors: its classifier's prototypes, one per training speaker
(7,205 VoxCeleb speakers for the published ECAPA model), normalised, kept in the cache beside the
model's ONNX files. Written while the checkpoint is open to build those files (the only time torch
is imported), read with numpy ever after."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from speakerid.base.paths import cache_dir
from speakerid.voice.models import ModelFolder


def cohort_path(model: ModelFolder) -> Path:
    return cache_dir() / "onnx" / model.id.replace("/", "--") / "cohort.npy"


def cohort(model: ModelFolder) -> np.ndarray | None:
    """``(speakers, dimension)`` unit rows, or None when the model has none (or it was not built)."""
    try:
        return np.load(cohort_path(model), allow_pickle=False)
    except (OSError, ValueError):
        return None


def save_cohort(model: ModelFolder, classifier) -> None:
    """From SpeechBrain's loaded classifier, where it has prototypes (``mods.classifier.weight``)."""
    head = getattr(classifier.mods, "classifier", None)
    weight = getattr(head, "weight", None)
    if weight is None:
        return
    rows = weight.detach().cpu().numpy().astype(np.float32)
    rows /= np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)
    path = cohort_path(model)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    buffer = io.BytesIO()
    np.save(buffer, rows)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(buffer.getvalue())
    tmp.chmod(0o600)
    tmp.replace(path)
