"""VoxCeleb1 evaluation: identification (top-1/top-5, macro P/R/F1) and verification (EER, minDCF).

Protocol, not policy: every split-1 clip enrolls its speaker as the list gives it (no enrollment
gates), every split-3 clip is identified, every trial is scored; the scoring is the one
:mod:`speakerid.decide.scoring` uses (cosine to a speaker's centroid; a single clip is its own
centroid), so the thresholds reported here calibrate the product. Clips without detected speech
are embedded anyway, counted, and reported.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from speakerid.apps.voxceleb import Trial, read_iden_split, read_trials, speaker_of, wav_root
from speakerid.base.errors import AudioError, SpeakerIDError
from speakerid.base.prefetch import prefetched
from speakerid.base.progress import progress
from speakerid.decide.calibration import DEFAULT_FAR, calibrate
from speakerid.decide.metrics import eer, min_dcf
from speakerid.decide.normalise import TOP, as_norm, cohort_stats
from speakerid.decide.scoring import DEFAULT_THRESHOLD, Candidate, centroid, centroids, decide
from speakerid.voice.audio import DEFAULT_MAX_SECONDS
from speakerid.voice.cohort import cohort
from speakerid.voice.embedder import Embedder, load_embedder
from speakerid.voice.reader import VoiceReader
from store.embedding_cache import EmbeddingCache

SHOW_MISSING = 5


class MissingClipsError(SpeakerIDError):
    """The lists name clips the folder does not have."""


@dataclass
class EvalConfig:
    root: Path
    split: Path | None = None
    trials: list[Path] = field(default_factory=list)
    cache: Path | None = None
    workers: int = 2
    skip_missing: bool = False
    model: str | None = None
    device: str = "cpu"
    progress: bool = True
    open_set: float | None = None  # enroll this fraction of the speakers; the rest must be answered unknown
    ray: str | None = None  # embed on Ray: a cluster address, or "" to start Ray here
    ray_workers: int = 2
    far: float = DEFAULT_FAR


def default_lists(root: Path) -> tuple[Path | None, list[Path]]:
    """``iden_split.txt`` and ``veri_test.txt`` beside ``wav/`` when the user names none."""
    base = Path(root).expanduser()
    if base.name == "wav" and not (base / "iden_split.txt").exists():
        base = base.parent
    split = base / "iden_split.txt"
    trials = base / "veri_test.txt"
    return (split if split.is_file() else None), ([trials] if trials.is_file() else [])


def evaluate(config: EvalConfig) -> tuple[dict, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """The result object (the JSON contract) and each trial list's ``(scores, labels)`` for plotting."""
    wav = wav_root(config.root)
    split = read_iden_split(config.split) if config.split else []
    trial_lists = {Path(p).name: read_trials(p) for p in config.trials}
    if not split and not trial_lists:
        raise SpeakerIDError(f"{config.root}: nothing to evaluate (no iden_split.txt or trial list given or found)")

    needed = sorted(
        {rel for s, rel in split if s in (1, 3)}
        | {r for ts in trial_lists.values() for t in ts for r in (t.enrol, t.test)}
    )
    missing = [rel for rel in needed if not (wav / rel).is_file()]
    if missing and not config.skip_missing:
        shown = ", ".join(missing[:SHOW_MISSING]) + (", ..." if len(missing) > SHOW_MISSING else "")
        raise MissingClipsError(
            f"{len(missing)} of {len(needed)} clips named by the lists are missing under {wav} "
            f"({shown}); pass --skip-missing to evaluate without them"
        )
    absent = set(missing)
    present = [rel for rel in needed if rel not in absent]

    embedder = load_embedder(config.model, device=config.device)
    vectors, stats = _embed_all(embedder, wav, present, config)
    result: dict = {
        "model": embedder.model_id,
        "root": str(wav),
        "clips": len(present),
        "missing_clips": len(missing),
        "missing_examples": missing[:SHOW_MISSING],
        **stats,
    }

    curves = {}
    if split:
        result["identification"] = identification(split, vectors)
        if config.open_set is not None:
            result["open_set"], curves["open set"] = open_set(split, vectors, config.open_set, config.far)
    if trial_lists:
        result["verification"] = {}
        pool = cohort(embedder.model)
        stats = (
            dict(zip(vectors, zip(*cohort_stats(np.stack(list(vectors.values())), pool)))) if pool is not None else {}
        )
        for name, trials in trial_lists.items():
            scores, labels, skipped = trial_scores(trials, vectors)
            result["verification"][name] = verification(scores, labels, skipped)
            if stats and len(scores):
                usable = [t for t in trials if t.enrol in vectors and t.test in vectors]
                enrol, test = (
                    tuple(np.array([stats[getattr(t, side)][k] for t in usable]) for k in (0, 1))
                    for side in ("enrol", "test")
                )
                normalised = verification(as_norm(scores, enrol, test), labels, skipped)
                result["verification"][name]["normalised"] = {
                    k: normalised[k] for k in ("eer", "min_dcf_p0.01", "min_dcf_p0.05", "threshold_eer")
                } | {"method": f"adaptive s-norm, top {TOP} of the model's {len(pool):,} training speakers"}
            if len(scores) and labels.any() and not labels.all():
                curves[name] = (scores, labels)
    return result, curves


