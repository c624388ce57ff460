"""Whose voice each window of a recording is: an enrolled name, ``unknown-N``, in two passes.

Measured on meeting-like audio (benchmarks/meetings.py: far-field, 3-4 people, short turns,
overlap, each person enrolled from about 6 s of another excerpt): a 1.5 s window scores 0.3-0.6
against its speaker's profile and under 0.2 against the others, but a window across a change of
speaker, or over two people at once, sounds like nobody enrolled. Left as strangers, those mixed
windows made up most of the timeline's error (an enrolled person labelled ``unknown-N``). So:

1. **Enrolled voices first**: a Viterbi pass over the windows against the profiles (a window is
   evidence for a speaker from :data:`WINDOW_THRESHOLD`; a switch costs :data:`SWITCH_COST`).
2. **Strangers, strictly**: what no profile took is clustered (average linkage, cosine). A cluster
   is a new voice only if it is none of these: an enrolled speaker after all (its centre reaches
   the calibrated ``threshold``); two enrolled voices at once (its centre lies that close to the
   plane of two profiles); a scatter of change-over windows (no run of :data:`MIN_RUN` consecutive
   windows); or a voice already named *in this recording* (its centre within :data:`SAME_VOICE`
   of what that speaker sounds like here, room and microphone included).
3. **Again, with the recording's own voices**: a second Viterbi pass whose states are each
   enrolled profile moved towards how that person sounds in this recording, and each stranger's
   centre, at the lower :data:`RESEGMENT_THRESHOLD`; windows nobody takes join the nearest label.

The cost: a stranger who says less than :data:`MIN_RUN` windows' worth at once (about 3.5 s) is
not told apart from the people around them.
"""

from __future__ import annotations

import numpy as np

from speakerid.decide.scoring import centroid

WINDOW_THRESHOLD = 0.30  # a 1.5 s window scoring this against a profile is evidence for that speaker
RESEGMENT_THRESHOLD = 0.20  # the same, against voices as they sound in this recording
SWITCH_COST = 1.2  # in units of (score - threshold) / SCALE; about three windows of evidence
SCALE = 0.1
CLUSTER_DISTANCE = 0.7  # cosine distance under which stranger windows are one voice
MIN_RUN = 5  # consecutive windows a new voice needs somewhere (5 x 0.5 s hop + 1 s: 3.5 s of speech)
SAME_VOICE = 0.5  # a stranger this close to a named voice as heard in the same recording is that voice


def label_windows(
    vectors: np.ndarray, hops: np.ndarray, names: list[str], profiles: np.ndarray, threshold: float
) -> list[str]:
    """A label per window: an enrolled name or ``unknown-N`` (numbered by first appearance).

    ``vectors``: the windows' L2-normalised embeddings in time order; ``hops``: each window's
    position on the hop grid (consecutive windows differ by 1); ``profiles``: one row per name.

    >>> rng = np.random.default_rng(0)
    >>> a, b = (v / np.linalg.norm(v) for v in rng.standard_normal((2, 192)))
    >>> noisy = lambda v, n: [(x := v + 0.9 * rng.standard_normal(192) / 14) / np.linalg.norm(x) for _ in range(n)]
    >>> windows = np.stack(noisy(a, 8) + noisy(b, 8))
    >>> labels = label_windows(windows, np.arange(16), ["alice"], a[None], 0.4)
    >>> labels[:8] == ["alice"] * 8, labels[8:] == ["unknown-1"] * 8
    (True, True)
    """
    labels = _first_pass(vectors, names, profiles)
    labels = _strangers(vectors, hops, labels, names, profiles, threshold)
    return _second_pass(vectors, labels, names, profiles)


def viterbi(emission: np.ndarray, cost: float = SWITCH_COST) -> np.ndarray:
    """The best state per row of ``emission`` (rows: windows, columns: states) when changing
    state costs ``cost``."""
    n, states = emission.shape
    best = emission[0].copy()
    back = np.zeros((n, states), dtype=np.int64)
    for t in range(1, n):
        stay, switch = best, best.max() - cost
        back[t] = np.where(stay >= switch, np.arange(states), int(np.argmax(best)))
        best = np.maximum(stay, switch) + emission[t]
    path = np.empty(n, dtype=np.int64)
    path[-1] = int(np.argmax(best))
    for t in range(n - 1, 0, -1):
        path[t - 1] = back[t, path[t]]
    return path


