"""The embedder gives plain SpeechBrain's embeddings, from the real model on real speech."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from speakerid.audio import load_audio
from speakerid.embedder import Embedder
from speakerid.errors import ModelError
from speakerid.metrics import eer
from speakerid.models import DEFAULT_MODEL

from conftest import DATA, clip_path, iden_split, needs_data, plain_embedding
from tiny_models import make_tiny_model


@needs_data
def test_matches_plain_speechbrain_on_the_same_samples(embedder, plain_speechbrain, model_dir):
    """The default (bf16 where the CPU has it) within cosine 0.9999 of plain SpeechBrain; fp32 with
    the same rewrites (flushed subnormals, split pooling weights) equal to float rounding."""
    from speakerid.models import resolve

    fp32 = Embedder(resolve(str(model_dir)), precision="fp32")
    for rel in [r for _, r in iden_split()][::20]:
        samples = load_audio(clip_path(rel)).samples
        plain = plain_embedding(plain_speechbrain, samples)
        ours = embedder.embed([samples])[0]
        assert float(ours @ plain) >= 0.9999, (rel, float(ours @ plain), embedder.precision)
        assert abs(np.linalg.norm(ours) - 1) < 1e-5
        exact = fp32.embed([samples])[0]
        assert float(exact @ plain) >= 0.999999 and np.max(np.abs(exact - plain)) < 1e-5, rel


def test_identity_and_shape(embedder):
    assert embedder.model_id == DEFAULT_MODEL  # a local folder with the published bytes keeps the published id
    assert embedder.dimension == 192 and embedder.sample_rate == 16000
    out = embedder.embed([np.random.default_rng(1).standard_normal(24000).astype(np.float32)] * 2)
    assert out.shape == (2, 192) and out.dtype == np.float32


def test_loaded_once_per_process(embedder, model_dir):
    assert Embedder.load(str(model_dir)) is embedder


def test_same_audio_same_embedding_bit_for_bit(embedder):
    clip = np.random.default_rng(2).standard_normal(40000).astype(np.float32) * 0.1
    first, second = embedder.embed([clip]), embedder.embed([clip])
    assert first.tobytes() == second.tobytes()


@needs_data
def test_verification_eer_on_mini_voxceleb1(clip_embeddings):
    scores, labels = [], []
    for line in (DATA / "veri_test.txt").read_text().splitlines():
        label, a, b = line.split()
        scores.append(float(clip_embeddings[a] @ clip_embeddings[b]))
        labels.append(int(label))
    rate, _ = eer(scores, labels)
    assert len(scores) == 1000
    assert rate <= 0.01, rate


@pytest.mark.parametrize("arch", ["ecapa", "xvector"])
def test_tiny_random_models_load_through_the_same_path(tmp_path, arch):
    dim = make_tiny_model(tmp_path / arch, arch)
    emb = Embedder.load(str(tmp_path / arch))
    assert emb.dimension == dim and emb.model_id.startswith(f"{arch}@")
    out = emb.embed([np.random.default_rng(0).standard_normal(16000).astype(np.float32)])
    assert out.shape == (1, dim) and np.isfinite(out).all()


def test_broken_model_folder_is_a_model_error(tmp_path):
    (tmp_path / "hyperparams.yaml").write_text("embedding_model: !new:no.such.Module\n")
    (tmp_path / "embedding_model.ckpt").write_bytes(b"junk")
    with pytest.raises(ModelError, match=str(tmp_path)):
        Embedder.load(str(tmp_path))


def test_cuda_request_without_cuda_is_refused(model_dir):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ModelError, match="no CUDA device"):
        Embedder.load(str(model_dir), device="cuda")


@needs_data
def test_bf16_precision_stays_within_the_accuracy_bar(embedder, model_dir):
    bf16, fp32 = Embedder(embedder.model, precision="bf16"), Embedder(embedder.model, precision="fp32")
    for rel in [r for _, r in iden_split()][::30]:
        samples = load_audio(clip_path(rel)).samples
        assert float(bf16.embed([samples])[0] @ fp32.embed([samples])[0]) >= 0.9999
    with pytest.raises(ModelError, match="precision must be auto, fp32 or bf16"):
        Embedder(embedder.model, precision="int4")


@pytest.mark.parametrize("frames", [5, 9, 31, 32, 33, 1000, 1025])
@pytest.mark.parametrize("kernel,dilation", [(1, 1), (3, 2), (3, 4), (5, 1)])
def test_matmul_operand_is_reflect_pad_and_stack(frames, kernel, dilation):
    """The product's operand (mirrored ends, shifted copies, time padded to a bucket) equals
    SpeechBrain's reflect padding followed by the shifted copies, and the padding is zero."""
    import torch
    import torch.nn.functional as F

    from speakerid.fast_model import _operand, _padded_frames

    pad = dilation * (kernel - 1) // 2
    if frames <= pad:
        pytest.skip("reflect padding needs more frames than it pads")
    x = torch.randn(2, 6, frames)
    operand, real = _operand(x, torch.float32, kernel, dilation, pad)
    padded = F.pad(x, (pad, pad), mode="reflect") if pad else x
    expected = torch.cat([padded[..., j * dilation: j * dilation + frames] for j in range(kernel)], dim=1)
    assert real == frames and operand.shape[-1] == _padded_frames(frames) >= frames
    assert torch.equal(operand[..., :frames], expected)
    assert not operand[..., frames:].any()


def test_time_buckets_are_few_and_tight():
    """Buckets bound both the kernels oneDNN must build (few shapes) and the wasted work (<= 1/16)."""
    from speakerid.fast_model import _padded_frames

    sizes = [_padded_frames(n) for n in range(1, 6001)]  # up to 60 s of audio
    assert all(n <= s <= max(n + 31, n * 17 // 16 + 1) for n, s in zip(range(1, 6001), sizes))
    assert len(set(sizes)) < 120


@needs_data
def test_flushing_subnormal_weights_changes_no_output_bit(model_dir):
    """The embedder zeroes the checkpoint's subnormal weights for speed; plain SpeechBrain with and
    without that one change gives the same embeddings, bit for bit, on real speech."""
    import torch

    from conftest import clips_of
    from speakerid.embedder import _flush_denormals, load_speechbrain

    plain, flushed = load_speechbrain(model_dir), load_speechbrain(model_dir)
    subnormal = sum(int(((t.abs() < torch.finfo(t.dtype).tiny) & (t != 0)).sum())
                    for t in flushed.mods.parameters() if t.is_floating_point())
    _flush_denormals(flushed.mods)
    assert subnormal > 10_000  # there is something to flush
    for clip in clips_of("id90001", 3) + clips_of("id90101", 3):
        wav = torch.from_numpy(load_audio(clip).samples)[None]
        with torch.inference_mode():
            a, b = plain.encode_batch(wav), flushed.encode_batch(wav)
        assert a.numpy().tobytes() == b.numpy().tobytes(), clip