def _embed_all(embedder: Embedder, wav: Path, rels: list[str], config: EvalConfig):
    """Embed every clip once, decoding ahead in threads while the model works on the current one."""
    key = f"{embedder.model_id}@{embedder.precision}"  # fp32 and bf16 embeddings of a clip differ slightly
    cache = EmbeddingCache(config.cache / "embeddings.sqlite", key) if config.cache else None
    vectors: dict[str, np.ndarray] = {}
    audio_seconds = embedded_seconds = 0.0
    no_speech: list[str] = []
    failed: dict[str, str] = {}
    todo = []
    for rel in rels:
        hit = cache.get(wav / rel) if cache else None
        if hit is None:
            todo.append(rel)
            continue
        vectors[rel], seconds, speech = hit
        audio_seconds += seconds
        if speech == 0:
            no_speech.append(rel)

    start = time.perf_counter()
    for rel, vector, seconds, speech, error in _read(embedder, wav, todo, config):
        if error:
            failed[rel] = error
            continue
        vectors[rel] = vector
        audio_seconds += seconds
        embedded_seconds += seconds
        if speech == 0:
            no_speech.append(rel)
        if cache:
            cache.put(wav / rel, vector, seconds, speech)
    embed_time = time.perf_counter() - start  # wall time of reading every clip: decode, speech, model
    if cache:
        cache.close()
    stats = {
        "cached_clips": len(rels) - len(todo),
        "embedded_clips": len(todo) - len(failed),
        "no_speech_clips": len(no_speech),
        "no_speech_examples": no_speech[:SHOW_MISSING],
        "unreadable_clips": len(failed),
        "unreadable_examples": list(failed.values())[:SHOW_MISSING],
        "audio_seconds": round(audio_seconds, 1),
        "embed_seconds": round(embed_time, 2),
        "rtf": round(embed_time / embedded_seconds, 5) if embedded_seconds else None,
    }
    return vectors, stats


def _read(embedder: Embedder, wav: Path, rels: list[str], config: EvalConfig):
    """``(rel, vector, seconds, speech seconds, error)`` for each clip: decoding ahead on threads
    while the model embeds, or on Ray actors with ``config.ray``. Speech is measured, never refused
    (the protocol embeds every clip)."""
    if config.ray is not None:
        from speakerid.apps.distributed import Work, read_on_ray

        work = Work.like(embedder, config.device, DEFAULT_MAX_SECONDS)
        for row in read_on_ray(
            [(rel, str(wav / rel)) for rel in rels],
            work,
            workers=config.ray_workers,
            address=config.ray or None,
            progress=config.progress,
        ):
            yield row["key"], row["vector"], row["seconds"], row["speech_seconds"], row["error"]
        return
    reader = VoiceReader(embedder)

    def decode(rel: str):
        try:
            return rel, *reader.decode(wav / rel, min_speech=None), ""
        except AudioError as exc:
            return rel, None, None, str(exc)

    bar = progress(len(rels), unit="clip", desc="embedding", enabled=bool(config.progress and rels))
    for rel, audio, speech, error in prefetched(decode, rels, workers=config.workers, ahead=4 * max(1, config.workers)):
        bar.update(1)
        if error:
            yield rel, None, 0.0, 0.0, error
        else:
            yield rel, reader.embed(speech), audio.seconds, speech.seconds, ""
    bar.close()


def identification(split: list[tuple[int, str]], vectors: dict[str, np.ndarray], top_k: int = 5) -> dict:
    enrol: dict[str, list[np.ndarray]] = {}
    for s, rel in split:
        if s == 1 and rel in vectors:
            enrol.setdefault(speaker_of(rel), []).append(vectors[rel])
    speakers = sorted(enrol)
    profiles = np.stack([centroid(np.stack(enrol[s])) for s in speakers])
    tests = [rel for s, rel in split if s == 3 and rel in vectors and speaker_of(rel) in enrol]
    if not tests:
        raise SpeakerIDError("no split-3 clip of an enrolled speaker to identify")
    scores = np.stack([vectors[r] for r in tests]) @ profiles.T
    truth = np.array([speakers.index(speaker_of(r)) for r in tests])
    ranked = np.argsort(-scores, axis=1, kind="stable")[:, :top_k]
    predicted = ranked[:, 0]
    precision, recall, f1 = macro_prf(truth, predicted)
    return {
        "speakers": len(speakers),
        "enrol_utterances": sum(len(v) for v in enrol.values()),
        "test_utterances": len(tests),
        "top1": float(np.mean(predicted == truth)),
        "top5": float(np.mean((ranked == truth[:, None]).any(axis=1))),
        "precision": precision,
        "recall": recall,
        "f1": f1,
    }


