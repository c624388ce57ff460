"""Commands about recordings: who spoke when (one recording or an archive of them), the unknown
voices kept across recordings, and naming one of them."""

from __future__ import annotations

import argparse
import glob
import os
from pathlib import Path

from speakerid.base.errors import UsageError
from speakerid.cli.common import arg, command, emit, finite, open_speakerid, output_file, plural, ray_args

MANIFEST_SUFFIXES = {".txt", ".lst", ".list"}


def recordings_of(items: list[str]) -> list[str]:
    """Recordings from the command line: files, folders (their audio files, sorted), quoted globs,
    and manifests (``.txt``/``.lst``: one path per line, relative to the manifest; ``#`` comments).

    >>> import tempfile; d = Path(tempfile.mkdtemp()); _ = [(d / n).write_bytes(b"") for n in ("b.wav", "a.flac")]
    >>> [Path(p).name for p in recordings_of([str(d)])]
    ['a.flac', 'b.wav']
    >>> _ = (d / "list.txt").write_text("# meetings\\nb.wav\\n")
    >>> [Path(p).name for p in recordings_of([str(d / "list.txt"), str(d / "*.flac")])]
    ['b.wav', 'a.flac']
    """
    from speakerid.flows.enrollment import audio_in_folder

    out: list[str] = []
    for item in items:
        path = Path(item)
        if path.is_dir():
            found = [str(p) for p in audio_in_folder(path)]
            if not found:
                raise UsageError(f"{item}: no audio files in this folder")
            out += found
        elif path.suffix.lower() in MANIFEST_SUFFIXES and path.is_file():
            for line in path.read_text().splitlines():
                line = line.strip()
                if line and not line.startswith("#"):
                    out.append(str(path.parent / line) if not os.path.isabs(line) else line)
        elif not path.exists() and glob.has_magic(item):
            found = sorted(glob.glob(item, recursive=True))
            if not found:
                raise UsageError(f"{item}: matches no file")
            out += found
        else:
            out.append(item)
    return list(dict.fromkeys(out))


def _seconds(path: str) -> float:
    import soundfile as sf

    try:
        return sf.info(path).duration
    except (sf.LibsndfileError, RuntimeError, OSError):
        return 0.0  # the reader says why when the timeline reads it


def _lines(timeline) -> list[str]:
    lines = [
        f"{s.start:8.2f} {s.end:8.2f}  {s.label:<20} {'' if s.score is None else f'{s.score:.3f}'}"
        for s in timeline.segments
    ] or ["no speech found"]
    lines.append("; ".join(f"{label} {seconds:.1f} s" for label, seconds in timeline.speakers.items()))
    return lines


@command(
    "timeline",
    arg(
        "recordings",
        nargs="+",
        metavar="RECORDING",
        help="audio files, folders, quoted globs or manifests (.txt: one path per line); read a block at a time",
    ),
    arg("--rttm", type=output_file, metavar="OUT", help="also write the turns as RTTM (every recording, one file)"),
    arg("--min-turn", type=finite, default=0.5, metavar="S", help="shortest turn between two others (default 0.5)"),
    arg("--threshold", type=finite, metavar="T", help="a voice is named at >= T (default: the store's)"),
    arg(
        "--keep",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="keep the turns in the store's archive, each unknown voice the same unknown-N in every recording "
        "(default: on for several recordings, off for one)",
    ),
    *ray_args("read the recordings"),
    help="who spoke when: each turn labelled with an enrolled name or unknown-N",
)
def timeline(args: argparse.Namespace) -> int:
    from speakerid.base import validate
    from speakerid.base.progress import progress
    from speakerid.voice.audio import describe

    paths = recordings_of(args.recordings)
    keep = args.keep if args.keep is not None else len(paths) > 1
    workers = validate.count("--ray-workers", args.ray_workers, low=1, high=4096)
    results = []
    with open_speakerid(args) as sid:
        total = sum(_seconds(p) for p in paths if os.path.isfile(p)) or None
        with progress(total, unit="s", desc="timeline", bar_format="{l_bar}{bar}| {n:.0f}/{total_fmt} s") as bar:
            for path, made in _timelines(sid, paths, args, workers, bar):
                results.append((path, sid.archive.add(path, made) if keep else made))
        voices = [v.to_dict() for v in sid.archive.voices()] if keep else None
    if args.rttm:
        args.rttm.write_text("".join(t.to_rttm(Path(describe(p)).stem) for p, t in results))
    if len(results) == 1 and not keep:
        emit(args, results[0][1].to_dict(), "\n".join(_lines(results[0][1])))
        return 0
    text = []
    for path, t in results:
        text += [f"== {path}", *_lines(t)]
    if keep:
        text.append(f"kept in the archive; {plural(len(voices), 'unknown voice')} (speakerid voices lists them)")
    result = {"recordings": [{"recording": p, **t.to_dict()} for p, t in results], "kept": keep}
    if keep:
        result["voices"] = voices
    emit(args, result, "\n".join(text))
    return 0


