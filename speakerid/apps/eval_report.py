"""An evaluation's figures as people read them: the table ``speakerid eval voxceleb`` prints, and
the DET curves it draws."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from speakerid.decide.metrics import det_curve, eer


def plot_det(curves: dict[str, tuple[np.ndarray, np.ndarray]], path: Path) -> None:
    """DET curves (probit axes) with each list's EER point marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from scipy.stats import norm

    ticks = np.array([0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.4])
    clip = lambda x: np.clip(x, 5e-4, 0.5)  # noqa: E731
    fig, ax = plt.subplots(figsize=(6, 6))
    for name, (scores, labels) in curves.items():
        det = det_curve(scores, labels)
        rate, _ = eer(scores, labels)
        ax.plot(norm.ppf(clip(det.false_alarm)), norm.ppf(clip(det.miss)), label=f"{name} (EER {rate:.2%})")
        ax.plot(norm.ppf(clip(rate)), norm.ppf(clip(rate)), "o", color="black")
    ax.plot(norm.ppf(ticks), norm.ppf(ticks), ":", color="grey", linewidth=0.8)
    ax.set_xticks(norm.ppf(ticks), [f"{t:.1%}" for t in ticks], rotation=45)
    ax.set_yticks(norm.ppf(ticks), [f"{t:.1%}" for t in ticks])
    ax.set_xlim(norm.ppf(5e-4), norm.ppf(0.5))
    ax.set_ylim(norm.ppf(5e-4), norm.ppf(0.5))
    ax.set_xlabel("false-accept rate")
    ax.set_ylabel("miss rate")
    ax.set_title("DET curve (EER marked)")
    ax.grid(True, linewidth=0.3)
    ax.legend(loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def format_table(result: dict) -> str:
    lines = [
        f"model {result['model']}  clips {result['clips']}  (cached {result['cached_clips']}, "
        f"embedded {result['embedded_clips']}, no speech {result['no_speech_clips']}, "
        f"unreadable {result['unreadable_clips']}, missing {result['missing_clips']})"
    ]
    if result["rtf"] is not None:
        lines.append(
            f"audio {result['audio_seconds']:.0f} s, embedding {result['embed_seconds']:.1f} s, rtf {result['rtf']:.4f}"
        )
    if "identification" in result:
        i = result["identification"]
        lines.append(
            f"identification  speakers {i['speakers']}  enrol {i['enrol_utterances']}  test {i['test_utterances']}  "
            f"top-1 {i['top1']:.4f}  top-5 {i['top5']:.4f}  "
            f"P {i['precision']:.4f}  R {i['recall']:.4f}  F1 {i['f1']:.4f}"
        )
    if "open_set" in result:
        o = result["open_set"]
        lines.append(
            f"open set        enrolled {o['enrolled_speakers']}  held out {o['held_out_speakers']}  threshold "
            f"{o['threshold']:.3f} ({o['calibration']['source']}, {o['far']:.1%} false accepts)  accept-correct "
            f"{o['accept_correct']:.4f}  unknown-rejected {o['unknown_rejected']:.4f}  "
            f"(fixed {o['fixed']['threshold']:g}: "
            f"{o['fixed']['accept_correct']:.4f} / {o['fixed']['unknown_rejected']:.4f})"
        )
    for name, v in result.get("verification", {}).items():
        if v["eer"] is None:
            lines.append(f"{name:<22} trials {v['trials']} (skipped {v['skipped_trials']}): not enough trials to score")
            continue
        lines.append(
            f"{name:<22} trials {v['trials']:>7} (skipped {v['skipped_trials']})  EER {v['eer']:.4%}  "
            f"minDCF(0.01) {v['min_dcf_p0.01']:.4f}  minDCF(0.05) {v['min_dcf_p0.05']:.4f}  "
            f"threshold at EER {v['threshold_eer']:.4f}"
        )
        if v.get("normalised") and v["normalised"]["eer"] is not None:
            n = v["normalised"]
            lines.append(
                f"{'  s-norm':<22} {'':>15}  EER {n['eer']:.4%}  minDCF(0.01) {n['min_dcf_p0.01']:.4f}  "
                f"minDCF(0.05) {n['min_dcf_p0.05']:.4f}  ({n['method']})"
            )
    return "\n".join(lines)
