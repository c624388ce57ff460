"""Once the model's files exist, the runtime needs no torch, torchaudio or SpeechBrain.

Why: a door controller runs ``speakerid access check`` once per event, and importing torch alone
cost about 1-1.6 s of every call; a torch release that breaks (as torchaudio 2.11.1 did) must not
break the commands people run every day. torch and SpeechBrain only read the published checkpoint
and build the model files (``speakerid model pull``, or the first use). How fast the start is, per
CPU, is benchmarks/identify_speed.py's job; this file checks that what makes it fast stays true.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

from conftest import DATA, clips_of, needs_data, needs_model, run_cli

TORCH = ("torch", "torchaudio", "speechbrain")
HEAVY = (*TORCH, "silero_vad", "scipy")  # the quick commands import none of these

# Runs a command as its console script would, then reports which heavy packages got imported.
PROBE = """
import json, runpy, sys
module, sys.argv = sys.argv[1], [sys.argv[1]] + sys.argv[2:]
code = 0
try:
    runpy.run_module(module, run_name="__main__")
except SystemExit as done:
    code = done.code
print(json.dumps({"code": code, "heavy": sorted(m for m in %r if m in sys.modules)}))
""" % (HEAVY,)

# The service in one process: an enrollment, an identification and a live stream through the real
# app (Starlette's test client), then which heavy packages got imported.
SERVICE_PROBE = """
import json, sys
from fastapi.testclient import TestClient
from speakerid.service import create_app
from speakerid.service.config import ServiceConfig

enroll, query = sys.argv[1].split(","), sys.argv[2]
with TestClient(create_app(ServiceConfig(home=sys.argv[3])), base_url="http://127.0.0.1") as client:
    files = [("file", (p, open(p, "rb").read())) for p in enroll]
    answer = client.post("/v1/speakers/carol/enrollments", files=files)
    assert answer.is_success, answer.text
    who = client.post("/v1/identify", content=open(query, "rb").read()).json()["speaker"]
    import soundfile as sf
    samples, rate = sf.read(query, dtype="int16")
    with client.websocket_connect("ws://127.0.0.1/v1/stream") as ws:
        ws.send_json({"type": "start", "sample_rate": rate, "mode": "identify"})
        for i in range(0, len(samples), rate // 4):  # frames of a quarter second (the limit is 64 kB)
            ws.send_bytes(samples[i:i + rate // 4].tobytes())
        ws.send_json({"type": "end"})
        events = []
        while not events or not events[-1].get("final"):
            events.append(ws.receive_json())
print(json.dumps({"identified": who, "streamed": events[-1]["speaker"],
                  "heavy": sorted(m for m in %r if m in sys.modules)}))
""" % (HEAVY,)


def probe(args: list[str], env: dict[str, str], *, module: str = "speakerid.cli", stdin: bytes | None = None) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, module, *args], env=env, capture_output=True, timeout=600, input=stdin
    )
    lines = done.stdout.decode().strip().splitlines()
    assert lines, done.stderr.decode()[-2000:]
    return json.loads(lines[-1])


def at_rate(clip, rate: int, folder) -> str:
    """``clip`` (16 kHz mono) converted to ``rate`` by SciPy's polyphase filter, stereo above 16 kHz."""
    samples, native = sf.read(clip, dtype="float32")
    g = np.gcd(rate, native)
    out = resample_poly(samples, rate // g, native // g).astype(np.float32)
    if rate > 16_000:
        out = np.stack([out, 0.9 * out], axis=1)  # a stereo recording, downmixed by the reader
    folder.mkdir(exist_ok=True)
    path = folder / f"{clip.parent.name}-{clip.stem}-{rate}.flac"
    sf.write(path, out, rate)
    return str(path)


@needs_data
def test_identify_and_access_check_start_without_torch(cli_env):
    alice, bob = clips_of("id90001", 1), clips_of("id90101", 1)
    assert run_cli(["alice", *map(str, alice[:3])], cli_env, module="enroll.cli").returncode == 0
    assert run_cli(["bob", *map(str, bob[:3])], cli_env, module="enroll.cli").returncode == 0
    assert run_cli(["access", "grant", "alice", "door"], cli_env).returncode == 0
    query = str(clips_of("id90001", 3)[0])

    identified = probe(["identify", query, "--json"], cli_env)
    assert identified == {"code": 0, "heavy": []}
    checked = probe(["access", "check", "door", query], cli_env)
    assert checked == {"code": 0, "heavy": []}  # exit 0: allowed
    denied = probe(["access", "check", "door", str(clips_of("id90101", 3)[0])], cli_env)
    assert denied == {"code": 3, "heavy": []}


@needs_model
@needs_data
def test_every_runtime_command_at_every_rate_runs_without_torch(embedder, cli_env, tmp_path):
    """enroll-speaker, identify, verify, timeline, listen, eval and the service, with audio at 8,
    16, 44.1 and 48 kHz: each a fresh process, none importing torch, torchaudio or SpeechBrain
    (the ``embedder`` fixture has built the model files, as ``speakerid model pull`` does)."""

    def torch_in(result: dict) -> list[str]:
        return [m for m in result["heavy"] if m in TORCH]

    for rate, speaker in ((8_000, "id90001"), (16_000, "id90002"), (44_100, "id90003"), (48_000, "id90004")):
        folder = tmp_path / str(rate)
        enroll = [at_rate(c, rate, folder) for c in clips_of(speaker, 1)]
        name = f"{speaker}-at-{rate}"
        enrolled = probe([name, *enroll], cli_env, module="enroll.cli")
        assert enrolled["code"] == 0 and not torch_in(enrolled), (rate, enrolled)
        query = at_rate(clips_of(speaker, 3)[0], rate, folder)
        identified = probe(["identify", query], cli_env)
        assert identified["code"] == 0 and not torch_in(identified), (rate, identified)  # 0: named
        verified = probe(["verify", name, query], cli_env)
        assert verified["code"] == 0 and not torch_in(verified), (rate, verified)

    recording = tmp_path / "two.wav"
    a, _ = sf.read(clips_of("id90001", 3)[0], dtype="float32")
    b, _ = sf.read(clips_of("id90101", 3)[0], dtype="float32")
    sf.write(recording, np.concatenate([a, np.zeros(8000, np.float32), b]), 16000)
    timeline = probe(["timeline", str(recording)], cli_env)
    assert timeline["code"] == 0 and not torch_in(timeline), timeline

    pcm, _ = sf.read(clips_of("id90001", 3)[1], dtype="int16")
    listened = probe(["listen", "--stdin"], cli_env, stdin=pcm.tobytes())
    assert not torch_in(listened), listened

    evaluated = probe(["eval", "voxceleb", "--root", str(DATA)], cli_env)
    assert evaluated["code"] == 0 and not torch_in(evaluated), evaluated

    home = tmp_path / "service-home"
    served = subprocess.run(
        [
            sys.executable,
            "-c",
            SERVICE_PROBE,
            ",".join(map(str, clips_of("id90101", 1))),
            str(clips_of("id90101", 3)[0]),
            str(home),
        ],
        env=cli_env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert served.returncode == 0, served.stderr[-2000:]
    result = json.loads(served.stdout.strip().splitlines()[-1])
    assert result["identified"] == "carol" and result["streamed"] == "carol", result
    assert not torch_in(result), result
