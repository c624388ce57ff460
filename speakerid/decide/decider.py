"""The one place a voiceprint becomes a decision.

Identify, verify, access checks, live streams, timelines and ``/v1/classify`` all ask a
:class:`Decider`: who it is (or unknown), whether a claim holds, how the evidence splits between
the enrolled people and "unknown", and at what threshold. The threshold is set by hand
(``speakerid threshold T``), else measured on the store's own population at a false-accept target
(:mod:`speakerid.decide.calibration`); the measurement is kept in the store's settings with the
generation it describes, so every process shares it, and a long-running service measures again in
a background thread (:meth:`Decider.measured`).

The open-set rule (:func:`speakerid.decide.scoring.decide`): the best profile, unless it scores
under the threshold or within the margin of the runner-up.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
from dataclasses import dataclass

import numpy as np

from speakerid.base import validate
from speakerid.base.errors import UsageError
from speakerid.decide import score_calibration
from speakerid.decide.calibration import DEFAULT_FAR, Calibration, calibrate
from speakerid.decide.scoring import DEFAULT_MARGIN, DEFAULT_THRESHOLD, Candidate, Profiles, decide
from store import Resource, Settings, SpeakerNotFoundError, Voiceprints

# A door's default: at most 0.1 % false accepts per comparison, converted to a cosine on the
# store's own population. Where the population is too small to measure, the prior 0.55: on
# mini-voxceleb1 the highest non-target score is 0.383, the lowest target 0.599.
DEFAULT_ACCESS_FAR = 0.001
DEFAULT_ACCESS_THRESHOLD = 0.55
TEMPERATURE = 0.05  # /v1/classify: scores are a softmax over cosines divided by this


@dataclass(frozen=True)
class Identification:
    speaker: str | None  # None: unknown
    score: float
    threshold: float
    candidates: list[Candidate]
    speech_seconds: float
    model: str
    reason: str
    confidence: float = 0.0  # the probability that the answer (the person named, or "unknown") is right

    def to_dict(self) -> dict:
        return {
            "speaker": self.speaker,
            "score": round(self.score, 6),
            "confidence": round(self.confidence, 4),
            "threshold": round(self.threshold, 6),
            "candidates": [c.to_dict() for c in self.candidates],
            "speech_seconds": round(self.speech_seconds, 2),
            "model": self.model,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class Verification:
    speaker: str
    accepted: bool
    score: float
    threshold: float
    speech_seconds: float = 0.0
    model: str = ""
    note: str = ""  # why the threshold is not the one asked for (a false-accept target too few speakers can set)
    confidence: float = 0.0  # the probability that the answer (accepted or rejected) is right

    def to_dict(self) -> dict:
        out = {
            "speaker": self.speaker,
            "accepted": self.accepted,
            "score": round(self.score, 6),
            "confidence": round(self.confidence, 4),
            "threshold": round(self.threshold, 6),
            "speech_seconds": round(self.speech_seconds, 2),
            "model": self.model,
        }
        if self.note:
            out["note"] = self.note
        return out


class Decider:
    """Decisions over one store's voiceprints, with its threshold.

    ``margin``: the best must beat the runner-up by this much. ``background``: a long-running
    process (the service) may answer with a standing calibration while a thread measures the next.
    """

    def __init__(
        self, voiceprints: Voiceprints, settings: Settings, *, margin: float = DEFAULT_MARGIN, background: bool = False
    ):
        self.voiceprints, self.settings = voiceprints, settings
        self.margin, self.background = margin, background
        self.profiles = Profiles(voiceprints)
        self._calibration: Calibration | None = None
        self._calibration_holds_at = -1  # the generation it was last found to describe
        self._measuring = threading.Lock()  # held while a measurement runs in the background

    def close(self) -> None:
        """Wait for a background measurement (it is stored when it finishes)."""
        with self._measuring:
            pass

    # -- the threshold -----------------------------------------------------------------------------
    @property
    def threshold(self) -> float:
        """The open-set decision threshold: set by hand, else calibrated on the enrolled population."""
        return self.calibration().threshold

    def set_threshold(self, value: float | None) -> None:
        """Fix the threshold by hand (``None``: back to self-calibration)."""
        self.settings.set("threshold", None if value is None else validate.threshold(value))

    @property
    def far(self) -> float:
        """The open-set false-accept target the threshold is calibrated for."""
        return float(self.settings.get("far", DEFAULT_FAR))

    def set_far(self, far: float | None) -> None:
        """Calibrate for another false-accept target (``None``: back to the default)."""
        self.settings.set("far", None if far is None else validate.far(far))

    def calibration(self) -> Calibration:
        """The threshold and what it rests on: set by hand, else measured on the population."""
        user = self.settings.get("threshold")
        if user is not None:
            return Calibration(threshold=float(user), source="user", far=self.far)
        return self.measured()

    def measured(self) -> Calibration:
        """The population's calibration, measured again when the enrolled speakers changed since it
        was last measured (by more than 1 % of the clips in a large store:
        :meth:`Calibration.describes`), by any process: it is kept in the store with the
        generation it describes. With ``background`` (the service), a large store's standing
        measurement answers while a thread takes the next (:meth:`Calibration.stands_in_for`), so
        no request waits seconds for it."""
        far = self.far
        cached = self._calibration
        if cached is not None and cached.far == far and self._calibration_holds_at == self.voiceprints.generation:
            return cached
        now = self.voiceprints.counts()  # counted: the vectors are read only to measure again
        if cached is None or cached.far != far or not cached.describes(now.generation, now.clips):
            stored = self.settings.get("calibration")
            cached = Calibration.from_dict(stored) if stored else None
            if cached is None or cached.far != far or not cached.describes(now.generation, now.clips):
                if self.background and cached is not None and cached.far == far and cached.stands_in_for(now.clips):
                    self._measure_in_background(far)
                    return cached  # not kept as holding: the next call looks for the new one
                cached = self._measure(far)
            self._calibration = cached
        self._calibration_holds_at = now.generation
        return cached

    def threshold_for(self, far: float, *, comparisons: int = 1, prior: float = DEFAULT_THRESHOLD) -> float:
        """The cosine that gives false-accept rate ``far`` over ``comparisons`` (1 to verify a claim,
        the number of speakers to identify), measured on this population; ``prior`` where it is too
        small to measure."""
        far = validate.far(far)
        measured = self.measured()
        if not measured.measured:
            return prior
        return round(measured.threshold_at(far, comparisons), 6)

    def door_threshold(self, resource: Resource, *, claim: bool = True) -> float:
        """The cosine a voice must reach at ``resource``: its own threshold, else its false-accept
        target (per comparison for a claim; over every enrolled speaker when identifying) converted
        on the store's population (20 speakers or more; a smaller group has the prior 0.55, which
        no enrollment moves); never below the store's identification threshold."""
        if resource.threshold is not None:
            return resource.threshold
        comparisons = 1 if claim else max(len(self.profiles), 1)
        door = self.threshold_for(
            resource.far or DEFAULT_ACCESS_FAR, comparisons=comparisons, prior=DEFAULT_ACCESS_THRESHOLD
        )
        return max(door, self.threshold)  # a door is never easier than identifying

    def _measure(self, far: float, *, aside: bool = False) -> Calibration:
        generation, vectors, owners = self.profiles.snapshot()
        limit = contextlib.nullcontext()
        if aside:  # in the background: the arithmetic at the lowest priority, on one core
            from threadpoolctl import threadpool_limits

            if sys.platform.startswith("linux"):  # a thread's own niceness there; after the reads, which hold locks
                os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
            limit = threadpool_limits(1)
        with limit:
            measured = calibrate(vectors, owners, far, generation=generation)
        self.settings.set("calibration", measured.to_dict(detail=True))
        return measured

    def _measure_in_background(self, far: float) -> None:
        if not self._measuring.acquire(blocking=False):
            return  # one is running: its result will do

        def work() -> None:
            try:
                self._calibration = self._measure(far, aside=True)
            except Exception as exc:  # the standing measurement stays; the next call tries again
                logging.getLogger(__name__).warning("measuring the threshold again failed: %s", exc)
            finally:
                self._measuring.release()

        threading.Thread(target=work, name="speakerid-calibration", daemon=True).start()

    # -- decisions ---------------------------------------------------------------------------------
    def identify(
        self,
        vector: np.ndarray,
        *,
        threshold: float | None = None,
        top_k: int = 5,
        speech_seconds: float = 0.0,
        model: str = "",
        exclude: str | None = None,
    ) -> Identification:
        """The open-set answer for one voiceprint: the best candidate, or unknown."""
        threshold = self.threshold if threshold is None else threshold
        candidates = self.profiles.rank(vector, top_k=max(top_k, 2), exclude=exclude)
        decision = decide(candidates, threshold, self.margin)
        named = score_calibration.confidence([c.score for c in candidates], len(self.profiles))
        return Identification(
            speaker=decision.speaker,
            score=decision.score,
            threshold=threshold,
            candidates=candidates[:top_k],
            speech_seconds=speech_seconds,
            model=model,
            reason=decision.reason,
            confidence=named if decision.speaker is not None else self.stranger(candidates),
        )

    def stranger(self, candidates: list[Candidate]) -> float:
        """The probability that a voice scoring ``candidates`` is nobody enrolled."""
        return score_calibration.posteriors([c.score for c in candidates], len(self.profiles))[1]

    def claimed(self, name: str) -> str:
        """The name a claim refers to, as enrolled; :class:`SpeakerNotFoundError` if no one is."""
        return self.voiceprints.display_name(name)

    def profile(self, name: str) -> np.ndarray:
        """``name``'s profile (from their clips alone); :class:`SpeakerNotFoundError` if none."""
        profile = self.profiles.vector(name)
        if profile is None:
            raise SpeakerNotFoundError(name)
        return profile

    def verify(
        self,
        vector: np.ndarray,
        claim: str,
        *,
        threshold: float | None = None,
        far: float | None = None,
        speech_seconds: float = 0.0,
        model: str = "",
    ) -> Verification:
        """Is this voiceprint ``claim``'s? Accepted when the score against their profile reaches
        ``threshold`` (a cosine), else the one for a per-comparison false-accept rate ``far``, else
        the store's threshold."""
        threshold, note = self.verification_threshold(threshold=threshold, far=far)
        speaker = self.claimed(claim)
        score = float(np.dot(vector, self.profile(speaker)))
        accepted, claimed = score >= threshold, score_calibration.verified(score)
        return Verification(
            speaker=speaker,
            accepted=accepted,
            score=score,
            threshold=threshold,
            speech_seconds=speech_seconds,
            model=model,
            note=note,
            confidence=claimed if accepted else 1 - claimed,
        )

    def verification_threshold(self, *, threshold: float | None = None, far: float | None = None) -> tuple[float, str]:
        """``(threshold, note)`` for a claim: the cosine given, else the one for ``far``, else the
        store's; the note says when ``far`` could not be applied (too few speakers to measure)."""
        if threshold is not None and far is not None:
            raise UsageError("give a threshold or a false-accept rate, not both")
        if threshold is not None:
            return validate.threshold(threshold), ""
        if far is None:
            return self.threshold, ""
        far = validate.far(far)
        measured = self.measured()
        if measured.measured:
            return round(measured.threshold_at(far, 1), 6), ""
        standing = self.threshold
        return standing, (
            f"the false-accept target {far:g} could not be applied: {measured.speakers} speakers and "
            f"{measured.comparisons} impostor comparisons are too few to measure it; the store's threshold "
            f"{standing:g} is used"
        )

    def classify(self, vector: np.ndarray, top_k: int | None = None) -> list[dict]:
        """How the evidence splits between every enrolled speaker and ``"unknown"``: a softmax over
        the cosines divided by :data:`TEMPERATURE`, ``unknown`` one more class scored at the
        threshold, so it comes first exactly when :meth:`identify` answers unknown (within the
        margin of a runner-up too). ``[{"label", "score"}, ...]``, best first, summing to 1."""
        names, profiles = self.profiles.matrix()
        threshold = self.threshold
        scores = profiles @ vector if names else np.zeros(0)
        decision = self.identify(vector, threshold=threshold, top_k=2)
        unknown = threshold
        if decision.speaker is None and len(scores) and scores.max() >= threshold:  # within the margin: unknown first
            unknown = float(scores.max()) + TEMPERATURE * np.log(2)
        logits = np.concatenate([scores, [unknown]]) / TEMPERATURE
        probabilities = np.exp(logits - logits.max())
        probabilities /= probabilities.sum()
        ranked = sorted(zip(list(names) + ["unknown"], probabilities), key=lambda x: -x[1])
        return [{"label": label, "score": round(float(p), 6)} for label, p in ranked[:top_k]]
