"""Bulk throughput: enrolling and evaluating many files, clips per second, against plain SpeechBrain.

    python benchmarks/bulk_speed.py [--root ../shared/data/mini-voxceleb1]

All in one run, on the same clips, model loaded beforehand (no cold start in any figure):
- plain: soundfile decode + SpeechBrain's own `encode_batch`, one clip after another (no speech
  detection, no store) -- the least a hand-wired pipeline does;
- sequential: speakerid's decode + speech detection + embedding one after another, no overlap;
- enroll: `SpeakerID.enroll` of every speaker's split-1 clips into a fresh store (decode and
  speech detection of the next clips on a thread while the model embeds; written in one
  transaction per speaker);
- eval: `speakerid eval voxceleb` on every clip the split and trial list name (no cache).
"cores busy" is process CPU time over wall time (2.0 = both cores of this machine all the time).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from speakerid import SpeakerID
from speakerid.apps.evaluate import EvalConfig, default_lists, evaluate
from speakerid.voice.audio import load_audio
from speakerid.voice.embedder import load_embedder
from speakerid.voice.models import resolve
from speakerid.voice.speechbrain_engine import load_speechbrain
from speakerid.voice.vad import extract_speech

HERE = Path(__file__).resolve().parent


class Timer:
    def __enter__(self):
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall, self.cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu


def report(label: str, clips: int, t: Timer, reference: float | None = None) -> float:
    rate = clips / t.wall
    ratio = f"  {rate / reference:5.2f}x plain" if reference else ""
    print(f"{label:34s} {clips:4d} clips  {t.wall:6.1f} s  {rate:6.2f} clips/s  cores busy {t.cpu / t.wall:.2f}{ratio}")
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=HERE.parent.parent / "shared" / "data" / "mini-voxceleb1")
    args = parser.parse_args()
    split_path, trials = default_lists(args.root)
    split = [(int(a), b) for a, b in (l.split() for l in split_path.read_text().splitlines() if l)]
    who = lambda r: r.split("/")[0]  # noqa: E731
    enrol = {}
    for s, rel in split:
        if s == 1:
            enrol.setdefault(who(rel), []).append(args.root / "wav" / rel)
    clips = [p for paths in enrol.values() for p in paths]
    seconds = sum(sf.info(p).duration for p in clips)
    print(
        f"{len(clips)} enrollment clips of {len(enrol)} speakers, {seconds:.0f} s of audio; torch threads {torch.get_num_threads()}"
    )

    plain = load_speechbrain(resolve().path)
    with torch.inference_mode():
        plain.encode_batch(torch.zeros(1, 16000))
        with Timer() as t:
            for path in clips:
                samples, _ = sf.read(path, dtype="float32")
                plain.encode_batch(torch.from_numpy(samples)[None])
    reference = report("plain SpeechBrain (decode + embed)", len(clips), t)
    del plain

    embedder = load_embedder()
    embedder.embed([np.zeros(16000, dtype=np.float32)])
    with Timer() as t:
        for path in clips:
            embedder.embed([extract_speech(load_audio(path)).samples])
    report("speakerid, no overlap", len(clips), t, reference)

    with tempfile.TemporaryDirectory() as tmp:
        sid = SpeakerID.open(Path(tmp) / "home")
        with Timer() as t:
            for name, paths in enrol.items():
                sid.enroll(name, paths, min_speech=8)
        report("speakerid enroll (API)", len(clips), t, reference)
        sid.close()

        with Timer() as t:
            result, _ = evaluate(EvalConfig(root=args.root, split=split_path, trials=trials, progress=False))
        report("speakerid eval voxceleb", result["clips"], t, reference)


if __name__ == "__main__":
    main()
