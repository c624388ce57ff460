"""A corpus of bad inputs, made from scratch by the tests: (path, fragment the error must contain).

``PATH_ONLY`` cases exist only as paths (a folder, a pipe, a missing file, ...): an HTTP client
cannot upload them, so the HTTP test sends the others. ``UNREADABLE`` is unreadable only to a
process without CAP_DAC_OVERRIDE; :func:`drop_file_override` makes a root child process such a one.
"""

from __future__ import annotations

import ctypes
import gzip
import io
import os
import wave
from pathlib import Path

import numpy as np
import soundfile as sf

RATE = 16_000
UNREADABLE = "unreadable.wav"
NON_UTF8 = os.fsdecode(b"caf\xe9-\xff\xfe.wav")  # Latin-1 and stray bytes: not valid UTF-8
PATH_ONLY = {"folder.wav", "missing.wav", "dangling.wav", UNREADABLE, "fifo.wav", "device.wav"}


def make_bad_inputs(folder: Path, speech: np.ndarray) -> list[tuple[Path, str]]:
    """Write the corpus under ``folder``; ``speech`` is a few seconds of real 16 kHz speech."""
    folder.mkdir(parents=True, exist_ok=True)
    cases: list[tuple[Path, str]] = []

    def add(name: str, reason: str) -> Path:
        path = folder / name
        cases.append((path, reason))
        return path

    def wav_bytes(samples: np.ndarray, rate: int = RATE, fmt: str = "WAV", subtype: str | None = None) -> bytes:
        buffer = io.BytesIO()
        sf.write(buffer, samples, rate, format=fmt, subtype=subtype)
        return buffer.getvalue()

    t = np.arange(4 * RATE) / RATE
    # nothing there
    add("empty.wav", "empty").write_bytes(b"")
    with wave.open(str(add("header-only.wav", "no audio")), "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(RATE)
    sf.write(add("one-sample.wav", "no speech found"), speech[:1], RATE)
    # not audio, whatever the name says
    add("notes.wav", "not a readable audio file").write_text("this is not audio\n" * 100)
    add("data.wav", "not a readable audio file").write_text('{"json": true}')
    add("image.wav", "not a readable audio file").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(500))
    add("error-page.wav", "not a readable audio file").write_text("<!doctype html><title>404 Not Found</title>")
    add("archive.wav", "not a readable audio file").write_bytes(gzip.compress(wav_bytes(speech)))
    add("raw-pcm.wav", "not a readable audio file").write_bytes((speech * 32767).astype("<i2").tobytes())
    add("voice-memo.m4a", "MP4/M4A/AAC is not supported").write_bytes(
        b"\x00\x00\x00\x20ftypM4A \x00\x00\x02\x00M4A isommp42" + bytes(2000)
    )
    # damaged audio
    whole = wav_bytes(speech)
    add("truncated.wav", "truncated").write_bytes(whole[: len(whole) // 2])
    flac = wav_bytes(speech, fmt="FLAC")
    add("truncated.flac", "not a readable audio file").write_bytes(flac[: len(flac) // 2])
    broken = bytearray(whole)
    broken[20:36] = bytes(16)  # the fmt chunk zeroed: format 0, 0 channels, rate 0
    add("broken-header.wav", "not a readable audio file").write_bytes(bytes(broken))
    sf.write(add("nan.wav", "NaN or infinite"), np.full(RATE, np.nan, dtype=np.float32), RATE, subtype="FLOAT")
    inf = speech[: 2 * RATE].copy()
    inf[100] = np.inf
    sf.write(add("inf.wav", "NaN or infinite"), inf, RATE, subtype="FLOAT")
    # formats outside what we take
    sf.write(add("1hz.wav", "below the supported minimum"), np.zeros(10, dtype=np.float32), 1)
    sf.write(add("384k.wav", "above the supported maximum"), np.zeros(384_000, dtype=np.float32), 384_000)
    sf.write(add("8ch.wav", "8 channels"), np.repeat(speech[:, None], 8, axis=1), RATE)
    sf.write(add("33ch.wav", "33 channels"), np.zeros((1000, 33), dtype=np.float32), RATE)
    with sf.SoundFile(add("one-hour.wav", "too long"), "w", 8000, 1, subtype="PCM_U8") as f:
        block = np.zeros(8000 * 60, dtype=np.float32)
        for _ in range(60):
            f.write(block)
    # audio with no voice in it
    sf.write(add("silence.wav", "no speech found"), np.zeros(4 * RATE, dtype=np.float32), RATE)
    sf.write(add("tone.wav", "no speech found"), (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), RATE)
    sf.write(add("dc.wav", "no speech found"), np.full(4 * RATE, 0.3, dtype=np.float32), RATE)
    sf.write(add("square.wav", "no speech found"), np.sign(np.sin(2 * np.pi * 200 * t)).astype(np.float32), RATE)
    sf.write(
        add("noise.wav", "no speech found"),
        (0.3 * np.random.default_rng(0).standard_normal(4 * RATE)).astype(np.float32),
        RATE,
    )
    loudest = int(np.argmax(np.convolve(speech**2, np.ones(int(0.4 * RATE)), mode="valid")))
    sf.write(add("short.wav", "s of speech, got"), speech[loudest : loudest + int(0.4 * RATE)], RATE)
    # names and file kinds
    with wave.open(str(add(NON_UTF8, "no audio")), "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(RATE)
    unreadable = add(UNREADABLE, "permission denied")
    unreadable.write_bytes(whole)  # good speech: only the permission stands in the way
    unreadable.chmod(0)
    (folder / "folder.wav").mkdir()
    cases.append((folder / "folder.wav", "folder"))
    cases.append((folder / "missing.wav", "file not found"))
    (folder / "dangling.wav").symlink_to(folder / "nowhere.wav")
    cases.append((folder / "dangling.wav", "broken symbolic link"))
    os.mkfifo(add("fifo.wav", "not a regular file"))
    add("device.wav", "not a regular file").symlink_to("/dev/zero")
    return cases


def is_root() -> bool:
    return os.geteuid() == 0


def drop_file_override() -> None:
    """``preexec_fn`` for a child process: without CAP_DAC_OVERRIDE / CAP_DAC_READ_SEARCH even root
    obeys file modes, so the unreadable case is unreadable under CI's root user too."""
    if not is_root():
        return
    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (1, 2):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH
        if libc.prctl(24, capability, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP) failed")
