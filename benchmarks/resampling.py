"""The product's resampler (SciPy's polyphase filter) against torchaudio's (what it replaced) and
libsoxr's (the other candidate), through the real model.

Every clip of mini-voxceleb1 (16 kHz, converted to 8, 44.1 and 48 kHz by SciPy's polyphase filter,
a third resampler, so neither side gets its own input back) and of wild-dev (as recorded: 16 kHz
mono and 44.1 kHz stereo) is read the product's way twice, once per resampler; printed: the
cosine between the two embeddings of each clip, and whether identification (split-1 clips
enrolled, split-3 clips identified at the calibrated threshold) and the VoxCeleb trial decisions
at torchaudio's EER threshold come out the same, and each resampler's EER. Then telephone-band
probes against wideband enrollment (mini-voxceleb1 split-3 at 8 kHz, split-1 at 16 kHz), where the
filters differ most. Needs torchaudio (a dependency; the product never imports it).

    python benchmarks/resampling.py [--data ../shared/data/mini-voxceleb1 ../shared/data/wild-dev]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import speakerid.voice.audio as audio_module  # noqa: E402
from speakerid.decide.calibration import calibrate  # noqa: E402
from speakerid.decide.scoring import Candidate, centroids, decide  # noqa: E402
from speakerid.voice.audio import load_audio  # noqa: E402
from speakerid.voice.embedder import Embedder, load_embedder  # noqa: E402
from speakerid.voice.vad import extract_speech  # noqa: E402

from conftest import MODEL_DIR, SHARED  # noqa: E402

PRODUCT = audio_module.resample


def soxr_resample(samples: np.ndarray, rate: int, target: int = 16_000) -> np.ndarray:
    import soxr

    return soxr.resample(np.ascontiguousarray(samples, dtype=np.float32), rate, target, quality="HQ")


def torchaudio_resample(samples: np.ndarray, rate: int, target: int = 16_000) -> np.ndarray:
    import torch
    import torchaudio.functional as F

    return F.resample(torch.from_numpy(np.ascontiguousarray(samples, dtype=np.float32)), rate, target).numpy()


def read_clips(root: Path, rate: int | None) -> list[tuple[int, str, tuple[np.ndarray, int]]]:
    """``(split, relative path, (samples, rate))``: as recorded (``rate=None``) or converted to ``rate``."""
    out = []
    for line in (root / "iden_split.txt").read_text().split("\n"):
        if not line.strip():
            continue
        split, rel = line.split()
        data, native = sf.read(root / "wav" / rel, dtype="float32", always_2d=True)
        if rate is not None and rate != native:
            g = np.gcd(rate, native)
            data = resample_poly(data, rate // g, native // g, axis=0).astype(np.float32)
            native = rate
        out.append((int(split), rel, (data, native)))
    return out


def embed_all(embedder: Embedder, clips, resampler) -> tuple[np.ndarray, float]:
    audio_module.resample = resampler
    vectors, spent = [], 0.0
    try:
        for _, rel, pair in clips:
            t = time.perf_counter()
            audio = load_audio(pair, rel)
            spent += time.perf_counter() - t
            vectors.append(embedder.embed([extract_speech(audio).samples])[0])
    finally:
        audio_module.resample = PRODUCT
    return np.stack(vectors), spent


def identification(clips, vectors: np.ndarray) -> list[str | None]:
    enrolled = [i for i, (split, _, _) in enumerate(clips) if split == 1]
    owners = [clips[i][1].split("/")[0] for i in enrolled]
    names, profiles = centroids(vectors[enrolled], owners)
    threshold = calibrate(vectors[enrolled], owners).threshold
    out = []
    for i, (split, _, _) in enumerate(clips):
        if split != 1:
            scores = profiles @ vectors[i]
            order = np.argsort(-scores)
            out.append(decide([Candidate(names[j], float(scores[j])) for j in order[:2]], threshold).speaker)
    return out


def trials(root: Path, clips, vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(labels, scores)`` of the data set's trial list."""
    where = {rel: i for i, (_, rel, _) in enumerate(clips)}
    labels, scores = [], []
    for line in (root / "veri_test.txt").read_text().split("\n"):
        if line.strip():
            label, a, b = line.split()
            if a in where and b in where:
                labels.append(int(label))
                scores.append(float(vectors[where[a]] @ vectors[where[b]]))
    return np.array(labels), np.array(scores)


