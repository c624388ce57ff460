"""Measure the int8 model's activations on real speech, and what int8 costs in accuracy.

    python benchmarks/int8_calibration.py [--root ../shared/data/mini-voxceleb1] [--write]

Activations: the largest absolute and the mean input per channel of every int8 product (for
smoothing and bias correction, speakerid/voice/ecapa_int8.py), over the enrollment clips
(split 1 of iden_split.txt) as recorded and through a telephone band (8 kHz and back: peaks from
wideband speech alone broke telephone audio). ``--write`` stores them in speakerid/voice/data/ (what the
product ships; the int8 model is built from them). Accuracy, out of sample on the split-3 clips,
as recorded, through the telephone band, under white noise (10 dB) and under babble (5 dB: three
other clips at once; neither noise was used for the activations): cosine of int8 to plain SpeechBrain
fp32 (min and mean), per smoothing strength, and whether every clip's nearest enrolled speaker (split-1
profiles) is the same as with plain SpeechBrain.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from speakerid.voice import ecapa_graph, ecapa_int8, onnx_model
from speakerid.voice.audio import resample
from speakerid.voice.models import resolve
from speakerid.voice.speechbrain_engine import load_speechbrain

HERE = Path(__file__).resolve().parent
ACTIVATIONS = HERE.parent / "speakerid" / "voice" / "data" / "ecapa-voxceleb-int8-activations.npz"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=HERE.parent.parent / "shared" / "data" / "mini-voxceleb1")
    parser.add_argument(
        "--write", action="store_true", help=f"store the activations in {ACTIVATIONS.relative_to(HERE.parent)}"
    )
    parser.add_argument("--alpha", type=float, nargs="+", default=[0.5, 0.7])
    args = parser.parse_args()
    split = [(int(a), b) for a, b in (l.split() for l in (args.root / "iden_split.txt").read_text().splitlines() if l)]
    read = lambda rel: sf.read(args.root / "wav" / rel, dtype="float32")[0]  # noqa: E731
    phone = lambda x: resample(resample(x, 16000, 8000), 8000, 16000)  # noqa: E731
    enroll = [r for s, r in split if s == 1]
    test = [r for s, r in split if s == 3]
    folder = resolve()
    classifier = load_speechbrain(folder.path)
    classifier.eval()
    graph = ecapa_graph.EcapaGraph(classifier).eval()
    activations = ecapa_int8.measure(
        graph,
        [torch.from_numpy(onnx_model.frames(band(read(r))))[None] for r in enroll for band in (lambda x: x, phone)],
    )
    print(
        f"activations of {len(activations.peak)} products from {len(enroll)} enrollment clips, wideband and telephone band"
    )
    if args.write:
        ACTIVATIONS.parent.mkdir(exist_ok=True)
        activations.save(ACTIVATIONS)
        print(f"wrote {ACTIVATIONS}")

    def plain(samples: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            v = classifier.encode_batch(torch.from_numpy(samples)[None]).reshape(-1).numpy()
        return v / np.linalg.norm(v)

    who = lambda r: r.split("/")[0]  # noqa: E731
    speakers = sorted({who(r) for r in enroll})
    rng = np.random.default_rng(0)

    def noise(x: np.ndarray, snr_db: float, babble: bool = False) -> np.ndarray:
        """White noise, or three other test clips talking at once, at ``snr_db`` below the speech."""
        if babble:
            others = [read(r)[: len(x)] for r in rng.choice(test, 3)]
            n = sum(np.pad(o, (0, len(x) - len(o))) for o in others)
        else:
            n = rng.standard_normal(len(x)).astype(np.float32)
        return (x + n * np.sqrt(np.mean(x**2) / np.mean(n**2)) * 10 ** (-snr_db / 20)).astype(np.float32)

    conditions = {
        "wideband": lambda x: x,
        "telephone band": phone,  # not in the activations: noise and babble
        "white noise 10 dB": lambda x: noise(x, 10),
        "babble 5 dB": lambda x: noise(x, 5, babble=True),
    }
    audio = {(r, c): band(read(r)) for r in test for c, band in conditions.items()}
    reference = {key: plain(x) for key, x in audio.items()}
    enrolled = {r: plain(read(r)) for r in enroll}
    profiles = np.stack([np.mean([enrolled[r] for r in enroll if who(r) == s], axis=0) for s in speakers])
    profiles /= np.linalg.norm(profiles, axis=1, keepdims=True)
    expected = {r: int(np.argmax(profiles @ v)) for r, v in reference.items()}

    for alpha in args.alpha:
        with tempfile.TemporaryDirectory() as tmp:
            g = ecapa_graph.EcapaGraph(classifier).eval()
            weights = ecapa_int8.prepare(g, activations, alpha)
            ecapa_graph.export(g, Path(tmp) / "fp32.onnx")
            onnx_model.quantise(Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx", weights)
            run = onnx_model.session(Path(tmp) / "int8.onnx", threads=torch.get_num_threads())
            cosines, same = {c: [] for c in conditions}, dict.fromkeys(conditions, 0)
            for (r, c), ref in reference.items():
                v = run.run(None, {"frames": onnx_model.frames(audio[r, c])[None]})[0][0]
                v = v / np.linalg.norm(v)
                cosines[c].append(float(v @ ref))
                same[c] += int(np.argmax(profiles @ v)) == expected[r, c]
        for c in conditions:
            print(
                f"alpha {alpha}, {c}: int8 vs plain fp32 over {len(test)} split-3 clips: cosine min "
                f"{min(cosines[c]):.5f} mean {np.mean(cosines[c]):.5f}; same nearest speaker as plain {same[c]}/{len(test)}"
            )


if __name__ == "__main__":
    main()
