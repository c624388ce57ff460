"""The HTTP service, as a real uvicorn server on 127.0.0.1 spoken to over HTTP."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
import soundfile as sf

from speakerid import SpeakerID
from speakerid.apps.access import AccessControl
from speakerid.apps.keys import create_key

from conftest import ROOT, clips_of, free_port, needs_curl, needs_data, run_cli, serving

pytestmark = [needs_data]
SERVICE_GUIDE = ROOT / "docs" / "service.md"

PEOPLE = {"alice": "id90001", "bob": "id90002", "carol": "id90003", "dave": "id90004", "erin": "id90005"}
LOCKOUT_SECONDS = 4


def clips(person: str, split: int) -> list:
    return clips_of(PEOPLE[person], split)


@pytest.fixture(scope="module")
def server(tmp_path_factory, model_dir):
    home = tmp_path_factory.mktemp("service") / "home"
    keys = {}
    with SpeakerID.open(home) as sid:
        for person in ("alice", "bob", "carol", "dave"):
            sid.enroll(person, clips(person, 1))
        for label, role in (
            ("admin", "admin"),
            ("client", "client"),
            ("revoked", "client"),
            ("limited", "admin"),
            ("curl", "client"),
            *((f"c{i}", "client") for i in range(4)),
        ):
            keys[label], record = create_key(sid.store, role, label)
            if label == "revoked":
                sid.store.policy.revoke_key(record.id)
        access = AccessControl(sid)
        access.grant("alice", "front-door")
        access.grant("@staff", "lab")
        access.set_lockout(3, LOCKOUT_SECONDS)
    env = {**os.environ, "SPEAKERID_HOME": str(home), "HF_HUB_OFFLINE": "1"}
    with serving(home, "--max-upload-mb", "2", "--max-seconds", "30", "--rate-limit", "2", "--rate-burst", "8") as (
        base,
        _,
    ):
        yield base, keys, home, env


def auth(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}


def post_clip(base, path, key, clip, **params):
    with open(clip, "rb") as f:
        return httpx.post(
            base + path, params=params, headers=auth(key), files={"file": (clip.name, f, "audio/wav")}, timeout=120
        )


def _metrics(base: str) -> dict[str, dict[tuple, float]]:
    """``/metrics`` through prometheus_client's parser: family -> {label values: value}."""
    from prometheus_client.parser import text_string_to_metric_families

    return {
        f.name: {tuple(s.labels.values()): s.value for s in f.samples}
        for f in text_string_to_metric_families(httpx.get(base + "/metrics").text)
    }


def test_health_metrics_and_openapi(server):
    base, *_ = server
    health = httpx.get(base + "/healthz").json()
    assert health["status"] == "ok" and health["speakers"] == 4
    families = _metrics(base)  # read by Prometheus's own parser
    assert families["speakerid_speakers"] == {(): 4.0}
    healthz = ("/healthz", "200")
    assert families["speakerid_requests"][healthz] >= 1
    httpx.get(base + "/healthz")
    assert _metrics(base)["speakerid_requests"][healthz] == families["speakerid_requests"][healthz] + 1
    _, keys, *_ = server
    spec = httpx.get(base + "/openapi.json", headers=auth(keys["admin"])).json()
    assert {"/v1/identify", "/v1/verify", "/v1/access/check", "/v1/speakers/{speaker}/enrollments"} <= set(
        spec["paths"]
    )
    assert httpx.get(base + "/openapi.json").status_code == 401  # behind the same rule as the rest
    assert httpx.get(base + "/openapi.json", headers=auth(keys["client"])).status_code == 403
    assert httpx.get(base + "/docs").status_code == 404 and httpx.get(base + "/redoc").status_code == 404


def test_auth_matrix(server):
    base, keys, *_ = server
    clip = clips("alice", 3)[0]
    with open(clip, "rb") as f:
        data = f.read()
    plain = httpx.post(base + "/v1/identify", content=data, headers={"Content-Type": "audio/wav"})
    assert plain.status_code == 401 and "missing API key" in plain.json()["error"]
    assert post_clip(base, "/v1/identify", "sk_deadbeef_nope", clip).status_code == 401
    assert post_clip(base, "/v1/identify", keys["revoked"], clip).status_code == 401
    assert post_clip(base, "/v1/identify", keys["client"], clip).json()["speaker"] == "alice"
    assert post_clip(base, "/v1/identify", keys["admin"], clip).json()["speaker"] == "alice"
    assert httpx.delete(base + "/v1/speakers/alice", headers=auth(keys["client"])).status_code == 403
    assert post_clip(base, "/v1/speakers/zed/enrollments", keys["client"], clip).status_code == 403
    assert httpx.get(base + "/v1/speakers", headers=auth(keys["client"])).status_code == 403
    assert httpx.get(base + "/v1/speakers", headers=auth(keys["admin"])).status_code == 200


