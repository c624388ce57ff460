"""Where speakerid keeps things: the store (home) and the model cache."""

from __future__ import annotations

import os
from pathlib import Path


def default_home() -> Path:
    """``SPEAKERID_HOME``, else the XDG data dir (``~/.local/share/speakerid``)."""
    if env := os.environ.get("SPEAKERID_HOME"):
        return Path(env).expanduser()
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "speakerid"


def last_evaluation() -> Path:
    """Where ``speakerid eval voxceleb`` leaves its latest figures (``latest.json``, ``latest.png``)
    for the web console."""
    return cache_dir() / "eval"


def cache_dir() -> Path:
    """``SPEAKERID_CACHE``, else the XDG cache dir (``~/.cache/speakerid``)."""
    if env := os.environ.get("SPEAKERID_CACHE"):
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "speakerid"
