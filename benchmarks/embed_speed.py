"""Embedding speed against plain SpeechBrain, honestly: every contestant in the same run, on the
same decoded clips, timing order rotated clip by clip so none gets the warmer caches or a quieter
moment, and 50 ms of idle cores before each timed call so no contestant pays for the previous
one's spinning threads.

    python benchmarks/embed_speed.py [--root ../shared/data/mini-voxceleb1] [--min 3] [--max 10] [--repeat 2]

Contestants:
- plain SpeechBrain fp32, as users run it (``encode_batch`` under ``torch.inference_mode``);
- plain SpeechBrain fp32 with subnormals flushed (``torch.set_flush_denormal(True)``): the fair
  fp32 baseline on CPUs that take a microcode assist on subnormal weights (Intel);
- plain SpeechBrain under ``torch.autocast("cpu", torch.bfloat16)``: the fair competitor where
  bf16 is native;
- speakerid fp32 and speakerid int8 (its default where the CPU has VNNI or AMX-INT8; both run
  through ONNX Runtime).

Also printed: the CPU model and flags, the matrix-multiply peak measured in this run (fp32, bf16,
int8), and the fraction of the floor that peak implies (3.76 GFLOP per second of audio; for int8
the floor counts every product at the int8 peak, though the first layer and a few small ones
stay fp32); the peaks again after the race, so a run during which the machine slowed down (a
busy neighbour on a shared host) says so.
"""

from __future__ import annotations

import argparse
import itertools
import platform
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from speakerid.voice.audio import load_audio
from speakerid.voice.embedder import make_embedder
from speakerid.voice.models import resolve
from speakerid.voice.onnx_model import default_precision
from speakerid.voice.speechbrain_engine import load_speechbrain

HERE = Path(__file__).resolve().parent
GFLOP_PER_AUDIO_SECOND = 3.76  # ECAPA-TDNN (this model) at 100 frames a second
# Idle time before each timed call: torch's OpenMP workers keep spinning after a call and slowed the
# next contestant's call by ~14 % here (ONNX Runtime's workers spin too); each call starts on quiet cores.
SETTLE = 0.05
FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8")


def cpu() -> tuple[str, list[str]]:
    model, flags = platform.processor() or "unknown", []
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
            if line.startswith("flags"):
                have = set(line.split(":", 1)[1].split())
                flags = [f for f in FLAGS if f in have]
                break
    except OSError:
        pass
    return model, flags


def matmul_peak(dtype: torch.dtype, n: int = 3072, t: int = 512, repeat: int = 10) -> float:
    """GFLOP/s of the largest product the model runs (3072 x 3072 by 3072 x 512), best of ``repeat``."""
    if dtype == torch.int8:
        a, b = torch.randint(-127, 127, (t, n), dtype=dtype), torch.randint(-127, 127, (n, n), dtype=dtype)
        product = torch._int_mm
    else:
        a, b = torch.randn(t, n).to(dtype), torch.randn(n, n).to(dtype)
        product = torch.mm
    product(a, b)
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        product(a, b)
        best = min(best, time.perf_counter() - start)
    return 2 * n * n * t / best / 1e9


def all_peaks() -> dict[str, float]:
    return {"fp32": matmul_peak(torch.float32), "bf16": matmul_peak(torch.bfloat16), "int8": matmul_peak(torch.int8)}


def plain_embed(classifier, samples: np.ndarray, *, flush: bool = False, bf16: bool = False) -> np.ndarray:
    torch.set_flush_denormal(flush)
    try:
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            v = classifier.encode_batch(torch.from_numpy(samples)[None]).reshape(-1).float().numpy()
    finally:
        torch.set_flush_denormal(False)
    return v / np.linalg.norm(v)


@dataclass
class Timing:
    vectors: np.ndarray
    passes: list[float]  # seconds for all clips, per pass
    per_clip: float  # seconds for all clips, each clip at its fastest pass

    @property
    def fastest_pass(self) -> float:
        return min(self.passes)