def test_every_request_is_logged_without_its_secrets(tmp_path, model_dir):
    """The access log: a line per request (address, method, path, status, time, key id), never the
    key itself, a query string or a body; ``--no-access-log`` turns it off."""
    home = tmp_path / "home"
    with SpeakerID.open(home) as sid:
        sid.enroll("alice", clips("alice", 1))
        key, record = create_key(sid.store, "client")
    with serving(home) as (base, proc):
        answer = post_clip(base, "/v1/identify", key, clips("alice", 3)[0], top_k=3)
        assert answer.status_code == 200
        assert httpx.get(base + "/v1/speakers", headers=auth("wrong-key")).status_code == 401
        time.sleep(0.5)
        lines = [line for line in proc.log.read_text().splitlines() if " /v1/" in line]
    assert re.search(rf"127\.0\.0\.1 POST /v1/identify 200 \d+ ms key={record.id}$", lines[0]), lines
    assert re.search(r"127\.0\.0\.1 GET /v1/speakers 401 \d+ ms key=-$", lines[1]), lines
    text = "\n".join(lines)
    assert key not in text and "wrong-key" not in text and "top_k" not in text
    with serving(home, "--no-access-log") as (base, proc):
        assert post_clip(base, "/v1/identify", key, clips("alice", 3)[0]).status_code == 200
        time.sleep(0.5)
        assert " /v1/identify " not in proc.log.read_text()


def test_limits_and_bad_audio(server, tmp_path):
    base, keys, *_ = server
    big = httpx.post(
        base + "/v1/identify",
        content=b"\0" * (3 * 1024 * 1024),
        headers={**auth(keys["client"]), "Content-Type": "audio/wav"},
    )
    assert big.status_code == 413
    samples, rate = sf.read(clips("bob", 3)[0], dtype="float32")
    long = tmp_path / "long.wav"
    sf.write(long, np.tile(samples, int(40 * rate / len(samples)) + 1), rate)
    too_long = post_clip(base, "/v1/identify", keys["client"], long)
    assert too_long.status_code == 413 and "too long" in too_long.json()["error"]
    text = tmp_path / "notes.wav"
    text.write_text("not audio at all")
    bad = post_clip(base, "/v1/identify", keys["client"], text)
    assert (
        bad.status_code == 422 and bad.json()["error"] == "notes.wav: not a readable audio file (Format not recognised)"
    )
    short = tmp_path / "short.wav"
    sf.write(short, samples[rate : rate + int(0.4 * rate)], rate)
    too_short = post_clip(base, "/v1/identify", keys["client"], short)
    assert too_short.status_code == 422 and "need at least 1 s of speech" in too_short.json()["error"]


def test_rate_limit_per_key(server):
    base, keys, *_ = server
    codes = [httpx.get(base + "/v1/speakers", headers=auth(keys["limited"])).status_code for _ in range(20)]
    assert codes[:8] == [200] * 8 and 429 in codes
    assert httpx.get(base + "/v1/speakers", headers=auth(keys["admin"])).status_code == 200  # others unaffected


def test_enroll_identify_access_audit(server):
    base, keys, home, env = server
    files = [("file", (c.name, open(c, "rb"), "audio/wav")) for c in clips("erin", 1)]
    enrolled = httpx.post(base + "/v1/speakers/erin/enrollments", headers=auth(keys["admin"]), files=files, timeout=300)
    assert enrolled.status_code == 201, enrolled.text
    assert enrolled.json()["clips"] == len(files)
    again = httpx.post(
        base + "/v1/speakers/erin/enrollments",
        headers=auth(keys["admin"]),
        files=[("file", (clips("erin", 1)[0].name, open(clips("erin", 1)[0], "rb"), "audio/wav"))],
    )
    assert again.status_code == 409
    assert post_clip(base, "/v1/identify", keys["client"], clips("erin", 3)[0]).json()["speaker"] == "erin"
    assert run_cli(["access", "groups", "staff", "erin"], env).returncode == 0
    allowed = post_clip(base, "/v1/access/check", keys["client"], clips("erin", 3)[0], resource="lab").json()
    assert allowed["allow"] is True and allowed["speaker"] == "erin" and allowed["decision_id"]
    denied = post_clip(base, "/v1/access/check", keys["client"], clips("dave", 3)[0], resource="lab").json()
    assert denied["allow"] is False and "not allowed" in denied["reason"]
    unknown = post_clip(base, "/v1/access/check", keys["client"], clips("bob", 3)[0], resource="no-such-door")
    assert unknown.status_code == 404
    audit = json.loads(run_cli(["audit", "--json"], env).stdout)["decisions"]
    ids = {d["decision_id"]: d for d in audit}
    assert ids[allowed["decision_id"]]["allow"] is True and ids[denied["decision_id"]]["speaker"] == "dave"
    assert all(set(d) >= {"time", "key_id", "resource", "claim", "allow", "score"} for d in audit)
    assert ids[allowed["decision_id"]]["key_id"] == keys["client"].split("_")[1]


