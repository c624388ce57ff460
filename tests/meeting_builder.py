"""Meeting-like recordings built from the shared real speech, for the timeline's benchmark and tests.

A meeting: 3-4 people from ``wild-dev`` (interviews, speeches, phone) and ``mini-voxceleb1``, each
at their own distance from one table microphone (a room response each, as :func:`conversations.far_field`
builds them) and their own level (within 8 dB of each other), short turns (runs of a clip's speech, cut to 1-5 s), pauses, back-to-back turns,
overlaps and back-channels (a short turn inside someone else's), fan noise at 15 dB under the speech
and the speech at -41 dBFS. Each person first says a few seconds in an *enrollment excerpt* of the
same meeting (same room, same distances, other words), which is what they are enrolled from; the
*meeting* excerpt is what the timeline is scored on. A ``stranger`` speaks only in the meeting.

Reference turns are exact: each turn is a stretch of speech found in the clean clip.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from conftest import SHARED
from conversations import RATE, Turn, _room, far_field, trimmed

WILD = SHARED / "data" / "wild-dev"
MINI = SHARED / "data" / "mini-voxceleb1"
# speakers with 28 s of speech or more; two folds, so what is tuned on one is scored on the other
WILD_SPEAKERS = ["wd001", "wd006", "wd007", "wd008", "wd009", "wd011", "wd013", "wd016", "wd017"]
MINI_SPEAKERS = [f"id9000{i}" for i in range(1, 10)] + ["id90010", "id90101", "id90102", "id90103", "id90104"]
FOLDS = {
    "A": WILD_SPEAKERS[0::2] + MINI_SPEAKERS[0::2],
    "B": WILD_SPEAKERS[1::2] + MINI_SPEAKERS[1::2],
}


@dataclass
class Meeting:
    name: str
    audio: np.ndarray  # 16 kHz, the meeting excerpt
    reference: list[Turn]
    enrollment: np.ndarray  # 16 kHz, the enrollment excerpt
    enrollment_turns: dict[str, list[tuple[float, float]]]  # person -> their turns in it, seconds
    people: list[str]  # enrolled
    strangers: list[str] = field(default_factory=list)

    def spoken(self, person: str) -> float:
        return sum(b - a for a, b in self.enrollment_turns[person])


def clips(speaker: str) -> list[Path]:
    root = WILD if speaker.startswith("wd") else MINI
    return sorted((root / "wav" / speaker).glob("*/*.*"))


def pieces(speaker: str, rng: random.Random) -> list[np.ndarray]:
    """A speaker's speech as turns: each run of speech in their clips (pauses under 0.5 s bridged),
    runs over 5 s cut at their quietest 20 ms near a random 1.5-5 s length."""
    out = []
    paths = clips(speaker)
    rng.shuffle(paths)
    for path in paths:
        speech, runs = trimmed(path)
        for a, b in runs:
            run = speech[int(a * RATE) : int(b * RATE)]
            while len(run) > 5 * RATE:
                cut = int(rng.uniform(1.5, 4.5) * RATE)
                lo, hi = cut - RATE // 4, cut + RATE // 4
                energy = np.convolve(run[lo:hi] ** 2, np.ones(320), mode="same")
                cut = lo + int(np.argmin(energy))
                out.append(run[:cut])
                run = run[cut:]
            if len(run) >= 0.4 * RATE:
                out.append(run)
    return out


def _excerpt(order: list[tuple[str, np.ndarray, float, float | None]], rooms: dict, seed: int):
    """Lay ``(person, piece, gap, inside)`` out in time, each person through their own room; the mix
    at a meeting microphone and the reference turns. ``inside`` (a back-channel): the piece starts
    that fraction of the way into the turn before, and the floor stays with that turn."""
    from scipy.signal import fftconvolve

    length = int((sum(len(p) for _, p, _, _ in order) / RATE + 2 * len(order) + 1) * RATE)
    tracks = {person: np.zeros(length) for person in rooms}
    reference: list[Turn] = []
    cursor = 0.5
    for person, piece, gap, inside in order:
        if inside is not None and reference:
            before = reference[-1]
            start = before.start + inside * (before.end - before.start)
        else:
            start = max(cursor + gap, 0.2)
        a = int(start * RATE)
        tracks[person][a : a + len(piece)] += piece
        turn = Turn(person, a / RATE, (a + len(piece)) / RATE)
        if inside is None:
            cursor = max(cursor, turn.end)
            reference.append(turn)
        else:
            reference.insert(len(reference) - 1, turn)
    end = int((max(t.end for t in reference) + 0.5) * RATE)
    mix = np.zeros(end)
    for person, (room, level) in rooms.items():  # each voice at its own level, speech RMS ``level`` dB
        dry = tracks[person][:end]
        if np.any(dry):
            wet = fftconvolve(dry, room)[:end]
            mix += wet * 10 ** (level / 20) / np.sqrt(np.mean(wet[np.abs(dry) > 0.01] ** 2))
    return far_field(mix, RATE, direct=None, seed=seed), sorted(reference, key=lambda t: t.start)


def meeting(
    people: list[str], *, strangers: tuple[str, ...] = (), seconds: float = 75.0, enroll: float = 6.0, seed: int = 0
) -> Meeting:
    """One meeting of ``people`` (enrolled from about ``enroll`` s each) and ``strangers``."""
    rng = random.Random(seed)
    everyone = list(people) + list(strangers)
    pool = {p: pieces(p, rng) for p in everyone}
    nprng = np.random.default_rng(seed)
    rooms = {}
    for p in everyone:  # nearer or further: direct path 2 (far) to 10 (near), level within 8 dB
        room = _room(rng.uniform(2.0, 10.0), rng.uniform(0.3, 0.7), RATE, nprng)
        rooms[p] = (room / np.sqrt(np.sum(room**2)), rng.uniform(-28.0, -20.0))
    # the enrollment excerpt: each person's first turns until ``enroll`` s, round the table
    enrol_order, said = [], dict.fromkeys(people, 0.0)
    while any(said[p] < enroll and pool[p] for p in people):
        for p in people:
            if said[p] < enroll and pool[p]:
                piece = pool[p].pop(0)
                enrol_order.append((p, piece, rng.uniform(0.2, 0.8), None))
                said[p] += len(piece) / RATE
    enrollment, enrol_ref = _excerpt(enrol_order, {p: rooms[p] for p in people}, seed + 1000)
    turns: dict[str, list[tuple[float, float]]] = {p: [] for p in people}
    for t in enrol_ref:
        turns[t.speaker].append((t.start, t.end))
    # the meeting: some talk more than others, pauses, back to back, overlaps, back-channels
    weights = {p: rng.uniform(0.5, 2.0) for p in everyone}
    order: list[tuple[str, np.ndarray, float, float | None]] = []
    total, last = 0.0, None
    while total < seconds:
        choices = [p for p in everyone if p != last and pool[p]]
        if not choices:
            break
        p = rng.choices(choices, [weights[c] for c in choices])[0]
        piece = pool[p].pop(0)
        r = rng.random()
        gap = rng.uniform(0.2, 1.0) if r < 0.55 else 0.0 if r < 0.75 else -rng.uniform(0.3, 1.0)
        order.append((p, piece, max(gap, -len(piece) / RATE / 2), None))
        total += len(piece) / RATE + max(gap, 0)
        last = p
        others = [q for q in everyone if q != p and pool[q]]
        if len(piece) > 3 * RATE and others and rng.random() < 0.25:  # "mm-hm", "right" inside the turn
            q = rng.choice(others)
            order.append((q, pool[q].pop(0)[: int(rng.uniform(0.4, 0.9) * RATE)], 0.0, rng.uniform(0.3, 0.7)))
    audio, reference = _excerpt(order, rooms, seed)
    return Meeting(
        f"meeting-{seed}", audio, reference, enrollment, turns, list(people), list(strangers)
    )  # fmt: skip
