"""PostgreSQL against SQLite, and Ray against one process, in the same run.

1. Identify a real 5 s clip against 10^4 and 10^5 enrolled speakers (synthetic one-clip voiceprints
   around it, so only the store differs): p50/p95 end to end, and the first question after a new
   process opened the store (which builds the derived index from the database on PostgreSQL).
2. Enrollment throughput at those sizes: speakers/s, each speaker 5 clip vectors in one write
   (the write, the derived index catching up, and on SQLite the index file when it is saved);
   then 20 times an enrollment followed by an identification: that identification's p50 (profiles
   and calibration catching up); then a new `speakerid identify` process, timed from outside
   (best of 3: imports, model, store, answer; what a script calling the CLI per event pays).
   Then 25 enrollments of 0.1 % of the population each, an identification after each: p50 and the
   slowest, with the calibration measured in the request (the command line) and in a thread (the
   service).
3. VoxCeleb-style evaluation of mini-voxceleb1 embedded by one process, by Ray with 1 worker and
   with 2 workers: clips/s and audio seconds per second, Ray's start-up reported apart.

    SPEAKERID_TEST_POSTGRES=postgresql://... python benchmarks/scale_out.py [--sizes 10000 100000]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from calibration import cpu_model  # noqa: E402

from speakerid import SpeakerID  # noqa: E402
from store import NewEmbedding, open_store  # noqa: E402

from conftest import DATA, MODEL_DIR, clip_path, clips_of, iden_split, postgres_schema  # noqa: E402

CLIP = clips_of("id90001", 3)[0]


def populate(location: str, count: int, anchor: np.ndarray, rng) -> None:
    vectors = anchor + 1.5 * rng.standard_normal((count, anchor.shape[0])).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    with open_store(location) as store:
        for start in range(0, count, 20_000):
            store.voiceprints.import_speakers(
                {f"p{i:07d}": [NewEmbedding(vectors[i])] for i in range(start, min(count, start + 20_000))},
                model="speechbrain/spkrec-ecapa-voxceleb",
            )


def identify_and_enroll(location: str, count: int, anchor: np.ndarray) -> dict:
    rng = np.random.default_rng(count)
    populate(location, count, anchor, rng)
    out = {}
    start = time.perf_counter()
    with SpeakerID.open(store=location, model=str(MODEL_DIR)) as sid:
        sid.embedder  # noqa: B018 (model loading is not the store's cost)
        opened = time.perf_counter()
        sid.identify(CLIP)
        out["first"] = time.perf_counter() - opened
        times = []
        for _ in range(30):
            t = time.perf_counter()
            sid.identify(CLIP)
            times.append(time.perf_counter() - t)
        out["p50"], out["p95"] = np.percentile(times, 50), np.percentile(times, 95)
        clips = rng.standard_normal((100, 5, anchor.shape[0])).astype(np.float32)
        t = time.perf_counter()
        for i, vectors in enumerate(clips):
            sid.store.voiceprints.add_speaker(
                f"new{i}", [NewEmbedding(v / np.linalg.norm(v)) for v in vectors], model=sid.embedder.model_id
            )
        out["enroll_per_s"] = len(clips) / (time.perf_counter() - t)
        after = []
        for i, vectors in enumerate(rng.standard_normal((20, 5, anchor.shape[0])).astype(np.float32)):
            sid.store.voiceprints.add_speaker(
                f"mixed{i}", [NewEmbedding(v / np.linalg.norm(v)) for v in vectors], model=sid.embedder.model_id
            )
            t = time.perf_counter()
            sid.identify(CLIP)
            after.append(time.perf_counter() - t)
        out["after_enroll"] = np.percentile(after, 50)
        for mode, background in (("measured in the request", False), ("measured in a thread", True)):
            sid.options.background_calibration = background  # the command line / the service
            sid.calibration()  # each mode starts from a current measurement
            waits = []
            for step in range(25):  # 0.1 % more clips a step: 2.5 % in all, past the 1 % line twice
                vectors = rng.standard_normal((max(1, count // 1000), anchor.shape[0])).astype(np.float32)
                sid.store.voiceprints.add_speaker(
                    f"{'bt'[background]}{step}",
                    [NewEmbedding(v / np.linalg.norm(v)) for v in vectors],
                    model=sid.embedder.model_id,
                )
                t = time.perf_counter()
                sid.identify(CLIP)
                waits.append(time.perf_counter() - t)
            out[mode] = (np.percentile(waits, 50), max(waits))
    out["total"] = time.perf_counter() - start
    colds = []
    for _ in range(3):
        t = time.perf_counter()
        subprocess.run(
            [
                sys.executable,
                "-m",
                "speakerid.cli",
                "identify",
                str(CLIP),
                "--store",
                location,
                "--model",
                str(MODEL_DIR),
                "--json",
            ],
            check=True,
            capture_output=True,
        )
        colds.append(time.perf_counter() - t)
    out["cold"] = min(colds)
    return out


def evaluation() -> list[tuple[str, float, float, float]]:
    from speakerid.apps.distributed import start as start_ray
    from speakerid.apps.evaluate import EvalConfig, default_lists, evaluate

    split, trials = default_lists(DATA)
    rows = []
    seconds = sum(len(__import__("soundfile").read(clip_path(r))[0]) / 16000 for _, r in iden_split())
    config = EvalConfig(root=DATA, split=split, trials=trials, model=str(MODEL_DIR), progress=False)
    t = time.perf_counter()
    evaluate(config)
    rows.append(("one process", time.perf_counter() - t, 0.0, seconds))
    t = time.perf_counter()
    start_ray(None)
    boot = time.perf_counter() - t
    for workers in (1, 2):
        config = EvalConfig(
            root=DATA, split=split, trials=trials, model=str(MODEL_DIR), progress=False, ray="", ray_workers=workers
        )
        t = time.perf_counter()
        evaluate(config)
        rows.append((f"Ray, {workers} worker{'s' if workers > 1 else ''}", time.perf_counter() - t, boot, seconds))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--skip-ray", action="store_true")
    parser.add_argument("--skip-stores", action="store_true", help="only the evaluation part")
    args = parser.parse_args()
    print(f"CPU: {cpu_model()} ({os.cpu_count()} cores)")
    from speakerid.voice.audio import load_audio
    from speakerid.voice.embedder import load_embedder

    anchor = load_embedder(str(MODEL_DIR)).embed([load_audio(CLIP).samples])[0]
    url = os.environ.get("SPEAKERID_TEST_POSTGRES")
    print(
        f"\n{'speakers':>9} {'backend':<11} {'first identify':>15} {'p50':>9} {'p95':>9} {'enroll/s':>9} "
        f"{'identify after enroll':>22} {'new process':>12}"
    )
    import tempfile

    growth = []
    for count in [] if args.skip_stores else args.sizes:
        with tempfile.TemporaryDirectory() as folder:
            r = identify_and_enroll(str(Path(folder) / "home"), count, anchor)
        print(
            f"{count:>9} {'SQLite':<11} {r['first'] * 1000:>12.0f} ms {r['p50'] * 1000:>6.1f} ms {r['p95'] * 1000:>6.1f} ms "
            f"{r['enroll_per_s']:>9.1f} {r['after_enroll'] * 1000:>19.1f} ms {r['cold']:>10.2f} s"
        )
        growth.append((count, "SQLite", r))
        if url:
            with postgres_schema() as location:
                r = identify_and_enroll(location, count, anchor)
            print(
                f"{count:>9} {'PostgreSQL':<11} {r['first'] * 1000:>12.0f} ms {r['p50'] * 1000:>6.1f} ms "
                f"{r['p95'] * 1000:>6.1f} ms {r['enroll_per_s']:>9.1f} {r['after_enroll'] * 1000:>19.1f} ms "
                f"{r['cold']:>10.2f} s"
            )
            growth.append((count, "PostgreSQL", r))
    if growth:
        print(
            "\nidentify while the population grows by 2.5 % (25 enrollments, an identification after each), "
            "p50 / slowest, as the calibration is"
        )
        for count, backend, r in growth:
            print(
                f"{count:>9} {backend:<11} "
                + "   ".join(
                    f"{mode}: {r[mode][0] * 1000:6.1f} / {r[mode][1] * 1000:7.1f} ms"
                    for mode in ("measured in the request", "measured in a thread")
                )
            )
    if args.skip_ray:
        return
    print("\nevaluation of mini-voxceleb1 (146 clips), embedding and scoring:")
    rows = evaluation()
    base = rows[0][1]
    for label, took, boot, seconds in rows:
        extra = f" (+ Ray start-up {boot:.1f} s, once)" if boot else ""
        print(
            f"  {label:<16} {took:6.1f} s  {146 / took:5.1f} clips/s  {seconds / took:6.1f} audio s/s  "
            f"{base / took:4.2f}x one process{extra}"
        )


if __name__ == "__main__":
    main()
