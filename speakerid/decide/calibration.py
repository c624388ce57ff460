"""Thresholds that calibrate themselves on the enrolled population.

No fixed cosine serves every kind of audio: on read speech the best open-set threshold was ≈ 0.52,
on in-the-wild interviews ≈ 0.23. What a deployment does know is its own population. Every
enrolled clip scored against every *other* speaker's profile is an impostor comparison from the
very audio the store holds. For an open-set answer among N speakers, a stranger is named when the
best of N comparisons reaches the threshold, so with a target false-accept rate F the threshold is
the impostor score exceeded with per-comparison probability ``p = 1 - (1 - F)^(1/(N-1))`` (each
enrolled clip meets N-1 other profiles). For verification (one comparison) ``p = F``.

The quantile is read from the impostor scores themselves when at least :data:`MIN_EXCEEDING` of
them lie above it; deeper in the tail it is extrapolated with an exponential tail fitted to the
highest :data:`TAIL_FIT` scores (which errs high, towards refusing).

Small populations: how alike two strangers can sound is a property of speaker *pairs*, and ten
speakers make only 45 pairs. Measured on mini-voxceleb1 (benchmarks/calibration.py), 10 enrolled
speakers gave thresholds from 0.29 to 0.52 depending on who happened to be enrolled; the old rule,
a floor at 0.45 taken from read speech, then refused one genuine in-the-wild probe in three. So
below :data:`POPULATION_FROM` speakers the threshold is not measured on the population at all: it
is the score calibration's (:mod:`speakerid.decide.score_calibration`), fitted on real read and
in-the-wild speech, for that many speakers (0.390 for 3, 0.425 for 8), which no enrollment but
the count can move. (At 20 speakers drawn from both shared sets the population's tail still named
23-31 % of strangers, where the score calibration named 0.3-0.9 %: benchmarks/small_groups.py.)
From :data:`POPULATION_FROM` speakers the population's own impostor scores decide, held within
:data:`BELOW_MODEL` under and :data:`ABOVE_MODEL` over the score calibration's threshold for that
many speakers: that bounds what any set of enrollments (a decoy made from someone's clips, say)
can do to everyone else's threshold.

Two profiles that sound like one voice (:data:`SAME_VOICE`) are one person under two names, which
enrollment refuses; their comparisons are left out of the impostor scores.

Measuring costs ~3 s at 10^5 speakers (AMD EPYC Zen 4, benchmarks/README.md), so a large
population is measured again only once its number of clips moved by more than 1 %
(:meth:`Calibration.describes`): below 100 clips, at every change. One percent more speakers
moves the per-comparison target by 1 %, and so the threshold by about ``beta * ln(1.01)``: 1 % of
``beta``, the impostor tail's scale. Even so, a service would make one request wait for every
1 % (1.4 s at 10^4 clips, 3.7 s at 3 x 10^4 on that CPU): from :data:`BACKGROUND_FROM` clips it
may answer with the standing measurement while a thread takes the next
(:meth:`Calibration.stands_in_for`: up to :data:`STANDS_IN_FOR` = 5 % of the clips, a threshold
change of ~5 % of ``beta``); past that, the request measures. The thread runs at the lowest
priority, so under a load that keeps every core busy it waits, and the 5 % bound decides.

Speakers with two or more clips give leave-one-out target scores, from which the expected miss
rate is estimated (optimistic: a clip against its own session's profile scores higher than a new
recording does).

The default target, :data:`DEFAULT_FAR` = 5 %, comes from the team's measurement on two sets of
speech not in this repository (200 read-speech speakers enrolled from one ~6 s clip, 51 never
enrolled; in-the-wild interviews across sessions): this rule at 5 % gave accept-correct /
unknown-rejected 0.95 / 0.96 and 0.95 / 0.98, at 1 % 0.93 / 0.98 on both; the fixed 0.45 named 8.8 %
of the read-speech strangers and refused 35 % of the interviewees. Doors use a stricter
per-resource target (speakerid.apps.access).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

from speakerid.decide import score_calibration
from speakerid.decide.scoring import DEFAULT_THRESHOLD, centroids, sums_by_row

DEFAULT_FAR = 0.05  # open-set: the share of never-enrolled voices named as someone (see above)
MIN_SPEAKERS = 5
MIN_COMPARISONS = 200
POPULATION_FROM = 50  # speakers: from here the population's own impostor scores set the threshold
BELOW_MODEL = 0.25  # ... within this far under the score calibration's threshold for that many speakers
ABOVE_MODEL = 0.1  # ... and this far over it: what enrollments can do to everyone's threshold is bounded
MIN_EXCEEDING = 5  # impostor scores above a quantile before it is read off directly
TAIL_FIT = 50  # highest impostor scores the exponential tail is fitted to
KEEP_TOP = 2_000  # highest impostor scores kept with a calibration, to convert other FARs later
MAX_COMPARISONS = 50_000_000  # above this, clips are sampled (seeded) to bound the work
DISTINCT_UP_TO = 50_000  # profiles; above this every speaker is counted as a voice of its own
BACKGROUND_FROM = 5_000  # clips: from here a service measures again in a thread (~0.5 s and more)
STANDS_IN_FOR = 0.05  # share of the clips a standing measurement may be behind while the next is taken
SAME_VOICE = 0.7  # two profiles this alike are one person enrolled twice (one voice split in two on
#                   mini-voxceleb1: 0.83; different people's profiles: at most 0.43): left out, or a few
#                   duplicates would decide the threshold for everyone


@dataclass(frozen=True)
class Calibration:
    """A threshold and what it rests on. ``source``: ``"calibrated"`` (from the store's population,
    20 speakers or more), ``"model"`` (the score calibration for this many speakers: a smaller
    group), ``"prior"`` (nobody enrolled) or ``"user"`` (set by hand)."""

    threshold: float
    source: str
    far: float | None = None  # the open-set false-accept target
    speakers: int = 0
    clips: int = 0
    comparisons: int = 0  # impostor comparisons measured
    target_scores: int = 0  # leave-one-out target comparisons
    expected_far: float | None = None  # at this threshold, from the impostor scores
    expected_miss: float | None = None  # at this threshold, from the leave-one-out targets
    method: str = ""
    generation: int = -1
    measured: bool = False  # the population's impostor scores can convert false-accept targets (verify, doors)
    top: list[float] = field(default_factory=list, repr=False)  # highest impostor scores, best first
    quantiles: list[float] = field(default_factory=list, repr=False)  # 0th..100th percentile

    def to_dict(self, *, detail: bool = False) -> dict:
        out = asdict(self)
        if not detail:
            out.pop("top"), out.pop("quantiles")
        return out

    def describes(self, generation: int, clips: int) -> bool:
        """Whether this still stands for a population at ``generation`` with ``clips`` enrolled
        clips: measured at that generation, or on a number of clips within 1 % of it.

        >>> old = Calibration(threshold=0.4, source="calibrated", clips=1000, generation=7)
        >>> old.describes(8, 1010), old.describes(8, 1011), Calibration(0.4, "prior", clips=50).describes(8, 51)
        (True, False, False)
        """
        return generation == self.generation or abs(clips - self.clips) <= self.clips // 100

    def stands_in_for(self, clips: int) -> bool:
        """Whether this may answer for a population of ``clips`` while it is measured again: measured
        on the population, at least :data:`BACKGROUND_FROM` clips, within :data:`STANDS_IN_FOR` of them.

        >>> old = Calibration(threshold=0.4, source="calibrated", clips=10_000, generation=7)
        >>> prior = Calibration(0.4, "prior", clips=10_000)
        >>> old.stands_in_for(10_500), old.stands_in_for(10_501), prior.stands_in_for(10_001)
        (True, False, False)
        """
        return (
            self.source == "calibrated"
            and self.clips >= BACKGROUND_FROM
            and abs(clips - self.clips) <= self.clips * STANDS_IN_FOR
        )

    @classmethod
    def from_dict(cls, data: dict) -> Calibration:
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})

    def describe(self) -> str:
        if self.source == "user":
            return f"threshold {self.threshold:g} (set by hand)"
        if self.source == "prior":
            return f"threshold {self.threshold:g} (the prior: nobody is enrolled)"
        if self.source == "model":
            return (
                f"threshold {self.threshold:.3f} for {self.speakers} speakers, from the score calibration "
                f"(where the best of {self.speakers} is as likely as a stranger; the population's own impostor "
                f"scores take over from {POPULATION_FROM} speakers)"
            )
        miss = f", expected miss rate {self.expected_miss:.1%}" if self.expected_miss is not None else ""
        return (
            f"threshold {self.threshold:.3f} calibrated for {self.far:.1%} false accepts among {self.speakers} "
            f"speakers ({self.comparisons:,} impostor comparisons, {self.method}{miss})"
        )

    def threshold_at(self, far: float, comparisons: int = 1) -> float:
        """The score at which a false-accept rate ``far`` is expected over ``comparisons`` scores
        (1 for verifying a claim, N for identifying among N speakers)."""
        p = per_comparison(far, comparisons + 1)
        return tail_quantile(np.asarray(self.top), self.comparisons, p, self.quantiles)[0]


def per_comparison(far: float, speakers: int) -> float:
    """The per-comparison false-accept probability that gives ``far`` for the best of ``speakers - 1``.

    >>> round(per_comparison(0.05, 200), 6)
    0.000258
    """
    return 1.0 - (1.0 - far) ** (1.0 / max(speakers - 1, 1))


@dataclass
class Population:
    """What a population's scores say: the highest impostor scores (best first), how many impostor
    comparisons were made, 101 quantiles of all of them, the leave-one-out target scores, and how
    many distinct voices the speakers are."""

    top: np.ndarray
    compared: int
    quantiles: np.ndarray
    targets: np.ndarray
    speakers: int


def population(vectors: np.ndarray, owners: list[str], *, seed: int = 0) -> Population:
    """Score each clip against every other speaker's profile (keeping the tail: the highest
    :data:`KEEP_TOP` scores, and quantiles of a sample), and against its own speaker's other clips."""
    names, profiles = centroids(vectors, owners)
    index = {n: i for i, n in enumerate(names)}
    own = np.array([index[o] for o in owners])
    n = len(names)
    repeats = _repeats(profiles) if n <= DISTINCT_UP_TO else np.zeros(n, dtype=bool)
    rows = np.flatnonzero(~repeats[own])  # a voice enrolled again under another name is scanned once
    if len(rows) * max(n - 1, 1) > MAX_COMPARISONS:
        rows = np.sort(np.random.default_rng(seed).choice(rows, MAX_COMPARISONS // max(n - 1, 1), replace=False))
    top = np.empty(0, dtype=np.float32)
    sample = []
    twins = nearest_left = 0
    for start in range(0, len(rows), 1024):
        chunk = rows[start : start + 1024]
        scores = vectors[chunk] @ profiles.T
        scores[np.arange(len(chunk)), own[chunk]] = -np.inf  # a clip against its own profile is no impostor
        scores[:, repeats] = -np.inf  # nor twice against one voice enrolled under two names
        alike = profiles[own[chunk]] @ profiles.T >= SAME_VOICE  # one voice under two names: not an impostor
        alike[np.arange(len(chunk)), own[chunk]] = False
        alike[:, repeats] = False
        twins += int(alike.sum())
        scores[alike] = -np.inf
        if n > 3:  # each clip's nearest other voice is left out: a near-copy or a twin cannot set the tail
            nearest = np.argmax(scores, axis=1)
            kept = np.isfinite(scores[np.arange(len(chunk)), nearest])
            scores[np.arange(len(chunk))[kept], nearest[kept]] = -np.inf
            nearest_left += int(kept.sum())
        flat = scores[np.isfinite(scores)]
        sample.append(flat[:: max(1, len(flat) // 2000)])
        keep = min(KEEP_TOP, len(flat))
        top = np.concatenate([top, np.partition(flat, len(flat) - keep)[-keep:]]) if keep else top
        if len(top) > KEEP_TOP:
            top = np.partition(top, len(top) - KEEP_TOP)[-KEEP_TOP:]
    voices = n - int(repeats.sum())
    compared = len(rows) * max(voices - 1, 0) - twins - nearest_left
    # leave-one-out targets: each clip against its speaker's other clips
    sums = sums_by_row(vectors, own, n)
    counts = np.bincount(own, minlength=n)
    several = counts[own] >= 2
    rest = sums[own[several]] - vectors[several]
    rest /= np.maximum(np.linalg.norm(rest, axis=1, keepdims=True), 1e-12)
    targets = np.einsum("ij,ij->i", vectors[several], rest)
    quantiles = np.quantile(np.concatenate(sample), np.linspace(0, 1, 101)) if sample and compared else np.empty(0)
    return Population(np.sort(top)[::-1], compared, quantiles, targets, voices)


def _repeats(profiles: np.ndarray) -> np.ndarray:
    """Which profiles repeat an earlier one's voice (:data:`SAME_VOICE`): a stranger meets one voice
    once, however many names it was enrolled under."""
    repeats = np.zeros(len(profiles), dtype=bool)
    for start in range(0, len(profiles), 2048):
        alike = profiles[start : start + 2048] @ profiles.T >= SAME_VOICE
        for i, row in enumerate(alike):
            repeats[start + i] = bool(row[: start + i].any())
    return repeats


def tail_quantile(top: np.ndarray, compared: int, p: float, quantiles=()) -> tuple[float, str]:
    """The score exceeded by a fraction ``p`` of ``compared`` scores, of which ``top`` are the highest."""
    expected = compared * p
    if expected >= MIN_EXCEEDING and expected <= len(top):
        k = expected  # read it off: the score with ``expected`` scores above it, interpolated
        i = int(math.floor(k))
        lower = top[min(i, len(top) - 1)]
        upper = top[max(i - 1, 0)]
        return float(upper + (lower - upper) * (k - i) if i > 0 else top[0]), "empirical quantile"
    if expected > len(top) and len(quantiles):
        return float(np.interp(1 - p, np.linspace(0, 1, len(quantiles)), quantiles)), "empirical quantile"
    fit = min(TAIL_FIT, len(top))
    if fit < 2:
        return float(top[0]) if len(top) else 1.0, "too few scores"
    u = top[fit - 1]
    beta = max(float(np.mean(top[: fit - 1] - u)), 1e-4)
    return float(u + beta * math.log(fit / max(expected, 1e-12))), "exponential tail"


def calibrate(vectors: np.ndarray, owners: list[str], far: float = DEFAULT_FAR, *, generation: int = -1) -> Calibration:
    """The open-set threshold for this population at false-accept target ``far``."""
    vectors = np.asarray(vectors, dtype=np.float32)
    if len(vectors) == 0:
        return Calibration(threshold=DEFAULT_THRESHOLD, source="prior", far=far, generation=generation, method="prior")
    pop = population(vectors, list(owners))
    top, compared, targets, speakers, quantiles = pop.top, pop.compared, pop.targets, pop.speakers, pop.quantiles
    base = dict(
        far=far,
        speakers=speakers,
        clips=len(vectors),
        comparisons=compared,
        target_scores=len(targets),
        generation=generation,
        top=[round(float(x), 6) for x in top],
        quantiles=[round(float(x), 6) for x in quantiles],
    )
    model = score_calibration.threshold(speakers)
    if speakers < POPULATION_FROM or speakers < MIN_SPEAKERS or compared < MIN_COMPARISONS:
        miss = float(np.mean(targets < model)) if len(targets) else None
        return Calibration(
            threshold=round(model, 6),
            source="model",
            measured=speakers >= MIN_SPEAKERS and compared >= MIN_COMPARISONS,
            method="score calibration",
            expected_miss=None if miss is None else round(miss, 6),
            **base,
        )
    measured, method = tail_quantile(top, compared, per_comparison(far, speakers), quantiles)
    low, high = model - BELOW_MODEL, model + ABOVE_MODEL
    threshold = float(np.clip(measured, low, high))
    if threshold != measured:
        method += f", held within {low:.3f}..{high:.3f} around the score calibration's {model:.3f}"
    exceeding = int(np.sum(top >= threshold))
    expected_far = 1 - (1 - exceeding / compared) ** (speakers - 1) if exceeding < len(top) else None
    miss = float(np.mean(targets < threshold)) if len(targets) else None
    return Calibration(
        threshold=round(threshold, 6),
        source="calibrated",
        measured=True,
        method=method,
        expected_far=None if expected_far is None else round(expected_far, 6),
        expected_miss=None if miss is None else round(miss, 6),
        **base,
    )