def eer(labels: np.ndarray, scores: np.ndarray) -> tuple[float, float]:
    """``(equal error rate, the score where it is met)``: where misses and false accepts are closest."""
    cuts = np.sort(scores)
    miss = np.array([np.mean(scores[labels == 1] < c) for c in cuts])
    fa = np.array([np.mean(scores[labels == 0] >= c) for c in cuts])
    i = int(np.argmin(np.abs(miss - fa)))
    return float(miss[i] + fa[i]) / 2, float(cuts[i])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data", nargs="+", type=Path, default=[SHARED / "data" / "mini-voxceleb1", SHARED / "data" / "wild-dev"]
    )
    args = parser.parse_args()
    from embed_speed import cpu

    model, flags = cpu()
    print(f"CPU: {model} [{' '.join(flags)}]")
    embedder = load_embedder(str(MODEL_DIR))
    print(f"engine: ONNX Runtime {embedder.precision}" if embedder.onnx_file else "engine: SpeechBrain")
    print("SciPy (the product) against torchaudio, same audio both sides:")
    print(
        "| data | rate | clips | min cosine | mean cosine | identify decisions equal | trial decisions equal "
        "| EER torchaudio / SciPy / soxr | resample ms/clip torchaudio / SciPy |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for root in args.data:
        rates = [None] if "wild" in root.name else [8_000, 44_100, 48_000]
        for rate in rates:
            clips = read_clips(root, rate)
            before, t_before = embed_all(embedder, clips, torchaudio_resample)
            after, t_after = embed_all(embedder, clips, PRODUCT)
            other, _ = embed_all(embedder, clips, soxr_resample)
            cos = np.einsum("ij,ij->i", before, after)
            same_id = sum(a == b for a, b in zip(identification(clips, before), identification(clips, after)))
            n_id = sum(1 for split, _, _ in clips if split != 1)
            labels, s_before = trials(root, clips, before)
            _, s_after = trials(root, clips, after)
            eer_before, cut = eer(labels, s_before)
            eer_after, _ = eer(labels, s_after)
            eer_other, _ = eer(labels, trials(root, clips, other)[1])
            same_trials = int(np.sum((s_before >= cut) == (s_after >= cut)))
            label = "as recorded" if rate is None else f"{rate / 1000:g} kHz"
            print(
                f"| {root.name} | {label} | {len(clips)} | {cos.min():.6f} | {cos.mean():.6f} | {same_id}/{n_id} "
                f"| {same_trials}/{len(s_before)} | {100 * eer_before:.2f} / {100 * eer_after:.2f} / {100 * eer_other:.2f} % | {1000 * t_before / len(clips):.1f} / {1000 * t_after / len(clips):.1f} |"
            )

    cross_band(embedder, args.data[0])


def cross_band(embedder: Embedder, root: Path) -> None:
    """Enrolled at 16 kHz, probed through a telephone band (low-passed to 8 kHz, or decimated
    without a filter as cheap hardware does): top-1, share named at 0.45, target cosines."""
    wide = read_clips(root, None)
    vectors, _ = embed_all(embedder, wide, PRODUCT)
    enrolled = [i for i, (split, _, _) in enumerate(wide) if split == 1]
    names, profiles = centroids(vectors[enrolled], [wide[i][1].split("/")[0] for i in enrolled])
    print("\nTelephone-band probes against wideband enrollment (mini-voxceleb1):")
    print("| probe | resampler | top-1 | named at 0.45 | mean / min target cosine |")
    print("|---|---|---:|---:|---:|")
    probes = {
        "8 kHz, low-passed": read_clips(root, 8_000),
        "8 kHz, decimated": [(s, r, (p[0][::2], p[1] // 2)) for s, r, p in wide],
    }
    for label, clips in probes.items():
        for name, fn in (("torchaudio", torchaudio_resample), ("SciPy", PRODUCT), ("soxr", soxr_resample)):
            got, _ = embed_all(embedder, clips, fn)
            rows = [i for i, (split, _, _) in enumerate(clips) if split != 1]
            truth = [names.index(clips[i][1].split("/")[0]) for i in rows]
            scores = got[rows] @ profiles.T
            best = scores.argmax(1)
            target = scores[np.arange(len(rows)), truth]
            named = np.mean((best == truth) & (scores.max(1) >= 0.45))
            print(
                f"| {label} | {name} | {np.mean(best == truth):.3f} | {named:.3f} | "
                f"{target.mean():.3f} / {target.min():.3f} |"
            )


if __name__ == "__main__":
    main()
