"""Security round 2 (issue #36): each finding, tried as an attacker or a careless operator would,
against a real uvicorn on 127.0.0.1. Every test here failed on the code before the fix."""

from __future__ import annotations

import asyncio
import json
import socket
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
import soundfile as sf
import websockets

from speakerid import SpeakerID
from speakerid.apps.access import AccessControl
from speakerid.apps.keys import create_key
from store import DB_NAME, InvalidValueError

from conftest import clips_of, needs_data, run_cli, serving

pytestmark = [needs_data]
LOCKOUT = 3


def auth(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no {field}")


@pytest.fixture
def door(tmp_path, model_dir):
    """alice and bob enrolled; alice may pass the door; an admin and a client key; lockout after 3."""
    home = tmp_path / "home"
    with SpeakerID.open(home) as sid:
        sid.enroll("alice", clips_of("id90001", 1))
        sid.enroll("bob", clips_of("id90002", 1))
        access = AccessControl(sid)
        access.grant("alice", "door")
        access.set_lockout(LOCKOUT, 60)
        admin, _ = create_key(sid.store, "admin")
        client, record = create_key(sid.store, "client")
    with serving(home, "--rate-limit", "1000", "--rate-burst", "1000") as (base, proc):
        yield {"home": home, "base": base, "proc": proc, "admin": admin, "client": client, "client_id": record.id}


def audit(home) -> list[dict]:
    with SpeakerID.open(home) as sid:
        return AccessControl(sid).audit()


def post(base, path, key, clip=None, data=None, **params):
    body = clip.read_bytes() if clip is not None else data
    return httpx.post(base + path, params=params, headers=auth(key), content=body, timeout=120)


def stream(base, start: dict, frames: list[bytes], *, end: bool = True, headers=None, close_early: bool = False):
    """``(events, close code, close reason)`` of one WebSocket conversation."""

    async def talk():
        url = base.replace("http://", "ws://") + "/v1/stream"
        events = []
        try:
            async with websockets.connect(url, additional_headers=headers or {}, max_size=None) as ws:
                await ws.send(json.dumps(start))
                for frame in frames:
                    await ws.send(frame)
                if close_early:
                    await asyncio.sleep(1.0)
                    return events, None, "client left"
                if end:
                    await ws.send(json.dumps({"type": "end"}))
                async for message in ws:
                    events.append(json.loads(message))
                return events, ws.close_code, ws.close_reason
        except websockets.ConnectionClosed as exc:
            return events, exc.rcvd.code if exc.rcvd else None, exc.rcvd.reason if exc.rcvd else ""
        except websockets.InvalidStatus as exc:
            return events, exc.response.status_code, ""

    return asyncio.run(talk())


def pcm_frames(clip, seconds: float | None = None) -> list[bytes]:
    samples, rate = sf.read(clip, dtype="int16")
    assert rate == 16000
    if seconds is not None:
        samples = samples[: int(seconds * rate)]
    return [samples[i : i + 4000].tobytes() for i in range(0, len(samples), 4000)]


# -- serious ---------------------------------------------------------------------------------------
def test_json_bodies_are_not_read_before_the_key_is_checked(door):
    """A 256 MB grant body with no key: answered 401 while it streams in, the server hardly grows
    (it read the whole body, +756 MB, before answering 401)."""
    base, pid = door["base"], door["proc"].pid
    port = int(base.rsplit(":", 1)[1])
    before = rss_mb(pid)
    with socket.create_connection(("127.0.0.1", port), timeout=60) as s:
        s.sendall(
            b"POST /v1/access/grants HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        chunk, sent = b"[" * (1 << 20), 0
        for _ in range(256):
            try:
                s.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            except OSError:
                break
            sent += len(chunk)
            s.settimeout(0.01)
            try:
                if s.recv(1, socket.MSG_PEEK):
                    break
            except (TimeoutError, BlockingIOError):
                pass
            s.settimeout(60)
        s.settimeout(30)
        reply = s.recv(4096)
    assert b" 401 " in reply.split(b"\r\n")[0], reply[:200]
    assert sent < 64 << 20, sent
    assert rss_mb(pid, "VmHWM") - before < 100
    # with the admin key, a JSON body is bounded at 64 KiB
    big = {"principal": "alice", "resource": "x" * 100_000}
    r = httpx.post(base + "/v1/access/grants", json=big, headers=auth(door["admin"]), timeout=60)
    assert r.status_code == 413 and set(r.json()) == {"error"}


def test_a_client_key_cannot_flood_the_audit_log(door):
    """A refused access stream with a 2,000,000-character resource: the message is refused by size
    (uvicorn took 16 MiB), and a long but admitted one is audited cut and escaped."""
    home, base = door["home"], door["base"]
    before = (home / DB_NAME).stat().st_size
    _, code, _ = stream(
        base, {"type": "start", "mode": "access", "resource": "r" * 2_000_000, "key": door["client"]}, [], end=False
    )
    assert code == 1009
    _, code, _ = stream(
        base, {"type": "start", "mode": "access", "resource": "r" * 100_000, "key": door["client"]}, [], end=False
    )
    assert code in (1008, 1009)
    rows = audit(home)
    assert all(len(r["resource"]) <= 200 for r in rows), [len(r["resource"]) for r in rows]
    assert (home / DB_NAME).stat().st_size - before < 1 << 20


# -- must fix --------------------------------------------------------------------------------------
def test_audit_lines_cannot_be_forged(door, cli_env):
    home, base = door["home"], door["base"]
    forged = "door\n2026-12-05T09:00:00.000+00:00  allow door  claim=alice speaker=alice score=0.9\x1b[2K"
    r = post(base, "/v1/access/check", door["client"], clips_of("id90004", 3)[0], resource=forged)
    assert r.status_code == 422 and "\n" not in r.text
    [row] = [r for r in audit(home) if "2026-12-05T09" in r["resource"]]
    assert "\n" not in row["resource"] and "\x1b" not in row["resource"] and "\\n" in row["resource"]
    cli_env["SPEAKERID_HOME"] = str(home)
    printed = run_cli(["audit"], cli_env).stdout
    assert printed.count("\n") == len(audit(home)) and "\x1b" not in printed
    assert not any(line.startswith("2026-12-05T09:00") for line in printed.splitlines())


def test_decoding_is_bounded_per_request_and_in_number(door):
    """120 s of 192 kHz stereo silence in an 85 KiB FLAC, four at once: +880 MB each when decoded
    whole; now a block at a time, and at most a few decodes at once."""
    import io

    buffer = io.BytesIO()
    sf.write(buffer, np.zeros((120 * 192_000, 2), dtype=np.int16), 192_000, format="FLAC")
    bomb = buffer.getvalue()
    assert len(bomb) < 200_000
    pid = door["proc"].pid
    base_rss = rss_mb(pid)
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda _: post(door["base"], "/v1/identify", door["admin"], data=bomb), range(4)))
    assert all(a.status_code == 422 and "speech" in a.json()["error"] for a in answers), [a.text for a in answers]
    grew = rss_mb(pid, "VmHWM") - base_rss
    assert grew < 250, f"the server grew by {grew:.0f} MB"


def test_a_locked_claim_is_locked_on_every_endpoint(door):
    home, base, client = door["home"], door["base"], door["client"]
    stranger, alice = clips_of("id90004", 3)[0], clips_of("id90001", 3)[0]
    for _ in range(LOCKOUT):
        assert post(base, "/v1/access/check", client, stranger, resource="door", claim="alice").json()["allow"] is False
    locked = post(base, "/v1/verify", client, alice, speaker="alice")  # alice's own voice, after the lockout
    assert locked.status_code == 200 and locked.json()["accepted"] is False and locked.json()["score"] is None
    rows = [r for r in audit(home) if r["resource"] == "(verify)"]
    assert rows and rows[-1]["reason"].startswith("locked out until") and rows[-1]["key_id"] == door["client_id"]


@pytest.mark.parametrize("path", ["/v1/identify", "/v1/verify", "/v1/timeline"])
def test_a_client_key_never_lowers_the_bar(door, path):
    params = {"threshold": -1, **({"speaker": "alice"} if path == "/v1/verify" else {})}
    stranger = clips_of("id90004", 3)[0]
    r = post(door["base"], path, door["client"], stranger, **params)
    assert r.status_code == 403 and "may raise the threshold, not lower it" in r.json()["error"]
    raised = post(door["base"], path, door["client"], clips_of("id90001", 3)[0], **{**params, "threshold": 0.9})
    assert raised.status_code == 200  # raising it is the client's right
    assert post(door["base"], path, door["admin"], stranger, **params).status_code == 200  # admins may


def test_a_client_stream_never_lowers_the_bar(door):
    start = {"type": "start", "sample_rate": 16000, "mode": "identify", "threshold": -1, "key": door["client"]}
    _, code, reason = stream(door["base"], start, [], end=False)
    assert code == 1008 and "not lower it" in reason


def test_a_client_key_learns_decisions_not_the_roster(door):
    base, client = door["base"], door["client"]
    stranger = clips_of("id90004", 3)[0]
    found = post(base, "/v1/identify", client, stranger, top_k=5).json()
    assert found["speaker"] is None and found["candidates"] == []
    labels = post(base, "/v1/classify", client, stranger, top_k=5).json()
    assert [x["label"] for x in labels] == ["unknown"]
    told = post(base, "/v1/identify", client, clips_of("id90001", 3)[0], top_k=5).json()
    assert told["speaker"] == "alice" and [c["speaker"] for c in told["candidates"]] == ["alice"]
    enrolled = post(base, "/v1/verify", client, stranger, speaker="bob")
    nobody = post(base, "/v1/verify", client, stranger, speaker="zed")
    assert enrolled.status_code == nobody.status_code == 200
    assert set(enrolled.json()) == set(nobody.json()) and enrolled.json()["score"] is nobody.json()["score"] is None
    a = post(base, "/v1/access/check", client, stranger, resource="door", claim="bob").json()
    b = post(base, "/v1/access/check", client, stranger, resource="door", claim="zed").json()
    assert (a["reason"], a["score"]) == (b["reason"], b["score"]) == ("voice does not match the claimed speaker", None)
    frames = pcm_frames(stranger, 6)
    events = {}
    for claim in ("bob", "zed"):
        start = {"type": "start", "sample_rate": 16000, "mode": "verify", "claim": claim, "key": client}
        got, code, reason = stream(base, start, frames)
        events[claim] = (got[-1]["label"], got[-1]["score"], got[-1]["reason"], code)
    assert events["zed"] == events["bob"] and events["zed"][0] == "rejected", events
    admin_view = post(base, "/v1/identify", door["admin"], stranger, top_k=5).json()
    assert len(admin_view["candidates"]) == 2  # an admin key may list


def test_a_foreign_host_or_origin_is_refused(door):
    base, key = door["base"], door["admin"]
    clip = clips_of("id90001", 3)[0]
    rebound = httpx.post(
        base + "/v1/identify", content=clip.read_bytes(), timeout=60, headers={**auth(key), "Host": "attacker.example"}
    )
    assert rebound.status_code == 421 and set(rebound.json()) == {"error"}
    cross = httpx.post(
        base + "/v1/identify",
        content=clip.read_bytes(),
        timeout=60,
        headers={**auth(key), "Origin": "http://attacker.example"},
    )
    assert cross.status_code == 403
    port = base.rsplit(":", 1)[1]
    same = httpx.post(
        base + "/v1/identify",
        content=clip.read_bytes(),
        timeout=60,
        headers={**auth(key), "Origin": f"http://127.0.0.1:{port}"},
    )
    assert same.status_code == 200  # the console's own origin
    start = {"type": "start", "sample_rate": 16000, "mode": "identify", "key": key}
    _, code, _ = stream(base, start, [], end=False, headers={"Origin": "http://attacker.example"})
    assert code in (403, 1008)


def test_a_forwarded_for_header_is_not_believed(tmp_path, model_dir):
    """Identification-mode lockout is per caller address on a keyless loopback server; a made-up
    X-Forwarded-For used to bring fresh attempts."""
    home = tmp_path / "home"
    with SpeakerID.open(home) as sid:
        sid.enroll("alice", clips_of("id90001", 1))
        AccessControl(sid).grant("alice", "door")
        AccessControl(sid).set_lockout(2, 60)
    stranger = clips_of("id90004", 3)[0].read_bytes()
    with serving(home) as (base, _):

        def check(forwarded: str | None = None):
            headers = {"X-Forwarded-For": forwarded} if forwarded else {}
            return httpx.post(
                base + "/v1/access/check", params={"resource": "door"}, content=stranger, headers=headers, timeout=120
            ).json()

        assert [check()["reason"].startswith("locked") for _ in range(2)] == [False, False]
        assert check("203.0.113.9")["reason"].startswith("locked out")


def test_wrong_keys_from_an_address_never_block_its_right_keys(door):
    base = door["base"]
    for _ in range(12):
        httpx.get(base + "/v1/whoami", headers=auth("sk_nope_nope"), timeout=30)
    assert httpx.get(base + "/v1/whoami", headers=auth("sk_nope_nope"), timeout=30).status_code == 429
    assert httpx.get(base + "/v1/whoami", headers=auth(door["client"]), timeout=30).status_code == 200


def test_malformed_stream_starts_reserve_nothing(door):
    home, base, client = door["home"], door["base"], door["client"]
    start = {
        "type": "start",
        "sample_rate": 16000,
        "mode": "access",
        "resource": "door",
        "claim": "alice",
        "key": client,
    }
    for bad in ({"claim": {}}, {"sample_rate": "fast"}, {"threshold": "0.2"}, {"claim": ["alice"]}):
        _, code, _ = stream(base, {**start, **bad}, [], end=False)
        assert code == 1003, (bad, code)
    assert audit(home) == []  # nothing reserved, nothing written
    events, code, _ = stream(base, start, pcm_frames(clips_of("id90001", 3)[0]))
    assert events[-1]["label"] == "allow", events[-1]


def test_an_abandoned_door_stream_is_audited(door):
    home, base = door["home"], door["base"]
    start = {
        "type": "start",
        "sample_rate": 16000,
        "mode": "access",
        "resource": "door",
        "claim": "alice",
        "key": door["client"],
    }
    events, _, _ = stream(base, start, pcm_frames(clips_of("id90004", 3)[0], 3), close_early=True)
    deadline = time.time() + 30
    while not audit(home) and time.time() < deadline:
        time.sleep(0.2)
    [row] = audit(home)
    assert not row["allow"] and "stream ended before a decision" in row["reason"] and row["claim"] == "alice"


def test_no_500_where_a_4xx_belongs(door):
    base, admin = door["base"], door["admin"]
    for params in ({"since": "9999-12-31T23:59-12:00"}, {"offset": 2**63}, {"until": "0001-01-01T00:00+01:00"}):
        r = httpx.get(base + "/v1/audit", params=params, headers=auth(admin), timeout=30)
        assert r.status_code == 422 and set(r.json()) == {"error"}, (params, r.text)
    nested = b'{"inputs": ' + b"[" * 200_000 + b"]" * 200_000 + b"}"
    r = httpx.post(
        base + "/v1/classify", content=nested, timeout=60, headers={**auth(admin), "Content-Type": "application/json"}
    )
    assert r.status_code == 422 and set(r.json()) == {"error"}
    _, code, _ = stream(base, {"type": "start", "mode": "verify", "claim": {}, "key": admin}, [], end=False)
    assert code == 1003
    with SpeakerID.open(door["home"]) as sid, pytest.raises(InvalidValueError):
        sid.enroll("carol", clips_of("id90003", 1), metadata={"age": float("nan")})
    assert httpx.get(base + "/v1/speakers", headers=auth(admin), timeout=30).status_code == 200


def test_names_with_a_slash_and_look_alike_groups(door):
    base, admin = door["base"], door["admin"]
    with SpeakerID.open(door["home"]) as sid:
        sid.enroll("HR/carol", clips_of("id90003", 1))
    assert httpx.get(base + "/v1/speakers/HR/carol", headers=auth(admin), timeout=30).json()["name"] == "HR/carol"
    gone = httpx.delete(base + "/v1/speakers/HR/carol", headers=auth(admin), timeout=60)
    assert gone.status_code == 200 and gone.json() == {"removed": "HR/carol"}
    for group in ("＠staff", "@@ops", "﹫ops"):
        r = httpx.put(base + f"/v1/access/groups/{group}/members/alice", headers=auth(admin), timeout=30)
        assert r.status_code == 422, (group, r.text)
        r = httpx.post(
            base + "/v1/access/grants", json={"principal": group, "resource": "door"}, headers=auth(admin), timeout=30
        )
        assert r.status_code == 422, (group, r.text)


def test_erasure_takes_the_name_out_of_the_audit_and_change_logs(door):
    home, base, client = door["home"], door["base"], door["client"]
    post(base, "/v1/access/check", client, clips_of("id90001", 3)[0], resource="door", claim="ALICE")
    post(base, "/v1/access/check", client, clips_of("id90004", 3)[0], resource="door")
    httpx.delete(base + "/v1/speakers/alice", headers=auth(door["admin"]), timeout=60).raise_for_status()
    with sqlite3.connect(home / DB_NAME) as db:
        left = [
            row
            for table in ("audit", "events")
            for row in db.execute(f"SELECT * FROM {table}")
            if "alice" in json.dumps(row).lower()
        ]
        aliases = {r[0] for r in db.execute("SELECT claim FROM audit WHERE claim IS NOT NULL")}
    assert left == [], left
    assert len(aliases) == 1 and next(iter(aliases)).startswith("erased-")
    for path in home.iterdir():
        if path.is_file():
            assert b"alice" not in path.read_bytes().lower(), path.name


def test_no_docs_ui_and_the_schema_needs_a_key(tmp_path, model_dir):
    home = tmp_path / "home"
    SpeakerID.open(home).close()
    with serving(home, "--require-keys") as (base, _):
        for path in ("/docs", "/redoc", "/docs/oauth2-redirect"):
            assert httpx.get(base + path, timeout=30).status_code == 404
        assert httpx.get(base + "/openapi.json", timeout=30).status_code == 401


def test_the_cli_prints_untrusted_text_escaped(tmp_path, cli_env):
    cli_env["SPEAKERID_HOME"] = str(tmp_path / "home")
    done = run_cli(["remove", "zed\x1b[31m\nOK removed everyone"], cli_env)
    assert done.returncode == 1 and done.stderr.count("\n") == 1 and "\x1b" not in done.stderr


def test_the_service_memory_bound_holds_with_eight_at_once(door):
    """Eight worst requests at once (the largest upload, the deepest JSON, a decode bomb, a full
    stream): the server's peak RSS stays within the bound SECURITY.md states."""
    import io

    base, pid = door["base"], door["proc"].pid
    buffer = io.BytesIO()
    sf.write(buffer, np.zeros((120 * 192_000, 2), dtype=np.int16), 192_000, format="FLAC")
    bomb = buffer.getvalue()
    upload = bytes(19 << 20)
    nested = b'{"inputs": ' + b"[" * 100_000 + b"}"
    before = rss_mb(pid)

    def one(i: int):
        if i % 4 == 0:
            return post(base, "/v1/identify", door["admin"], data=bomb).status_code
        if i % 4 == 1:
            return post(base, "/v1/identify", door["admin"], data=upload).status_code
        if i % 4 == 2:
            return httpx.post(
                base + "/v1/classify",
                content=nested,
                timeout=60,
                headers={**auth(door["admin"]), "Content-Type": "application/json"},
            ).status_code
        start = {"type": "start", "sample_rate": 16000, "mode": "identify", "key": door["admin"]}
        return stream(base, start, pcm_frames(clips_of("id90001", 3)[0]))[1]

    with ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(one, range(8)))
    assert all(c in (422, 413, 1000) for c in codes), codes
    grew = rss_mb(pid, "VmHWM") - before
    print(f"\npeak growth with 8 worst requests at once: {grew:.0f} MB")
    assert grew < MEMORY_BOUND_MB


MEMORY_BOUND_MB = 400  # SECURITY.md: "What one request may cost"
