"""Shared fixtures: the real model and real speech from ../shared, never downloaded."""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
GUIDES = sorted((ROOT / "docs").glob("*.md"))  # the README's depth: one guide per subject
SHARED = Path(os.environ.get("SPEAKERID_SHARED", ROOT.parent / "shared"))
DATA = SHARED / "data" / "mini-voxceleb1"
LISTS = SHARED / "data" / "voxceleb1-lists"
MODEL_DIR = Path(os.environ.get("SPEAKERID_MODEL") or SHARED / "models" / "spkrec-ecapa-voxceleb")

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# One cache for the whole run (the model's ONNX files are built once, ~5 s, not once per test);
# tests about the cache itself point SPEAKERID_CACHE elsewhere.
SESSION_CACHE = Path(os.environ.get("SPEAKERID_TEST_CACHE") or ROOT / ".pytest_cache" / "speakerid-cache")
os.environ["SPEAKERID_CACHE"] = str(SESSION_CACHE)
if (MODEL_DIR / "embedding_model.ckpt").is_file():
    os.environ["SPEAKERID_MODEL"] = str(MODEL_DIR.resolve())  # what SpeakerID.open() uses by default

# CI sets this: a missing model, data set or server then fails the run instead of skipping tests.
REQUIRE_ALL = os.environ.get("SPEAKERID_REQUIRE_ALL") == "1"


_postgres: list[tuple[str, str]] = []


def postgres() -> tuple[str, str]:
    """``(URL, why not)``: the base URL of a PostgreSQL database the tests may fill (each test gets
    a schema of its own). The server SPEAKERID_TEST_POSTGRES names, else a throwaway one started on
    first use when PostgreSQL's server programs are installed (tests/postgres_server.py)."""
    if not _postgres:
        given = os.environ.get("SPEAKERID_TEST_POSTGRES", "")
        if given:
            _postgres.append((given, ""))
        else:
            import postgres_server

            if postgres_server.server_programs() is None:
                _postgres.append(
                    (
                        "",
                        "PostgreSQL is not installed (apt-get install postgresql) "
                        "and SPEAKERID_TEST_POSTGRES is not set",
                    )
                )
            else:
                try:
                    url = postgres_server.start()
                    os.environ["SPEAKERID_TEST_POSTGRES"] = url  # the tests' subprocesses use the same server
                    _postgres.append((url, ""))
                except Exception as exc:  # noqa: BLE001 -- said in the skip reason (or the REQUIRE_ALL error)
                    _postgres.append(("", f"could not start a throwaway PostgreSQL server: {exc}"))
    return _postgres[0]


CHROMIUM = os.environ.get("SPEAKERID_CHROMIUM") or next(
    (found for name in ("chromium", "chromium-browser", "google-chrome") if (found := shutil.which(name))), ""
)


def _needs(present: bool, what: str):
    if REQUIRE_ALL and not present:
        raise pytest.UsageError(f"SPEAKERID_REQUIRE_ALL=1 but {what}")
    return pytest.mark.skipif(not present, reason=what)


needs_model = _needs((MODEL_DIR / "embedding_model.ckpt").is_file(), f"real model not found at {MODEL_DIR}")
needs_data = _needs((DATA / "iden_split.txt").is_file(), f"{DATA} not found")
needs_postgres = pytest.mark.needs_postgres  # a server is found or started when such a test first runs


def pytest_runtest_setup(item):
    if item.get_closest_marker("needs_postgres"):
        url, why_not = postgres()
        if not url:
            if REQUIRE_ALL:
                pytest.fail(f"SPEAKERID_REQUIRE_ALL=1 but {why_not}")
            pytest.skip(why_not)


needs_browser = _needs(
    bool(CHROMIUM) and Path(CHROMIUM).is_file(), "Chromium is not installed (apt-get install chromium)"
)
needs_curl = _needs(shutil.which("curl") is not None, "curl is not installed (.ci/run installs it)")


@contextlib.contextmanager
def postgres_schema():
    """A URL to an empty schema of the test database, dropped afterwards."""
    import uuid
    from urllib.parse import quote

    import psycopg

    base = postgres()[0]
    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    joiner = "&" if "?" in base else "?"
    try:
        yield f"{base}{joiner}options={quote(f'-csearch_path={schema}')}"
    finally:
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


BACKENDS = ["sqlite", pytest.param("postgres", marks=needs_postgres)]


