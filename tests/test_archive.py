"""Name a voice once, recognised across an archive: ``speakerid timeline`` over many recordings keeps
each stranger as one ``unknown-N`` everywhere, ``speakerid name`` enrolls them from those turns and
relabels every recording, and erasure takes their turns with them. Real speech, real store."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3

import numpy as np
import pytest
import soundfile as sf

from conftest import SESSION_CACHE, clips_of, needs_data, needs_model, run_cli
from conversations import RATE, trimmed

pytestmark = [needs_model, needs_data]

ALICE, BOB = "id90001", "id90002"  # enrolled
# Never enrolled; each speaks in five of the ten recordings. Not id90104: their voiceprint scores 0.36
# against bob's (a sound-alike, heard as bob in 2 of 5 recordings at a two-person store's threshold
# 0.37): telling sound-alikes apart is the threshold's job (tests/test_small_groups.py), keeping
# strangers apart across recordings is the archive's.
STRANGERS = ("id90103", "id90006")


def _archive(folder):
    """Ten recordings: alice, a stranger (the first in even ones, the second in odd ones), bob;
    every turn from a clip no other recording and no enrollment uses. Returns where each stranger spoke."""
    alice = [
        trimmed(c, k, 2)[0] for c in clips_of(ALICE, 1)[4:] + clips_of(ALICE, 2) + clips_of(ALICE, 3) for k in (0, 1)
    ]
    bob = [trimmed(c, k, 2)[0] for c in clips_of(BOB, 1)[4:] + clips_of(BOB, 2) + clips_of(BOB, 3) for k in (0, 1)]
    pools = {s: [trimmed(c)[0] for c in clips_of(s, 1) + clips_of(s, 2) + clips_of(s, 3)] for s in STRANGERS}
    spoke: dict[str, list[tuple[str, float, float]]] = {s: [] for s in STRANGERS}
    gap = np.zeros(int(0.6 * RATE), np.float32)
    for k in range(10):
        stranger = STRANGERS[k % 2]
        said = pools[stranger].pop(0)
        while len(said) < 5 * RATE:  # a turn of 5 s or more: shorter strangers are not told apart (window_labels)
            said = np.concatenate([said, gap, pools[stranger].pop(0)])
        parts = [gap, alice[k], gap]
        start = sum(len(p) for p in parts) / RATE
        parts += [said, gap, bob[k], gap]
        path = folder / f"meeting-{k:02d}.wav"
        sf.write(path, np.concatenate(parts), RATE, subtype="PCM_16")
        spoke[stranger].append((str(path.resolve()), start, start + len(said) / RATE))
    return spoke


def _covered(turns, recording, start, end, label) -> float:
    """The share of ``start..end`` in ``recording`` that kept turns labelled ``label`` cover."""
    inside = sum(
        max(0.0, min(end, t["end"]) - max(start, t["start"]))
        for t in turns
        if t["recording"] == recording and t["label"] == label
    )
    return inside / (end - start)


@pytest.fixture(scope="module")
def archive(tmp_path_factory, model_dir):
    root = tmp_path_factory.mktemp("archive")
    env = {
        **os.environ,
        "SPEAKERID_HOME": str(root / "home"),
        "SPEAKERID_MODEL": str(model_dir),
        "HF_HUB_OFFLINE": "1",
        "SPEAKERID_CACHE": str(SESSION_CACHE),
    }
    for name, speaker in (("alice", ALICE), ("bob", BOB)):
        clips = [str(c) for c in clips_of(speaker, 1)[:4]]
        assert run_cli([name, *clips], env, module="enroll.cli").returncode == 0
    folder = root / "recordings"
    folder.mkdir()
    spoke = _archive(folder)
    made = run_cli(["timeline", str(folder), "--json"], env, timeout=900)
    assert made.returncode == 0, made.stderr
    return {"env": env, "root": root, "folder": folder, "spoke": spoke, "made": json.loads(made.stdout)}


def test_ten_recordings_with_two_recurring_strangers_keep_two_voices(archive):
    made, spoke = archive["made"], archive["spoke"]
    assert made["kept"] is True and len(made["recordings"]) == 10
    voices = made["voices"]
    assert len(voices) == 2, voices
    assert sorted(v["recordings"] for v in voices) == [5, 5]
    # each voice is one stranger: the label that covers their speech in every recording they spoke in
    for stranger, spans in spoke.items():
        labels = set()
        for recording, start, end in spans:
            timeline = next(r for r in made["recordings"] if r["recording"] == recording)
            turns = [{**s, "recording": recording} for s in timeline["segments"]]
            best = max(
                {s["label"] for s in timeline["segments"]}, key=lambda lab: _covered(turns, recording, start, end, lab)
            )
            assert _covered(turns, recording, start, end, best) > 0.7, (stranger, recording, best)
            labels.add(best)
        assert len(labels) == 1 and next(iter(labels)).startswith("unknown-"), (stranger, labels)
    listed = run_cli(["voices", "--json"], archive["env"])
    assert listed.returncode == 0 and json.loads(listed.stdout)["voices"] == voices


def test_naming_a_voice_relabels_every_recording_and_erasing_them_erases_their_turns(archive):
    env, spoke, made = archive["env"], archive["spoke"], archive["made"]
    recording, start, end = spoke[STRANGERS[0]][0]
    first = next(r for r in made["recordings"] if r["recording"] == recording)
    turns = [{**s, "recording": recording} for s in first["segments"]]
    label = max({s["label"] for s in first["segments"]}, key=lambda lab: _covered(turns, recording, start, end, lab))

    named = run_cli(["name", label, "carol"], env)
    assert named.returncode == 0, named.stderr
    assert "carol" in named.stdout
    for recording, start, end in spoke[STRANGERS[0]]:
        kept = run_cli(["voices", "--recording", recording, "--json"], env)
        assert kept.returncode == 0, kept.stderr
        assert _covered(json.loads(kept.stdout)["turns"], recording, start, end, "carol") > 0.7, recording
    left = json.loads(run_cli(["voices", "--json"], env).stdout)["voices"]
    assert [v["label"] for v in left] != [] and label not in [v["label"] for v in left]
    # carol is enrolled now: identify knows her from a clip the archive never saw
    heard = run_cli(["identify", str(clips_of(STRANGERS[0], 3)[-1]), "--json"], env)
    assert json.loads(heard.stdout)["speaker"] == "carol", heard.stdout

    database = archive["root"] / "home" / "speakerid.db"
    with sqlite3.connect(database) as db:
        before = db.execute("SELECT COUNT(*) FROM turns").fetchone()[0]
        carols = db.execute(
            "SELECT COUNT(*) FROM turns t JOIN speakers s ON s.id = t.speaker_id WHERE s.name = 'carol'"
        ).fetchone()[0]
        vector = db.execute(
            "SELECT t.vector FROM turns t JOIN speakers s ON s.id = t.speaker_id WHERE s.name = 'carol'"
        ).fetchone()[0]
    assert carols >= 5
    assert run_cli(["remove", "carol"], env).returncode == 0
    with sqlite3.connect(database) as db:
        assert db.execute("SELECT COUNT(*) FROM turns").fetchone()[0] == before - carols
    for path in (archive["root"] / "home").iterdir():
        if path.is_file():
            assert vector not in path.read_bytes(), path.name  # the turn's vector is gone from every file

    other = left[0]["label"]
    erased = run_cli(["voices", "--erase", other, "--json"], env)
    assert erased.returncode == 0 and json.loads(erased.stdout)["turns"] >= 5
    assert json.loads(run_cli(["voices", "--json"], env).stdout)["voices"] == []


def test_a_voice_cannot_be_named_from_a_recording_that_moved(tmp_path, model_dir):
    from speakerid import SpeakerID
    from speakerid.base.errors import EnrollmentError

    sid = SpeakerID.open(tmp_path / "home")
    sid.enroll("alice", clips_of(ALICE, 1)[:4])
    folder = tmp_path / "recordings"
    folder.mkdir()
    spoke = _archive(folder)
    recording = spoke[STRANGERS[0]][0][0]
    timeline = sid.archive.add(recording)
    stranger = next(s.label for s in timeline.segments if s.speaker is None)
    before = sid.archive.voices()
    shutil.move(recording, tmp_path / "elsewhere.wav")
    with pytest.raises(EnrollmentError, match="moved or changed"):
        sid.archive.name(stranger, "carol")
    assert "carol" not in sid.store.voiceprints and sid.archive.voices() == before  # nothing changed


def test_the_archive_role_on_every_backend(store_url):
    """Numbers never reused, naming moves turns, erasure cascades from a speaker and from a voice."""
    from store import NewEmbedding, NewTurn, SpeakerNotFoundError, VoiceNotFoundError, open_store

    rng = np.random.default_rng(0)
    vec = lambda: rng.standard_normal(16).astype(np.float32)  # noqa: E731
    with open_store(store_url) as store:
        store.voiceprints.add_speaker("alice", [NewEmbedding(vec())], model="m")
        made = store.archive.add_recording(
            "/r/a.wav", "a" * 64, 9.0,
            [NewTurn(0, 2, vec(), speaker="alice"), NewTurn(2, 5, vec(), voice="x"), NewTurn(5, 9, vec(), voice="y")],
        )  # fmt: skip
        assert made == {"x": "unknown-1", "y": "unknown-2"}
        again = store.archive.add_recording("/r/b.wav", "b" * 64, 4.0, [NewTurn(0, 4, vec(), voice="unknown-2")])
        assert again == {}
        voices = {v.label: v for v in store.archive.voices()}
        assert voices["unknown-2"].recordings == 2 and voices["unknown-2"].seconds == 8.0
        labels, centres = store.archive.voice_vectors()
        assert labels == ["unknown-1", "unknown-2"] and np.allclose(np.linalg.norm(centres, axis=1), 1)
        assert store.archive.remove_voice("unknown-1") == 1
        assert store.archive.add_recording("/r/c.wav", "c" * 64, 1.0, [NewTurn(0, 1, vec(), voice="z")]) == {
            "z": "unknown-3"  # never unknown-1 again
        }
        with pytest.raises(SpeakerNotFoundError):
            store.archive.name_voice("unknown-2", "bob")
        with pytest.raises(VoiceNotFoundError):
            store.archive.name_voice("unknown-1", "alice")
        assert store.archive.name_voice("unknown-2", "ALICE") == 2
        assert {t.label for t in store.archive.turns(recording="/r/b.wav")} == {"alice"}
        assert [v.label for v in store.archive.voices()] == ["unknown-3"]
        store.voiceprints.remove_speaker("alice")
        assert [t.label for t in store.archive.turns()] == ["unknown-3"]
        # the same audio again replaces its turns; a voice left with none is gone
        store.archive.add_recording("/r/c2.wav", "c" * 64, 1.0, [NewTurn(0, 1, vec(), voice="w")])
        assert [v.label for v in store.archive.voices()] == ["unknown-4"]
        # recordings left with no turn went with the erasures (a path may hold a name)
        assert [r.path for r in store.archive.recordings()] == ["/r/c2.wav"]
