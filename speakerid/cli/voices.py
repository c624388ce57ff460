"""Commands about voices: identify, verify, list and remove speakers, the decision threshold, listening."""

from __future__ import annotations

import argparse
from pathlib import Path

from speakerid.base.errors import UsageError
from speakerid.cli.common import UNKNOWN, arg, command, emit, finite, open_speakerid, option, plural


@command(
    "identify",
    arg("clip", metavar="CLIP", help="audio file"),
    arg("--top-k", type=int, default=5, metavar="K", help="candidates to list (default 5)"),
    arg("--threshold", type=finite, metavar="T", help="accept scores >= T (default: the store's)"),
    help="who is speaking in CLIP (or unknown); exit 0 named, 3 unknown",
)
def identify(args: argparse.Namespace) -> int:
    with open_speakerid(args) as sid:
        result = sid.identify(args.clip, top_k=args.top_k, threshold=args.threshold)
    who = result.speaker if result.speaker is not None else "unknown"
    lines = [f"{who} (score {result.score:.3f}, threshold {result.threshold:g}; {result.reason})"]
    lines += [f"  {c.speaker:<24} {c.score:.3f}" for c in result.candidates]
    emit(args, result.to_dict(), "\n".join(lines))
    return 0 if result.speaker is not None else UNKNOWN


@command(
    "verify",
    arg("name", metavar="NAME"),
    arg("clip", metavar="CLIP", help="audio file"),
    arg("--threshold", type=finite, metavar="T", help="accept scores >= T (default: the store's)"),
    arg("--far", type=finite, metavar="F", help="accept at this per-comparison false-accept rate, e.g. 0.001"),
    help="is CLIP spoken by NAME? exit 0 accepted, 3 rejected",
)
def verify(args: argparse.Namespace) -> int:
    with open_speakerid(args) as sid:
        result = sid.verify(args.name, args.clip, threshold=args.threshold, far=args.far)
    verdict = "accepted" if result.accepted else "rejected"
    note = f"\nnote: {result.note}" if result.note else ""
    emit(
        args,
        result.to_dict(),
        f"{result.speaker}: {verdict} (score {result.score:.3f}, threshold {result.threshold:g}){note}",
    )
    return 0 if result.accepted else UNKNOWN


@command("speakers", help="list enrolled speakers")
def speakers(args: argparse.Namespace) -> int:
    with open_speakerid(args) as sid:
        found = sid.speakers()
        model = sid.store.voiceprints.model
    text = (
        "\n".join(f"{s.name:<24} {plural(s.clips, 'clip'):>10} {s.speech_seconds:>8.1f} s" for s in found)
        or "no speakers enrolled"
    )
    emit(args, {"speakers": [s.to_dict() for s in found], "model": model}, text)
    return 0


@command("remove", arg("name", metavar="NAME"), help="erase a speaker's voiceprint")
def remove(args: argparse.Namespace) -> int:
    with open_speakerid(args) as sid:
        name = sid.store.voiceprints.display_name(args.name)
        sid.remove(name)
    emit(args, {"removed": name}, f"removed {name} (voiceprint erased)")
    return 0


@command(
    "threshold",
    arg("value", nargs="?", type=finite, metavar="T", help="a cosine between -1 and 1, used instead of calibrating"),
    arg("--reset", action="store_true", help="forget a threshold set by hand: calibrate again"),
    help="show the decision threshold and where it came from, or set it by hand",
)
def threshold(args: argparse.Namespace) -> int:
    with open_speakerid(args) as sid:
        if args.reset:
            sid.set_threshold(None)
        elif args.value is not None:
            sid.set_threshold(args.value)
        calibration = sid.calibration()
    emit(args, calibration.to_dict(), calibration.describe())
    return 0


