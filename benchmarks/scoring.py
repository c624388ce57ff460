"""Compare scoring options on mini-voxceleb1, the measurement behind speakerid/decide/scoring.py.

    python benchmarks/scoring.py [--root ../shared/data/mini-voxceleb1]

Embeds every clip once three ways (whole clip, speech only, leading/trailing silence trimmed)
and reports, for each way, verification EER / minDCF on veri_test.txt (clip against clip) and,
for the whole-clip embeddings:
- identification top-1 on split 3 with speakers enrolled from split 1, scoring by centroid,
  max over clips, top-2 mean, and mean of cosines; with the lowest target and highest
  non-target score (the gap the open-set threshold must fall in);
- AS-norm (adaptive s-norm, top-N cohort of split-2 clips) on veri_test.txt.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from speakerid.decide.metrics import eer, min_dcf
from speakerid.voice.audio import load_audio
from speakerid.voice.embedder import Embedder, load_embedder
from speakerid.voice.vad import default_detector

HERE = Path(__file__).resolve().parent


def embed_all(root: Path, rels: list[str], embedder: Embedder) -> dict[str, dict[str, np.ndarray]]:
    out: dict[str, dict[str, np.ndarray]] = {"whole": {}, "speech only": {}, "trimmed": {}}
    for rel in rels:
        audio = load_audio(root / "wav" / rel)
        regions = default_detector().segments(audio)
        speech = np.concatenate([audio.samples[a:b] for a, b in regions])
        trimmed = audio.samples[regions[0][0] : regions[-1][1]]
        for way, samples in (("whole", audio.samples), ("speech only", speech), ("trimmed", trimmed)):
            out[way][rel] = embedder.embed([samples])[0]
    return out


def as_norm(score: float, a: np.ndarray, b: np.ndarray, cohort: np.ndarray, top_n: int) -> float:
    def stats(v):
        c = np.sort(cohort @ v)[::-1][:top_n]
        return c.mean(), c.std()

    (ma, sa), (mb, sb) = stats(a), stats(b)
    return 0.5 * ((score - ma) / sa + (score - mb) / sb)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=HERE.parent.parent / "shared" / "data" / "mini-voxceleb1")
    args = parser.parse_args()
    split = [(int(a), b) for a, b in (l.split() for l in (args.root / "iden_split.txt").read_text().splitlines() if l)]
    trials = [l.split() for l in (args.root / "veri_test.txt").read_text().splitlines() if l]
    labels = np.array([int(t[0]) for t in trials], dtype=bool)
    embedder = load_embedder()
    emb = embed_all(args.root, [r for _, r in split], embedder)

    print(f"model {embedder.model_id}; {len(trials)} trials, {len(split)} clips\n")
    print("verification on veri_test.txt (cosine, clip vs clip)")
    for way, vecs in emb.items():
        scores = [vecs[a] @ vecs[b] for _, a, b in trials]
        print(f"  {way:<12} EER {eer(scores, labels)[0]:.4%}  minDCF(0.01) {min_dcf(scores, labels, 0.01)[0]:.4f}")

    vecs = emb["whole"]
    who = lambda rel: rel.split("/")[0]  # noqa: E731
    speakers = sorted({who(r) for _, r in split})
    enrolled = {s: np.stack([vecs[r] for k, r in split if k == 1 and who(r) == s]) for s in speakers}
    tests = [r for k, r in split if k == 3]

    def score(query, clips, how):
        cos = clips @ query
        if how == "centroid":
            c = clips.mean(axis=0)
            return float(c @ query / np.linalg.norm(c))
        return float({"max": cos.max(), "top-2 mean": np.sort(cos)[-2:].mean(), "mean": cos.mean()}[how])

    print("\nidentification, split-1 enrollment, split-3 queries (whole clips)")
    for how in ("centroid", "max", "top-2 mean", "mean"):
        table = np.array([[score(vecs[r], enrolled[s], how) for s in speakers] for r in tests])
        truth = np.array([[who(r) == s for s in speakers] for r in tests])
        top1 = np.mean([speakers[i] == who(r) for i, r in zip(table.argmax(axis=1), tests)])
        print(
            f"  {how:<11} top-1 {top1:.3f}  lowest target {table[truth].min():.3f}  "
            f"highest non-target {table[~truth].max():.3f}  gap {table[truth].min() - table[~truth].max():.3f}"
        )

    cohort = np.stack([vecs[r] for k, r in split if k == 2])
    plain = np.array([vecs[a] @ vecs[b] for _, a, b in trials])
    print(f"\nAS-norm on veri_test.txt, cohort = {len(cohort)} split-2 clips (whole clips)")
    print(f"  plain cosine  EER {eer(plain, labels)[0]:.4%}  minDCF(0.01) {min_dcf(plain, labels, 0.01)[0]:.4f}")
    for top_n in (10, len(cohort)):
        normed = [as_norm(s, vecs[a], vecs[b], cohort, top_n) for s, (_, a, b) in zip(plain, trials)]
        print(
            f"  AS-norm N={top_n:<3} EER {eer(normed, labels)[0]:.4%}  minDCF(0.01) {min_dcf(normed, labels, 0.01)[0]:.4f}"
        )


if __name__ == "__main__":
    main()
