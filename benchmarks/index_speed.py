"""Query latency, recall@1 and memory of the store's FAISS index, exact vs approximate (IVF).

    python benchmarks/index_speed.py [--sizes 1000 10000 100000 1000000] [--queries 500]

Vectors are speaker-like: N random unit vectors (one per enrolled speaker, d=192); each query is
a new "clip" of a random enrolled speaker, i.e. its vector plus noise so that the cosine to it is
about 0.7 (what real same-speaker clips score against a profile). Recall@1 is against exact
search. One thread, one query at a time, as identify does. Memory per speaker is the size of the
serialised index divided by N.
"""

from __future__ import annotations

import argparse
import time

import faiss
import numpy as np

from store.index import VectorIndex

DIM = 192


def speaker_like(n: int, queries: int, rng) -> tuple[np.ndarray, np.ndarray]:
    base = rng.standard_normal((n, DIM)).astype(np.float32)
    base /= np.linalg.norm(base, axis=1, keepdims=True)
    own = base[rng.integers(0, n, queries)]
    noise = rng.standard_normal((queries, DIM)).astype(np.float32)
    noise /= np.linalg.norm(noise, axis=1, keepdims=True)
    q = 0.7 * own + np.sqrt(1 - 0.7 ** 2) * noise
    return base, q / np.linalg.norm(q, axis=1, keepdims=True)


def timed_search(index: VectorIndex, queries: np.ndarray) -> tuple[np.ndarray, float, float]:
    ids, lat = [], []
    for q in queries:
        start = time.perf_counter()
        _, found = index.search(q[None], 1)
        lat.append(time.perf_counter() - start)
        ids.append(found[0, 0])
    lat_ms = np.array(lat) * 1e3
    return np.array(ids), float(np.percentile(lat_ms, 50)), float(np.percentile(lat_ms, 95))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000, 100_000, 1_000_000])
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--nprobe", type=int, nargs="+", default=[8, 16, 32, 64])
    args = parser.parse_args()
    faiss.omp_set_num_threads(1)
    rng = np.random.default_rng(0)
    print(f"{'N':>9} {'index':<12} {'build s':>8} {'p50 ms':>8} {'p95 ms':>8} {'recall@1':>9} {'bytes/spk':>10}")
    for n in args.sizes:
        vectors, queries = speaker_like(n, args.queries, rng)
        ids = np.arange(n, dtype=np.int64)
        start = time.perf_counter()
        exact = VectorIndex.build(DIM, ids, vectors, approx_threshold=n + 1)
        build = time.perf_counter() - start
        truth, p50, p95 = timed_search(exact, queries)
        size = len(faiss.serialize_index(exact._index))
        print(f"{n:>9} {'flat':<12} {build:>8.2f} {p50:>8.3f} {p95:>8.3f} {1.0:>9.3f} {size / n:>10.0f}", flush=True)
        if n < 10_000:
            continue
        start = time.perf_counter()
        approx = VectorIndex.build(DIM, ids, vectors, approx_threshold=0)
        build = time.perf_counter() - start
        size = len(faiss.serialize_index(approx._index))
        for nprobe in args.nprobe:
            approx.nprobe = nprobe
            approx._apply_nprobe()
            found, p50, p95 = timed_search(approx, queries)
            print(f"{n:>9} {f'ivf nprobe={nprobe}':<12} {build:>8.2f} {p50:>8.3f} {p95:>8.3f} "
                  f"{np.mean(found == truth):>9.3f} {size / n:>10.0f}", flush=True)


if __name__ == "__main__":
    main()