def race(contestants: dict, clips: list[np.ndarray], repeat: int) -> dict[str, Timing]:
    """Each clip through every contestant, in an order that rotates from clip to clip, ``repeat``
    passes. Two summaries, both kept: the fastest whole pass, and each clip at its fastest (a shared
    host's slow spells last seconds to minutes and slow our int8 products more than plain fp32's,
    so one spell inside the one fast pass moves the ratio; per clip, a spell costs only the clips
    it caught in every pass)."""
    names = list(contestants)
    for name in names:  # warm-up: first calls build kernels
        contestants[name](clips[0])
    times = {name: np.full((repeat, len(clips)), np.inf) for name in names}
    vectors: dict[str, list] = {}
    for r in range(repeat):
        vectors = {name: [] for name in names}
        orders = itertools.cycle(itertools.permutations(names))
        for i, clip in enumerate(clips):
            for name in next(orders):
                time.sleep(SETTLE)
                start = time.perf_counter()
                vectors[name].append(contestants[name](clip))
                times[name][r, i] = time.perf_counter() - start
    return {
        name: Timing(np.stack(vectors[name]), times[name].sum(1).tolist(), float(times[name].min(0).sum()))
        for name in names
    }


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
    parser.add_argument(
        "--repeat", type=int, default=2, help="timed passes; the fastest pass counts, and each clip at its fastest"
    )
    args = parser.parse_args()
    model, flags = cpu()
    peaks = all_peaks()
    print(
        f"CPU: {model}; flags: {' '.join(flags) or '-'}; torch {torch.__version__}, {torch.get_num_threads()} threads"
    )
    print(
        "matrix-multiply peak this run: "
        + ", ".join(f"{k} {v:.0f} GFLOP/s" for k, v in peaks.items())
        + "; floor rtf "
        + ", ".join(f"{k} {GFLOP_PER_AUDIO_SECOND / v:.4f}" for k, v in peaks.items())
    )

    split = [
        (int(a), b)
        for a, b in (line.split() for line in (args.root / "iden_split.txt").read_text().splitlines() if line)
    ]
    audio = {r: load_audio(args.root / "wav" / r).samples for _, r in split}
    clips = [x for x in audio.values() if args.min <= len(x) / 16000 <= args.max]
    seconds = sum(len(c) for c in clips) / 16000

    folder = resolve()
    plain = load_speechbrain(folder.path)
    ours = {"fp32": make_embedder(folder, precision="fp32")}
    if default_precision(folder) == "int8":
        ours["int8"] = make_embedder(folder, precision="int8")
    contestants = {
        "plain fp32": lambda c: plain_embed(plain, c),
        "plain fp32, subnormals flushed": lambda c: plain_embed(plain, c, flush=True),
        "plain bf16 autocast": lambda c: plain_embed(plain, c, bf16=True),
        **{f"speakerid {p}": (lambda c, e=e: e.embed([c])[0]) for p, e in ours.items()},
    }
    results = race(contestants, clips, args.repeat)
    after = all_peaks()  # the machine's speed can change within a run (a busy neighbour): say so
    print(
        "matrix-multiply peak after the race: "
        + ", ".join(f"{k} {v:.0f} GFLOP/s ({v / peaks[k] - 1:+.0%})" for k, v in after.items())
    )
    reference = results["plain fp32"].vectors
    print(
        f"\n{len(clips)} clips of {args.min:g}-{args.max:g} s, {seconds:.0f} s of audio; timing order rotated per clip; "
        f"{args.repeat} passes"
    )
    print(f"{'':34} {'rtf':>8} {'floor':>7} {'per clip':>9}  passes   min cosine to plain fp32")
    for name, timing in results.items():
        floor = GFLOP_PER_AUDIO_SECOND / peaks[next((k for k in ("bf16", "int8") if k in name), "fp32")]
        cos = np.sum(timing.vectors * reference, axis=1).min()
        rtf = timing.fastest_pass / seconds
        passes = " ".join(f"{t / seconds:.4f}" for t in timing.passes)
        print(f"{name:34} {rtf:8.4f} {floor / rtf:6.0%} {timing.per_clip / seconds:9.4f}  {passes}  {cos:.6f}")
    best = "speakerid int8" if "speakerid int8" in results else "speakerid fp32"
    for base in ("plain fp32", "plain fp32, subnormals flushed", "plain bf16 autocast"):
        ratio = results[base].fastest_pass / results[best].fastest_pass
        per_clip = results[base].per_clip / results[best].per_clip
        print(f"{best} vs {base}: {ratio:.2f}x (fastest pass; each clip at its fastest: {per_clip:.2f}x)")
    plain_all = {r: plain_embed(plain, x) for r, x in audio.items()}
    for precision, embedder in ours.items():
        mine = {r: embedder.embed([x])[0] for r, x in audio.items()}
        print(
            f"speakerid {precision}: same top-1 decisions as plain fp32 on split 3: "
            f"{top1_decisions(mine, split) == top1_decisions(plain_all, split)}"
        )


if __name__ == "__main__":
    main()