def open_set(
    split: list[tuple[int, str]], vectors: dict[str, np.ndarray], fraction: float, far: float
) -> tuple[dict, tuple[np.ndarray, np.ndarray]]:
    """Enroll the first ``fraction`` of the speakers (sorted ids) from their split-1 clips and
    calibrate on those clips alone; then every other clip of an enrolled speaker must be named
    correctly and every clip of the others answered unknown — speakers and clips the threshold
    never saw. Also returns the open-set DET data: a known probe's score when its speaker ranks
    first (else -inf: wrong at any threshold), a stranger's best score."""
    speakers = sorted({speaker_of(r) for _, r in split})
    enrolled = set(speakers[: max(1, min(len(speakers) - 1, round(fraction * len(speakers))))])
    enrol = [(speaker_of(r), vectors[r]) for s, r in split if s == 1 and r in vectors and speaker_of(r) in enrolled]
    owners = [o for o, _ in enrol]
    matrix = np.stack([v for _, v in enrol])
    names, profiles = centroids(matrix, owners)
    calibration = calibrate(matrix, owners, far)
    probes = [
        (r, speaker_of(r) in enrolled) for s, r in split if r in vectors and (speaker_of(r) not in enrolled or s != 1)
    ]
    answers: dict[str, list[int]] = {"calibrated": [0, 0], f"fixed {DEFAULT_THRESHOLD:g}": [0, 0]}
    det_scores, det_labels = [], []
    for rel, known in probes:
        scores = profiles @ vectors[rel]
        order = np.argsort(-scores, kind="stable")[:2]
        ranked = [Candidate(names[i], float(scores[i])) for i in order]
        right = names[order[0]] == speaker_of(rel)
        det_scores.append((ranked[0].score if right else -np.inf) if known else ranked[0].score)
        det_labels.append(known)
        for label, threshold in (
            ("calibrated", calibration.threshold),
            (f"fixed {DEFAULT_THRESHOLD:g}", DEFAULT_THRESHOLD),
        ):
            answer = decide(ranked, threshold).speaker
            answers[label][0 if known else 1] += (answer == speaker_of(rel)) if known else answer is None
    known_count = sum(1 for _, k in probes if k)
    unknown_count = len(probes) - known_count
    rates = {
        label: {
            "accept_correct": a / known_count if known_count else None,
            "unknown_rejected": u / unknown_count if unknown_count else None,
        }
        for label, (a, u) in answers.items()
    }
    return (
        {
            "enrolled_speakers": len(enrolled),
            "held_out_speakers": len(speakers) - len(enrolled),
            "known_probes": known_count,
            "unknown_probes": unknown_count,
            "far": far,
            "threshold": calibration.threshold,
            "calibration": calibration.to_dict(),
            **rates["calibrated"],
            "fixed": {"threshold": DEFAULT_THRESHOLD, **rates[f"fixed {DEFAULT_THRESHOLD:g}"]},
        },
        (np.array(det_scores), np.array(det_labels, dtype=bool)),
    )


def macro_prf(truth: np.ndarray, predicted: np.ndarray) -> tuple[float, float, float]:
    """Macro-averaged precision, recall and F1 over the speakers that occur in ``truth``."""
    labels = np.unique(truth)
    p, r, f = [], [], []
    for c in labels:
        tp = np.sum((predicted == c) & (truth == c))
        guessed, actual = np.sum(predicted == c), np.sum(truth == c)
        pc = tp / guessed if guessed else 0.0
        rc = tp / actual if actual else 0.0
        p.append(pc), r.append(rc), f.append(2 * pc * rc / (pc + rc) if pc + rc else 0.0)
    return float(np.mean(p)), float(np.mean(r)), float(np.mean(f))


def trial_scores(trials: list[Trial], vectors: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, int]:
    usable = [t for t in trials if t.enrol in vectors and t.test in vectors]
    if not usable:
        return np.empty(0), np.empty(0, dtype=bool), len(trials)
    a = np.stack([vectors[t.enrol] for t in usable])
    b = np.stack([vectors[t.test] for t in usable])
    return np.einsum("ij,ij->i", a, b), np.array([t.target for t in usable]), len(trials) - len(usable)


def verification(scores: np.ndarray, labels: np.ndarray, skipped: int = 0) -> dict:
    out = {
        "trials": int(len(scores)),
        "target_trials": int(labels.sum()),
        "nontarget_trials": int((~labels).sum()),
        "skipped_trials": skipped,
    }
    if len(scores) == 0 or labels.all() or not labels.any():
        return out | {"eer": None, "min_dcf_p0.01": None, "min_dcf_p0.05": None, "threshold_eer": None}
    rate, threshold = eer(scores, labels)
    return out | {
        "eer": rate,
        "min_dcf_p0.01": min_dcf(scores, labels, 0.01)[0],
        "min_dcf_p0.05": min_dcf(scores, labels, 0.05)[0],
        "threshold_eer": threshold,
    }
