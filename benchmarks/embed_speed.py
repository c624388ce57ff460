"""Embedding speed against plain SpeechBrain, in the same run, on real clips.

    python benchmarks/embed_speed.py [--root ../shared/data/mini-voxceleb1] [--min 3] [--max 10] [--repeat 2]

Plain: SpeechBrain's own EncoderClassifier from the same folder, untouched, `encode_batch` one
clip at a time under `torch.inference_mode()`. Ours: `speakerid.embedder.Embedder` in fp32 and in
bf16 (the default where the CPU has native bf16; see speakerid/fast_model.py), timed before plain
runs (see the comment in main). All get the same decoded samples. Prints real-time factors
(seconds of compute per second of audio), the ratio plain/ours, the lowest cosine between our and
plain embeddings, and whether centroid top-1 decisions on split 3 are identical.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from speakerid.audio import load_audio
from speakerid.embedder import Embedder, load_speechbrain
from speakerid.models import resolve

HERE = Path(__file__).resolve().parent


def plain_embed(classifier, samples: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        v = classifier.encode_batch(torch.from_numpy(samples)[None]).reshape(-1).numpy()
    return v / np.linalg.norm(v)


def timed(fn, clips, repeat):
    fn(clips[0])  # warm-up
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        out = [fn(c) for c in clips]
        best = min(best, time.perf_counter() - start)
    return np.stack(out), best


def top1_decisions(vectors: dict[str, np.ndarray], split: list[tuple[int, str]]) -> list[str]:
    who = lambda r: r.split("/")[0]  # noqa: E731
    speakers = sorted({who(r) for _, r in split})
    cent = np.stack([np.mean([vectors[r] for s, r in split if s == 1 and who(r) == spk], axis=0) for spk in speakers])
    cent /= np.linalg.norm(cent, axis=1, keepdims=True)
    return [speakers[int(np.argmax(cent @ vectors[r]))] for s, r in split if s == 3]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=HERE.parent.parent / "shared" / "data" / "mini-voxceleb1")
    parser.add_argument("--min", type=float, default=3.0, help="shortest clip, seconds")
    parser.add_argument("--max", type=float, default=10.0, help="longest clip, seconds")
    parser.add_argument("--repeat", type=int, default=2, help="timed passes; the fastest counts")
    args = parser.parse_args()
    split = [(int(a), b) for a, b in (l.split() for l in (args.root / "iden_split.txt").read_text().splitlines() if l)]
    audio = {r: load_audio(args.root / "wav" / r).samples for _, r in split}
    timed_rels = [r for r, x in audio.items() if args.min <= len(x) / 16000 <= args.max]
    clips = [audio[r] for r in timed_rels]
    seconds = sum(len(c) for c in clips) / 16000

    # Ours first: after plain SpeechBrain has run 146 clips in a process, our timings there come out
    # ~10% slower (0.0066 vs 0.0060 here; not the heap, the oneDNN cache or the clock; cause unknown).
    ours = {}
    for precision in ("fp32", "bf16"):
        embedder = Embedder(resolve(), precision=precision)
        vecs, took = timed(lambda c: embedder.embed([c])[0], clips, args.repeat)
        ours[precision] = vecs, took, {r: embedder.embed([x])[0] for r, x in audio.items()}
    plain = load_speechbrain(resolve().path)
    p_vecs, p_time = timed(lambda c: plain_embed(plain, c), clips, args.repeat)
    plain_all = {r: plain_embed(plain, x) for r, x in audio.items()}
    print(f"{len(clips)} clips of {args.min:g}-{args.max:g} s, {seconds:.0f} s of audio, torch threads {torch.get_num_threads()}")
    print(f"plain SpeechBrain fp32: rtf {p_time / seconds:.4f}")
    for precision, (o_vecs, o_time, ours_all) in ours.items():
        cos = np.sum(o_vecs * p_vecs, axis=1)
        same = top1_decisions(ours_all, split) == top1_decisions(plain_all, split)
        print(f"speakerid {precision}:       rtf {o_time / seconds:.4f}  ratio {p_time / o_time:.2f}x  "
              f"min cosine {cos.min():.6f}  same top-1 decisions: {same}")

if __name__ == "__main__":
    main()
