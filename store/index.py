"""The FAISS side of the store: a derived, rebuildable vector index keyed by embedding id.

Exact inner-product search (``IndexIDMap2`` over ``IndexFlatIP``) below ``approx_threshold``
vectors, an inverted-file index (``IndexIVFFlat``) above it. IVF rather than HNSW because FAISS's
HNSW cannot remove vectors, and deletion here must be real.

On disk an index is one file: a magic line, a JSON header (the database generation it was built
from, model, dimension, count, payload digest) and the serialised FAISS index. It is written to a
temporary file, fsynced and renamed, so readers see the old file or the new one, never half.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np

from .errors import IndexFileError

MAGIC = b"SPKIDX1\n"
DEFAULT_APPROX_THRESHOLD = 200_000
DEFAULT_NPROBE = 256  # recall@1 0.992 at 10^5 speaker-like vectors (benchmarks/index_speed.py)


@dataclass
class IndexHeader:
    store_id: str
    generation: int
    model: str
    dimension: int
    count: int
    kind: str
    sha256: str = ""


class VectorIndex:
    """L2-normalised float32 vectors with int64 ids; ``search`` returns inner products (cosine)."""

    def __init__(self, dimension: int, index: faiss.Index | None = None, *, nprobe: int = DEFAULT_NPROBE):
        self.dimension = dimension
        self.nprobe = nprobe
        self._index = index if index is not None else self._flat(dimension)
        self._apply_nprobe()

    @property
    def kind(self) -> str:
        return "ivf" if isinstance(self._inner(), faiss.IndexIVF) else "flat"

    def __len__(self) -> int:
        return int(self._index.ntotal)

    @classmethod
    def build(cls, dimension: int, ids: np.ndarray, vectors: np.ndarray, *,
              approx_threshold: int = DEFAULT_APPROX_THRESHOLD, nprobe: int = DEFAULT_NPROBE) -> "VectorIndex":
        """A new index over ``vectors``: exact when there are fewer than ``approx_threshold``."""
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        vectors = np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1, dimension)
        if len(ids) >= approx_threshold:
            index = cls._trained_ivf(dimension, vectors)
        else:
            index = cls._flat(dimension)
        out = cls(dimension, index, nprobe=nprobe)
        out.add(ids, vectors)
        return out

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        if len(ids):
            self._index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1, self.dimension),
                                     np.ascontiguousarray(ids, dtype=np.int64))

    def remove(self, ids: np.ndarray) -> None:
        if len(ids):
            self._index.remove_ids(np.ascontiguousarray(ids, dtype=np.int64))

    def ids(self) -> np.ndarray:
        """Every id in the index, read back from FAISS itself."""
        inner = self._inner()
        if isinstance(inner, faiss.IndexIVF):
            lists = inner.invlists
            parts = [faiss.rev_swig_ptr(lists.get_ids(i), lists.list_size(i)).copy()
                     for i in range(inner.nlist) if lists.list_size(i)]
            return np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)
        return faiss.vector_to_array(self._index.id_map).astype(np.int64)

    def vector(self, id_: int) -> np.ndarray:
        return self._index.reconstruct(int(id_))

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """``(scores, ids)``, each ``(Q, k)``; missing neighbours have id -1."""
        queries = np.ascontiguousarray(queries, dtype=np.float32).reshape(-1, self.dimension)
        k = max(1, min(int(k), max(len(self), 1)))
        return self._index.search(queries, k)

    # -- persistence -------------------------------------------------------------------------
    def save(self, path: Path, header: IndexHeader) -> None:
        payload = faiss.serialize_index(self._index).tobytes()
        header.count, header.kind, header.dimension = len(self), self.kind, self.dimension
        header.sha256 = hashlib.sha256(payload).hexdigest()
        head = json.dumps(header.__dict__).encode()
        fd, tmp = tempfile.mkstemp(prefix=".index.", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(MAGIC + struct.pack("<I", len(head)) + head)
                f.write(payload)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        _fsync_dir(path.parent)

    @classmethod
    def load(cls, path: Path, *, nprobe: int = DEFAULT_NPROBE) -> tuple["VectorIndex", IndexHeader]:
        """Read an index file; :class:`IndexFileError` if it is missing, truncated or corrupt."""
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise IndexFileError(f"{path}: missing") from None
        if not data.startswith(MAGIC) or len(data) < len(MAGIC) + 4:
            raise IndexFileError(f"{path}: not an index file")
        (head_len,) = struct.unpack_from("<I", data, len(MAGIC))
        start = len(MAGIC) + 4
        try:
            header = IndexHeader(**json.loads(data[start:start + head_len]))
        except (ValueError, TypeError) as exc:
            raise IndexFileError(f"{path}: unreadable header ({exc})") from None
        payload = data[start + head_len:]
        if hashlib.sha256(payload).hexdigest() != header.sha256:
            raise IndexFileError(f"{path}: checksum mismatch")
        try:
            index = faiss.deserialize_index(np.frombuffer(payload, dtype=np.uint8))
        except RuntimeError as exc:
            raise IndexFileError(f"{path}: FAISS cannot read it ({exc})") from None
        out = cls(header.dimension, index, nprobe=nprobe)
        if len(out) != header.count:
            raise IndexFileError(f"{path}: holds {len(out)} vectors, header says {header.count}")
        return out, header

    # -- internals ---------------------------------------------------------------------------
    def _inner(self) -> faiss.Index:
        return faiss.downcast_index(self._index)

    def _apply_nprobe(self) -> None:
        inner = self._inner()
        if isinstance(inner, faiss.IndexIVF):
            inner.nprobe = min(self.nprobe, inner.nlist)

    @staticmethod
    def _flat(dimension: int) -> faiss.Index:
        return faiss.IndexIDMap2(faiss.IndexFlatIP(dimension))

    @staticmethod
    def _trained_ivf(dimension: int, vectors: np.ndarray) -> faiss.Index:
        nlist = min(int(np.clip(4 * np.sqrt(len(vectors)), 16, 65536)), len(vectors))  # k-means needs k <= n
        quantizer = faiss.IndexFlatIP(dimension)
        index = faiss.IndexIVFFlat(quantizer, dimension, nlist, faiss.METRIC_INNER_PRODUCT)
        sample = vectors
        if len(vectors) > 64 * nlist:
            pick = np.random.default_rng(0).choice(len(vectors), 64 * nlist, replace=False)
            sample = vectors[np.sort(pick)]
        index.train(sample)
        index.set_direct_map_type(faiss.DirectMap.Hashtable)  # reconstruct + remove by id
        return index  # FAISS's Python wrapper keeps ``quantizer`` alive as long as ``index``


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
