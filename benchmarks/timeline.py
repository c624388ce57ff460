"""Who spoke when: identification error rate (pyannote.metrics, no label mapping) and speed.

- Built conversations from mini-voxceleb1 (tests/conversations.py: 2-4 speakers, pauses, back to
  back turns, a stranger, short overlaps), the enrolled speakers enrolled from split-1 clips.
- The shared real two-person recording, enrolled from each person's turns before 18 s.
- Real-time factor on a 10-minute recording (the real one, repeated), and peak memory.

    python benchmarks/timeline.py
"""

from __future__ import annotations

import resource
import sys
import tempfile
import time
from pathlib import Path

import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from calibration import cpu_model  # noqa: E402

from speakerid import SpeakerID  # noqa: E402

import conversations as C  # noqa: E402
from conftest import clips_of  # noqa: E402


def main() -> None:
    from pyannote.core import Segment, Timeline
    from pyannote.metrics.identification import IdentificationErrorRate

    print(f"CPU: {cpu_model()}")
    home = Path(tempfile.mkdtemp()) / "home"
    sid = SpeakerID.open(home)
    for speaker in sorted({s for turns in C.SCENARIOS.values() for s, _ in turns} - set(C.STRANGERS.values())):
        sid.enroll(speaker, clips_of(speaker, 1), min_speech=5)
    sid.embedder  # noqa: B018
    totals = {c: IdentificationErrorRate(collar=c, skip_overlap=False) for c in (0.0, 0.25)}
    print("\nbuilt conversations (IER at collar 0 / 0.25 s; real-time factor):")
    for name, turns in C.SCENARIOS.items():
        audio, reference = C.build(turns)
        start = time.perf_counter()
        result = sid.timeline((audio, 16000))
        rtf = (time.perf_counter() - start) / (len(audio) / 16000)
        stranger = C.STRANGERS.get(name)
        ref = C.as_annotation(
            [C.Turn("STRANGER" if t.speaker == stranger else t.speaker, t.start, t.end) for t in reference], name
        )
        hyp = C.as_annotation([C.Turn(s.speaker or "STRANGER", s.start, s.end) for s in result.segments], name)
        uem = Timeline([Segment(0, len(audio) / 16000)])
        rates = [totals[c](ref, hyp, uem=uem) for c in (0.0, 0.25)]
        print(f"  {name:<22} {len(audio) / 16000:5.1f} s  IER {rates[0]:.2%} / {rates[1]:.2%}  RTF {rtf:.3f}")
    print(f"  {'total':<22}          IER {abs(totals[0.0]):.2%} / {abs(totals[0.25]):.2%}")

    audio, rate, reference = C.real_recording()
    real = SpeakerID.open(Path(tempfile.mkdtemp()) / "home")
    for person in ("speaker90", "speaker91"):
        real.enroll(person, [(C.turns_of(audio, rate, reference, person, 18), rate)], min_speech=3)
    result = real.timeline(C.REAL / "sample.wav")
    ref = C.as_annotation([C.Turn(w, a, b) for a, b, w in reference], "sample")
    hyp = C.as_annotation(result.segments, "sample")
    print("\nshared real recording (enrolled from turns before 18 s):")
    for label, uem in (("whole file", Timeline([Segment(0, 30)])), ("after 18 s only", Timeline([Segment(18, 30)]))):
        rates = [IdentificationErrorRate(collar=c, skip_overlap=False)(ref, hyp, uem=uem) for c in (0.0, 0.25)]
        print(f"  {label:<16} IER {rates[0]:.2%} / {rates[1]:.2%}")

    long = Path(tempfile.mkdtemp()) / "ten-minutes.wav"
    with sf.SoundFile(long, "w", samplerate=rate, channels=1, subtype="PCM_16") as f:
        for _ in range(20):
            f.write(audio)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    start = time.perf_counter()
    result = real.timeline(long)
    took = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"\n10 minutes of the real recording: {took:.1f} s, RTF {took / 600:.3f}, {len(result.segments)} turns; "
        f"peak memory {before:.0f} -> {after:.0f} MB"
    )


if __name__ == "__main__":
    main()
