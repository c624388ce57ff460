"""Expand what the user named (files and folders) into the list of clips to enroll."""

from __future__ import annotations

import os
from pathlib import Path

from speakerid.audio import describe

from .errors import EnrollmentError

AUDIO_SUFFIXES = {".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aiff", ".aif", ".au", ".caf", ".w64"}


def expand_clips(items: list) -> list:
    """Files stay as they are (bad ones fail later, named); folders give their audio files, sorted."""
    out: list = []
    for item in items:
        if isinstance(item, (str, os.PathLike)) and Path(os.fsdecode(item)).is_dir():
            folder = Path(os.fsdecode(item))
            found = sorted(p for p in folder.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file())
            if not found:
                raise EnrollmentError(f"{describe(item)}: no audio files in this folder "
                                      f"(looked for {', '.join(sorted(AUDIO_SUFFIXES))})")
            out.extend(found)
        else:
            out.append(item)
    if not out:
        raise EnrollmentError("no clips given")
    return out