@pytest.fixture(params=BACKENDS)
def store_url(request, tmp_path):
    """Where a store lives, for each backend: a folder, or a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        yield str(tmp_path / "home")
    else:
        with postgres_schema() as url:
            yield url


def clip_path(rel: str) -> Path:
    return DATA / "wav" / rel


def iden_split() -> list[tuple[int, str]]:
    return [
        (int(a), b)
        for a, b in (line.split() for line in (DATA / "iden_split.txt").read_text().splitlines() if line.strip())
    ]


def clips_of(speaker: str, split: int) -> list[Path]:
    """A mini-voxceleb1 speaker's clips (e.g. ``"id90001"``) in one split of iden_split.txt."""
    return [clip_path(r) for s, r in iden_split() if s == split and r.startswith(speaker + "/")]


def store_digest(home: Path) -> dict[str, str]:
    """Hashes of the store's files (with every connection closed, so the WAL is folded in)."""
    import hashlib

    from store import DB_NAME, INDEX_NAME

    return {
        name: hashlib.sha256((home / name).read_bytes()).hexdigest()
        for name in (DB_NAME, INDEX_NAME)
        if (home / name).exists()
    }


@pytest.fixture(scope="session")
def model_dir() -> Path:
    if not (MODEL_DIR / "embedding_model.ckpt").is_file():
        pytest.skip(f"real model not found at {MODEL_DIR}")
    return MODEL_DIR


@pytest.fixture(scope="session")
def embedder(model_dir):
    from speakerid.voice.embedder import load_embedder

    return load_embedder(str(model_dir))


@pytest.fixture(scope="session")
def plain_speechbrain(model_dir):
    """SpeechBrain's own EncoderClassifier on the same folder, untouched by anything of ours."""
    from speakerid.voice.speechbrain_engine import load_speechbrain

    return load_speechbrain(model_dir)


def plain_embedding(classifier, samples: np.ndarray) -> np.ndarray:
    import torch

    with torch.inference_mode():
        v = classifier.encode_batch(torch.from_numpy(samples)[None]).reshape(-1).numpy()
    return v / np.linalg.norm(v)


@pytest.fixture(scope="session")
def clip_embeddings(embedder) -> dict[str, np.ndarray]:
    """Every mini-voxceleb1 clip embedded once per session, as the product does (whole clip)."""
    from speakerid.voice.audio import load_audio
    from speakerid.voice.vad import extract_speech

    out = {}
    for _, rel in iden_split():
        speech = extract_speech(load_audio(clip_path(rel)))
        out[rel] = embedder.embed([speech.samples])[0]
    return out


@pytest.fixture
def cli_env(tmp_path, model_dir) -> dict[str, str]:
    """Environment for running the installed commands in a subprocess against a fresh home."""
    env = dict(os.environ)
    env.update(
        SPEAKERID_HOME=str(tmp_path / "home"),
        SPEAKERID_MODEL=str(model_dir),
        HF_HUB_OFFLINE="1",
        SPEAKERID_CACHE=str(SESSION_CACHE),
    )
    return env


def run_cli(args: list[str], env: dict[str, str], *, module: str = "speakerid.cli", timeout: float = 300):
    """Run a command as a user would: as root, without the power to read files whose mode forbids it."""
    import subprocess

    from bad_audio import drop_file_override

    return subprocess.run(
        [sys.executable, "-m", module, *args],
        env=env,
        capture_output=True,
        text=True,
        errors="surrogateescape",
        timeout=timeout,
        preexec_fn=drop_file_override,
    )


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serving(home: Path, *options: str, env: dict[str, str] | None = None):
    """``speakerid serve`` as a real uvicorn process on 127.0.0.1; yields (base URL, process). What the
    server prints (its access log) goes to a file, ``process.log`` (a pipe nobody reads would fill
    and stop the server)."""
    import subprocess
    import tempfile
    import time

    import httpx

    port = free_port()
    env = {**os.environ, "SPEAKERID_HOME": str(home), "HF_HUB_OFFLINE": "1", **(env or {})}
    log = Path(tempfile.mkdtemp(prefix="speakerid-serve-")) / "server.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "speakerid.cli", "serve", "--port", str(port), *options],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
        )
    proc.log = log
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + 180
    try:
        while True:
            try:
                if httpx.get(base + "/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.time() > deadline:
                proc.kill()
                pytest.fail(f"server did not start: {log.read_text()[-3000:]}")
            time.sleep(0.5)
        yield base, proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(log.parent, ignore_errors=True)


@pytest.fixture(autouse=True)
def _drop_unimportable_lazy_modules():
    """Hypothesis reads ``__file__`` of every module in ``sys.modules`` and only expects
    AttributeError; SpeechBrain registers lazy modules for optional integrations (k2, ...) that
    raise ImportError instead. Those modules can never work without their packages, so forget them."""
    for name, module in list(sys.modules.items()):
        try:
            getattr(module, "__file__", None)
        except ImportError:
            del sys.modules[name]
    yield
