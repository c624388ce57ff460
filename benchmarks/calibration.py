"""Self-calibrated thresholds against the fixed 0.45, out of sample, on mini-voxceleb1.

Every figure comes from speakers and clips the threshold never saw: in each of many random
partitions of the 16 speakers, some are enrolled (from their split-1 clips) and the threshold is
calibrated on those enrollment clips alone; the enrolled speakers' other clips (splits 2 and 3)
must be named correctly (accept-correct), and every clip of the speakers held out must be answered
unknown (unknown-rejected). Conditions: whole clips; probes cut to a few seconds; everything at
8 kHz (a telephone line: enrollment and probes); and where accuracy collapses with probe length
(to set the minimum speech).

    python benchmarks/calibration.py [--partitions 40] [--far 0.02]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from speakerid.decide.calibration import DEFAULT_FAR, calibrate  # noqa: E402
from speakerid.decide.scoring import DEFAULT_MARGIN, Candidate, centroids, decide  # noqa: E402
from speakerid.voice.audio import load_audio  # noqa: E402
from speakerid.voice.embedder import Embedder, load_embedder  # noqa: E402
from speakerid.voice.vad import extract_speech  # noqa: E402

from conftest import MODEL_DIR, clip_path, iden_split  # noqa: E402

FIXED = 0.45


def cpu_model() -> str:
    """The CPU's model name and the flags that decide speed (as embed_speed.py prints them)."""
    from embed_speed import cpu

    model, flags = cpu()
    return f"{model} [{' '.join(flags) or '-'}]"


def variants(samples: np.ndarray, speech_regions) -> dict[str, np.ndarray]:
    """The clip as a probe: whole, at 8 kHz, and cut to ``s`` seconds of its speech (16 kHz and 8 kHz)."""
    out = {"whole": samples}
    narrow = load_audio((samples[::2].copy(), 8000)).samples  # 8 kHz, back to 16 kHz the way the product reads it
    out["8k"] = narrow
    speech = np.concatenate([samples[a:b] for a, b in speech_regions]) if speech_regions else samples
    for seconds in (0.4, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0):
        n = int(seconds * 16000)
        if len(speech) >= n:
            out[f"cut{seconds:g}"] = speech[:n]
            out[f"cut{seconds:g}-8k"] = load_audio((speech[:n][::2].copy(), 8000)).samples
    return out


def embed_everything(embedder: Embedder) -> dict[str, dict[str, np.ndarray]]:
    vectors: dict[str, dict[str, np.ndarray]] = {}
    for _, rel in iden_split():
        audio = load_audio(clip_path(rel))
        speech = extract_speech(audio, min_speech=None)
        vectors[rel] = {k: embedder.embed([v])[0] for k, v in variants(audio.samples, speech.regions).items()}
    return vectors


def open_set(
    vectors,
    partitions: int,
    enrolled_count: int,
    enrol_kind: str,
    probe_kind: str,
    far: float,
    seed: int = 0,
    one_clip: bool = False,
) -> dict:
    split = iden_split()
    speakers = sorted({r.split("/")[0] for _, r in split})
    rng = np.random.default_rng(seed)
    counts = {"fixed": [0, 0, 0, 0], "calibrated": [0, 0, 0, 0]}  # accepted, known, rejected, unknown
    thresholds = []
    for _ in range(partitions):
        order = rng.permutation(speakers)
        enrolled, held = set(order[:enrolled_count]), set(order[enrolled_count:])
        enrol = [(r.split("/")[0], r) for s, r in split if s == 1 and r.split("/")[0] in enrolled]
        if one_clip:
            first: dict[str, str] = {}
            for spk, r in enrol:
                first.setdefault(spk, r)
            enrol = list(first.items())
        owners = [spk for spk, _ in enrol]
        matrix = np.stack([vectors[r][enrol_kind] for _, r in enrol])
        names, profiles = centroids(matrix, owners)
        calibrated = calibrate(matrix, owners, far).threshold
        thresholds.append(calibrated)
        probes = [
            (r, r.split("/")[0] in enrolled)
            for s, r in split
            if (s != 1 and r.split("/")[0] in enrolled) or r.split("/")[0] in held
        ]
        for rel, known in probes:
            if probe_kind not in vectors[rel]:
                continue
            scores = profiles @ vectors[rel][probe_kind]
            ranked = [Candidate(names[i], float(scores[i])) for i in np.argsort(-scores)[:2]]
            for label, threshold in (("fixed", FIXED), ("calibrated", calibrated)):
                answer = decide(ranked, threshold, DEFAULT_MARGIN).speaker
                c = counts[label]
                if known:
                    c[0] += answer == rel.split("/")[0]
                    c[1] += 1
                else:
                    c[2] += answer is None
                    c[3] += 1
    rates = {k: (c[0] / max(c[1], 1), c[2] / max(c[3], 1), c[1], c[3]) for k, c in counts.items()}
    return {
        "rates": rates,
        "thresholds": (float(np.min(thresholds)), float(np.median(thresholds)), float(np.max(thresholds))),
    }


