"""Identification and verification: open-set decisions on real speech, thresholds, determinism."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
from hypothesis import given, settings
from hypothesis import strategies as st

from speakerid import InsufficientSpeechError, SpeakerID
from speakerid.decide import score_calibration
from speakerid.decide.metrics import eer
from speakerid.decide.scoring import Candidate, decide, sums_by_row
from speakerid.voice.audio import load_audio
from store import ModelMismatchError, SpeakerNotFoundError, open_store

from conftest import DATA, clip_path, clips_of, iden_split, needs_data, plain_embedding, run_cli
from tiny_models import make_tiny_model

pytestmark = [needs_data]


def speaker_of(rel: str) -> str:
    return rel.split("/")[0]


@pytest.fixture(scope="module")
def half_enrolled(tmp_path_factory, model_dir):
    """Every other speaker (8 of 16) enrolled from split 1; the other 8 are never seen."""
    split = iden_split()
    speakers = sorted({speaker_of(r) for _, r in split})
    enrolled, held_out = speakers[::2], speakers[1::2]
    home = tmp_path_factory.mktemp("open-set") / "home"
    sid = SpeakerID.open(home)
    for spk in enrolled:
        sid.enroll(spk, [clip_path(r) for s, r in split if s == 1 and speaker_of(r) == spk], min_speech=8)
    yield sid, enrolled, held_out, split
    sid.close()


def test_open_set_rates_at_the_default_threshold(half_enrolled):
    sid, enrolled, held_out, split = half_enrolled
    assert sid.threshold == pytest.approx(score_calibration.threshold(len(enrolled)), abs=1e-6)
    known = [r for s, r in split if s == 3 and speaker_of(r) in enrolled]
    unknown = [r for s, r in split if s == 3 and speaker_of(r) in held_out]
    accepted = np.mean([sid.identify(clip_path(r)).speaker == speaker_of(r) for r in known])
    rejected = np.mean([sid.identify(clip_path(r)).speaker is None for r in unknown])
    assert len(known) >= 10 and len(unknown) >= 10
    assert accepted >= 0.95, accepted
    assert rejected >= 0.95, rejected


def test_identify_result_shape_and_candidates(half_enrolled):
    sid, enrolled, _, split = half_enrolled
    rel = next(r for s, r in split if s == 3 and speaker_of(r) == enrolled[0])
    result = sid.identify(clip_path(rel), top_k=3)
    data = result.to_dict()
    assert set(data) >= {"speaker", "score", "threshold", "candidates", "speech_seconds", "model"}
    assert data["speaker"] == enrolled[0] and len(data["candidates"]) == 3
    scores = [c["score"] for c in data["candidates"]]
    assert scores == sorted(scores, reverse=True) and data["score"] == scores[0]
    assert data["speech_seconds"] > 1


def test_threshold_per_call_and_per_store(half_enrolled):
    sid, enrolled, _, split = half_enrolled
    rel = next(r for s, r in split if s == 3 and speaker_of(r) == enrolled[1])
    score = sid.identify(clip_path(rel)).score
    assert sid.identify(clip_path(rel), threshold=score + 0.01).speaker is None
    assert sid.identify(clip_path(rel), threshold=score).speaker == enrolled[1]
    sid.set_threshold(0.99)
    try:
        assert SpeakerID.open(sid.home).threshold == 0.99
        assert sid.identify(clip_path(rel)).speaker is None
    finally:
        sid.set_threshold(None)


def test_verify_accepts_the_right_person_and_rejects_others(half_enrolled):
    sid, enrolled, held_out, split = half_enrolled
    own = next(r for s, r in split if s == 3 and speaker_of(r) == enrolled[2])
    other = next(r for s, r in split if s == 3 and speaker_of(r) == held_out[0])
    assert sid.verify(enrolled[2], clip_path(own)).accepted
    result = sid.verify(enrolled[2], clip_path(other))
    assert not result.accepted and result.score < result.threshold
    with pytest.raises(SpeakerNotFoundError):
        sid.verify("nobody", clip_path(own))


def test_insufficient_speech_is_its_own_answer(half_enrolled, tmp_path):
    sid, enrolled, _, split = half_enrolled
    samples, rate = sf.read(clip_path(split[0][1]), dtype="float32")
    short = tmp_path / "short.wav"
    sf.write(short, samples[rate : rate + int(0.35 * rate)], rate)
    with pytest.raises(InsufficientSpeechError, match=r"short.wav: need at least 1 s of speech, got 0\.\d\d s"):
        sid.identify(short)


def test_same_audio_same_score_bit_for_bit(half_enrolled, cli_env):
    sid, enrolled, _, split = half_enrolled
    rel = next(r for s, r in split if s == 3)
    first, second = sid.identify(clip_path(rel)), sid.identify(clip_path(rel))
    assert first.score == second.score and first.candidates == second.candidates
    cli_env["SPEAKERID_HOME"] = str(sid.home)
    runs = [run_cli(["identify", str(clip_path(rel)), "--json"], cli_env) for _ in range(2)]
    assert runs[0].returncode == 0, runs[0].stderr
    assert runs[0].stdout == runs[1].stdout
    assert json.loads(runs[0].stdout)["score"] == round(first.score, 6)


def test_cli_verify_exit_codes(half_enrolled, cli_env):
    sid, enrolled, held_out, split = half_enrolled
    cli_env["SPEAKERID_HOME"] = str(sid.home)
    own = next(r for s, r in split if s == 3 and speaker_of(r) == enrolled[0])
    other = next(r for s, r in split if s == 3 and speaker_of(r) == held_out[0])
    yes = run_cli(["verify", enrolled[0], str(clip_path(own)), "--json"], cli_env)
    no = run_cli(["verify", enrolled[0], str(clip_path(other)), "--json"], cli_env)
    assert (yes.returncode, no.returncode) == (0, 3)
    assert json.loads(yes.stdout)["accepted"] is True and json.loads(no.stdout)["accepted"] is False
    named = run_cli(["identify", str(clip_path(own))], cli_env)
    stranger = run_cli(["identify", str(clip_path(other)), "--json"], cli_env)
    assert (named.returncode, stranger.returncode) == (0, 3), (named.stderr, stranger.stderr)  # 3: unknown
    assert json.loads(stranger.stdout)["speaker"] is None and stranger.stderr == ""


def test_a_false_accept_target_too_few_speakers_can_set_is_said(tmp_path, cli_env):
    """``verify --far`` with two speakers enrolled: the prior answers, and the output says why."""
    cli_env["SPEAKERID_HOME"] = str(tmp_path / "home")
    with SpeakerID.open(tmp_path / "home") as sid:
        sid.enroll("alice", clips_of("id90001", 1))
        sid.enroll("bob", clips_of("id90002", 1))
    probe = str(clips_of("id90001", 3)[0])
    text = run_cli(["verify", "alice", probe, "--far", "0.001"], cli_env)
    assert text.returncode == 0, text.stderr
    assert "note: the false-accept target 0.001 could not be applied: 2 speakers" in text.stdout, text.stdout
    as_json = json.loads(run_cli(["verify", "alice", probe, "--far", "0.001", "--json"], cli_env).stdout)
    assert as_json["threshold"] == pytest.approx(score_calibration.threshold(2), abs=1e-6)
    assert "could not be applied" in as_json["note"] and "the store's threshold" in as_json["note"]
    plain = json.loads(run_cli(["verify", "alice", probe, "--json"], cli_env).stdout)
    assert "note" not in plain  # nothing asked that could not be given


def test_margin_rule_says_unknown_between_two_near_identical_profiles(tmp_path, model_dir):
    """The default margin on real audio: one person enrolled twice under two names (measured:
    the third clip scores 0.829 and 0.831 against the two profiles)."""
    rels = [f"id90003/ls164914/{i:05d}.wav" for i in range(1, 9)]
    with SpeakerID.open(tmp_path / "home") as sid:
        sid.enroll("twin-a", [clip_path(r) for r in rels[:4]])
        sid.enroll("twin-b", [clip_path(r) for r in rels[4:7]], allow_similar=True)  # one voice, two names
        result = sid.identify(clip_path(rels[7]))
    top, runner = result.candidates[:2]
    assert {top.speaker, runner.speaker} == {"twin-a", "twin-b"} and top.score >= result.threshold
    assert top.score - runner.score < sid.options.margin  # the same voice under two names: close scores
    assert result.speaker is None and "within" in result.reason


def test_decide_rules():
    assert decide([], 0.4).speaker is None
    assert decide([Candidate("a", 0.39)], 0.4).speaker is None
    assert decide([Candidate("a", 0.80), Candidate("b", 0.78)], 0.4, margin=0.05).speaker is None
    assert decide([Candidate("a", 0.80), Candidate("b", 0.70)], 0.4, margin=0.05).speaker == "a"


def test_empty_store_answers_unknown(tmp_path, model_dir):
    with SpeakerID.open(tmp_path / "home") as sid:
        result = sid.identify(clip_path(iden_split()[0][1]))
    assert result.speaker is None and result.candidates == [] and result.reason == "no speakers enrolled"


def test_another_model_cannot_query_the_store(half_enrolled, tmp_path):
    sid, *_ = half_enrolled
    make_tiny_model(tmp_path / "tiny", "ecapa")
    with SpeakerID.open(sid.home, model=str(tmp_path / "tiny")) as other:
        with pytest.raises(ModelMismatchError, match="holds embeddings of speechbrain/spkrec-ecapa-voxceleb"):
            other.identify(clip_path(iden_split()[0][1]))


def test_chosen_scoring_is_no_worse_than_plain_speechbrain(clip_embeddings, plain_speechbrain):
    """EER on veri_test.txt and top-1 on split 3: our pipeline vs plain encode_batch on the decoded clips."""
    trials = [line.split() for line in (DATA / "veri_test.txt").read_text().splitlines()]
    labels = [int(t[0]) for t in trials]
    rels = sorted({t[1] for t in trials} | {t[2] for t in trials})
    plain = {rel: plain_embedding(plain_speechbrain, load_audio(clip_path(rel)).samples) for rel in rels}
    ours_eer = eer([clip_embeddings[a] @ clip_embeddings[b] for _, a, b in trials], labels)[0]
    plain_eer = eer([plain[a] @ plain[b] for _, a, b in trials], labels)[0]
    assert ours_eer <= plain_eer + 1e-9, (ours_eer, plain_eer)
    assert ours_eer <= 0.01
    # top-1 cannot be worse than plain SpeechBrain's if it is perfect: centroid of split 1, split 3 queries
    split = iden_split()
    speakers = sorted({speaker_of(r) for _, r in split})
    centroids = np.stack(
        [np.mean([clip_embeddings[r] for s, r in split if s == 1 and speaker_of(r) == spk], axis=0) for spk in speakers]
    )
    centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)
    tests = [r for s, r in split if s == 3]
    top1 = np.mean([speakers[int(np.argmax(centroids @ clip_embeddings[r]))] == speaker_of(r) for r in tests])
    assert top1 == 1.0


@pytest.mark.parametrize("exclude", [None, "s003"])
def test_rank_is_the_full_sort_cut_to_top_k(tmp_path, exclude):
    """rank() picks the top k by partial sort; it must equal sorting every profile (ties by name)."""
    from speakerid.decide.scoring import Profiles
    from store import NewEmbedding

    rng = np.random.default_rng(3)
    vectors = rng.standard_normal((40, 8)).astype(np.float32)
    vectors[7] = vectors[3]  # an exact tie: same profile under two names
    store = open_store(tmp_path / "home")
    store.voiceprints.import_speakers({f"s{i:03d}": [NewEmbedding(v)] for i, v in enumerate(vectors)}, model="m")
    profiles = Profiles(store.voiceprints)
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    for query in [unit[3], *rng.standard_normal((20, 8)).astype(np.float32)]:
        scores = unit @ query
        expected = [f"s{i:03d}" for i in sorted(range(40), key=lambda i: (-scores[i], i)) if f"s{i:03d}" != exclude]
        for top_k in (1, 2, 5, 39, 40):
            got = profiles.rank(query, top_k=top_k, exclude=exclude)
            assert [c.speaker for c in got] == expected[:top_k]
            assert np.allclose([c.score for c in got], [scores[int(n[1:])] for n in expected[:top_k]], atol=1e-6)
    store.close()


def test_rank_above_50000_speakers_shortlists_by_index_then_scores_profiles(tmp_path):
    """Above EXACT_UP_TO speakers the index shortlists candidates and their profiles are scored:
    for voices near an enrolled one the ranking equals scoring every profile, and only the
    shortlisted speakers' clips are read (never every vector)."""
    from speakerid.decide.scoring import EXACT_UP_TO, Profiles
    from store import NewEmbedding

    rng = np.random.default_rng(4)
    n, dim = EXACT_UP_TO + 10_000, 64
    vectors = rng.standard_normal((n, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    with open_store(tmp_path / "home") as store:
        store.voiceprints.import_speakers({f"s{i:06d}": [NewEmbedding(v)] for i, v in enumerate(vectors)}, model="m")
        profiles = Profiles(store.voiceprints)
        assert len(profiles) == n > EXACT_UP_TO
        read = store.voiceprints.vectors
        asked = []
        store.voiceprints.vectors = lambda names=None: (asked.append(names), read(names))[1]
        picks = rng.choice(n, 100, replace=False)
        queries = vectors[picks] + 0.05 * rng.standard_normal((100, dim)).astype(np.float32)
        for pick, query in zip(picks, queries):
            scores = vectors @ query
            exact = [f"s{i:06d}" for i in np.argsort(-scores, kind="stable")[:3]]
            got = profiles.rank(query, top_k=3)
            assert got[0].speaker == f"s{pick:06d}" == exact[0]
            assert [c.speaker for c in got] == exact
            assert np.allclose([c.score for c in got], np.sort(scores)[::-1][:3], atol=1e-5)
        assert len(asked) == 100 and all(names is not None and len(names) <= 64 for names in asked)


def test_profiles_catch_up_from_the_change_log_to_what_a_full_read_gives(store_url):
    """After enrollments, removals, replacements and appends, a process's speaker profiles are
    brought up to date from the store's change log (no full read of the vectors), and equal, bit
    for bit, the profiles a new process computes from every vector."""
    from speakerid.decide.scoring import Profiles
    from store import NewEmbedding

    rng = np.random.default_rng(8)
    new = lambda n: [NewEmbedding(v / np.linalg.norm(v)) for v in rng.standard_normal((n, 16)).astype(np.float32)]  # noqa: E731
    with open_store(store_url, model="m", dimension=16) as store:
        for i in range(30):
            store.voiceprints.add_speaker(f"s{i:02d}", new(2), model="m")
        profiles = Profiles(store.voiceprints)
        profiles.matrix()
        full_reads = []
        read = store.voiceprints.vectors
        store.voiceprints.vectors = lambda name=None: (full_reads.append(name), read(name))[1]
        store.voiceprints.add_speaker("new", new(2), model="m")
        store.voiceprints.remove_speaker("s03")
        store.voiceprints.add_speaker("s04", new(1), model="m", mode="replace")
        store.voiceprints.add_speaker("s05", new(1), model="m", mode="append")
        store.voiceprints.add_speaker("aaa", new(3), model="m")
        names, matrix = profiles.matrix()
        generation, vectors, owners = profiles.snapshot()
        assert full_reads == [] and len(names) == 31 and "s03" not in names
        store.voiceprints.vectors = read
        fresh = Profiles(store.voiceprints)
        assert (names, generation, owners) == (fresh.matrix()[0], *fresh.snapshot()[::2])
        assert np.array_equal(matrix, fresh.matrix()[1]) and np.array_equal(vectors, fresh.snapshot()[1])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 6), st.floats(-1e6, 1e6, width=32)), max_size=40), st.integers(0, 3))
def test_profile_sums_are_np_add_at_bit_for_bit(rows_values, extra_rows):
    """Speakers' sums, added in clip order as ``np.add.at`` adds them: profiles (and so every score)
    do not depend on how they were summed; rows without clips stay zero."""
    rows = np.array([r for r, _ in rows_values], dtype=np.int64)
    vectors = np.array([[v, -v / 3] for _, v in rows_values], dtype=np.float32).reshape(-1, 2)
    count = (int(rows.max()) + 1 if len(rows) else 0) + extra_rows
    expected = np.zeros((count, 2))
    np.add.at(expected, rows, vectors)
    assert np.array_equal(sums_by_row(vectors, rows, count), expected)
