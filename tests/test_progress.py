"""Long work says how far it got: tqdm's bar on a terminal, a plain line now and then elsewhere."""

from __future__ import annotations

import time

import speakerid.base.progress as progress_module
from speakerid.base.progress import progress


def test_without_a_terminal_progress_is_a_line_now_and_then(monkeypatch, capsys):
    monkeypatch.setattr(progress_module, "EVERY", 0.2)
    with progress(5, desc="quick", unit="clip") as bar:  # done before the first line is due: silent
        bar.update(5)
    assert capsys.readouterr().err == ""
    with progress(10, desc="embedding", unit="clip") as bar:
        for _ in range(10):
            time.sleep(0.1)
            bar.update(1)
    lines = capsys.readouterr().err.split("\n")
    assert lines[-1] == "" and "\r" not in "".join(lines), lines  # whole lines, no carriage-return frames
    lines = lines[:-1]
    assert 2 <= len(lines) <= 8, lines
    assert all(line.startswith("embedding: ") for line in lines)
    assert "10/10" in lines[-1] and "100%" in lines[-1]  # the last state is always shown


def test_disabled_progress_prints_nothing(capsys):
    with progress(3, desc="x", enabled=False) as bar:
        bar.update(3)
    assert capsys.readouterr().err == ""
