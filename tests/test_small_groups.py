"""Decisions for a handful of people (issue #35): the threshold comes from the score calibration
for the group's size, no enrollment can bend it, a copy of an enrolled voice is refused, and every
answer says how sure it is."""

from __future__ import annotations

import json

import pytest
import soundfile as sf

from speakerid import EnrollmentError, SpeakerID
from speakerid.apps.access import AccessControl
from speakerid.decide import score_calibration
from speakerid.voice.audio import load_audio, resample

from conftest import clips_of, needs_data, run_cli

pytestmark = [needs_data]
PEOPLE = ["id90001", "id90002", "id90003", "id90004", "id90005", "id90006", "id90007", "id90008"]


def decoy(clip, folder, i: int):
    """An enrolled clip played backwards and 10 % faster (pitch up): issue #35's attack."""
    samples = load_audio(clip).samples[::-1].copy()
    path = folder / f"decoy-{i}.wav"
    sf.write(path, resample(samples, 17_600, 16_000), 16_000)
    return path


@pytest.fixture(scope="module")
def group(tmp_path_factory, model_dir):
    home = tmp_path_factory.mktemp("small-groups") / "home"
    with SpeakerID.open(home) as sid:
        for person in PEOPLE:
            sid.enroll(person, clips_of(person, 1))
        for person in PEOPLE:
            AccessControl(sid).grant(person, "door")
    return home


def test_a_small_groups_threshold_is_the_score_calibrations_for_its_size(group):
    with SpeakerID.open(group) as sid:
        calibration = sid.calibration()
        assert calibration.source == "model" and calibration.speakers == len(PEOPLE)
        assert sid.threshold == pytest.approx(score_calibration.threshold(len(PEOPLE)), abs=1e-6)
        assert score_calibration.threshold(3) < sid.threshold < score_calibration.threshold(20)


def test_decoys_made_from_enrolled_clips_are_refused_and_logged(group, tmp_path):
    with SpeakerID.open(group) as sid:
        before = (sid.threshold, AccessControl(sid).resources()[0]["threshold"])
        for i, person in enumerate(PEOPLE[:4]):
            copies = [decoy(c, tmp_path, 10 * i + k) for k, c in enumerate(clips_of(person, 1))]
            with pytest.raises(EnrollmentError, match=f"is {person}'s time-reversed at 11[05]% speed"):
                sid.enroll(f"decoy{i}", copies)
        refused = sid.store.audit.events(kind="enroll_refused")
        assert [e.detail["like"] for e in refused] == PEOPLE[:4]
        after = (sid.threshold, AccessControl(sid).resources()[0]["threshold"])
        assert after == before and len(sid.speakers()) == len(PEOPLE)


def test_an_admin_may_allow_a_copy_and_it_moves_no_ones_threshold_much(tmp_path, model_dir):
    """Even allowed (the admin's override, logged), decoys leave the genuine admissions where they
    were: the threshold follows the group's size, not how alike its members sound."""
    home = tmp_path / "home"
    with SpeakerID.open(home) as sid:
        for person in PEOPLE:
            sid.enroll(person, clips_of(person, 1))
            AccessControl(sid).grant(person, "door")
        probes = [(p, c) for p in PEOPLE for c in clips_of(p, 3)]
        admitted = sum(AccessControl(sid).check("door", c, p).allow for p, c in probes)
        for i, person in enumerate(PEOPLE[:4]):
            copies = [decoy(c, tmp_path, 10 * i + k) for k, c in enumerate(clips_of(person, 1))]
            result = sid.enroll(f"decoy{i}", copies, allow_similar=True)
            assert any("allowed by an admin" in w for w in result.warnings)
        assert len(sid.store.audit.events(kind="near_copy_allowed")) == 4
        AccessControl(sid).set_lockout(1000, 60)
        again = sum(AccessControl(sid).check("door", c, p).allow for p, c in probes)
    assert again >= 0.9 * admitted, (admitted, again)


def test_every_answer_says_how_sure_it_is(group, cli_env):
    with SpeakerID.open(group) as sid:
        named = sid.identify(clips_of("id90003", 3)[0])
        stranger = sid.identify(clips_of("id90101", 3)[0])
        assert named.speaker == "id90003" and named.confidence > 0.95
        assert stranger.speaker is None and stranger.confidence > 0.9  # sure it is nobody enrolled
        claim = sid.verify("id90003", clips_of("id90003", 3)[0])
        assert claim.accepted and claim.confidence > 0.95
        allowed = AccessControl(sid).check("door", clips_of("id90003", 3)[1], "id90003")
        assert allowed.allow and allowed.confidence > 0.95
    cli_env["SPEAKERID_HOME"] = str(group)
    shown = json.loads(run_cli(["identify", str(clips_of("id90003", 3)[0]), "--json"], cli_env).stdout)
    assert 0.95 < shown["confidence"] <= 1


def test_enrollment_says_how_good_the_voiceprint_is(tmp_path, model_dir, cli_env):
    with SpeakerID.open(tmp_path / "home") as sid:
        short = sid.enroll("alice", clips_of("id90001", 1)[:1], min_speech=1)
        long = sid.enroll("bob", clips_of("id90002", 1))
    assert short.quality["speech_seconds"] < 20 and "add" in short.quality["advice"][0]
    assert 0 <= long.quality["expected_accept"] <= 1 and long.quality["agreement"] > 0.5
    cli_env["SPEAKERID_HOME"] = str(tmp_path / "cli")
    done = run_cli(["carol", *map(str, clips_of("id90003", 1))], cli_env, module="enroll.cli")
    assert done.returncode == 0 and "quality: " in done.stdout and "clips agree" in done.stdout
