"""Enrollment: the command, the API, and each quality gate refusing real (doctored) audio."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from speakerid import EnrollmentError, SpeakerID, SpeakerIDError
from store import SpeakerExistsError

from conftest import DATA, clip_path, clips_of, iden_split, needs_data, run_cli, store_digest

pytestmark = [needs_data]

A = [f"id90001/ls142285/{i:05d}.wav" for i in range(1, 8)]
B = [f"id90002/ls15444/{i:05d}.wav" for i in range(1, 8)]


def files_of(rels):
    return [clip_path(r) for r in rels]


@pytest.fixture
def home(tmp_path, model_dir) -> Path:
    home = tmp_path / "home"
    with SpeakerID.open(home) as sid:
        sid.enroll("alice", files_of(A[:3]))
    return home


def refused(home: Path, clips, match: str, name: str = "carol", **kw):
    before = store_digest(home)
    with SpeakerID.open(home) as sid, pytest.raises(SpeakerIDError) as info:
        sid.enroll(name, clips, **kw)
    assert store_digest(home) == before
    assert "\n" not in str(info.value)
    assert match in str(info.value), str(info.value)
    return str(info.value)


def test_enroll_then_append_then_replace(home):
    with SpeakerID.open(home) as sid:
        alice = sid.store.voiceprints.speaker("alice")
        assert alice.clips == 3 and alice.speech_seconds > 10
        with pytest.raises(SpeakerExistsError, match="--append .* --replace"):
            sid.enroll("alice", files_of(A[3:5]))
        added = sid.enroll("alice", files_of(A[3:5]), append=True)
        assert (added.clips, added.total_clips) == (2, 5)
        with pytest.raises(EnrollmentError, match="already enrolled for alice"):
            sid.enroll("alice", files_of(A[3:4]), append=True)
        again = sid.enroll("alice", files_of(A[5:7]), replace=True)
        assert again.total_clips == 2


def test_too_little_speech_in_total(home, tmp_path):
    samples, rate = sf.read(clip_path(B[0]), dtype="float32")
    cut = tmp_path / "six-seconds.wav"
    sf.write(cut, samples[: 6 * rate], rate)
    message = refused(home, [cut], "s of speech in total, need at least 10 s")
    assert "carol" in message


def test_clip_under_one_second_of_speech(home, tmp_path):
    samples, rate = sf.read(clip_path(B[0]), dtype="float32")
    short = tmp_path / "short.wav"
    sf.write(short, samples[rate : rate + int(0.8 * rate)], rate)
    refused(home, files_of(B[1:4]) + [short], f"{short}: need at least 1 s of speech")


def test_heavily_clipped_clip(home, tmp_path):
    samples, rate = sf.read(clip_path(B[0]), dtype="float32")
    loud = tmp_path / "clipped.wav"
    sf.write(loud, np.clip(samples * 20, -1, 1), rate)
    refused(home, files_of(B[1:4]) + [loud], f"{loud}: heavily clipped")


def test_too_quiet_clip(home, tmp_path):
    samples, rate = sf.read(clip_path(B[0]), dtype="float32")
    quiet = tmp_path / "quiet.wav"
    sf.write(quiet, samples * 0.005, rate, subtype="FLOAT")
    refused(home, files_of(B[1:4]) + [quiet], f"{quiet}: too quiet")


def test_someone_else_among_the_clips_is_named(home):
    intruder = sorted((DATA / "wav" / "id90101").rglob("*.wav"))[0]
    message = refused(home, files_of(B[:4]) + [intruder], "probably someone else")
    assert str(intruder) in message and str(clip_path(B[0])) not in message


def test_two_clips_of_two_people(home):
    vctk = sorted((DATA / "wav" / "id90102").rglob("*.wav"))[0]
    refused(home, [clip_path(B[0]), vctk], "do not sound like the same speaker")


def test_one_bad_file_fails_the_whole_enrollment(home, tmp_path):
    bad = tmp_path / "notes.wav"
    bad.write_text("not audio")
    refused(home, files_of(B[:4]) + [bad], f"{bad}: not a readable audio file")
    refused(home, files_of(B[:4]) + [tmp_path / "missing.wav"], "file not found")


def test_duplicate_recording_in_one_enrollment(home):
    refused(home, files_of(B[:3]) + files_of(B[:1]), "same audio as")


def test_one_voice_under_a_second_name_is_refused_unless_allowed(home):
    """Issue #35: the same person under a second name is refused (and the attempt is in the change
    log, so the store gains that one row and nothing else); an admin may allow it, with a warning."""
    from speakerid import EnrollmentError

    with SpeakerID.open(home) as sid:
        speakers = [s.name for s in sid.speakers()]
        with pytest.raises(EnrollmentError, match="the voice of alice-again is alice's"):
            sid.enroll("alice-again", files_of(A[3:6]))
        assert [s.name for s in sid.speakers()] == speakers
        assert sid.store.audit.events(kind="enroll_refused")[-1].detail["like"] == "alice"
        result = sid.enroll("alice-again", files_of(A[3:6]), allow_similar=True)
        assert result.warnings and "allowed by an admin" in result.warnings[0] and "alice" in result.warnings[0]
        sid.remove("alice-again")


def test_folder_expands_to_its_audio_files(tmp_path, model_dir):
    with SpeakerID.open(tmp_path / "home") as sid:
        result = sid.enroll("bob", [DATA / "wav" / "id90002"])
    assert result.clips == len(list((DATA / "wav" / "id90002").rglob("*.wav")))


def test_all_16_speakers_from_the_command_line_then_split3_identified(tmp_path, cli_env):
    # id10002's two split-1 clips hold 8.8 s of speech, under the 10 s default: lowered here, as a user would.
    split = iden_split()
    speakers = sorted({rel.split("/")[0] for _, rel in split})
    for spk in speakers:
        clips = [str(c) for c in clips_of(spk, 1)]
        done = run_cli([spk, *clips, "--json", "--min-speech", "8"], cli_env, module="enroll.cli")
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["clips"] == len(clips)
    listed = run_cli(["speakers", "--json"], cli_env)
    assert [s["name"] for s in json.loads(listed.stdout)["speakers"]] == speakers
    with SpeakerID.open(cli_env["SPEAKERID_HOME"]) as sid:
        for _, rel in [x for x in split if x[0] == 3]:
            assert sid.identify(clip_path(rel), top_k=1).candidates[0].speaker == rel.split("/")[0], rel


def test_cli_refusal_is_one_line_and_store_unchanged(home, cli_env, tmp_path):
    cli_env["SPEAKERID_HOME"] = str(home)
    before = store_digest(home)
    bad = tmp_path / "image.wav"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(500))
    done = run_cli(["dave", *map(str, files_of(B[:3])), str(bad)], cli_env, module="enroll.cli")
    assert done.returncode == 1
    assert done.stderr.strip() == f"error: {bad}: not a readable audio file (Format not recognised.)" or (
        done.stderr.count("\n") == 1 and done.stderr.startswith(f"error: {bad}: not a readable audio file")
    )
    assert store_digest(home) == before
    exists = run_cli(["alice", *map(str, files_of(B[:3]))], cli_env, module="enroll.cli")
    assert exists.returncode == 1 and "--append" in exists.stderr and "--replace" in exists.stderr


def test_no_audio_is_kept_in_the_store(home):
    """README and SECURITY.md: raw audio is never stored — not one 512-byte stretch of any clip."""
    with SpeakerID.open(home) as sid:
        sid.enroll("bea", files_of(B[:3]) + [clip_path(B[3]).read_bytes()])
    stored = b"".join(p.read_bytes() for p in home.iterdir() if p.is_file())
    for rel in A[:3] + B[:4]:
        pcm = clip_path(rel).read_bytes()[44:]
        for start in range(0, len(pcm) - 512, len(pcm) // 16):
            assert pcm[start : start + 512] not in stored, (rel, start)
