"""Who spoke when on a meeting-room microphone: which part of far-field audio breaks identification.

The shared real two-person recording, passed through :func:`conversations.far_field` with one
degradation at a time (low-frequency noise, a mild room, the tests' harsh room, both), then:

- IER (pyannote.metrics, collar 0) of its timeline, each person enrolled from their turns before
  18 s — of the degraded audio (the room is the same at enrollment) and of the clean audio (enrolled
  at a desk, heard in the meeting room);
- how well the embeddings still tell the two voices apart: cosine between the reference turns'
  embeddings (1.5 s windows every 0.5 s, averaged per turn), same person against different people.

    python benchmarks/far_field.py
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from calibration import cpu_model  # noqa: E402

from speakerid import SpeakerID  # noqa: E402
from speakerid.decide.scoring import centroid  # noqa: E402

import conversations as C  # noqa: E402

SPLIT = 18.0
CONDITIONS = {  # name: far_field's arguments (level -41 dBFS in all)
    "level only (-41 dBFS)": dict(direct=None, snr=None),
    "noise 15 dB": dict(direct=None, snr=15.0),
    "noise 25 dB": dict(direct=None, snr=25.0),
    "room, DRR 0 dB": dict(direct=24.0, snr=None),
    "room, DRR -18 dB": dict(direct=3.0, snr=None),
    "room DRR 0 dB + noise 15 dB": dict(direct=24.0, snr=15.0),
    "room DRR -18 dB + noise 15 dB (the tests')": dict(direct=3.0, snr=15.0),
}


def main() -> None:
    from pyannote.core import Segment, Timeline
    from pyannote.metrics.identification import IdentificationErrorRate

    print(f"CPU: {cpu_model()}")
    audio, rate, reference = C.real_recording()
    ref = C.as_annotation([C.Turn(w, a, b) for a, b, w in reference], "sample")

    def timeline_ier(enrolled_from: np.ndarray, heard: np.ndarray) -> tuple[float, float]:
        sid = SpeakerID.open(Path(tempfile.mkdtemp()) / "home")
        for person in ("speaker90", "speaker91"):
            sid.enroll(person, [(C.turns_of(enrolled_from, rate, reference, person, SPLIT), rate)], min_speech=3)
        hyp = C.as_annotation(sid.timeline((heard, rate)).segments, "sample")
        sid.close()
        return tuple(
            IdentificationErrorRate(collar=0.0, skip_overlap=False)(ref, hyp, uem=Timeline([Segment(*span)]))
            for span in ((0, 30), (SPLIT, 30))
        )

    embedder = SpeakerID.open(Path(tempfile.mkdtemp()) / "home").embedder

    def separation(heard: np.ndarray) -> tuple[float, float]:
        width, hop = int(1.5 * rate), int(0.5 * rate)
        turns = [(w, heard[int(a * rate) : int(b * rate)]) for a, b, w in reference if b - a >= 1.5]
        vectors = np.stack(
            [
                centroid(embedder.embed_equal(np.stack([x[i : i + width] for i in range(0, len(x) - width + 1, hop)])))
                for _, x in turns
            ]
        )
        scores = vectors @ vectors.T
        pairs = [(i, j) for i in range(len(turns)) for j in range(i + 1, len(turns))]
        same = [scores[i, j] for i, j in pairs if turns[i][0] == turns[j][0]]
        other = [scores[i, j] for i, j in pairs if turns[i][0] != turns[j][0]]
        return float(np.mean(same)), float(np.mean(other))

    print(f"\nthe shared real recording (30 s, two people), IER whole file / after {SPLIT:.0f} s, collar 0:")
    print(f"{'condition':<44} {'enrolled there':>16} {'enrolled clean':>16}   turn cosine same / other")
    rows = {"clean": audio} | {name: C.far_field(audio, rate, **kw) for name, kw in CONDITIONS.items()}
    for name, heard in rows.items():
        there = timeline_ier(heard, heard)
        clean = timeline_ier(audio, heard)
        same, other = separation(heard)
        print(
            f"{name:<44} {there[0]:7.1%} / {there[1]:5.1%} {clean[0]:7.1%} / {clean[1]:5.1%}   {same:.3f} / {other:.3f}"
        )
    print(
        "\nDRR of the rooms: "
        + ", ".join(f"direct {d:g}: {C.direct_to_reverberant(d, 0.5, rate):.1f} dB" for d in (24.0, 3.0))
    )


if __name__ == "__main__":
    main()
