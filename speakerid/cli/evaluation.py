"""``speakerid eval``: standard benchmarks, reported the standard way."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from speakerid.base.errors import UsageError
from speakerid.base.paths import last_evaluation
from speakerid.cli.common import arg, command, finite, group, option, output_file, ray_args

group("eval", "evaluate on a standard benchmark")


@command(
    "eval voxceleb",
    arg("--root", type=Path, required=True, metavar="DIR", help="VoxCeleb1 folder (holding wav/)"),
    arg("--split", type=Path, metavar="FILE", help="iden_split.txt (default: DIR/iden_split.txt if present)"),
    arg(
        "--trials",
        type=Path,
        nargs="+",
        metavar="FILE",
        help="trial lists, e.g. veri_test2.txt list_test_hard2.txt (default: DIR/veri_test.txt if present)",
    ),
    arg("--json", dest="json_out", type=output_file, metavar="OUT", help="write the result object to OUT"),
    arg("--plot", type=output_file, metavar="PNG", help="write a DET curve with the EER point marked"),
    arg(
        "--cache",
        type=Path,
        metavar="DIR",
        help="embedding cache (keyed by file and model): reruns and interrupted runs resume",
    ),
    arg("--workers", type=int, default=2, metavar="N", help="decoding threads (default 2)"),
    arg(
        "--skip-missing",
        action="store_true",
        help="evaluate without clips the lists name but the folder lacks (default: fail)",
    ),
    arg(
        "--open-set",
        type=finite,
        metavar="FRACTION",
        help="enroll only this fraction of the speakers; report accept-correct and unknown-rejected at the "
        "threshold calibrated on them",
    ),
    arg("--far", type=finite, metavar="F", help="false-accept target for --open-set (default 0.05)"),
    *ray_args("embed"),
    help="VoxCeleb1 identification (iden_split.txt) and verification (trial lists) in one run",
    description="Enroll every split-1 clip, identify every split-3 clip (top-1, top-5, macro P/R/F1) and score "
    "every trial (EER, minDCF at p_target 0.01 and 0.05, threshold at EER). Paths in the lists are "
    "relative to DIR/wav (or DIR itself).",
    json_flag=False,
)
def eval_voxceleb(args: argparse.Namespace) -> int:
    from speakerid.apps.eval_report import format_table, plot_det
    from speakerid.apps.evaluate import EvalConfig, default_lists, evaluate
    from speakerid.base import validate

    split, trials = default_lists(args.root)
    if args.open_set is not None and not 0 < args.open_set < 1:
        raise UsageError(f"--open-set is a fraction between 0 and 1, got {args.open_set:g}")
    extra = {"far": validate.far(args.far)} if args.far is not None else {}
    config = EvalConfig(
        root=args.root,
        split=args.split or split,
        trials=args.trials or trials,
        cache=args.cache,
        open_set=args.open_set,
        ray=args.ray,
        ray_workers=validate.count("--ray-workers", args.ray_workers, low=1, high=4096),
        **extra,
        workers=validate.count("--workers", args.workers, low=1, high=64),
        skip_missing=args.skip_missing,
        model=option(args, "model"),
        device=option(args, "device") or "cpu",
    )
    result, curves = evaluate(config)
    print(format_table(result))
    latest = last_evaluation()  # the console shows the last run
    latest.mkdir(parents=True, exist_ok=True, mode=0o700)
    for out in [args.json_out, latest / "latest.json"]:
        if out:
            Path(out).write_text(json.dumps(result, indent=2, allow_nan=False))
    if curves:
        plot_det(curves, latest / "latest.png")
    else:  # an earlier run's curve must not be shown beside this run's figures
        (latest / "latest.png").unlink(missing_ok=True)
    if args.plot:
        if curves:
            plot_det(curves, Path(args.plot))
        else:
            print(
                f"warning: no trial list with both target and non-target trials; {args.plot} not written",
                file=sys.stderr,
            )
    return 0


@command(
    "eval timeline",
    arg("recordings", nargs="+", type=Path, metavar="RECORDING"),
    arg("--rttm", type=Path, required=True, metavar="REF.rttm", help="reference turns (file id = recording name)"),
    arg("--collar", type=finite, default=0.0, metavar="S", help="seconds ignored around reference boundaries"),
    arg("--min-turn", type=finite, default=0.5, metavar="S", help="as for speakerid timeline"),
    help="identification error rate of timelines against reference RTTM (pyannote.metrics)",
)
def eval_timeline(args: argparse.Namespace) -> int:
    from speakerid.apps.timeline_eval import evaluate_timelines
    from speakerid.base import validate
    from speakerid.cli.common import emit, open_speakerid

    with open_speakerid(args) as sid:
        result = evaluate_timelines(
            sid,
            args.rttm,
            args.recordings,
            collar=validate.seconds("--collar", args.collar, high=5),
            min_turn=args.min_turn,
        )
    lines = [
        f"{f['file']}: IER {f['ier']:.2%} (confusion {f['confusion']:.2f} s, missed {f['missed_detection']:.2f} s, "
        f"false alarm {f['false_alarm']:.2f} s of {f['total']:.2f} s)"
        for f in result["files"]
    ]
    lines.append(
        f"total: IER {result['ier']:.2%} over {result['total']:.1f} s of reference speech (collar "
        f"{result['collar']:g} s)"
    )
    emit(args, result, "\n".join(lines))
    return 0