@needs_curl
def test_the_readmes_curl_commands(server, tmp_path):
    """Every ``curl`` line of docs/service.md, run as written by the real curl (its key, port and clip
    supplied): a multipart form and a raw body, each answered for alice."""
    base, keys, _, env = server
    lines = re.findall(r"^`?(curl -s [^`\n]*)", SERVICE_GUIDE.read_text(), flags=re.M)
    assert len(lines) == 2, lines
    for name in ("visitor.wav", "clip.wav"):
        shutil.copy(clips("alice", 3)[0], tmp_path / name)
    assert run_cli(["access", "grant", "alice", "door"], env).returncode == 0
    for line in lines:
        done = subprocess.run(
            ["bash", "-c", line.replace("http://127.0.0.1:8000", base) + " -w '\\n%{http_code}'"],
            cwd=tmp_path,
            env={**os.environ, "KEY": keys["curl"]},
            capture_output=True,
            text=True,
            timeout=180,
        )
        body, code = done.stdout.rsplit("\n", 1)
        assert code == "200" and json.loads(body)["allow"] is True and json.loads(body)["speaker"] == "alice", (
            line,
            body,
        )
    refused = subprocess.run(
        [
            "curl",
            "-s",
            "-w",
            "\\n%{http_code}",
            "-H",
            f"X-API-Key: {keys['curl']}",
            "-H",
            "Content-Type: audio/wav",
            "--data-binary",
            "@/etc/hostname",
            base + "/v1/identify",
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    body, code = refused.stdout.rsplit("\n", 1)
    assert code == "422" and "not a readable audio file" in json.loads(body)["error"], body


def test_the_readmes_python_door_function(server):
    """docs/service.md's ``may_enter``, executed as written (its port supplied)."""
    base, keys, *_ = server
    block = re.search(r"```python\n(import httpx\n.*?)```", SERVICE_GUIDE.read_text(), flags=re.S).group(1)
    scope: dict = {}
    exec(block.replace("http://127.0.0.1:8000", base), scope)
    may_enter = scope["may_enter"]
    assert may_enter(str(clips("alice", 3)[0]), "front-door", keys["curl"]) is True
    assert may_enter(str(clips("alice", 3)[1]), "front-door", keys["curl"], claim="alice") is True
    assert may_enter(str(clips("bob", 3)[0]), "front-door", keys["curl"]) is False
    with pytest.raises(RuntimeError, match="not a readable audio file"):
        may_enter("/etc/hostname", "front-door", keys["curl"])
    with open(clips("alice", 3)[0], "rb") as f:  # any parameter given as None (sent empty) counts as left out
        r = httpx.post(
            base + "/v1/identify",
            params={"threshold": None, "top_k": None},
            headers=auth(keys["curl"]),
            files={"file": f},
            timeout=60,
        )
    assert r.status_code == 200 and r.json()["speaker"] == "alice", r.text


def test_lockout_and_its_expiry(server):
    base, keys, *_ = server
    alice_voice, bob_voice = clips("alice", 3)[0], clips("bob", 3)[0]
    for _ in range(3):
        d = post_clip(base, "/v1/access/check", keys["c0"], bob_voice, resource="front-door", claim="alice").json()
        assert d["allow"] is False and "does not match" in d["reason"]
    locked = post_clip(base, "/v1/access/check", keys["c0"], alice_voice, resource="front-door", claim="alice").json()
    assert locked["allow"] is False and locked["reason"].startswith("locked out until")
    time.sleep(LOCKOUT_SECONDS + 0.5)
    free = post_clip(base, "/v1/access/check", keys["c0"], alice_voice, resource="front-door", claim="alice").json()
    assert free["allow"] is True, free


def test_concurrent_requests_answer_like_sequential_ones(server):
    base, keys, *_ = server
    queries = [c for p in ("alice", "bob", "carol", "dave") for c in clips(p, 3)[:2]]
    sequential = [post_clip(base, "/v1/identify", keys["client"], q).json() for q in queries]
    with ThreadPoolExecutor(4) as pool:
        parallel = list(
            pool.map(
                lambda iq: post_clip(base, "/v1/identify", keys[f"c{iq[0] % 4}"], iq[1]).json(), enumerate(queries)
            )
        )
    assert parallel == sequential


def test_delete_is_erasure(server):
    base, keys, home, env = server
    carol_clip = clips("carol", 3)[0]
    assert post_clip(base, "/v1/identify", keys["client"], carol_clip).json()["speaker"] == "carol"
    assert httpx.delete(base + "/v1/speakers/carol", headers=auth(keys["admin"])).status_code == 200
    after = post_clip(base, "/v1/identify", keys["client"], carol_clip).json()
    assert after["speaker"] is None and "carol" not in [c["speaker"] for c in after["candidates"]]
    assert httpx.get(base + "/v1/speakers/carol", headers=auth(keys["admin"])).status_code == 404


def test_refuses_public_address_without_keys(tmp_path, cli_env):
    done = run_cli(["serve", "--host", "0.0.0.0", "--port", str(free_port())], cli_env, timeout=120)
    assert done.returncode == 1
    assert done.stderr.strip().startswith("error: refusing to listen on 0.0.0.0 with no API keys")
