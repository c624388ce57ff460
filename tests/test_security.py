"""Security and robustness: what an attacker or a careless user tries, against a real uvicorn on
127.0.0.1, the Python API and the command line (issue #15). Each test failed on the code before it."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
import soundfile as sf

from speakerid import InvalidValueError, SpeakerID, SpeakerIDError, UsageError
from speakerid.apps.access import AccessControl
from speakerid.apps.keys import create_key
from store import DB_NAME, INDEX_NAME, DuplicateClipError, InvalidNameError, NewEmbedding, StoreError, open_store

from conftest import DATA, SHARED, clips_of, needs_data, run_cli, serving, store_digest

pytestmark = [needs_data]


def auth(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}


def wav_bytes(path) -> bytes:
    return path.read_bytes()


@pytest.fixture(scope="module")
def home(tmp_path_factory, model_dir):
    home = tmp_path_factory.mktemp("security") / "home"
    with SpeakerID.open(home) as sid:
        sid.enroll("alice", clips_of("id90001", 1))
        sid.enroll("bob", clips_of("id90002", 1))
        AccessControl(sid).grant("alice", "door")
    return home


# -- keys: revoking every key never opens the server --------------------------------------------------
def test_revoking_every_key_does_not_open_the_server(tmp_path, home):
    mine = tmp_path / "home"
    with SpeakerID.open(mine) as sid:
        sid.enroll("alice", clips_of("id90001", 1))
        key, record = create_key(sid.store, "admin")
    clip = wav_bytes(clips_of("id90001", 3)[0])
    with serving(mine) as (base, _):
        assert httpx.post(base + "/v1/identify", content=clip, headers=auth(key), timeout=60).status_code == 200
        assert run_cli(["keys", "revoke", record.id], {**os.environ, "SPEAKERID_HOME": str(mine)}).returncode == 0
        for method, path in (("post", "/v1/identify"), ("get", "/v1/speakers"), ("delete", "/v1/speakers/alice")):
            r = getattr(httpx, method)(base + path, **({"content": clip} if method == "post" else {}), timeout=60)
            assert r.status_code == 401, (path, r.status_code, r.text)
            assert r.json() == {"error": "missing API key (Authorization: Bearer <key>)"}
        assert httpx.get(base + "/v1/speakers", headers=auth(key)).status_code == 401  # revoked


def test_a_server_started_with_require_keys_is_closed_before_any_key_exists(tmp_path):
    empty = tmp_path / "home"
    open_store(empty).close()
    with serving(empty, "--require-keys") as (base, _):
        assert httpx.get(base + "/v1/speakers").status_code == 401
        assert httpx.get(base + "/healthz").status_code == 200


# -- names: one rule everywhere -----------------------------------------------------------------------
def test_group_syntax_and_invisible_characters_are_refused_everywhere(home, cli_env):
    cli_env["SPEAKERID_HOME"] = str(home)
    before = store_digest(home)
    clip = str(clips_of("id90003", 1)[0])
    for bad in ("@staff", "ali\u200bce", "mallory\u202e", "  "):
        done = run_cli([bad, clip, "--json"], cli_env, module="enroll.cli")
        assert done.returncode == 1 and "invalid speaker name" in json.loads(done.stdout)["error"], done.stderr
        assert done.stderr.count("\n") == 1
    with SpeakerID.open(home) as sid:
        with pytest.raises(InvalidNameError):
            sid.verify("@staff", clip)
        assert sid.verify("ALICE", clips_of("id90001", 3)[0]).speaker == "alice"  # one name, any case
    assert store_digest(home) == before


def test_names_over_http(home):
    with serving(home) as (base, _):
        r = httpx.post(base + "/v1/speakers/@staff/enrollments", files={"file": ("a.wav", b"x")}, timeout=60)
        assert r.status_code == 422 and "a leading @ names a group" in r.json()["error"]
        r = httpx.get(base + "/v1/speakers/ALICE")
        assert r.status_code == 200 and r.json()["name"] == "alice"
        r = httpx.delete(base + "/v1/speakers/al%E2%80%8Bice")  # a zero-width space in the path
        assert r.status_code == 422 and "invisible" in r.json()["error"]


# -- numbers: nan, inf and out-of-range values ---------------------------------------------------------
@pytest.mark.parametrize(
    "args",
    [
        ["identify", "CLIP", "--threshold", "nan"],
        ["identify", "CLIP", "--threshold", "inf"],
        ["identify", "CLIP", "--threshold", "1.5"],
        ["identify", "CLIP", "--top-k", "0"],
        ["verify", "alice", "CLIP", "--threshold", "-inf"],
        ["threshold", "nan"],
        ["threshold", "2"],
        ["access", "threshold", "door", "nan"],
        ["access", "lockout", "--attempts", "0", "--seconds", "60"],
        ["access", "lockout", "--attempts", "3", "--seconds", "inf"],
        ["serve", "--port", "70000"],
        ["serve", "--max-seconds", "nan"],
        ["audit", "--since", "yesterday-ish"],
    ],
)
def test_bad_numbers_on_the_command_line(home, cli_env, args):
    cli_env["SPEAKERID_HOME"] = str(home)
    args = [str(clips_of("id90001", 3)[0]) if a == "CLIP" else a for a in args]
    before = store_digest(home)
    done = run_cli([*args, "--json"], cli_env)
    assert done.returncode in (1, 2), done.stdout
    assert done.stderr.startswith("error: ") and done.stderr.count("\n") == 1, done.stderr
    assert "Traceback" not in done.stderr and "NaN" not in done.stdout
    assert set(json.loads(done.stdout)) == {"error"}
    assert store_digest(home) == before


def test_enroll_speaker_bad_numbers(home, cli_env):
    cli_env["SPEAKERID_HOME"] = str(home)
    for flag in ("--min-speech", "--min-clip-speech"):
        done = run_cli(["carol", str(clips_of("id90003", 1)[0]), flag, "nan"], cli_env, module="enroll.cli")
        assert done.returncode == 2 and done.stderr.startswith("error: ") and done.stderr.count("\n") == 1


def test_bad_numbers_through_the_api_and_http(home):
    clip = clips_of("id90001", 3)[0]
    with SpeakerID.open(home) as sid:
        for call in (
            lambda: sid.identify(clip, threshold=float("nan")),
            lambda: sid.identify(clip, top_k=0),
            lambda: sid.verify("alice", clip, threshold=float("inf")),
            lambda: sid.set_threshold(float("nan")),
            lambda: AccessControl(sid).set_lockout(0, 10),
            lambda: AccessControl(sid).set_threshold("door", 7),
        ):
            with pytest.raises(InvalidValueError):
                call()
    with serving(home) as (base, _):
        for query in ("threshold=nan", "threshold=inf", "threshold=2", "top_k=0", "top_k=abc", "top_k=1e9"):
            r = httpx.post(f"{base}/v1/identify?{query}", content=clip.read_bytes(), timeout=60)
            assert r.status_code == 422 and set(r.json()) == {"error"}, (query, r.text)
            assert "NaN" not in r.text


# -- lockout -------------------------------------------------------------------------------------------
def test_lockout_is_atomic_covers_identification_and_audits_everything(tmp_path, home):
    mine = tmp_path / "home"
    with SpeakerID.open(mine) as sid:
        sid.enroll("alice", clips_of("id90001", 1))
        access = AccessControl(sid)
        access.grant("alice", "door")
        access.set_lockout(3, 60)
        key, record = create_key(sid.store, "client")
    stranger = clips_of("id90004", 3)[0].read_bytes()
    with serving(mine, "--rate-limit", "1000", "--rate-burst", "1000") as (base, _):

        def attempt(claim):
            params = {"resource": "door", **({"claim": claim} if claim else {})}
            return httpx.post(
                base + "/v1/access/check", params=params, content=stranger, headers=auth(key), timeout=120
            ).json()

        refused = httpx.post(
            base + "/v1/access/check", params={"resource": "door"}, content=b"not audio", headers=auth(key), timeout=60
        )
        unknown = httpx.post(
            base + "/v1/access/check", params={"resource": "vault"}, content=stranger, headers=auth(key), timeout=60
        )
        assert (refused.status_code, unknown.status_code) == (422, 404)
        with ThreadPoolExecutor(8) as pool:  # 8 guesses at once with a claim: only 3 may be scored
            claimed = list(pool.map(attempt, ["alice"] * 8))
        assert all(not d["allow"] and d["score"] is None for d in claimed)  # a client key sees no refused score
        assert sum(d["reason"].startswith("locked out until") for d in claimed) == 5
        guesses = [attempt(None) for _ in range(5)]  # identification mode: no unlimited guessing either
        assert [g["reason"].startswith("locked out") for g in guesses] == [False] * 3 + [True] * 2
    with SpeakerID.open(mine) as sid:
        audit = AccessControl(sid).audit()
    assert len(audit) == 2 + 8 + 5 and all(d["key_id"] == record.id for d in audit)
    scored = [d for d in audit[2:10] if d["score"] is not None]  # the audit log keeps what was scored
    assert len(scored) == 3
    assert "not a readable audio file" in audit[0]["reason"] and "unknown resource" in audit[1]["reason"]


# -- uploads -------------------------------------------------------------------------------------------
def test_upload_limits_hold_while_the_body_streams(home):
    with serving(home, "--max-upload-mb", "20") as (base, proc):
        port = int(base.rsplit(":", 1)[1])
        sent, reply = _stream_until_answered(port, megabytes=300)
        assert b" 413 " in reply.split(b"\r\n")[0] and b"exceeds the limit" in reply, reply[:300]
        assert sent < 60 << 20, sent  # refused while streaming, long before 300 MB
        parts = [("file", (f"p{i}.wav", bytes(15 << 20), "audio/wav")) for i in range(3)]
        r = httpx.post(base + "/v1/speakers/zed/enrollments", files=parts, timeout=120)
        assert r.status_code == 413 and set(r.json()) == {"error"}
        r = httpx.post(
            base + "/v1/identify",
            content=clips_of("id90001", 3)[0].read_bytes(),
            headers={"Content-Type": "Audio/WAV"},
            timeout=60,
        )
        assert r.status_code == 200 and r.json()["speaker"] == "alice"
        body, kind = _multipart(clips_of("id90001", 3)[0].read_bytes())
        r = httpx.post(
            base + "/v1/identify",
            content=body,
            headers={"Content-Type": kind.replace("multipart/form-data", "Multipart/Form-Data")},
            timeout=60,
        )
        assert r.status_code == 200 and r.json()["speaker"] == "alice"


def _stream_until_answered(port: int, megabytes: int) -> tuple[int, bytes]:
    """Send a chunked multipart body of up to ``megabytes`` MB; stop when the server answers."""
    import select

    with socket.create_connection(("127.0.0.1", port), timeout=60) as s:
        s.sendall(
            b"POST /v1/identify HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n"
            b"Content-Type: multipart/form-data; boundary=b\r\n\r\n"
        )
        head = b'--b\r\nContent-Disposition: form-data; name="file"; filename="x.wav"\r\n\r\n'
        s.sendall(b"%x\r\n%s\r\n" % (len(head), head))
        sent, chunk = len(head), bytes(1 << 20)
        for _ in range(megabytes):
            if select.select([s], [], [], 0)[0]:
                break
            try:
                s.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            except OSError:  # the server answered and closed while we were sending
                break
            sent += len(chunk)
        s.settimeout(30)
        return sent, s.recv(65536)


def _multipart(data: bytes) -> tuple[bytes, str]:
    boundary = "sec-boundary"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n'
            "Content-Type: audio/wav\r\n\r\n"
        ).encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return body, f"multipart/form-data; boundary={boundary}"


def test_a_stalled_body_is_dropped(home):
    with serving(home) as (base, _):
        port = int(base.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=60) as s:
            s.sendall(
                b"POST /v1/identify HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: audio/wav\r\nContent-Length: 100000\r\n\r\n"
                + bytes(1000)
            )
            start = time.monotonic()
            reply = s.recv(4096)
            waited = time.monotonic() - start
        assert b" 408 " in reply.split(b"\r\n")[0], reply[:200]
        assert waited < 60


def _dribble_headers(port: int, seconds: float) -> tuple[bytes, float]:
    """Send a request's header lines one every 0.25 s for up to ``seconds``; what the server
    answered (b"" if it only closed) and when."""
    import select

    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        start = time.monotonic()
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        for i in range(int(seconds / 0.25)):
            if select.select([s], [], [], 0.25)[0]:
                return s.recv(4096), time.monotonic() - start
            try:
                s.sendall(b"X-Slow-%d: y\r\n" % i)
            except OSError:
                break
        return b"", time.monotonic() - start


def test_slow_headers_are_cut_off_and_other_clients_are_served(home):
    import websockets.sync.client

    with serving(home, "--header-seconds", "2") as (base, _):
        port = int(base.rsplit(":", 1)[1])
        reply, waited = _dribble_headers(port, seconds=20)
        assert reply.startswith(b"HTTP/1.1 408 "), reply[:200]
        assert b"request headers not complete within 2 s" in reply
        assert 1.5 < waited < 6, waited
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:  # silence is cut off too
            start = time.monotonic()
            assert s.recv(4096).startswith(b"HTTP/1.1 408 ")
            assert time.monotonic() - start < 6
        with httpx.Client(base_url=base, timeout=30) as client:  # a kept-alive connection answers every request
            for _ in range(3):
                assert client.get("/healthz").status_code == 200
                time.sleep(1)
        # a live stream outlives the header deadline once upgraded
        with websockets.sync.client.connect(base.replace("http", "ws") + "/v1/stream") as ws:
            time.sleep(3)
            ws.send(json.dumps({"type": "start", "sample_rate": 16000, "mode": "identify"}))
            ws.send(np.zeros(1600, dtype="<i2").tobytes())
            ws.send(json.dumps({"type": "end"}))
            events = [json.loads(message) for message in ws]
        assert events and events[-1]["final"], events


def test_every_error_has_one_shape(home):
    with serving(home) as (base, _):
        for r in (
            httpx.get(base + "/no/such/route"),
            httpx.put(base + "/v1/identify"),
            httpx.post(base + "/v1/verify", content=b"x"),  # missing ?speaker=: the framework's 422
            httpx.post(base + "/v1/identify", content=b"{}", headers={"Content-Type": "application/json"}),
            httpx.post(base + "/v1/identify", content=b"--x\r\n", headers={"Content-Type": "multipart/form-data"}),
        ):
            assert 400 <= r.status_code < 500 and set(r.json()) == {"error"}, (r.status_code, r.text)
            assert "\n" not in r.json()["error"]


def test_repeated_bad_keys_are_rate_limited_by_address(home):
    with serving(home) as (base, _):
        codes = [httpx.get(base + "/v1/speakers", headers=auth(f"sk_{i:08x}_guess")).status_code for i in range(14)]
        assert codes[:10] == [401] * 10 and codes[-1] == 429, codes


def test_x_api_key_header_works(tmp_path):
    mine = tmp_path / "home"
    with SpeakerID.open(mine) as sid:
        key, _ = create_key(sid.store, "admin")
    with serving(mine) as (base, _):
        assert httpx.get(base + "/v1/speakers", headers={"X-API-Key": key}).status_code == 200
        assert httpx.get(base + "/v1/speakers", params={"api_key": key}).status_code == 401  # never from the URL


# -- the store: concurrent appends, files, opening --------------------------------------------------------
def test_concurrent_appends_of_one_clip_enroll_it_once(store_url):
    with open_store(store_url) as store:
        store.voiceprints.add_speaker(
            "alice", [NewEmbedding(np.ones(8, dtype=np.float32), clip_sha256="a" * 64)], model="m"
        )
    same = NewEmbedding(np.arange(8, dtype=np.float32) + 1, clip_sha256="b" * 64)
    barrier = threading.Barrier(8)

    def append(_):
        with open_store(store_url) as store:
            barrier.wait()
            try:
                store.voiceprints.add_speaker("alice", [same], model="m", mode="append")
                return "ok"
            except DuplicateClipError:
                return "duplicate"

    with ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(append, range(8)))
    assert sorted(outcomes) == ["duplicate"] * 7 + ["ok"]
    with open_store(store_url) as store:
        assert store.voiceprints.speaker("alice").clips == 2


def test_files_are_private_and_leftovers_are_cleaned(tmp_path):
    home = tmp_path / "home"
    with open_store(home) as store:
        store.voiceprints.add_speaker("a", [NewEmbedding(np.ones(8, dtype=np.float32))], model="m")
        for name in (DB_NAME, INDEX_NAME, "index.lock", DB_NAME + "-wal"):
            assert stat.S_IMODE((home / name).stat().st_mode) == 0o600, name
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    secret = np.full(8, 0.123, dtype=np.float32)
    (home / ".index.killed1").write_bytes(b"SPKIDX2\n" + secret.tobytes())  # as a killed writer leaves it
    report = _doctor(home)
    assert any("removed 1 temporary index files" in n for n in report["notes"]), report
    with open_store(home) as store:
        assert not list(home.glob(".index.*")) and store.maintenance.check().consistent


def _doctor(home) -> dict:
    done = subprocess.run(
        [sys.executable, "-m", "speakerid.cli", "doctor", "--json", "--home", str(home)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    return json.loads(done.stdout)


def test_a_writer_that_cannot_take_the_index_lock_fails_before_committing(tmp_path, monkeypatch):
    from filelock import FileLock

    from store import sqlite_store

    home = tmp_path / "home"
    with open_store(home) as store:
        store.voiceprints.add_speaker("a", [NewEmbedding(np.ones(8, dtype=np.float32))], model="m")
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from filelock import FileLock; "
            "l = FileLock(sys.argv[1]); l.acquire(); print('held', flush=True); time.sleep(60)",
            str(home / "index.lock"),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        monkeypatch.setattr(sqlite_store, "LOCK_TIMEOUT", 0.5)
        with open_store(home) as store:
            before = store.voiceprints.generation
            with pytest.raises(StoreError, match="index lock .*nothing was written"):
                store.voiceprints.add_speaker("b", [NewEmbedding(np.ones(8, dtype=np.float32))], model="m")
            assert store.voiceprints.generation == before and "b" not in store.voiceprints
    finally:
        holder.kill()
    assert FileLock  # noqa


def test_the_service_folds_the_wal_after_erasing(tmp_path):
    home = tmp_path / "home"
    with SpeakerID.open(home) as sid:
        sid.enroll("alice", clips_of("id90001", 1))
        sid.enroll("bob", clips_of("id90002", 1))
        _, bob_vectors, _ = sid.store.voiceprints.vectors("bob")
    with serving(home) as (base, _):
        assert httpx.delete(base + "/v1/speakers/bob").status_code == 200
        files = b"".join(p.read_bytes() for p in home.iterdir() if p.is_file())  # while the server runs
        for vector in bob_vectors:
            assert vector.tobytes()[:64] not in files
    assert (home / (DB_NAME + "-wal")).stat().st_size == 0 if (home / (DB_NAME + "-wal")).exists() else True


def test_opening_damaged_stores_gives_one_line(tmp_path, cli_env):
    corrupt = tmp_path / "corrupt"
    open_store(corrupt).close()
    data = bytearray((corrupt / DB_NAME).read_bytes())
    data[100:4096] = os.urandom(3996)
    (corrupt / DB_NAME).write_bytes(bytes(data))
    folder = tmp_path / "folder-index"
    open_store(folder).close()
    (folder / INDEX_NAME).unlink(missing_ok=True)
    (folder / INDEX_NAME).mkdir()
    for home, words in ((corrupt, DB_NAME), (folder, "is not a file")):
        done = run_cli(["speakers", "--home", str(home)], cli_env)
        assert done.returncode == 1 and done.stderr.count("\n") == 1 and words in done.stderr, done.stderr


def test_a_read_only_home_still_answers(home, tmp_path, cli_env):
    import shutil

    from bad_audio import drop_file_override

    ro = tmp_path / "ro"
    shutil.copytree(home, ro)
    for p in ro.iterdir():
        p.chmod(0o400)
    ro.chmod(0o500)
    cli_env["SPEAKERID_HOME"] = str(ro)
    try:
        for args in (["speakers"], ["identify", str(clips_of("id90001", 3)[0])], ["doctor"], ["audit"]):
            done = subprocess.run(
                [sys.executable, "-m", "speakerid.cli", *args, "--json"],
                env=cli_env,
                capture_output=True,
                text=True,
                timeout=300,
                preexec_fn=drop_file_override,
            )
            assert done.returncode == 0, (args, done.stderr)
        done = subprocess.run(
            [sys.executable, "-m", "speakerid.cli", "remove", "alice"],
            env=cli_env,
            capture_output=True,
            text=True,
            timeout=300,
            preexec_fn=drop_file_override,
        )
        assert done.returncode == 1 and "read-only" in done.stderr
    finally:
        ro.chmod(0o700)


# -- the model's identity ----------------------------------------------------------------------------------
def test_two_model_folders_differing_only_in_their_yaml_have_different_ids(model_dir, tmp_path):
    import shutil

    from speakerid.voice.models import resolve

    a, b = tmp_path / "model", tmp_path / "other" / "model"
    for folder in (a, b):
        folder.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(model_dir, folder)
    (b / "hyperparams.yaml").write_text((b / "hyperparams.yaml").read_text() + "\n# changed\n")
    ids = {resolve(str(a)).id, resolve(str(b)).id}
    assert len(ids) == 2 and resolve(str(model_dir)).id == "speechbrain/spkrec-ecapa-voxceleb"


# -- Python API misuse ---------------------------------------------------------------------------------------
def test_python_api_misuse_gets_speakerid_errors(home):
    clip = clips_of("id90001", 3)[0]
    samples, rate = sf.read(clip, dtype="float32")
    with pytest.raises(UsageError):
        SpeakerID.open("")
    with SpeakerID.open(home) as sid:
        for bad in (samples, 42, None, {"path": str(clip)}, (str(clip), str(clip)), [clip]):
            with pytest.raises(SpeakerIDError):
                sid.identify(bad)
        assert sid.identify((samples, rate)).speaker == "alice"
        with pytest.raises(SpeakerIDError):
            sid.enroll("carol", 42)
        with pytest.raises(SpeakerIDError):
            sid.enroll("carol", clips_of("id90003", 1), metadata=["not", "a", "dict"])
        result = sid.enroll("carol", tuple(clips_of("id90003", 1)))  # a tuple of paths: several clips
        assert result.clips == len(clips_of("id90003", 1))
        sid.remove("carol")


# -- the command line ------------------------------------------------------------------------------------------
def test_argument_errors_keep_the_one_line_form(home, cli_env):
    cli_env["SPEAKERID_HOME"] = str(home)
    for args in (["identify"], ["no-such-command"], ["identify", "x.wav", "--top-k", "many"], ["keys", "create"]):
        done = run_cli([*args, "--json"], cli_env)
        assert done.returncode == 2 and done.stderr.startswith("error: ") and done.stderr.count("\n") == 1, done.stderr
        assert set(json.loads(done.stdout)) == {"error"}
    done = run_cli(["access", "groups", "staff"], cli_env)
    assert done.returncode == 0 and done.stdout.strip() == "@staff has no members"


def test_an_output_file_that_cannot_be_written_is_refused_before_any_work(home, cli_env, tmp_path):
    """A timeline or an evaluation takes minutes; a typo in where its output goes used to surface
    after them, as an "unexpected FileNotFoundError"."""
    cli_env["SPEAKERID_HOME"] = str(home)
    recording = str(SHARED / "data" / "conversations" / "sample.wav")
    for args, named in (
        (["timeline", recording, "--rttm", str(tmp_path / "missing" / "out.rttm")], "no folder"),
        (["timeline", recording, "--rttm", str(tmp_path)], "it is a folder"),
        (["eval", "voxceleb", "--root", str(DATA), "--plot", str(tmp_path / "missing" / "det.png")], "no folder"),
        (["eval", "voxceleb", "--root", str(DATA), "--json", str(tmp_path / "missing" / "r.json")], "no folder"),
    ):
        started = time.monotonic()
        done = run_cli(args, cli_env)
        assert done.returncode == 2 and done.stderr.count("\n") == 1 and named in done.stderr, done.stderr
        assert "unexpected" not in done.stderr and time.monotonic() - started < 20  # refused, not run first
    assert not (tmp_path / "missing").exists()
