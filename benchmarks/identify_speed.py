"""End-to-end identify latency: decode, VAD, embed, score, decide, against many enrolled speakers.

    python benchmarks/identify_speed.py [--speakers 10000] [--seconds 5] [--runs 30]

The store holds N speakers: the 16 real mini-voxceleb1 speakers (enrolled from split 1) plus
N-16 synthetic ones (random unit vectors, 3 "clips" each, imported in one transaction). The query
is a real split-3 clip cut to --seconds. Warm: the same SpeakerID object, model loaded, timed over
--runs calls (p50, p95). Cold: a fresh `speakerid identify` process (import + model load +
identify), timed from outside. Plain, in the same run: decode + SpeechBrain's own encode_batch +
numpy cosine against the same profile matrix, p50 over the same clip, and the ratio.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from speakerid import SpeakerID
from speakerid.voice.models import resolve
from speakerid.voice.speechbrain_engine import load_speechbrain
from store import NewEmbedding

from embed_speed import cpu

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=HERE.parent.parent / "shared" / "data" / "mini-voxceleb1")
    parser.add_argument("--speakers", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    model, flags = cpu()
    print(f"CPU: {model}; flags: {' '.join(flags) or '-'}; {os.cpu_count()} cores")
    split = [(int(a), b) for a, b in (l.split() for l in (args.root / "iden_split.txt").read_text().splitlines() if l)]
    who = lambda r: r.split("/")[0]  # noqa: E731
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        sid = SpeakerID.open(home)
        for spk in sorted({who(r) for _, r in split}):
            sid.enroll(spk, [args.root / "wav" / r for s, r in split if s == 1 and who(r) == spk], min_speech=8)
        rng = np.random.default_rng(0)
        synthetic = {}
        for i in range(args.speakers - 16):
            v = rng.standard_normal((3, sid.embedder.dimension)).astype(np.float32)
            synthetic[f"synthetic-{i:06d}"] = [NewEmbedding(x / np.linalg.norm(x)) for x in v]
        start = time.perf_counter()
        sid.store.voiceprints.import_speakers(synthetic, model=sid.embedder.model_id)
        print(
            f"{len(sid.speakers())} speakers enrolled ({args.speakers - 16} imported in {time.perf_counter() - start:.1f} s)"
        )

        rel = next(r for s, r in split if s == 3 and who(r) == "id90001")
        samples, rate = sf.read(args.root / "wav" / rel, dtype="float32")
        clip = Path(tmp) / "query.wav"
        sf.write(clip, samples[: int(args.seconds * rate)], rate)
        sid.identify(clip)  # warm-up: first call builds the profile matrix
        times = []
        for _ in range(args.runs):
            t = time.perf_counter()
            result = sid.identify(clip)
            times.append(time.perf_counter() - t)
        ms = np.array(times) * 1e3
        print(
            f"warm identify, {args.seconds:g} s clip: p50 {np.percentile(ms, 50):.1f} ms, p95 {np.percentile(ms, 95):.1f} ms "
            f"-> {result.speaker} ({result.score:.3f})"
        )
        piece = samples[: int(args.seconds * rate)]
        sid.embedder.embed([piece])
        t = time.perf_counter()
        for _ in range(10):
            sid.embedder.embed([piece])
        print(
            f"  of which embedding alone (speakerid embedder, {sid.embedder.precision}): "
            f"{(time.perf_counter() - t) / 10 * 1e3:.1f} ms"
        )

        # Plain: what wiring SpeechBrain and numpy together by hand gives, on the same profiles:
        # decode, encode_batch, cosine against every profile, best one (no speech detection).
        plain = load_speechbrain(resolve().path)
        _, vectors, owners = sid.store.voiceprints.vectors()
        names = sorted(set(owners))
        row = {n: i for i, n in enumerate(names)}
        matrix = np.zeros((len(names), vectors.shape[1]), dtype=np.float32)
        np.add.at(matrix, [row[n] for n in owners], vectors)
        matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
        plain_times = []
        with torch.inference_mode():
            for i in range(max(5, args.runs // 3) + 1):
                t = time.perf_counter()
                x, _ = sf.read(clip, dtype="float32")
                v = plain.encode_batch(torch.from_numpy(x)[None]).reshape(-1).numpy()
                best = names[int(np.argmax(matrix @ (v / np.linalg.norm(v))))]
                if i:  # the first call warms up
                    plain_times.append(time.perf_counter() - t)
        plain_p50 = np.percentile(np.array(plain_times) * 1e3, 50)
        print(
            f"plain SpeechBrain (decode, encode_batch, numpy cosine): p50 {plain_p50:.1f} ms -> {best}; "
            f"ratio {plain_p50 / np.percentile(ms, 50):.2f}x"
        )
        sid.close()

        env = {**os.environ, "SPEAKERID_HOME": str(home)}
        colds = []
        for _ in range(3):
            t = time.perf_counter()
            subprocess.run(
                [sys.executable, "-m", "speakerid.cli", "identify", str(clip), "--json"],
                env=env,
                check=True,
                capture_output=True,
            )
            colds.append(time.perf_counter() - t)
        print(f"cold start (new process: imports + model load + identify): best of 3 {min(colds):.2f} s")


if __name__ == "__main__":
    main()