def _timelines(sid, paths: list[str], args: argparse.Namespace, workers: int, bar):
    """``(path, Timeline)`` per recording, here or on Ray (the windows there, the labels here)."""
    if args.ray is None:
        for path in paths:
            done = bar.n
            made = sid.timeline(
                path,
                threshold=args.threshold,
                min_turn=args.min_turn,
                progress=lambda seconds, done=done: bar.update(done + seconds - bar.n),
            )
            yield path, made
        return
    from speakerid.apps.distributed import Work, windows_on_ray
    from speakerid.base.errors import AudioError
    from speakerid.flows.timeline import label_timeline
    from speakerid.voice.audio import DEFAULT_MAX_SECONDS

    embedder = sid.embedder
    work = Work.like(embedder, sid.device, DEFAULT_MAX_SECONDS)
    names, profiles = sid.decider.profiles.matrix()
    threshold = sid.decider.threshold if args.threshold is None else args.threshold
    by_key = {str(i): p for i, p in enumerate(paths)}
    done = {}
    for row in windows_on_ray(list(by_key.items()), work, workers=workers, address=args.ray or None):
        if row["error"]:
            raise AudioError(by_key[row["key"]], row["error"])
        done[row["key"]] = row["windows"]
        bar.update(row["windows"].duration)
    for key, path in by_key.items():  # in the order given, so unknown-N numbers do not depend on the cluster
        yield (
            path,
            label_timeline(done[key], names, profiles, threshold, model=embedder.model_id, min_turn=args.min_turn),
        )


@command(
    "voices",
    arg("--recording", metavar="R", help="instead: the kept timeline of recording R (its path), as it reads now"),
    arg("--erase", metavar="LABEL", help="erase unknown voice LABEL and its turns (vectors included)"),
    help="the unknown voices kept across recordings: speech, recordings, example turns",
)
def voices(args: argparse.Namespace) -> int:
    if args.recording and args.erase:
        raise UsageError("choose one: --recording R or --erase LABEL")
    with open_speakerid(args) as sid:
        if args.erase:
            erased = sid.archive.erase(args.erase)
            emit(args, {"erased": args.erase, "turns": erased}, f"erased {args.erase} ({plural(erased, 'turn')})")
            return 0
        if args.recording:
            turns = sid.archive.timeline(args.recording)
            lines = [f"{t.start:8.2f} {t.end:8.2f}  {t.label}" for t in turns] or ["no turns kept"]
            emit(args, {"recording": args.recording, "turns": [t.to_dict() for t in turns]}, "\n".join(lines))
            return 0
        found = sid.archive.voices()
    lines = []
    for v in found:
        examples = ", ".join(f"{Path(t.recording).name}@{t.start:.1f}-{t.end:.1f}" for t in v.examples)
        lines.append(
            f"{v.label:<12} {v.seconds:7.1f} s in {plural(v.recordings, 'recording')}, "
            f"{plural(v.turns, 'turn')}  e.g. {examples}"
        )
    emit(args, {"voices": [v.to_dict() for v in found]}, "\n".join(lines) or "no unknown voices kept")
    return 0


@command(
    "name",
    arg("voice", metavar="LABEL", help="an unknown voice, e.g. unknown-17 (speakerid voices lists them)"),
    arg("name", metavar="NAME", help="who it is: enrolled from the voice's turns, which then carry the name"),
    arg("--append", action="store_true", help="NAME is enrolled already: add these turns to their voiceprint"),
    arg("--min-speech", type=finite, default=None, metavar="S", help="speech the turns must hold in total"),
    arg("--skip-bad", action="store_true", help="leave out stretches the gates refuse, instead of refusing all"),
    help="name an unknown voice: enroll NAME from its turns in every recording, and relabel them",
)
def name(args: argparse.Namespace) -> int:
    options = {"append": args.append, "skip_bad": args.skip_bad}
    if args.min_speech is not None:
        options["min_speech"] = args.min_speech
    with open_speakerid(args) as sid:
        result = sid.archive.name(args.voice, args.name, **options)
    emit(
        args,
        {"voice": args.voice, **result.to_dict()},
        f"{args.voice} is {result.speaker}: enrolled from {plural(result.clips, 'clip')} of its turns "
        f"({result.speech_seconds:.1f} s of speech); the kept timelines now say {result.speaker}",
    )
    return 0
