"""Open-set identification on mini-voxceleb1: half the speakers enrolled, half never seen.

    python benchmarks/open_set.py [--root ../shared/data/mini-voxceleb1] [--threshold T]

Enrolls every other speaker (8 of 16) from its split-1 clips, then identifies every split-3 clip:
prints how many enrolled speakers' clips are accepted as the right person, and how many
held-out speakers' clips come back unknown, at the store's default threshold. Also prints the
score range of each group, which is what the default threshold was chosen from.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from speakerid import SpeakerID

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=HERE.parent.parent / "shared" / "data" / "mini-voxceleb1")
    parser.add_argument("--threshold", type=float)
    args = parser.parse_args()
    split = [(int(a), b) for a, b in (l.split() for l in (args.root / "iden_split.txt").read_text().splitlines() if l)]
    who = lambda rel: rel.split("/")[0]  # noqa: E731
    speakers = sorted({who(r) for _, r in split})
    enrolled, held_out = speakers[::2], speakers[1::2]
    with tempfile.TemporaryDirectory() as home, SpeakerID.open(home) as sid:
        for spk in enrolled:
            sid.enroll(spk, [args.root / "wav" / r for s, r in split if s == 1 and who(r) == spk], min_speech=8)
        results = {r: sid.identify(args.root / "wav" / r, threshold=args.threshold) for s, r in split if s == 3}
        threshold = sid.threshold if args.threshold is None else args.threshold
    known = [r for r in results if who(r) in enrolled]
    unknown = [r for r in results if who(r) in held_out]
    accepted = sum(results[r].speaker == who(r) for r in known)
    rejected = sum(results[r].speaker is None for r in unknown)
    target = [results[r].score for r in known]
    impostor = [results[r].score for r in unknown]
    print(f"model {next(iter(results.values())).model}, threshold {threshold:g}")
    print(f"enrolled speakers' clips accepted as the right person: {accepted}/{len(known)} = {accepted / len(known):.1%}"
          f"  (best scores {min(target):.3f} .. {max(target):.3f})")
    print(f"held-out speakers' clips answered unknown:            {rejected}/{len(unknown)} = {rejected / len(unknown):.1%}"
          f"  (best scores {min(impostor):.3f} .. {max(impostor):.3f})")
    print(f"lowest margin best-vs-runner-up for accepted clips: "
          f"{min(results[r].candidates[0].score - results[r].candidates[1].score for r in known):.3f}")


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
