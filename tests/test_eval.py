"""`speakerid eval voxceleb`: official list formats, metrics on real speech, missing clips, cache, plot."""

from __future__ import annotations

import json

import httpx
import numpy as np
import pytest

from speakerid import SpeakerID
from speakerid.apps.evaluate import macro_prf
from speakerid.apps.keys import create_key
from speakerid.apps.voxceleb import ListFormatError, read_iden_split, read_trials

from conftest import DATA, LISTS, needs_data, run_cli, serving


@pytest.mark.skipif(not (LISTS / "veri_test2.txt").is_file(), reason="official lists not available")
def test_official_cleaned_list_parses():
    trials = read_trials(LISTS / "veri_test2.txt")
    assert len(trials) == 37_611
    assert sum(t.target for t in trials) == 18_802
    assert sum(not t.target for t in trials) == 18_809
    assert trials[0].enrol.startswith("id10270/")
    assert len(read_trials(LISTS / "veri_test.txt")) == 37_720


def test_malformed_lists_name_file_and_line(tmp_path):
    bad = tmp_path / "trials.txt"
    bad.write_text("1 a.wav b.wav\n2 a.wav b.wav\n")
    with pytest.raises(ListFormatError, match=r"trials.txt:2: expected"):
        read_trials(bad)
    split = tmp_path / "split.txt"
    split.write_text("1 a.wav\n4 b.wav\n")
    with pytest.raises(ListFormatError, match=r"split.txt:2"):
        read_iden_split(split)


def test_macro_precision_recall_f1_by_hand():
    truth = np.array([0, 0, 1, 1])
    predicted = np.array([0, 1, 1, 1])
    p, r, f = macro_prf(truth, predicted)
    # class 0: P 1, R .5, F1 .667; class 1: P .667, R 1, F1 .8
    assert p == pytest.approx((1 + 2 / 3) / 2) and r == pytest.approx(0.75) and f == pytest.approx((2 / 3 + 0.8) / 2)


@needs_data
def test_mini_voxceleb1_end_to_end_with_cache_and_plot(tmp_path, cli_env):
    out, plot, cache = tmp_path / "result.json", tmp_path / "det.png", tmp_path / "cache"
    first = run_cli(
        ["eval", "voxceleb", "--root", str(DATA), "--json", str(out), "--plot", str(plot), "--cache", str(cache)],
        cli_env,
        timeout=900,
    )
    assert first.returncode == 0, first.stderr
    result = json.loads(out.read_text())
    ident = result["identification"]
    assert (ident["speakers"], ident["enrol_utterances"], ident["test_utterances"]) == (16, 102, 30)
    assert ident["top1"] == 1.0 and ident["top5"] == 1.0 and ident["f1"] == 1.0
    veri = result["verification"]["veri_test.txt"]
    assert veri["trials"] == 1000 and veri["eer"] <= 0.01
    normalised = veri["normalised"]  # s-norm against the model's training speakers, side by side
    assert normalised["eer"] <= veri["eer"] and "s-norm" in normalised["method"], normalised
    assert set(veri) >= {"trials", "eer", "min_dcf_p0.01", "min_dcf_p0.05", "threshold_eer"}
    assert set(result) >= {"model", "identification", "verification", "audio_seconds", "embed_seconds", "rtf"}
    assert result["embedded_clips"] == 146 and result["no_speech_clips"] == 0
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and plot.stat().st_size > 10_000
    assert "top-1 1.0000" in first.stdout

    second = run_cli(
        [
            "eval",
            "voxceleb",
            "--root",
            str(DATA / "wav"),
            "--split",
            str(DATA / "iden_split.txt"),
            "--trials",
            str(DATA / "veri_test.txt"),
            "--json",
            str(out),
            "--cache",
            str(cache),
        ],
        cli_env,
    )
    again = json.loads(out.read_text())
    assert second.returncode == 0 and again["cached_clips"] == 146 and again["embedded_clips"] == 0
    assert again["verification"] == result["verification"] and again["identification"] == result["identification"]

    with SpeakerID.open(tmp_path / "home") as sid:  # the console shows this machine's last run
        key, _ = create_key(sid.store, "admin")
    with serving(tmp_path / "home") as (base, _):
        auth = {"Authorization": f"Bearer {key}"}
        latest = httpx.get(base + "/v1/eval/latest", headers=auth, timeout=30).json()
        assert latest["result"] == again and latest["plot"] is True
        png = httpx.get(base + "/v1/eval/latest.png", headers=auth, timeout=30)
        assert png.status_code == 200 and png.content[:8] == b"\x89PNG\r\n\x1a\n"
        assert httpx.get(base + "/v1/eval/latest", timeout=30).status_code == 401  # figures are for admins

    targets = tmp_path / "targets.txt"  # target trials only: no DET curve can be drawn
    targets.write_text(
        "".join(
            [line + "\n" for line in (DATA / "veri_test.txt").read_text().splitlines() if line.startswith("1 ")][:5]
        )
    )
    no_curve = run_cli(
        ["eval", "voxceleb", "--root", str(DATA), "--trials", str(targets), "--cache", str(cache)], cli_env
    )
    assert no_curve.returncode == 0, no_curve.stderr
    with serving(tmp_path / "home") as (base, _):
        latest = httpx.get(base + "/v1/eval/latest", headers=auth, timeout=30).json()
        assert latest["result"]["verification"]["targets.txt"]["trials"] == 5
        assert latest["plot"] is False  # not the earlier run's curve beside these figures


@needs_data
@pytest.mark.skipif(not (LISTS / "veri_test2.txt").is_file(), reason="official lists not available")
def test_official_list_against_the_mini_set_reports_missing_clips(tmp_path, cli_env):
    done = run_cli(["eval", "voxceleb", "--root", str(DATA), "--trials", str(LISTS / "veri_test2.txt")], cli_env)
    assert done.returncode == 1
    line = done.stderr.strip()
    assert line.count("\n") == 0 and line.startswith("error: ")
    assert "clips named by the lists are missing under" in line and "id10270/" in line and "--skip-missing" in line

    out = tmp_path / "r.json"
    skipped = run_cli(
        [
            "eval",
            "voxceleb",
            "--root",
            str(DATA),
            "--trials",
            str(LISTS / "veri_test2.txt"),
            "--skip-missing",
            "--json",
            str(out),
        ],
        cli_env,
        timeout=900,
    )
    assert skipped.returncode == 0, skipped.stderr
    result = json.loads(out.read_text())
    assert result["missing_clips"] > 4000
    veri = result["verification"]["veri_test2.txt"]
    assert veri["trials"] + veri["skipped_trials"] == 37_611
