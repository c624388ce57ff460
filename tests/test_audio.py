"""Decoding, downmixing, resampling, speech detection, and the one-line refusal of bad audio."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from speakerid.base.errors import AudioError, InsufficientSpeechError
from speakerid.voice.audio import SAMPLE_RATE, load_audio, resample
from speakerid.voice.vad import extract_speech

from bad_audio import UNREADABLE, is_root, make_bad_inputs
from conftest import SHARED, clip_path, iden_split, needs_data

CONVERSATION = SHARED / "data" / "conversations" / "sample.wav"

CLIP = "id10001/1zcIwhmdeo4/00001.wav"


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    if not clip_path(CLIP).is_file():
        pytest.skip("mini-voxceleb1 not available")
    return sf.read(clip_path(CLIP), dtype="float32")[0]


@needs_data
@pytest.mark.parametrize("fmt,ext", [("WAV", "wav"), ("FLAC", "flac"), ("OGG", "ogg"), ("MP3", "mp3")])
def test_formats_decode_to_16k_mono(tmp_path, speech, fmt, ext):
    path = tmp_path / f"clip.{ext}"
    sf.write(path, speech, SAMPLE_RATE, format=fmt)
    audio = load_audio(path)
    assert audio.sample_rate == SAMPLE_RATE and audio.samples.dtype == np.float32 and audio.samples.ndim == 1
    assert abs(audio.seconds - len(speech) / SAMPLE_RATE) < 0.2
    if fmt in ("WAV", "FLAC"):  # lossless: what we wrote comes back
        assert np.max(np.abs(audio.samples - speech)) < 1e-3


@needs_data
@pytest.mark.parametrize("rate", [8000, 44100, 48000])
def test_resampled_input_comes_back_at_16k(tmp_path, speech, rate):
    path = tmp_path / "clip.wav"
    sf.write(path, resample(speech, SAMPLE_RATE, rate), rate)
    audio = load_audio(path)
    assert abs(len(audio.samples) - len(speech)) <= 2
    if rate > SAMPLE_RATE:  # the speech band survives the round trip
        assert np.corrcoef(audio.samples[: len(speech)], speech[: len(audio.samples)])[0, 1] > 0.99


@needs_data
def test_stereo_is_averaged(tmp_path, speech):
    stereo = np.stack([speech, np.zeros_like(speech)], axis=1)
    path = tmp_path / "stereo.wav"
    sf.write(path, stereo, SAMPLE_RATE)
    np.testing.assert_allclose(load_audio(path).samples, speech * 0.5, atol=1e-4)


@needs_data
def test_bytes_and_array_inputs_match_the_file(speech):
    from_file = load_audio(clip_path(CLIP)).samples
    from_bytes = load_audio(clip_path(CLIP).read_bytes(), name="upload.wav")
    assert from_bytes.source == "upload.wav"
    np.testing.assert_array_equal(from_bytes.samples, from_file)
    np.testing.assert_array_equal(load_audio((speech, SAMPLE_RATE)).samples, from_file)


@needs_data
def test_bad_inputs_raise_one_line_audio_errors(tmp_path, speech):
    for source, reason in make_bad_inputs(tmp_path, speech):
        if source.name == UNREADABLE and is_root():
            continue  # root reads any file; test_bad_input checks it in a process that obeys file modes
        with pytest.raises(AudioError) as info:
            extract_speech(load_audio(source))
        message = str(info.value)
        assert reason in message, message
        assert str(source) in message and "\n" not in message


def test_too_long_is_checked_before_decoding(tmp_path):
    path = tmp_path / "long.wav"
    sf.write(path, np.zeros(SAMPLE_RATE * 5, dtype=np.float32), SAMPLE_RATE)
    with pytest.raises(AudioError, match="too long: 5.0 s of audio, the limit is 2 s"):
        load_audio(path, max_seconds=2)


def test_bytes_that_are_not_audio():
    with pytest.raises(AudioError, match="<bytes>: not a readable audio file"):
        load_audio(b"\x89PNG\r\n\x1a\n" + bytes(200))
    with pytest.raises(AudioError, match="empty input"):
        load_audio(b"")


@pytest.mark.parametrize("kind", ["silence", "noise", "tone", "dc", "square"])
def test_signals_without_speech_are_refused(kind):
    t = np.arange(SAMPLE_RATE * 4) / SAMPLE_RATE
    signal = {
        "silence": np.zeros_like(t),
        "noise": 0.3 * np.random.default_rng(0).standard_normal(len(t)),
        "tone": 0.5 * np.sin(2 * np.pi * 440 * t),
        "dc": np.full_like(t, 0.3),
        "square": np.sign(np.sin(2 * np.pi * 100 * t)),
    }[kind].astype(np.float32)
    with pytest.raises(AudioError, match=f"{kind}: no speech found"):
        extract_speech(load_audio((signal, SAMPLE_RATE), name=kind))


@needs_data
def test_speech_is_measured_and_short_speech_refused(speech):
    full = extract_speech(load_audio((speech, SAMPLE_RATE)), speech_only=True)
    assert 6.0 < full.seconds <= len(speech) / SAMPLE_RATE
    assert len(full.samples) == round(full.seconds * SAMPLE_RATE)
    whole = extract_speech(load_audio((speech, SAMPLE_RATE)))
    assert len(whole.samples) == len(speech) and whole.seconds == full.seconds
    start = int(1.0 * SAMPLE_RATE)
    snippet = speech[start : start + int(0.3 * SAMPLE_RATE)]
    with pytest.raises(InsufficientSpeechError, match=r"need at least 1 s of speech, got 0\.\d\d s"):
        extract_speech(load_audio((snippet, SAMPLE_RATE), name="snippet"))


@needs_data
@pytest.mark.parametrize("threshold", [0.5, 0.35])  # identification's and the timeline's
def test_speech_regions_match_silero_streaming_model(threshold):
    """Our run of silero's sequence model and our region rule find exactly the regions silero's
    own frame-by-frame model and rule find: on every 12th clip and on the long conversation."""
    import torch
    from silero_vad import get_speech_timestamps, load_silero_vad

    from speakerid.voice.vad import SpeechDetector

    detector, streaming = SpeechDetector(threshold=threshold), load_silero_vad()
    clips = [clip_path(rel) for _, rel in iden_split()][::12] + [CONVERSATION]
    for path in clips:
        audio = load_audio(path)
        with torch.inference_mode():
            stamps = get_speech_timestamps(
                torch.from_numpy(audio.samples),
                streaming,
                threshold=threshold,
                sampling_rate=SAMPLE_RATE,
                min_silence_duration_ms=detector.min_silence_ms,
                speech_pad_ms=detector.pad_ms,
            )
        ours = detector.segments(audio)
        assert ours == [(s["start"], s["end"]) for s in stamps], path
        assert len(ours) >= 1
    assert len(ours) >= 4  # the conversation exercises the gaps between regions


@needs_data
def test_restated_speech_model_gives_silero_probabilities(tmp_path, monkeypatch):
    """silero's model with its convolutions restated as products (built once, cached, private):
    the same speech probabilities as the published file on real speech."""
    import onnx
    import onnxruntime as ort

    from speakerid.voice import onnx_model, vad

    monkeypatch.setenv("SPEAKERID_CACHE", str(tmp_path / "cache"))
    published = vad._silero_file()
    restated = onnx_model.restated_file(published)
    assert restated != published and onnx_model.restated_file(published) == restated
    assert restated.stat().st_mode & 0o777 == 0o600
    convolutions = [
        [n.name for n in onnx.load(str(p)).graph.node if n.op_type == "Conv"] for p in (published, restated)
    ]
    # all but the output layer, which runs along the sequence (its length varies: left as it is)
    assert len(convolutions[0]) == 6 and convolutions[1] == ["/output/Conv"]
    detectors = []
    for path in (published, restated):
        detector = vad.SpeechDetector()
        detector._session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        detectors.append(detector)
    for path in [clip_path(rel) for _, rel in iden_split()][::20] + [CONVERSATION]:
        samples = load_audio(path).samples
        expected, got = (d.probabilities(samples) for d in detectors)
        assert np.abs(expected - got).max() < 1e-5, path


@needs_data
def test_speech_detection_is_safe_from_many_threads():
    """Eight threads detect speech at once in a fresh process, as evaluation's decode threads do:
    all get the same regions, and the detector never imports torch."""
    script = f"""
import sys, threading
from speakerid.voice.audio import load_audio
from speakerid.voice.vad import default_detector
audio = load_audio({str(clip_path(iden_split()[0][1]))!r})
found = []
def detect():
    found.append(default_detector().segments(audio))
threads = [threading.Thread(target=detect) for _ in range(8)]
[t.start() for t in threads]
[t.join() for t in threads]
print(len(found), len({{str(f) for f in found}}), "torch" in sys.modules)
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "8 1 False"
