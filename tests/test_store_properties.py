"""Property tests: random sequences of enroll / append / replace / remove (and reopen, index loss,
refused writes) checked step by step against a plain in-memory model of what the store should hold."""

from __future__ import annotations

import itertools
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from store import INDEX_NAME, NewEmbedding, SpeakerExistsError, SpeakerIDError, SpeakerNotFoundError, Store, open_store

from conftest import needs_postgres, postgres_schema

DIM = 8
NAMES = st.sampled_from(["ana", "ben", "chloé", "dev", "eun-ji", "ülkü"])
CLIPS = st.lists(st.integers(0, 2**32 - 1), min_size=1, max_size=4)  # one seed per clip
MODEL = "test-model"


def clip_vectors(seeds: list[int]) -> np.ndarray:
    v = np.stack([np.random.default_rng(s).standard_normal(DIM) for s in seeds]).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


RECORDINGS = itertools.count()  # every clip a recording of its own, as enrollment's digests make them


def new_embeddings(vectors: np.ndarray) -> list[NewEmbedding]:
    return [NewEmbedding(v, clip_sha256=f"{next(RECORDINGS):064x}", speech_seconds=3.0) for v in vectors]


class StoreMachine(RuleBasedStateMachine):
    """The model is ``{name: [vector, ...]}``; every rule does the same thing to both."""

    approx_threshold = 10**9

    def __init__(self):
        super().__init__()
        self.folder = Path(tempfile.mkdtemp(prefix="speakerid-props-"))
        self.location = self._location()
        self.store = self._open()
        self.model: dict[str, list[np.ndarray]] = {}

    def _location(self) -> str:
        return str(self.folder / "home")

    def _open(self) -> Store:
        return open_store(self.location, approx_threshold=self.approx_threshold)

    def teardown(self):
        self.store.close()
        shutil.rmtree(self.folder, ignore_errors=True)

    @rule(name=NAMES, seeds=CLIPS)
    def enroll(self, name, seeds):
        vectors = clip_vectors(seeds)
        if name in self.model:
            with pytest.raises(SpeakerExistsError):
                self.store.voiceprints.add_speaker(name, new_embeddings(vectors), model=MODEL)
        else:
            self.store.voiceprints.add_speaker(name, new_embeddings(vectors), model=MODEL)
            self.model[name] = list(vectors)

    @rule(name=NAMES, seeds=CLIPS)
    def append(self, name, seeds):
        vectors = clip_vectors(seeds)
        self.store.voiceprints.add_speaker(name, new_embeddings(vectors), model=MODEL, mode="append")
        self.model.setdefault(name, []).extend(vectors)

    @rule(name=NAMES, seeds=CLIPS)
    def replace(self, name, seeds):
        vectors = clip_vectors(seeds)
        self.store.voiceprints.add_speaker(name, new_embeddings(vectors), model=MODEL, mode="replace")
        self.model[name] = list(vectors)

    @rule(name=NAMES)
    def remove(self, name):
        if name in self.model:
            self.store.voiceprints.remove_speaker(name)
            del self.model[name]
        else:
            with pytest.raises(SpeakerNotFoundError):
                self.store.voiceprints.remove_speaker(name)

    @rule(name=NAMES, seeds=CLIPS, bad=st.sampled_from(["nan", "dimension", "model", "empty"]))
    def refused_write(self, name, seeds, bad):
        """A write that must fail changes nothing (the invariants check that)."""
        vectors = clip_vectors(seeds)
        model = MODEL
        if bad == "nan":
            vectors[0, 0] = np.nan
        elif bad == "dimension":
            vectors = np.ones((len(seeds), DIM + 1), dtype=np.float32)
        elif bad == "model":
            model = "another-model"
        embeddings = [] if bad == "empty" else new_embeddings(vectors)
        if bad in ("dimension", "model") and not self.model and self.store.voiceprints.model is None:
            return  # an empty, unbound store would bind to it: not a refused write
        with pytest.raises(SpeakerIDError):
            self.store.voiceprints.add_speaker(name, embeddings, model=model, mode="append")

    @rule(drop_index=st.booleans())
    def reopen(self, drop_index):
        """A new process opening the store, possibly after the derived index was lost."""
        self.store.close()
        drop_index = drop_index and self.store.backend == "sqlite"  # PostgreSQL keeps no index file
        if drop_index:
            (self.folder / "home" / INDEX_NAME).unlink(missing_ok=True)
        self.store = self._open()
        if drop_index and self.model:
            assert not self.store.maintenance.check().consistent  # doctor sees the loss; the next search rebuilds

    @invariant()
    def agrees_with_the_model(self):
        """In this order: SQLite holds the model; search (which heals a lost index) finds every
        clip's owner; then the index file on disk agrees with SQLite."""
        self._holds_what_the_model_holds()
        self._search_finds_every_clip()
        report = self.store.maintenance.check()
        assert report.consistent, report.problems

    def _holds_what_the_model_holds(self):
        speakers = {s.name: s.clips for s in self.store.voiceprints.speakers()}
        assert speakers == {name: len(v) for name, v in self.model.items()}
        for name, expected in self.model.items():
            _, vectors, _ = self.store.voiceprints.vectors(name)
            np.testing.assert_array_equal(vectors, np.stack(expected))

    def _search_finds_every_clip(self):
        everyone = [(name, v) for name, vs in self.model.items() for v in vs]
        if not everyone:
            assert self.store.voiceprints.search(clip_vectors([0])[0]) == []
            return
        results = self.store.voiceprints.search_many(np.stack([v for _, v in everyone]), k=1)
        for (_name, vector), hits in zip(everyone, results):
            owners = {n for n, vs in self.model.items() if any(np.array_equal(vector, u) for u in vs)}
            assert hits[0].speaker in owners and hits[0].score == pytest.approx(1.0, abs=1e-5)


class ApproximateStoreMachine(StoreMachine):
    """The same, with the approximate (sketch + exact re-rank) index in use from 10 vectors on."""

    approx_threshold = 10


class PostgresStoreMachine(StoreMachine):
    """The same rules against a real PostgreSQL server (a fresh schema per example)."""

    def _location(self) -> str:
        self._schema = postgres_schema()
        return self._schema.__enter__()

    def teardown(self):
        super().teardown()
        self._schema.__exit__(None, None, None)


SETTINGS = settings(
    max_examples=25, stateful_step_count=25, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
TestStore = StoreMachine.TestCase
TestStore.settings = SETTINGS
TestApproximateStore = ApproximateStoreMachine.TestCase
TestApproximateStore.settings = SETTINGS
TestPostgresStore = needs_postgres(PostgresStoreMachine.TestCase)
TestPostgresStore.settings = SETTINGS
