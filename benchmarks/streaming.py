"""Live audio: how soon a stream decides, how often its decision is wrong, and what it costs.

10 of mini-voxceleb1's 16 speakers enrolled from split 1; every clip of the other 6, and the
split-2/3 clips of the enrolled 10, streamed in 0.1 s pieces as a microphone would deliver them.

- Latency: from the start of speech (the first region speech detection finds in the whole clip)
  to the first final decision that is correct, counting the compute that decision waited for
  (what a real-time stream sees): p50 / p95.
- Wrong final decisions (a name for a stranger, a wrong name, or no name for an enrolled speaker
  when the final said so) against whole-clip ``identify`` at the same threshold.
- Cost: compute seconds per second of streamed audio (one core), so the streams 2 cores sustain;
  then that many streams run at once, at real-time pace, in threads, to check they keep up.

    python benchmarks/streaming.py
"""

from __future__ import annotations

import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from calibration import cpu_model  # noqa: E402

from speakerid import SpeakerID  # noqa: E402
from speakerid.voice.audio import load_audio  # noqa: E402
from speakerid.voice.vad import extract_speech  # noqa: E402

from conftest import clip_path, iden_split  # noqa: E402

PIECE = 1600  # 0.1 s


def main() -> None:
    import os

    print(f"CPU: {cpu_model()} ({os.cpu_count()} cores)")
    split = iden_split()
    speakers = sorted({r.split("/")[0] for _, r in split})
    enrolled = set(speakers[::2]) | set(speakers[1:4:2])  # 10 of 16, both kinds of speech
    sid = SpeakerID.open(Path(tempfile.mkdtemp()) / "home")
    for spk in sorted(enrolled):
        sid.enroll(spk, [clip_path(r) for s, r in split if s == 1 and r.split("/")[0] == spk], min_speech=5)
    sid.embedder  # noqa: B018
    probes = [r for s, r in split if r.split("/")[0] not in enrolled or s != 1]
    latencies: dict[bool, list[float]] = {True: [], False: []}  # enrolled speaker or stranger
    wrong_stream, wrong_clip, costs, total_audio = 0, 0, 0.0, 0.0
    undecided = 0
    for rel in probes:
        samples = sf.read(clip_path(rel), dtype="int16")[0]
        truth = rel.split("/")[0] if rel.split("/")[0] in enrolled else None
        speech = extract_speech(load_audio(clip_path(rel)), min_speech=None).regions
        onset = speech[0][0] / 16000 if speech else 0.0
        live = sid.stream(16000)
        first_final = None
        spent = 0.0
        for i in range(0, len(samples), PIECE):
            start = time.perf_counter()
            events = live.feed(samples[i : i + PIECE])
            took = time.perf_counter() - start
            spent += took
            for e in events:
                if e.final and first_final is None:
                    first_final = (e, e.t - onset + took)
        start = time.perf_counter()
        final = live.close()
        spent += time.perf_counter() - start
        if first_final is None:
            first_final = (final, len(samples) / 16000 - onset)
        event, latency = first_final
        costs += spent
        total_audio += len(samples) / 16000
        wrong_stream += event.speaker != truth
        if event.speaker == truth:
            latencies[truth is not None].append(latency)
        else:
            undecided += event.speaker is None and truth is not None
        wrong_clip += sid.identify(clip_path(rel)).speaker != truth
    rtf = costs / total_audio
    print(
        f"\n{len(probes)} clips streamed ({sum(1 for r in probes if r.split('/')[0] in enrolled)} of enrolled "
        f"speakers, the rest strangers), threshold {sid.threshold:.3f}"
    )
    for known, label in ((True, "enrolled speakers (named)"), (False, "strangers (unknown)")):
        got = latencies[known]
        print(
            f"time from start of speech to the first correct final decision, {label}: p50 "
            f"{np.percentile(got, 50):.2f} s, p95 {np.percentile(got, 95):.2f} s ({len(got)} correct)"
        )
    print(
        f"wrong first final decisions: {wrong_stream}/{len(probes)} ({undecided} of them 'unknown' for an enrolled "
        f"speaker); whole-clip identify wrong: {wrong_clip}/{len(probes)}"
    )
    streams = int(2 / rtf)
    print(f"compute per second of streamed audio: {rtf:.3f} s -> about {streams} real-time streams on 2 cores")

    def speak(rel: str, lags: list) -> None:
        live = sid.stream(16000)
        samples = sf.read(clip_path(rel), dtype="int16")[0]
        begin = time.perf_counter()
        for i in range(0, len(samples), PIECE):
            due = begin + (i + PIECE) / 16000
            time.sleep(max(0.0, due - time.perf_counter()))
            live.feed(samples[i : i + PIECE])
            lags.append(time.perf_counter() - (begin + (i + PIECE) / 16000))
        live.close()

    for count in (4, 8, 12, 16):
        lags: list[float] = []
        threads = [threading.Thread(target=speak, args=(probes[k % len(probes)], lags)) for k in range(count)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        print(
            f"{count} streams at once, real-time pace: lag behind the audio p50 {np.percentile(lags, 50) * 1000:.0f} ms, "
            f"p95 {np.percentile(lags, 95) * 1000:.0f} ms, max {max(lags) * 1000:.0f} ms"
        )


if __name__ == "__main__":
    main()