def _first_pass(vectors: np.ndarray, names: list[str], profiles: np.ndarray) -> list[str]:
    """Enrolled names where the profiles say so, ``""`` elsewhere."""
    if not names:
        return [""] * len(vectors)
    scores = vectors @ profiles.T
    nobody = np.zeros((len(vectors), 1))
    path = viterbi(np.concatenate([(scores - WINDOW_THRESHOLD) / SCALE, nobody], axis=1))
    return [names[k] if k < len(names) else "" for k in path]


def _strangers(vectors, hops, labels: list[str], names, profiles, threshold: float) -> list[str]:
    """The unlabelled windows as new voices, or as someone enrolled, or as nobody (``""``)."""
    rest = np.array([i for i, lab in enumerate(labels) if not lab], dtype=np.int64)
    if not len(rest):
        return labels
    clusters = _cluster(vectors[rest])
    heard = {n: centroid(vectors[[i for i, lab in enumerate(labels) if lab == n]]) for n in set(labels) - {""}}
    out, unknown = list(labels), 0
    for c in dict.fromkeys(clusters):  # in order of first appearance
        members = rest[clusters == c]
        centre = centroid(vectors[members])
        scores = profiles @ centre if len(names) else np.zeros(0)
        if len(scores) and scores.max() >= threshold:
            label = names[int(np.argmax(scores))]
        elif _two_voices(centre, profiles) >= threshold or _longest_run(hops[members]) < MIN_RUN:
            label = ""
        elif heard and max(heard[n] @ centre for n in heard) >= SAME_VOICE:
            label = max(heard, key=lambda n: heard[n] @ centre)
        else:
            unknown += 1
            label = f"unknown-{unknown}"
        for i in members:
            out[i] = label
    return out


def _second_pass(vectors: np.ndarray, labels: list[str], names: list[str], profiles: np.ndarray) -> list[str]:
    """Viterbi again over every voice as it sounds here; windows nobody takes join the nearest label."""
    voices = list(names) + sorted({lab for lab in labels if lab.startswith("unknown-")}, key=_number)
    states = []
    for k, voice in enumerate(voices):
        here = [vectors[i] for i, lab in enumerate(labels) if lab == voice]
        states.append(centroid(np.stack(([profiles[k]] if k < len(names) else []) + here)))
    if not states:
        return ["unknown-1"] * len(vectors)
    scores = vectors @ np.stack(states).T
    nobody = np.zeros((len(vectors), 1))
    path = viterbi(np.concatenate([(scores - RESEGMENT_THRESHOLD) / SCALE, nobody], axis=1))
    out = [voices[k] if k < len(voices) else "" for k in path]
    kept = [i for i, lab in enumerate(out) if lab]
    if not kept:
        return ["unknown-1"] * len(vectors)
    out = [lab or out[min(kept, key=lambda j: abs(j - i))] for i, lab in enumerate(out)]
    return renumber(out)


def _cluster(vectors: np.ndarray) -> np.ndarray:
    if len(vectors) == 1:
        return np.zeros(1, dtype=np.int64)
    from scipy.cluster.hierarchy import fcluster, linkage

    return fcluster(linkage(vectors, method="average", metric="cosine"), t=CLUSTER_DISTANCE, criterion="distance")


def _two_voices(centre: np.ndarray, profiles: np.ndarray) -> float:
    """How well two enrolled voices at once explain ``centre``: the cosine between it and its
    projection on the plane of the best pair of profiles (0 with fewer than two)."""
    best = 0.0
    for i in range(len(profiles)):
        for j in range(i + 1, len(profiles)):
            plane = np.stack([profiles[i], profiles[j]]).T
            coef, *_ = np.linalg.lstsq(plane, centre, rcond=None)
            shadow = plane @ coef
            norm = float(np.linalg.norm(shadow) * np.linalg.norm(centre))
            if norm > 0:
                best = max(best, float(shadow @ centre) / norm)
    return best


def _longest_run(hops: np.ndarray) -> int:
    """The most consecutive windows (hop positions one apart) among ``hops`` (sorted)."""
    longest = run = 1
    for a, b in zip(hops[:-1], hops[1:], strict=True):
        run = run + 1 if b - a == 1 else 1
        longest = max(longest, run)
    return longest


def _number(label: str) -> int:
    return int(label.rsplit("-", 1)[1])


def renumber(labels: list[str]) -> list[str]:
    """``unknown-N`` numbered again by first appearance.

    >>> renumber(["unknown-3", "bob", "unknown-1", "unknown-3"])
    ['unknown-1', 'bob', 'unknown-2', 'unknown-1']
    """
    seen: dict[str, str] = {}
    for lab in labels:
        if lab.startswith("unknown-") and lab not in seen:
            seen[lab] = f"unknown-{len(seen) + 1}"
    return [seen.get(lab, lab) for lab in labels]
