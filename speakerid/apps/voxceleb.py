"""The official VoxCeleb1 list formats: ``iden_split.txt`` and verification trial lists."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from speakerid.base.errors import SpeakerIDError


class ListFormatError(SpeakerIDError):
    """A list file is not in the official format; the message names the file and line."""


@dataclass(frozen=True)
class Trial:
    target: bool
    enrol: str
    test: str


def speaker_of(rel: str) -> str:
    """``id10001/1zcIwhmdeo4/00001.wav`` -> ``id10001``."""
    return rel.replace("\\", "/").split("/")[0]


def wav_root(root: Path) -> Path:
    """Paths in the lists are relative to ``DIR/wav``; accept ``DIR`` being that folder itself."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise SpeakerIDError(f"{root}: no such folder")
    return root / "wav" if (root / "wav").is_dir() else root


def read_iden_split(path: Path) -> list[tuple[int, str]]:
    """``(set, path)`` pairs: 1 train (enrol), 2 validation, 3 test."""
    out = []
    for number, line in _lines(path):
        parts = line.split()
        if len(parts) != 2 or parts[0] not in {"1", "2", "3"}:
            raise ListFormatError(f"{path}:{number}: expected '<1|2|3> <path>', got {line!r}")
        out.append((int(parts[0]), parts[1]))
    return out


def read_trials(path: Path) -> list[Trial]:
    """Trials ``label enrol test`` with label 1 (same speaker) or 0."""
    out = []
    for number, line in _lines(path):
        parts = line.split()
        if len(parts) != 3 or parts[0] not in {"0", "1"}:
            raise ListFormatError(f"{path}:{number}: expected '<1|0> <enrol path> <test path>', got {line!r}")
        out.append(Trial(parts[0] == "1", parts[1], parts[2]))
    return out


def _lines(path: Path):
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ListFormatError(f"{path}: cannot read ({exc.strerror or exc})") from None
    for number, line in enumerate(text.splitlines(), 1):
        if line.strip():
            yield number, line.strip()
