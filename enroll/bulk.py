"""Enrolling many speakers from a manifest: a CSV with columns ``speaker`` and ``path`` (paths
relative to the manifest's folder), one row per clip.

Each speaker's enrollment is atomic (all their clips checked, then one write), so a run that is
interrupted leaves every speaker enrolled or absent; running it again enrolls the rest, since
speakers already in the store are counted as done. With Ray, clips are read and embedded by
actors across the cluster and each speaker is written by the driver as soon as all of their clips
are in; the embeddings are the same, bit for bit, as without.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

from speakerid import SpeakerID, SpeakerIDError, UsageError
from speakerid.base.progress import progress
from speakerid.flows.enrollment import Clip, Enrollment, Limits, Skipped


@dataclass
class BulkReport:
    enrolled: list[dict] = field(default_factory=list)  # {"speaker", "clips", "speech_seconds", "skipped"}
    refused: list[dict] = field(default_factory=list)  # {"speaker", "reason"}
    already: list[str] = field(default_factory=list)  # in the store before this run

    def to_dict(self) -> dict:
        return {
            "enrolled": self.enrolled,
            "refused": self.refused,
            "already_enrolled": self.already,
            "counts": {"enrolled": len(self.enrolled), "refused": len(self.refused), "already": len(self.already)},
        }


def read_manifest(path: Path) -> dict[str, list[Path]]:
    """Speakers and their clips, in the manifest's order; one-line errors name the row."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: cannot read the manifest ({getattr(exc, 'strerror', None) or exc})") from None
    rows = csv.DictReader(text.splitlines())
    if not rows.fieldnames or not {"speaker", "path"} <= {f.strip().lower() for f in rows.fieldnames}:
        raise UsageError(f"{path}: a manifest is CSV with a header row naming the columns speaker and path")
    speakers: dict[str, list[Path]] = {}
    for number, row in enumerate(rows, 2):
        row = {k.strip().lower(): (v or "").strip() for k, v in row.items() if k}
        if not row.get("speaker") or not row.get("path"):
            raise UsageError(f"{path}:{number}: every row needs a speaker and a path")
        clip = Path(row["path"])
        speakers.setdefault(row["speaker"], []).append(clip if clip.is_absolute() else path.parent / clip)
    if not speakers:
        raise UsageError(f"{path}: the manifest lists no clips")
    return speakers


def enroll_manifest(
    sid: SpeakerID, manifest: Path, *, limits: Limits, skip_bad: bool = False, ray: str | None = None, workers: int = 2
) -> BulkReport:
    """Enroll every speaker of ``manifest`` not yet in the store; ``ray``: a cluster address, ``""``
    to start Ray here, ``None`` for this process alone."""
    report = BulkReport()
    todo: dict[str, list[Path]] = {}
    for name, clips in read_manifest(manifest).items():
        if name in sid.store.voiceprints:
            report.already.append(sid.store.voiceprints.display_name(name))
        else:
            todo[name] = clips
    if ray is None:
        with progress(len(todo), unit="speaker", desc="enrolling") as bar:
            for name, clips in todo.items():
                bar.update(1)
                try:
                    result = sid.enroll(
                        name,
                        clips,
                        skip_bad=skip_bad,
                        min_speech=limits.min_speech,
                        min_clip_speech=limits.min_clip_speech,
                    )
                except SpeakerIDError as exc:
                    report.refused.append({"speaker": name, "reason": str(exc)})
                    continue
                report.enrolled.append(_enrolled(result))
        return report
    _enroll_on_ray(sid, todo, report, limits=limits, skip_bad=skip_bad, address=ray or None, workers=workers)
    sid.measured()  # the population changed
    return report


def _enroll_on_ray(
    sid: SpeakerID,
    todo: dict[str, list[Path]],
    report: BulkReport,
    *,
    limits: Limits,
    skip_bad: bool,
    address: str | None,
    workers: int,
) -> None:
    from speakerid.apps.distributed import Work, read_on_ray

    embedder = sid.embedder
    job = Enrollment(
        sid.store.voiceprints, sid.reader, sid.decider, limits=limits, skip_bad=skip_bad, audit=sid.store.audit
    )
    names: dict[str, str] = {}  # the manifest's name -> the name as enrolled
    items = []
    for name, clips in todo.items():
        try:
            names[name] = job.begin(name, "new")[0]
        except SpeakerIDError as exc:
            report.refused.append({"speaker": name, "reason": str(exc)})
            continue
        items += [(f"{name}\0{i}", str(clip)) for i, clip in enumerate(clips)]
    waiting = {name: {} for name in names}
    work = Work.like(embedder, sid.device, sid.options.max_seconds, limits)
    for row in read_on_ray(items, work, workers=workers, address=address):
        name, index = row["key"].rsplit("\0", 1)
        clip = todo[name][int(index)]
        waiting[name][int(index)] = (
            Skipped(str(clip), row["error"])
            if row["error"]
            else Clip(
                source=str(clip),
                vector=row["vector"],
                sha256=row["sha256"],
                speech_seconds=float(row["speech_seconds"]),
            )
        )
        if len(waiting[name]) < len(todo[name]):
            continue
        arrived = waiting.pop(name)
        read = [arrived[i] for i in range(len(todo[name]))]
        refused = next((r for r in read if isinstance(r, Skipped)), None)
        try:
            if refused is not None and not skip_bad:
                raise UsageError(f"{refused.clip}: {refused.reason}")
            result = job.finish(names[name], read, mode="new")
        except SpeakerIDError as exc:
            report.refused.append({"speaker": name, "reason": str(exc)})
            continue
        report.enrolled.append(_enrolled(result))


def _enrolled(result) -> dict:
    return {
        "speaker": result.speaker,
        "clips": result.clips,
        "speech_seconds": round(result.speech_seconds, 2),
        "skipped": [s.to_dict() for s in result.skipped],
    }