def probe_length_curve(vectors) -> list[tuple[str, float, float, int]]:
    """Closed-set top-1 and open-set wrong-name rate at 0.45 for probes cut to each length, all
    16 speakers enrolled from split 1 (whole clips)."""
    split = iden_split()
    enrol = [(r.split("/")[0], r) for s, r in split if s == 1]
    names, profiles = centroids(np.stack([vectors[r]["whole"] for _, r in enrol]), [s for s, _ in enrol])
    out = []
    for kind in (
        "cut0.4",
        "cut0.5",
        "cut0.75",
        "cut1",
        "cut1.5",
        "cut2",
        "cut3",
        "whole",
        "cut0.4-8k",
        "cut0.5-8k",
        "cut0.75-8k",
        "cut1-8k",
        "cut1.5-8k",
        "cut2-8k",
        "cut3-8k",
        "8k",
    ):
        probes = [r for s, r in split if s != 1 and kind in vectors[r]]
        top1 = wrong = 0
        for rel in probes:
            scores = profiles @ vectors[rel][kind]
            best = int(np.argmax(scores))
            top1 += names[best] == rel.split("/")[0]
            wrong += names[best] != rel.split("/")[0] and scores[best] >= FIXED
        out.append((kind, top1 / len(probes), wrong / len(probes), len(probes)))
    return out


def snorm_scores(profiles: np.ndarray, probe: np.ndarray, cohort: np.ndarray, top: int | None) -> np.ndarray:
    """Symmetric score normalisation of ``probe`` against each profile: the mean of the score
    z-normalised by the profile's and by the probe's scores against ``cohort`` (AS-norm: only
    the ``top`` best cohort scores of each side)."""
    raw = profiles @ probe

    def stats(scores):
        if top:
            scores = np.sort(scores, axis=-1)[..., -top:]
        return scores.mean(axis=-1), scores.std(axis=-1) + 1e-6

    mu_e, sd_e = stats(profiles @ cohort.T)
    mu_t, sd_t = stats(cohort @ probe)
    return 0.5 * ((raw - mu_e) / sd_e + (raw - mu_t) / sd_t)


def normalisation(vectors, partitions: int, cohort: np.ndarray, enrol_kind: str, probe_kind: str) -> dict[str, float]:
    """Open-set equal error rate (a known probe must rank its speaker first and score high; a
    stranger's best score must stay low) with raw cosine, S-norm against the enrolled profiles,
    and AS-norm (top 200) against an external cohort, over random 10/6 partitions."""
    from speakerid.decide.metrics import eer

    split = iden_split()
    speakers = sorted({r.split("/")[0] for _, r in split})
    rng = np.random.default_rng(1)
    pooled: dict[str, tuple[list, list]] = {
        k: ([], []) for k in ("cosine", "S-norm, enrolled cohort", "AS-norm, external cohort")
    }
    for _ in range(partitions):
        order = rng.permutation(speakers)
        enrolled = set(order[:10])
        enrol = [(r.split("/")[0], r) for s, r in split if s == 1 and r.split("/")[0] in enrolled]
        names, profiles = centroids(np.stack([vectors[r][enrol_kind] for _, r in enrol]), [s for s, _ in enrol])
        for s, rel in split:
            spk = rel.split("/")[0]
            known = spk in enrolled
            if (known and s == 1) or probe_kind not in vectors[rel]:
                continue
            probe = vectors[rel][probe_kind]
            for label, scores in (
                ("cosine", profiles @ probe),
                ("S-norm, enrolled cohort", snorm_scores(profiles, probe, profiles, None)),
                ("AS-norm, external cohort", snorm_scores(profiles, probe, cohort, 200)),
            ):
                best = int(np.argmax(scores))
                pooled[label][0].append(scores[best] if (not known or names[best] == spk) else -np.inf)
                pooled[label][1].append(known)
    return {label: eer(np.array(sc), np.array(lab))[0] for label, (sc, lab) in pooled.items()}


