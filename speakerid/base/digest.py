"""sha256 of files and clips: one helper for the model check and the same-recording-twice check."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

BLOCK = 1 << 20


def sha256_file(path: str | os.PathLike | bytes) -> str:
    """Hex sha256 of a file's bytes, read in blocks (model checkpoints are 80 MB).

    >>> import tempfile; f = tempfile.NamedTemporaryFile(delete=False); _ = f.write(b"abc"); f.close()
    >>> sha256_file(f.name)[:16]
    'ba7816bf8f01cfea'
    """
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(BLOCK), b""):
            h.update(block)
    return h.hexdigest()


def sha256_clip(source: object, samples: np.ndarray) -> str:
    """The digest that identifies a clip: of the file or the uploaded bytes when there are any
    (so the same recording is recognised whatever its container), else of the decoded samples."""
    if isinstance(source, (str, os.PathLike)):
        return sha256_file(Path(os.fsdecode(source)))
    if isinstance(source, (bytes, bytearray, memoryview)):
        return hashlib.sha256(source).hexdigest()
    return hashlib.sha256(np.ascontiguousarray(samples, dtype=np.float32).tobytes()).hexdigest()
