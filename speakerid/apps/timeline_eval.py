"""Scoring timelines the standard way: pyannote.metrics' identification error rate (confusion +
missed speech + false alarm, over the reference's speech), with no label mapping, since names
are names. A reference speaker nobody enrolled counts as answered right when the timeline says
``unknown-N`` (which stranger is which is not scored); an enrolled one only by their name.

    speakerid eval timeline --rttm REF.rttm RECORDING...
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from speakerid.base.errors import UsageError
from speakerid.flows.turns import read_rttm

if TYPE_CHECKING:  # the facade hands itself in; apps sit below it
    from speakerid.api import SpeakerID

UNKNOWN = "<unknown>"


def evaluate_timelines(
    sid: SpeakerID, rttm: Path, recordings: list[Path], *, collar: float = 0.0, min_turn: float = 0.5
) -> dict:
    try:
        from pyannote.core import Annotation, Segment, Timeline
        from pyannote.metrics.identification import IdentificationErrorRate
    except ImportError:
        raise UsageError(
            "eval timeline needs pyannote.metrics (a dependency): pip install 'pyannote.metrics>=3.2'"
        ) from None
    reference = read_rttm(rttm)
    enrolled = {s.name for s in sid.speakers()}
    total = IdentificationErrorRate(collar=collar, skip_overlap=False)
    files = []
    for recording in recordings:
        uri = Path(recording).stem
        if uri not in reference:
            raise UsageError(f"{rttm}: no turns for {uri} (the RTTM's second field names the file)")
        result = sid.timeline(recording, min_turn=min_turn)
        ref, hyp = Annotation(uri=uri), Annotation(uri=uri)
        for i, (start, end, label) in enumerate(reference[uri]):
            ref[Segment(start, end), i] = label if label in enrolled else UNKNOWN
        for i, s in enumerate(result.segments):
            hyp[Segment(s.start, s.end), i] = s.speaker if s.speaker is not None else UNKNOWN
        detail = total(
            ref, hyp, uem=Timeline([Segment(0, max(result.duration, ref.get_timeline().extent().end))]), detailed=True
        )
        files.append(
            {
                "file": str(recording),
                "ier": round(detail["identification error rate"], 6),
                **{
                    k.replace(" ", "_"): round(detail[k], 3)
                    for k in ("confusion", "missed detection", "false alarm", "total")
                },
            }
        )
    summary = {k: round(float(total[k]), 3) for k in ("confusion", "missed detection", "false alarm", "total")}
    return {
        "files": files,
        "ier": round(abs(total), 6),
        "collar": collar,
        **{k.replace(" ", "_"): v for k, v in summary.items()},
        "model": sid.embedder.model_id,
    }