def external_cohort() -> np.ndarray:
    """The model's own classifier rows: one prototype per VoxCeleb training speaker (7,205, real speech)."""
    import torch

    weight = torch.load(MODEL_DIR / "classifier.ckpt", map_location="cpu")["weight"].numpy()
    return weight / np.linalg.norm(weight, axis=1, keepdims=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--partitions", type=int, default=40)
    parser.add_argument("--far", type=float, default=DEFAULT_FAR)
    args = parser.parse_args()
    embedder = load_embedder(str(MODEL_DIR))
    print(f"CPU: {cpu_model()}; precision {embedder.precision}; target false-accept rate {args.far:.1%}")
    vectors = embed_everything(embedder)
    print(
        "\nopen set, out of sample (accept-correct / unknown-rejected; enrolled and unknown probes counted "
        "over all partitions):"
    )
    print(f"{'condition':<44} {'fixed 0.45':>17} {'calibrated':>17}  threshold min/median/max")
    conditions = [
        ("whole clips, 12 enrolled / 4 held out", 12, "whole", "whole", False),
        ("whole clips, 10 enrolled / 6 held out", 10, "whole", "whole", False),
        ("whole clips, 8 enrolled / 8 held out", 8, "whole", "whole", False),
        ("probes cut to 3 s, 10 / 6", 10, "whole", "cut3", False),
        ("probes cut to 2 s, 10 / 6", 10, "whole", "cut2", False),
        ("probes cut to 1 s, 10 / 6", 10, "whole", "cut1", False),
        ("8 kHz enrollment and probes, 10 / 6", 10, "8k", "8k", False),
        ("8 kHz, probes cut to 2 s, 10 / 6", 10, "8k", "cut2-8k", False),
        ("one enrollment clip each, 14 / 2", 14, "whole", "whole", True),
    ]
    for label, n, enrol_kind, probe_kind, one in conditions:
        result = open_set(vectors, args.partitions, n, enrol_kind, probe_kind, args.far, one_clip=one)
        f, c = result["rates"]["fixed"], result["rates"]["calibrated"]
        lo, mid, hi = result["thresholds"]
        print(
            f"{label:<44} {f[0]:>7.3f} / {f[1]:.3f} {c[0]:>7.3f} / {c[1]:.3f}  {lo:.3f} / {mid:.3f} / {hi:.3f}"
            f"   ({f[2]} known, {f[3]} unknown probes)"
        )
    print("\nscore normalisation, open-set equal error rate over 10/6 partitions (lower is better):")
    cohort = external_cohort()
    for enrol_kind, probe_kind in (("whole", "whole"), ("whole", "cut1"), ("8k", "8k"), ("8k", "cut1-8k")):
        rates = normalisation(vectors, args.partitions, cohort, enrol_kind, probe_kind)
        print(f"  enrol {enrol_kind:<5} probe {probe_kind:<8} " + "  ".join(f"{k} {v:.2%}" for k, v in rates.items()))
    print("\nprobe length (all 16 enrolled from split 1; splits 2-3 as probes): top-1, and wrong names at 0.45")
    for kind, top1, wrong, n in probe_length_curve(vectors):
        print(f"  {kind:<12} top-1 {top1:.3f}  named wrongly {wrong:.3f}  ({n} probes)")


if __name__ == "__main__":
    main()
