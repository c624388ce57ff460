"""Worker processes for the crash and load tests: real enrollments and identifications through the
Python API, each reported on a JSON-lines log only after it returned (fsync'd), so a SIGKILL can
never make the log claim more than the store holds.

    python tests/workers.py churn HOME LOG SEED [--seconds S]     enroll / append / replace / remove / import
    python tests/workers.py identify HOME LOG SEED --seconds S    identify clips of the base speakers
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from conftest import clips_of  # noqa: E402

ABSENT = None
BASE = [f"id9000{i}" for i in range(1, 9)]  # enrolled before the workers start; identify targets
CHURN = ["id90009", "id90010", "id90101", "id90102", "id90103", "id90104"]  # other voices, for churn


SCRIPT = Path(__file__).resolve()


def file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class Log:
    def __init__(self, path: str):
        self.file = open(path, "a", encoding="utf-8")

    def write(self, **record) -> None:
        self.file.write(json.dumps({**record, "t": time.time()}) + "\n")
        self.file.flush()
        os.fsync(self.file.fileno())


class Expected:
    """What the store must hold, replayed from the workers' logs: per name, the set of clip digests
    (or ABSENT), or for the one operation a kill interrupted, either of two states."""

    def __init__(self):
        self.certain: dict[str, frozenset | None] = {}
        self.either: dict[str, tuple] = {}
        self.interrupted = 0  # kills that came before the operation under way had finished

    def replay(self, log: Path) -> None:
        pending = None
        for line in log.read_text().splitlines():
            record = json.loads(line)
            event = record["event"]
            if event == "begin":
                pending = record
            elif event in ("done", "refused", "error"):
                assert event != "error", record["message"]
                if event == "done":
                    self._apply(record)
                pending = None
        if pending is not None:  # the kill came during this operation: all of it or none of it
            self.interrupted += 1
            for name, before, after in self._states(pending):
                self.either[name] = (before, after)
                self.certain.pop(name, None)

    def cli_enrollment(self, name: str, digests: set[str], finished: bool) -> None:
        if finished:
            self.certain[name] = frozenset(digests)
        else:
            self.interrupted += 1
            self.either[name] = (ABSENT, frozenset(digests))

    def _apply(self, record: dict) -> None:
        for name, _, after in self._states(record):
            self.certain[name] = after
            self.either.pop(name, None)

    @staticmethod
    def _states(record: dict):
        if record["op"] == "import":
            return [(n, ABSENT, frozenset([f"{j:064x}"])) for j, n in enumerate(record["names"])]
        before = None if record.get("before") is None else frozenset(record["before"])
        after = None if record.get("after") is None else frozenset(record["after"])
        return [(record["name"], before, after)]

    def check(self, home: Path) -> int:
        from store import open_store

        with open_store(home) as store:
            names = {s.name for s in store.voiceprints.speakers()}

            def actual(name):
                return frozenset(store.voiceprints.clip_digests(name)) if name in names else ABSENT

            for name, want in self.certain.items():
                assert actual(name) == want, f"{name}: reported {want}, store holds {actual(name)}"
            for name, states in self.either.items():
                assert actual(name) in states, f"{name}: interrupted, store holds {actual(name)} (not {states})"
        return sum(1 for v in self.certain.values() if v is not ABSENT)


def wait_for_ready(log: Path, proc: subprocess.Popen, timeout: float = 180) -> None:
    deadline = time.time() + timeout
    while not (log.exists() and '"ready"' in log.read_text()):
        assert proc.poll() is None, proc.stderr.read()
        assert time.time() < deadline, "worker did not start"
        time.sleep(0.05)


def churn(sid, log: Log, rng: random.Random, prefix: str, deadline: float) -> None:
    """Random writes of this worker's own names; ``done`` lines carry the expected clip digests."""
    from store import NewEmbedding

    held: dict[str, tuple[str, set[str]]] = {}  # name -> (voice, clip digests)
    step = 0
    while time.time() < deadline:
        step += 1
        op = rng.choice(["enroll", "enroll", "append", "replace", "remove", "import"] if held else ["enroll", "import"])
        if op == "import":  # a voiceprint migration: many speakers in one transaction
            names = [f"{prefix}imp{step}-{j}" for j in range(rng.randint(50, 300))]
            vector = sid.embed(rng.choice(clips_of(rng.choice(CHURN), 2)))[0]
            log.write(event="begin", op=op, names=names)
            sid.store.voiceprints.import_speakers(
                {n: [NewEmbedding(vector, clip_sha256=f"{j:064x}")] for j, n in enumerate(names)},
                model=sid.embedder.model_id,
            )
            log.write(event="done", op=op, names=names)
            continue
        if op == "enroll":
            name, voice = f"{prefix}{step}", rng.choice(CHURN)
        else:
            name = rng.choice(sorted(held))
            voice = held[name][0]
        pool = clips_of(voice, 1)
        fresh = [c for c in pool if op == "replace" or file_digest(c) not in held.get(name, ("", set()))[1]]
        clips = rng.sample(fresh, min(len(fresh), 3 if op != "append" else 1))
        if op != "remove" and not clips:
            continue
        before = held.get(name, ("", set()))[1]
        digests = {file_digest(c) for c in clips}
        after = None if op == "remove" else (before | digests if op == "append" else digests)
        log.write(
            event="begin",
            op=op,
            name=name,
            before=sorted(before) if name in held else None,
            after=None if after is None else sorted(after),
        )
        try:
            if op == "remove":
                sid.remove(name)
                held.pop(name)
            else:
                # the same people under many names, on purpose: allowed, as an admin may (near_copy)
                sid.enroll(
                    name, clips, append=op == "append", replace=op == "replace", min_speech=5, allow_similar=True
                )
                held[name] = (voice, after)
        except Exception as exc:  # a refused enrollment is an answer; anything else is logged as an error
            from speakerid import SpeakerIDError

            log.write(
                event="refused" if isinstance(exc, SpeakerIDError) else "error",
                op=op,
                name=name,
                message=f"{type(exc).__name__}: {exc}",
            )
            continue
        log.write(event="done", op=op, name=name, after=None if after is None else sorted(after))


def identify(sid, log: Log, rng: random.Random, deadline: float) -> None:
    clips = [(speaker, c) for speaker in BASE for c in clips_of(speaker, 3)]
    while time.time() < deadline:
        speaker, clip = rng.choice(clips)
        start = time.perf_counter()
        try:
            answer = sid.identify(clip).speaker
        except Exception as exc:
            log.write(event="error", op="identify", message=f"{type(exc).__name__}: {exc}")
            continue
        log.write(event="done", op="identify", expected=speaker, answer=answer, seconds=time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("role", choices=["churn", "identify"])
    parser.add_argument("home")
    parser.add_argument("log")
    parser.add_argument("seed", type=int)
    parser.add_argument("--seconds", type=float, default=1e9)
    args = parser.parse_args()
    from speakerid import SpeakerID

    log = Log(args.log)
    rng = random.Random(args.seed)
    with SpeakerID.open(args.home) as sid:
        sid.embedder  # noqa: B018 -- load the model before saying ready
        log.write(event="ready", pid=os.getpid())
        deadline = time.time() + args.seconds
        if args.role == "churn":
            churn(sid, log, rng, f"w{args.seed}-", deadline)
        else:
            identify(sid, log, rng, deadline)
    log.write(event="exit")


if __name__ == "__main__":
    main()
