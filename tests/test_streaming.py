"""Live audio (issue #19): decisions while the person speaks, through the Python API, a real
WebSocket on 127.0.0.1 and `speakerid listen --stdin`."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from speakerid import SpeakerID, UsageError
from speakerid.apps.access import AccessControl
from speakerid.apps.keys import create_key

from conftest import clips_of, needs_data, serving

pytestmark = [needs_data]


@pytest.fixture(scope="module")
def home(tmp_path_factory, model_dir):
    home = tmp_path_factory.mktemp("stream") / "home"
    with SpeakerID.open(home) as sid:
        for speaker in ("id90001", "id90002", "id90003", "id90004", "id90005"):
            sid.enroll(speaker, clips_of(speaker, 1), min_speech=5)
        AccessControl(sid).grant("id90001", "door")
    return home


def pcm(path) -> np.ndarray:
    return sf.read(path, dtype="int16")[0]


def streamed(live, samples: np.ndarray, step: int = 1600):
    events = []
    for i in range(0, len(samples), step):
        events += live.feed(samples[i : i + step])
    return events, live.close()


def test_the_right_speaker_early_and_strangers_unknown(home):
    with SpeakerID.open(home) as sid:
        events, final = streamed(sid.stream(16000), pcm(clips_of("id90003", 3)[0]))
        assert final.final and final.speaker == "id90003" and final.reason.startswith("early")
        first = next(e for e in events if e.final)
        assert first.speech_seconds < 3.5 and first.t < len(pcm(clips_of("id90003", 3)[0])) / 16000
        assert all(
            set(e.to_dict()) == {"t", "speech_seconds", "speaker", "label", "score", "final", "reason", "confidence"}
            for e in events
        )
        _, stranger = streamed(sid.stream(16000), pcm(clips_of("id90101", 3)[0]))
        assert stranger.final and stranger.speaker is None and stranger.label == "unknown"
        _, claim = streamed(sid.stream(16000, "verify", claim="id90002"), pcm(clips_of("id90001", 3)[0]))
        assert claim.label == "rejected"
        narrow = pcm(clips_of("id90003", 3)[0])[::2]  # 8 kHz
        _, phone = streamed(sid.stream(8000), narrow, step=800)
        assert phone.speaker == "id90003"
        _, short = streamed(sid.stream(16000), pcm(clips_of("id90003", 3)[0])[:8000])
        assert short.final and short.speaker is None and "need at least 1 s of speech" in short.reason
        with pytest.raises(UsageError):
            sid.stream(16000, "access")
        with pytest.raises(UsageError):
            sid.stream(16000).feed(np.array([np.nan], dtype=np.float32))


def test_a_speaker_change_is_reported(home):
    joined = np.concatenate([pcm(clips_of("id90001", 3)[0]), pcm(clips_of("id90002", 3)[0])])
    with SpeakerID.open(home) as sid:
        events, final = streamed(sid.stream(16000), joined)
    change = [i for i, e in enumerate(events) if e.reason == "speaker changed"]
    assert len(change) == 1
    before, after = events[: change[0]], events[change[0] + 1 :]
    assert any(e.final and e.speaker == "id90001" for e in before)
    assert after and after[-1].speaker == "id90002" and final.speaker == "id90002"
    assert events[change[0]].t > len(pcm(clips_of("id90001", 3)[0])) / 16000  # after the first voice ended


def test_access_streams_write_one_audit_row_each(home):
    with SpeakerID.open(home) as sid:
        access = AccessControl(sid)
        before = len(access.audit())
        _, allowed = streamed(access.stream("door"), pcm(clips_of("id90001", 3)[0]))
        _, denied = streamed(access.stream("door", "id90001"), pcm(clips_of("id90004", 3)[0]))
        audit = access.audit()[before:]
    assert (allowed.label, allowed.speaker, denied.label) == ("allow", "id90001", "deny")
    assert [(d["allow"], d["mode"]) for d in audit] == [(True, "stream-identify"), (False, "stream-verify")]


def run_ws(url: str, frames: list, *, headers=None, start=None, end: bool = True, pace: float = 0.0):
    """Speak to the WebSocket: a start message, frames (bytes or text), then end; returns (events, close)."""
    import websockets

    async def go():
        events = []
        async with websockets.connect(url, additional_headers=headers or {}) as ws:
            await ws.send(json.dumps(start or {"type": "start", "sample_rate": 16000, "mode": "identify"}))
            try:
                for frame in frames:
                    await ws.send(frame)
                    if pace:
                        await asyncio.sleep(pace)
                if end:
                    await ws.send(json.dumps({"type": "end"}))
                async for message in ws:
                    events.append(json.loads(message))
            except websockets.ConnectionClosed:
                pass
            return events, (ws.close_code, ws.close_reason)

    return asyncio.run(go())


def frames_of(samples: np.ndarray, step: int = 3200) -> list[bytes]:
    return [samples[i : i + step].astype("<i2").tobytes() for i in range(0, len(samples), step)]


def test_over_a_real_websocket(home):
    with SpeakerID.open(home) as sid:
        key, _ = create_key(sid.store, "client")
    joined = np.concatenate([pcm(clips_of("id90005", 3)[0]), pcm(clips_of("id90002", 3)[0])])
    with serving(home, "--max-stream-seconds", "20", "--idle-seconds", "2") as (base, _):
        url = base.replace("http://", "ws://") + "/v1/stream"
        auth = {"Authorization": f"Bearer {key}"}
        events, closed = run_ws(url, frames_of(joined), headers=auth, pace=0.02)
        assert closed == (1000, "done")
        assert events[-1]["final"] and events[-1]["speaker"] == "id90002"
        assert any(e["reason"] == "speaker changed" for e in events)
        assert any(e["final"] and e["speaker"] == "id90005" for e in events)
        # the key may come in the start message instead of a header
        events, closed = run_ws(
            url,
            frames_of(pcm(clips_of("id90101", 3)[0])),
            start={"type": "start", "sample_rate": 16000, "mode": "identify", "key": key},
        )
        assert closed[0] == 1000 and events[-1]["label"] == "unknown"
        events, closed = run_ws(
            url,
            frames_of(pcm(clips_of("id90001", 3)[0])),
            headers=auth,
            start={"type": "start", "sample_rate": 16000, "mode": "access", "resource": "door"},
        )
        assert closed[0] == 1000 and events[-1]["label"] == "allow" and events[-1]["final"]
        # refused cleanly
        assert run_ws(url, [], headers={"Authorization": "Bearer sk_nope_nope"})[1][0] == 1008
        assert run_ws(url, [], start={"type": "start", "sample_rate": 16000})[1][0] == 1008  # no key
        assert run_ws(url, [b"\x01\x02\x03"], headers=auth)[1][0] == 1003  # half a sample
        assert run_ws(url, [bytes(100_000)], headers=auth)[1][0] == 1009  # an oversize frame
        assert run_ws(url, frames_of(np.zeros(16000 * 21, dtype=np.int16), 16000), headers=auth)[1][0] == 1009
        assert run_ws(url, ["{not json"], headers=auth)[1][0] == 1003
        assert run_ws(url, [], headers=auth, start={"type": "start", "mode": "sing"})[1][0] == 1008
        idle = run_ws(url, [], headers=auth, end=False)
        assert idle[1][0] == 1008 and "nothing received" in idle[1][1]


def test_a_fast_sender_does_not_starve_a_real_time_one(home):
    """One client sends 60 s of audio as fast as it can while another speaks in real time: the
    real-time client still gets its first final decision within a few seconds of speech."""
    import threading
    import time

    with SpeakerID.open(home) as sid:
        key, _ = create_key(sid.store, "client")
    auth = {"Authorization": f"Bearer {key}"}
    flood = np.tile(pcm(clips_of("id90004", 3)[0]), 12)[: 16000 * 60]
    with serving(home, "--max-stream-seconds", "120") as (base, _):
        url = base.replace("http://", "ws://") + "/v1/stream"
        hog = threading.Thread(target=run_ws, args=(url, frames_of(flood)), kwargs={"headers": auth})
        hog.start()
        time.sleep(1.0)
        started = time.perf_counter()
        events, _ = run_ws(url, frames_of(pcm(clips_of("id90005", 3)[0]), 1600), headers=auth, pace=0.1)
        took = time.perf_counter() - started
        hog.join()
    first = next(e for e in events if e["final"])
    assert first["speaker"] == "id90005" and took < first["t"] + 10, (took, first)


def test_listen_from_stdin(home, cli_env):
    cli_env["SPEAKERID_HOME"] = str(home)
    joined = np.concatenate([pcm(clips_of("id90001", 3)[0]), pcm(clips_of("id90002", 3)[0])])
    done = subprocess.run(
        [sys.executable, "-m", "speakerid.cli", "listen", "--stdin", "--json"],
        env=cli_env,
        input=joined.astype("<i2").tobytes(),
        capture_output=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    events = [json.loads(line) for line in done.stdout.decode().splitlines()]
    assert events[-1]["final"] and events[-1]["speaker"] == "id90002"
    assert any(e["reason"] == "speaker changed" for e in events)
    refused = subprocess.run(
        [sys.executable, "-m", "speakerid.cli", "listen"], env=cli_env, capture_output=True, timeout=120
    )
    assert refused.returncode == 1 and refused.stderr.decode().startswith("error: choose one input")


def test_enroll_while_speaking(tmp_path, model_dir):
    """Enrollment feedback while someone speaks (issue #35): a report every second whose speech,
    progress and agreement grow with what was said; at the end an ordinary enrollment, through its
    gates; without a name nothing is written."""
    from store import InvalidNameError, SpeakerIDError

    speech = np.concatenate([pcm(c) for c in clips_of("id90006", 1)[:3]])
    with SpeakerID.open(tmp_path / "home") as sid:
        for other in ("id90001", "id90002"):
            sid.enroll(other, clips_of(other, 1), min_speech=5)
        reports, result = streamed(sid.enroll_stream("erin"), speech, step=4800)
        assert len(reports) == len(speech) // 16000 and {r.to_dict()["type"] for r in reports} == {"quality"}
        heard = [r.speech_seconds for r in reports]
        assert heard == sorted(heard) and heard[-1] >= 12, heard
        assert reports[0].progress < reports[-1].progress <= 1.0
        assert reports[0].agreement is None and reports[-1].agreement > 0.5  # one voice: its pieces agree
        assert reports[-1].expected_accept is not None and reports[-1].advice
        assert result.speaker == "erin" and result.clips >= 3 and result.quality["speech_seconds"] >= 12
        assert sid.identify(clips_of("id90006", 3)[0]).speaker == "erin"  # another recording of them

        before = [s.name for s in sid.speakers()]
        last = streamed(sid.enroll_stream(None), speech[: 16000 * 6])[1]
        assert 0 < last.speech_seconds <= 6 and [s.name for s in sid.speakers()] == before
        with pytest.raises(InvalidNameError):
            sid.enroll_stream("@staff")  # refused before anyone speaks
        silent = sid.enroll_stream("quiet")
        assert silent.feed(np.zeros(16000 * 3, dtype=np.int16))[-1].speech_seconds == 0
        with pytest.raises(SpeakerIDError, match="quiet"):
            silent.close()  # no speech: refused like any enrollment, nothing written
        assert [s.name for s in sid.speakers()] == before


def test_enroll_mode_over_a_real_websocket(tmp_path, model_dir):
    home = tmp_path / "home"
    with SpeakerID.open(home) as sid:
        sid.enroll("id90001", clips_of("id90001", 1), min_speech=5)
        admin, _ = create_key(sid.store, "admin")
        client, _ = create_key(sid.store, "client")
    speech = np.concatenate([pcm(c) for c in clips_of("id90007", 1)[:3]])
    with serving(home, "--require-keys") as (base, _):
        url = base.replace("http://", "ws://") + "/v1/stream"
        start = {"type": "start", "sample_rate": 16000, "mode": "enroll", "name": "frank"}
        events, closed = run_ws(url, frames_of(speech), headers={"Authorization": f"Bearer {client}"}, start=start)
        assert closed[0] == 1008 and "admin" in closed[1] and not events  # a client key cannot enroll
        events, closed = run_ws(url, frames_of(speech), headers={"Authorization": f"Bearer {admin}"}, start=start)
        assert closed == (1000, "done"), closed
        quality, final = events[:-1], events[-1]
        assert quality and all(e["type"] == "quality" for e in quality)
        assert quality[-1]["progress"] > quality[0]["progress"]
        assert final["type"] == "enrolled" and final["speaker"] == "frank" and final["quality"]["agreement"]
        bad = run_ws(url, [], headers={"Authorization": f"Bearer {admin}"}, start={**start, "name": "@x"})
        assert bad[1][0] == 1008 and "invalid speaker name" in bad[1][1]
    with SpeakerID.open(home) as sid:
        assert sid.identify(clips_of("id90007", 3)[0]).speaker == "frank"
