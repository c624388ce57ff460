"""Who spoke when in meeting-like audio: where the error comes from, against naive windows.

Meetings are built from the shared real speech (tests/meeting_builder.py: 3-4 people at their own
distances from one far-field microphone, short turns, overlaps, back-channels, fan noise, -41 dBFS),
each person enrolled from about 6 s of their turns in another excerpt of the same meeting. Two folds
of speakers (A, B) never share a person: anything tuned is tuned on one fold and read on the other.
Also: built 3-person conversations (close talk, 2 enrolled from split-1 clips, 1 stranger, short pauses).

Identification error rate (pyannote.metrics, collar 0.25 s, overlap scored; a stranger and every
``unknown-N`` both count as "unknown"), its components as shares of the reference speech, and the
IER where only one person speaks (overlapped speech left out: what overlap costs):

    python benchmarks/meetings.py               # 8 meetings per fold + 8 conversations
    python benchmarks/meetings.py --meetings 2  # quicker
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import meeting_builder as M  # noqa: E402
from calibration import cpu_model  # noqa: E402

from speakerid import SpeakerID  # noqa: E402

import conversations as C  # noqa: E402
from conftest import clips_of  # noqa: E402

COMPONENTS = ("confusion", "missed detection", "false alarm")


class Score:
    """IER and its components summed over recordings (pyannote.metrics' own accumulation)."""

    def __init__(self) -> None:
        from pyannote.metrics.identification import IdentificationErrorRate

        self.metric = IdentificationErrorRate(collar=0.25, skip_overlap=False)
        self.single = IdentificationErrorRate(collar=0.25, skip_overlap=True)  # where one person speaks

    def add(self, reference, hypothesis, duration: float, uri: str) -> float:
        from pyannote.core import Segment, Timeline

        ref = C.as_annotation(reference, uri)
        hyp = C.as_annotation(hypothesis, uri)
        self.single(ref, hyp, uem=Timeline([Segment(0, duration)]))
        return self.metric(ref, hyp, uem=Timeline([Segment(0, duration)]))

    def row(self) -> str:
        total = self.metric.accumulated_["total"]
        parts = "  ".join(f"{self.metric.accumulated_[c] / total:9.1%}" for c in COMPONENTS)
        return f"{abs(self.metric):6.1%}  {parts}  {abs(self.single):16.1%}"


def known(label: str | None, enrolled: set[str]) -> str:
    return label if label in enrolled else "unknown"


def naive(sid: SpeakerID, audio: np.ndarray) -> list[C.Turn]:
    """1.5 s windows end to end over the whole recording, each named by the nearest profile."""
    names, profiles = sid.decider.profiles.matrix()
    width = int(1.5 * 16000)
    starts = list(range(0, max(len(audio) - width // 3, 1), width))
    windows = [audio[s : s + width] for s in starts]
    windows[-1] = np.pad(windows[-1], (0, width - len(windows[-1])))
    vectors = sid.embedder.embed_equal(np.stack(windows))
    best = np.argmax(vectors @ profiles.T, axis=1)
    return [C.Turn(names[k], s / 16000, min(s + width, len(audio)) / 16000) for s, k in zip(starts, best, strict=True)]


def enrolled_store(people: dict[str, list]) -> SpeakerID:
    sid = SpeakerID.open(Path(tempfile.mkdtemp()) / "home")
    for person, clips in people.items():
        sid.enroll(person, clips, min_speech=2, skip_bad=True, allow_similar=True)
    return sid


def run_meetings(fold: str, count: int, methods: dict, scores: dict) -> None:
    rng = random.Random(f"{fold}-held-out")  # the timeline was developed on other meetings (seeds under 1000)
    for k in range(count):
        people = rng.sample(M.FOLDS[fold], rng.choice((3, 4)))
        m = M.meeting(people, seed=1000 + 100 * ord(fold) + k)
        recording = Path(tempfile.mkdtemp()) / "enrollment.wav"
        sf.write(recording, m.enrollment, 16000, subtype="PCM_16")
        sid = SpeakerID.open(Path(tempfile.mkdtemp()) / "home")
        for p in people:  # as a user would: enroll-speaker P enrollment.wav --span A-B ...
            sid.enroll_turns(p, recording, spans=m.enrollment_turns[p], min_speech=2, skip_bad=True, allow_similar=True)
        duration = len(m.audio) / 16000
        for method, run in methods.items():
            hyp = [C.Turn(known(t.speaker, set(people)), t.start, t.end) for t in run(sid, m.audio)]
            scores[method].add(m.reference, hyp, duration, m.name)


def run_conversations(count: int, methods: dict, scores: dict) -> None:
    """3 people, 2 enrolled (split-1 clips), 1 stranger; pauses 0.2-0.8 s (mini-voxceleb1, close talk)."""
    rng = random.Random("conversations-held-out")
    for k in range(count):
        a, b, stranger = rng.sample(M.MINI_SPEAKERS, 3)
        turns = [(rng.choice((a, b, stranger)), rng.uniform(0.2, 0.8)) for _ in range(7)]
        for i in range(1, len(turns)):
            while turns[i][0] == turns[i - 1][0]:
                turns[i] = (rng.choice((a, b, stranger)), turns[i][1])
        audio, reference = C.build(turns, seed=k)
        sid = enrolled_store({p: clips_of(p, 1) for p in (a, b)})
        reference = [C.Turn(known(t.speaker, {a, b}), t.start, t.end) for t in reference]
        for method, run in methods.items():
            hyp = [C.Turn(known(t.speaker, {a, b}), t.start, t.end) for t in run(sid, audio)]
            scores[method].add(reference, hyp, len(audio) / 16000, f"conversation-{k}")


METHODS = {
    "naive 1.5 s windows": naive,
    "speakerid timeline": lambda sid, audio: sid.timeline((audio, 16000)).segments,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--meetings", type=int, default=8, help="meetings per fold (default 8)")
    parser.add_argument("--conversations", type=int, default=8)
    args = parser.parse_args()
    print(f"CPU: {cpu_model()}")
    print(
        f"\n{'audio':<34} {'method':<22} {'IER':>6}  {'confusion':>9}  {'missed':>9}  {'false alarm':>9}  "
        f"{'IER without overlap':>16}"
    )
    for label, job in (
        *((f"meetings, fold {f} ({args.meetings})", lambda ms, sc, f=f: run_meetings(f, args.meetings, ms, sc)) for f in "AB"),
        (f"3-person conversations ({args.conversations})", lambda ms, sc: run_conversations(args.conversations, ms, sc)),
    ):  # fmt: skip
        scores = {method: Score() for method in METHODS}
        start = time.perf_counter()
        job(METHODS, scores)
        for method, score in scores.items():
            print(f"{label:<34} {method:<22} {score.row()}")
        print(f"{'':<34} ({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
