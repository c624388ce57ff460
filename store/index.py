"""The FAISS side of the store: a derived, rebuildable vector index keyed by embedding id.

Exact inner-product search (``IndexIDMap2`` over ``IndexFlatIP``) below ``approx_threshold``
vectors. Above it, the same exact index plus a 256-bit binary sketch of every vector (FAISS's
``IndexLSH``: random rotation, then signs): a query scans the 32-byte sketches by Hamming distance
(24x less memory traffic than the vectors), and the best ``candidates`` are re-scored exactly.
Both parts delete for real, which FAISS's HNSW cannot, and on uniformly random vectors (where
IVF's clusters mean nothing) recall@1 stays at 1.000 at 10^6 (benchmarks/index_speed.py).

On disk an index is one file: a magic line, a JSON header (the database generation it was built
from, model, dimension, count, payload digest) and the serialised FAISS indexes. It is written to
a temporary file, fsynced and renamed, so readers see the old file or the new one, never half.
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

MAGIC = b"SPKIDX2\n"  # 2: payload is length-prefixed FAISS blobs (SPKIDX1 files are rebuilt)
DEFAULT_APPROX_THRESHOLD = 100_000  # exact search costs ~2.8 ms a query at 10^5 (benchmarks/index_speed.py)
DEFAULT_CANDIDATES = 64  # sketch shortlist re-scored exactly; recall@1 1.000 at 10^6 (benchmarks/index_speed.py)
SKETCH_BITS = 256  # 32 bytes: a size FAISS's Hamming scan has a fast path for


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

    def __init__(
        self,
        dimension: int,
        exact: faiss.Index | None = None,
        sketch: faiss.Index | None = None,
        *,
        candidates: int = DEFAULT_CANDIDATES,
    ):
        self.dimension = dimension
        self.candidates = candidates
        self._exact = exact if exact is not None else faiss.IndexIDMap2(faiss.IndexFlatIP(dimension))
        self._sketch = sketch

    @property
    def kind(self) -> str:
        return "flat" if self._sketch is None else "sketch"

    def __len__(self) -> int:
        return int(self._exact.ntotal)

    @classmethod
    def build(
        cls,
        dimension: int,
        ids: np.ndarray,
        vectors: np.ndarray,
        *,
        approx_threshold: int = DEFAULT_APPROX_THRESHOLD,
        candidates: int = DEFAULT_CANDIDATES,
    ) -> VectorIndex:
        """A new index over ``vectors``: exact only when there are fewer than ``approx_threshold``."""
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        vectors = np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1, dimension)
        sketch = cls._new_sketch(dimension) if len(ids) >= approx_threshold else None
        out = cls(dimension, sketch=sketch, candidates=candidates)
        out.add(ids, vectors)
        return out

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        if len(ids):
            vectors = np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1, self.dimension)
            ids = np.ascontiguousarray(ids, dtype=np.int64)
            for part in self._parts():
                part.add_with_ids(vectors, ids)

    def remove(self, ids: np.ndarray) -> None:
        if len(ids):
            for part in self._parts():
                part.remove_ids(np.ascontiguousarray(ids, dtype=np.int64))

    def ids(self) -> np.ndarray:
        """Every id in the index, read back from FAISS itself."""
        return faiss.vector_to_array(self._exact.id_map).astype(np.int64)

    def vector(self, id_: int) -> np.ndarray:
        return self._exact.reconstruct(int(id_))

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """``(scores, ids)``, each ``(Q, k)``; missing neighbours have id -1."""
        queries = np.ascontiguousarray(queries, dtype=np.float32).reshape(-1, self.dimension)
        k = max(1, min(int(k), max(len(self), 1)))
        if self._sketch is None:
            return self._exact.search(queries, k)
        # Both parts add and remove the same ids in the same order, so their inner positions agree:
        # search the inner sketch for positions, then read vectors and ids at those positions.
        _, shortlist = self._sketch.index.search(queries, max(k, self.candidates))
        count = len(self)
        vectors = faiss.rev_swig_ptr(faiss.downcast_index(self._exact.index).get_xb(), count * self.dimension)
        vectors = vectors.reshape(count, self.dimension)
        ids = faiss.rev_swig_ptr(self._exact.id_map.data(), count)
        scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
        found = np.full((len(queries), k), -1, dtype=np.int64)
        for row, (query, positions) in enumerate(zip(queries, shortlist)):
            positions = positions[positions >= 0]
            exact = vectors[positions] @ query
            best = np.argsort(-exact, kind="stable")[:k]
            scores[row, : len(best)], found[row, : len(best)] = exact[best], ids[positions[best]]
        return scores, found

    # -- persistence -------------------------------------------------------------------------
    def save(self, path: Path, header: IndexHeader, *, temp_prefix: str = ".index.") -> None:
        """Write atomically: a private temporary file (mode 0600), fsynced, renamed over ``path``."""
        blobs = [faiss.serialize_index(part).tobytes() for part in self._parts()]
        payload = b"".join(struct.pack("<Q", len(b)) + b for b in blobs)
        header.count, header.kind, header.dimension = len(self), self.kind, self.dimension
        header.sha256 = hashlib.sha256(payload).hexdigest()
        head = json.dumps(header.__dict__).encode()
        fd, tmp = tempfile.mkstemp(prefix=temp_prefix, dir=path.parent)
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

    @staticmethod
    def read_header(path: Path) -> IndexHeader | None:
        """The header of an index file without reading its vectors (``None`` if there is no
        readable one): what a writer checks to decide whether the file needs saving again."""
        try:
            with open(path, "rb") as f:
                start = f.read(len(MAGIC) + 4)
                if len(start) < len(MAGIC) + 4 or not start.startswith(MAGIC):
                    return None
                (head_len,) = struct.unpack_from("<I", start, len(MAGIC))
                return IndexHeader(**json.loads(f.read(head_len)))
        except (OSError, ValueError, TypeError):
            return None

    @classmethod
    def load(cls, path: Path, *, candidates: int = DEFAULT_CANDIDATES) -> tuple[VectorIndex, IndexHeader]:
        """Read an index file; :class:`IndexFileError` if it is missing, truncated or corrupt."""
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise IndexFileError(f"{path}: missing") from None
        except OSError as exc:
            raise IndexFileError(f"{path}: unreadable ({exc.strerror or exc})") from None
        if not data.startswith(MAGIC) or len(data) < len(MAGIC) + 4:
            raise IndexFileError(f"{path}: not an index file of this version")
        (head_len,) = struct.unpack_from("<I", data, len(MAGIC))
        start = len(MAGIC) + 4
        try:
            header = IndexHeader(**json.loads(data[start : start + head_len]))
        except (ValueError, TypeError) as exc:
            raise IndexFileError(f"{path}: unreadable header ({exc})") from None
        payload = data[start + head_len :]
        if hashlib.sha256(payload).hexdigest() != header.sha256:
            raise IndexFileError(f"{path}: checksum mismatch")
        parts, offset = [], 0
        try:
            while offset < len(payload):
                (size,) = struct.unpack_from("<Q", payload, offset)
                blob = np.frombuffer(payload, dtype=np.uint8, count=size, offset=offset + 8)
                parts.append(faiss.deserialize_index(blob))
                offset += 8 + size
        except (RuntimeError, struct.error, ValueError) as exc:
            raise IndexFileError(f"{path}: FAISS cannot read it ({exc})") from None
        if len(parts) not in (1, 2) or any(p.ntotal != parts[0].ntotal for p in parts):
            raise IndexFileError(f"{path}: holds {len(parts)} inconsistent parts")
        out = cls(header.dimension, parts[0], parts[1] if len(parts) == 2 else None, candidates=candidates)
        if len(out) != header.count:
            raise IndexFileError(f"{path}: holds {len(out)} vectors, header says {header.count}")
        return out, header

    # -- internals ---------------------------------------------------------------------------
    def _parts(self) -> list[faiss.Index]:
        return [self._exact] if self._sketch is None else [self._exact, self._sketch]

    @staticmethod
    def _new_sketch(dimension: int) -> faiss.Index:
        lsh = faiss.IndexLSH(dimension, SKETCH_BITS, True, False)  # rotate, then take signs
        lsh.train(np.zeros((1, dimension), dtype=np.float32))  # draws the (seeded) rotation; learns nothing
        return faiss.IndexIDMap2(lsh)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