@command(
    "calibrate",
    arg(
        "--far",
        type=finite,
        metavar="F",
        help="false-accept target for identification, e.g. 0.01 (kept for the store; default 0.05)",
    ),
    arg(
        "--trials",
        type=Path,
        metavar="FILE",
        help="labelled trials of your own audio (VoxCeleb trial-list format: 1|0 enrol test)",
    ),
    arg("--root", type=Path, metavar="DIR", help="the folder the trial list's paths are relative to"),
    arg("--apply", action="store_true", help="with --trials: use the threshold found as the store's"),
    help="the threshold for a false-accept target: from the enrolled population, or from your trials",
)
def calibrate(args: argparse.Namespace) -> int:
    if bool(args.trials) != bool(args.root):
        raise UsageError("--trials and --root go together")
    if args.apply and not args.trials:
        raise UsageError("--apply goes with --trials (the population's threshold applies by itself)")
    with open_speakerid(args) as sid:
        if args.far is not None and not args.trials:
            sid.set_far(args.far)
        if args.trials:
            from speakerid.apps.trials import calibrate_on_trials

            result = calibrate_on_trials(sid, args.trials, args.root, far=args.far)
            if args.apply:
                sid.set_threshold(result["threshold"])
            emit(args, result, result["text"])
            return 0
        calibration = sid.measured()
    emit(args, calibration.to_dict(), calibration.describe())
    return 0


@command(
    "listen",
    arg("--stdin", action="store_true", help="read raw 16-bit little-endian mono PCM from standard input"),
    arg(
        "--device",
        dest="input_device",
        type=int,
        metavar="N",
        help="record from sound card N (sounddevice/PortAudio, the mic extra)",
    ),
    arg("--rate", type=int, default=16000, metavar="R", help="sample rate of the input (default 16000)"),
    arg("--verify", metavar="NAME", help="verify that NAME is speaking instead of identifying"),
    arg("--resource", metavar="R", help="an access check at resource R (with --claim to verify a claim)"),
    arg("--claim", metavar="NAME", help="with --resource: the identity the speaker claims"),
    help="identify while someone speaks: events as lines (JSON lines with --json), the final decision last; "
    "e.g. arecord -f S16_LE -r 16000 -c 1 | speakerid listen --stdin",
    device_flag=False,
)
def listen(args: argparse.Namespace) -> int:
    import json

    if args.stdin == (args.input_device is not None):
        raise UsageError("choose one input: --stdin or --device N")
    if args.verify and args.resource:
        raise UsageError("--verify and --resource do not go together (use --resource R --claim NAME)")
    if args.claim and not args.resource:
        raise UsageError("--claim goes with --resource")
    with open_speakerid(args) as sid:
        if args.resource:
            from speakerid.apps.access import AccessControl

            live = AccessControl(sid).stream(args.resource, args.claim, sample_rate=args.rate, caller="cli")
        else:
            live = sid.stream(args.rate, "verify" if args.verify else "identify", claim=args.verify)

        def show(event) -> None:
            if option(args, "json"):
                print(json.dumps(event.to_dict()), flush=True)
            else:
                score = "" if event.score is None else f" score {event.score:.3f}"
                print(
                    f"{event.t:7.2f} s  {'FINAL ' if event.final else ''}{event.label}{score} "
                    f"({event.reason}; {event.speech_seconds:.1f} s of speech)",
                    flush=True,
                )

        shown = None
        for chunk in _microphone(args.input_device, args.rate) if args.input_device is not None else _stdin(args.rate):
            for event in live.feed(chunk):
                show(event)
                shown = event
        final = live.close()
        if final != shown:  # after an early final decision, closing gives the same one back
            show(final)
    accepted = final.label in ("accepted", "allow") or (final.speaker is not None and final.label == final.speaker)
    return 0 if accepted else 3


def _stdin(rate: int):
    import sys

    import numpy as np

    stream, size, carry = sys.stdin.buffer, rate // 10 * 2, b""
    while True:
        block = stream.read(size)
        if not block:
            break
        block, carry = carry + block, b""
        if len(block) % 2:
            block, carry = block[:-1], block[-1:]
        yield np.frombuffer(block, dtype="<i2")


def _microphone(device: int, rate: int):
    import queue

    try:
        import sounddevice
    except (ImportError, OSError) as exc:
        raise UsageError(
            f"--device needs sounddevice and PortAudio: pip install 'speakerid-voiceprint[mic]' ({exc})"
        ) from None
    blocks: queue.Queue = queue.Queue()
    with sounddevice.InputStream(
        device=device,
        samplerate=rate,
        channels=1,
        dtype="int16",
        blocksize=rate // 10,
        callback=lambda data, frames, when, status: blocks.put(data[:, 0].copy()),
    ):
        print("listening; Ctrl-C to stop", file=__import__("sys").stderr)
        try:
            while True:
                yield blocks.get()
        except KeyboardInterrupt:
            return
