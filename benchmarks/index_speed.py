"""Query latency, recall@1 and memory of the store's FAISS index: exact (plain FAISS
``IndexFlatIP``, what one would wire up by hand) vs the store's approximate kind (256-bit sketch
scan + exact re-rank of the best ``candidates``).

    python benchmarks/index_speed.py [--sizes 1000 10000 100000 1000000] [--queries 500]

Vectors are speaker-like: N random unit vectors (one per enrolled speaker, d=192); each query is
a new "clip" of a random enrolled speaker, i.e. its vector plus noise so that the cosine to it is
about 0.7 (what real same-speaker clips score against a profile). Recall@1 is against exact
search. "unknown" queries are random vectors (a voice nobody enrolled): there the best match is
one of many near-equal weak scores, and recall@1 on them says how often the approximate index
reports a slightly lower best score than exact search (which errs towards "unknown"), and "max
gap" by how much at most. One thread,
one query at a time, as identify does. Memory per speaker is the serialised index size over N.
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
    q = 0.7 * own + np.sqrt(1 - 0.7**2) * noise
    return base, q / np.linalg.norm(q, axis=1, keepdims=True)


def timed_search(index: VectorIndex, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray, float, float]:
    ids, scores, lat = [], [], []
    for q in queries:
        start = time.perf_counter()
        score, found = index.search(q[None], 1)
        lat.append(time.perf_counter() - start)
        ids.append(found[0, 0])
        scores.append(score[0, 0])
    lat_ms = np.array(lat) * 1e3
    return np.array(ids), np.array(scores), float(np.percentile(lat_ms, 50)), float(np.percentile(lat_ms, 95))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000, 100_000, 1_000_000])
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--candidates", type=int, nargs="+", default=[16, 64, 256])
    args = parser.parse_args()
    faiss.omp_set_num_threads(1)
    rng = np.random.default_rng(0)
    print(
        f"{'N':>9} {'index':<16} {'build s':>8} {'p50 ms':>8} {'p95 ms':>8} {'vs plain':>8} {'recall@1':>9} "
        f"{'unknown':>8} {'max gap':>8} {'bytes/spk':>10}"
    )
    for n in args.sizes:
        vectors, queries = speaker_like(n, args.queries, rng)
        strangers = rng.standard_normal((args.queries // 5, DIM)).astype(np.float32)
        strangers /= np.linalg.norm(strangers, axis=1, keepdims=True)
        ids = np.arange(n, dtype=np.int64)
        start = time.perf_counter()
        exact = VectorIndex.build(DIM, ids, vectors, approx_threshold=n + 1)
        build = time.perf_counter() - start
        truth, _, plain50, p95 = timed_search(exact, queries)
        truth_strangers, best_strangers, _, _ = timed_search(exact, strangers)
        print(
            f"{n:>9} {'plain flat':<16} {build:>8.2f} {plain50:>8.3f} {p95:>8.3f} {1.0:>7.2f}x {1.0:>9.3f} "
            f"{1.0:>8.3f} {0.0:>8.3f} {size_of(exact) / n:>10.0f}",
            flush=True,
        )
        if n < 10_000:
            continue
        start = time.perf_counter()
        approx = VectorIndex.build(DIM, ids, vectors, approx_threshold=0)
        build = time.perf_counter() - start
        for candidates in args.candidates:
            approx.candidates = candidates
            found, _, p50, p95 = timed_search(approx, queries)
            found_strangers, approx_strangers, _, _ = timed_search(approx, strangers)
            print(
                f"{n:>9} {f'sketch top-{candidates}':<16} {build:>8.2f} {p50:>8.3f} {p95:>8.3f} "
                f"{plain50 / p50:>7.1f}x {np.mean(found == truth):>9.3f} "
                f"{np.mean(found_strangers == truth_strangers):>8.3f} {np.max(best_strangers - approx_strangers):>8.3f} "
                f"{size_of(approx) / n:>10.0f}",
                flush=True,
            )


def size_of(index: VectorIndex) -> int:
    return sum(len(faiss.serialize_index(part)) for part in index._parts())


if __name__ == "__main__":
    main()
