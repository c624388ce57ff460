"""The embedder gives plain SpeechBrain's embeddings, from the real model on real speech."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from speakerid.base.errors import ModelError
from speakerid.decide.metrics import eer
from speakerid.voice.audio import load_audio
from speakerid.voice.embedder import load_embedder, make_embedder
from speakerid.voice.models import DEFAULT_MODEL

from conftest import DATA, clip_path, clips_of, iden_split, needs_data, plain_embedding
from tiny_models import make_tiny_model


@needs_data
def test_matches_plain_speechbrain_on_the_same_samples(embedder, plain_speechbrain, model_dir):
    """fp32 (the ONNX graph of the same arithmetic) equals plain SpeechBrain up to float rounding;
    the default (int8 where the CPU has VNNI/AMX) stays within cosine 0.999 of it."""
    fp32 = make_embedder(embedder.model, precision="fp32")
    for rel in [r for _, r in iden_split()][::20]:
        samples = load_audio(clip_path(rel)).samples
        plain = plain_embedding(plain_speechbrain, samples)
        ours = embedder.embed([samples])[0]
        assert float(ours @ plain) >= 0.999, (rel, float(ours @ plain), embedder.precision)
        assert abs(np.linalg.norm(ours) - 1) < 1e-5
        exact = fp32.embed([samples])[0]
        assert float(exact @ plain) >= 0.999999 and np.max(np.abs(exact - plain)) < 1e-5, rel


def test_identity_and_shape(embedder):
    assert embedder.model_id == DEFAULT_MODEL  # a local folder with the published bytes keeps the published id
    assert embedder.dimension == 192 and embedder.sample_rate == 16000
    out = embedder.embed([np.random.default_rng(1).standard_normal(24000).astype(np.float32)] * 2)
    assert out.shape == (2, 192) and out.dtype == np.float32


def test_loaded_once_per_process(embedder, model_dir):
    assert load_embedder(str(model_dir)) is embedder


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
    emb = load_embedder(str(tmp_path / arch))
    assert emb.dimension == dim and emb.model_id.startswith(f"{arch}@")
    out = emb.embed([np.random.default_rng(0).standard_normal(16000).astype(np.float32)])
    assert out.shape == (1, dim) and np.isfinite(out).all()


def test_broken_model_folder_is_a_model_error(tmp_path):
    (tmp_path / "hyperparams.yaml").write_text("embedding_model: !new:no.such.Module\n")
    (tmp_path / "embedding_model.ckpt").write_bytes(b"junk")
    with pytest.raises(ModelError, match=str(tmp_path)):
        load_embedder(str(tmp_path))


def test_cuda_request_without_cuda_is_refused(model_dir):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ModelError, match="no CUDA device"):
        load_embedder(str(model_dir), device="cuda")


@needs_data
def test_int8_keeps_the_accuracy_bar_at_16_and_8_khz(embedder):
    """int8 against fp32: cosine >= 0.999 on every split-3 clip (not used to measure the int8
    activations), as recorded and through a telephone band (8 kHz and back)."""
    from speakerid.voice.audio import resample

    int8, fp32 = make_embedder(embedder.model, precision="int8"), make_embedder(embedder.model, precision="fp32")
    assert int8.precision == "int8" and fp32.precision == "fp32"
    worst = 1.0
    for rel in [r for s, r in iden_split() if s == 3]:
        samples = load_audio(clip_path(rel)).samples
        phone = resample(resample(samples, 16000, 8000), 8000, 16000)
        for clip in (samples, phone):
            worst = min(worst, float(int8.embed([clip])[0] @ fp32.embed([clip])[0]))
    assert worst >= 0.999, worst


@needs_data
def test_int8_leaves_decisions_and_eer_unchanged(embedder):
    """Over mini-voxceleb1's 1,000 verification trials int8's EER is fp32's (to 0.1 point) and every
    split-3 clip's nearest enrolled speaker (split-1 profiles) is the same."""
    from speakerid.voice.vad import extract_speech

    rates, nearest = {}, {}
    for precision in ("int8", "fp32"):
        model = make_embedder(embedder.model, precision=precision)
        vectors = {rel: model.embed([extract_speech(load_audio(clip_path(rel))).samples])[0] for _, rel in iden_split()}
        scores, labels = [], []
        for line in (DATA / "veri_test.txt").read_text().splitlines():
            label, a, b = line.split()
            scores.append(float(vectors[a] @ vectors[b]))
            labels.append(int(label))
        rates[precision] = eer(scores, labels)[0]
        names = sorted({rel.split("/")[0] for _, rel in iden_split()})
        profiles = np.stack(
            [np.mean([vectors[r] for s, r in iden_split() if s == 1 and r.startswith(n + "/")], 0) for n in names]
        )
        nearest[precision] = [names[int(np.argmax(profiles @ vectors[r]))] for s, r in iden_split() if s == 3]
    assert abs(rates["int8"] - rates["fp32"]) <= 0.001, rates
    assert nearest["int8"] == nearest["fp32"]


def test_precision_is_checked(embedder):
    with pytest.raises(ModelError, match="precision must be auto, fp32 or int8, not 'int4'"):
        make_embedder(embedder.model, precision="int4")


def test_onnx_files_are_built_once_private_and_rebuilt_when_stale(tmp_path, embedder, monkeypatch):
    import os

    from speakerid.voice import onnx_model

    monkeypatch.setenv("SPEAKERID_CACHE", str(tmp_path / "cache"))
    built = onnx_model.onnx_file(embedder.model, "fp32")
    assert built.parent.stat().st_mode & 0o777 == 0o700 and built.stat().st_mode & 0o777 == 0o600
    first = built.stat().st_mtime_ns
    assert onnx_model.onnx_file(embedder.model, "fp32") == built and built.stat().st_mtime_ns == first
    monkeypatch.setattr(onnx_model, "CONVERTER", onnx_model.CONVERTER + 1)
    assert onnx_model.onnx_file(embedder.model, "fp32").stat().st_mtime_ns != first
    assert not [p for p in os.listdir(built.parent) if p.startswith(".")]  # no temporary files left


def test_other_architectures_run_through_speechbrain(tmp_path):
    make_tiny_model(tmp_path / "xvector", "xvector")
    emb = load_embedder(str(tmp_path / "xvector"))
    assert emb.precision == "fp32" and hasattr(emb, "_classifier")
    from speakerid.base.paths import cache_dir

    # remembered, so later starts go straight to SpeechBrain instead of trying to convert again
    assert (cache_dir() / "onnx" / emb.model_id.replace("/", "--") / "not-convertible.json").is_file()
    with pytest.raises(ModelError, match="int8"):
        make_embedder(emb.model, precision="int8")


@needs_data
def test_flushing_subnormal_weights_changes_no_output_bit(model_dir):
    """The embedder zeroes the checkpoint's subnormal weights for speed; plain SpeechBrain with and
    without that one change gives the same embeddings, bit for bit, on real speech."""
    import torch

    from speakerid.voice.speechbrain_engine import flush_denormals, load_speechbrain

    plain, flushed = load_speechbrain(model_dir), load_speechbrain(model_dir)
    subnormal = sum(
        int(((t.abs() < torch.finfo(t.dtype).tiny) & (t != 0)).sum())
        for t in flushed.mods.parameters()
        if t.is_floating_point()
    )
    flush_denormals(flushed.mods)
    assert subnormal > 10_000  # there is something to flush
    for clip in clips_of("id90001", 3) + clips_of("id90101", 3):
        wav = torch.from_numpy(load_audio(clip).samples)[None]
        with torch.inference_mode():
            a, b = plain.encode_batch(wav), flushed.encode_batch(wav)
        assert a.numpy().tobytes() == b.numpy().tobytes(), clip


@pytest.mark.parametrize(
    "in_channels, out_channels, kernel, dilation", [(4, 16, 5, 1), (16, 16, 3, 2), (24, 8, 3, 4), (12, 8, 1, 1)]
)
@pytest.mark.parametrize("norm_scales", ["positive", "mixed"])
def test_products_compute_speechbrains_tdnn_block(in_channels, out_channels, kernel, dilation, norm_scales):
    """Both ways a kernel is restated (shifted inputs for a narrow input, shifted outputs otherwise)
    give SpeechBrain's "same"-padded, mirrored convolution, ReLU and batch norm (folded into the
    product when all its scales are positive); neither smoothing nor quantising twice changes it,
    and scaling the outputs, or the input as it arrives, scales exactly what it should."""
    from speechbrain.lobes.models.ECAPA_TDNN import TDNNBlock

    from speakerid.voice.ecapa_graph import Product

    torch.manual_seed(0)
    block = TDNNBlock(in_channels, out_channels, kernel, dilation).eval()
    norm = block.norm.norm
    with torch.no_grad():
        norm.running_mean.normal_()
        norm.running_var.uniform_(0.5, 2)
        norm.weight.uniform_(0.2, 2)
        if norm_scales == "mixed":
            norm.weight[::3] *= -1
    x = torch.randn(2, 37, in_channels)  # frames-major (N, T, C); ECAPA's blocks take (N, C, T)
    product = Product(block.conv.conv, norm, relu=True)
    assert product.shift_outputs == (kernel > 1 and out_channels <= in_channels)
    assert (product.norm_scale is None) == (norm_scales == "positive")
    with torch.no_grad():
        expected = block(x.transpose(1, 2)).transpose(1, 2)
        assert torch.allclose(product(x), expected, atol=1e-5)
        product.scale_inputs(torch.rand(in_channels) + 0.5)
        assert torch.allclose(product(x), expected, atol=1e-5)
        if kernel == 1:  # on int8's grid, then what rounding left: the same product
            product.quantise_twice()
            assert torch.allclose(product(x), expected, atol=1e-5)
        outputs, arriving = torch.rand(out_channels) + 0.5, torch.rand(in_channels) + 0.5
        product.scale_outputs(outputs)
        assert torch.allclose(product(x), expected * outputs, atol=1e-5)
        product.expect_scaled_input(arriving)
        assert torch.allclose(product(x * arriving), expected * outputs, atol=1e-5)


@needs_data
def test_folding_the_input_scales_changes_no_output(model_dir):
    """int8 smoothing scales each product's input; the Res2Net and pooling products' scales are
    then folded into what produces their inputs (one pass fewer each). On real speech the graph
    computes the same before and after the fold, and no folded product scales its input any more."""
    from speakerid.voice import ecapa_int8, onnx_model
    from speakerid.voice.models import resolve
    from speakerid.voice.onnx_model import frames

    model = resolve(str(model_dir), download=False)
    graph, _ = onnx_model.prepared_graph(model, "fp32")
    activations = ecapa_int8.Activations.load(onnx_model.ACTIVATIONS[model.id])
    ecapa_int8.smooth(graph, activations.peak, onnx_model.SMOOTHING)
    folded = copy.deepcopy(graph)
    folded.fold_input_scales()
    assert graph.pool_frames.input_scale is not None and folded.pool_frames.input_scale is None
    assert all(p.input_scale is None for block in folded.blocks for p in block.res2net)
    for clip in clips_of("id90001", 1)[:2] + clips_of("id90101", 1)[:2]:
        x = torch.from_numpy(frames(load_audio(clip).samples))[None]
        with torch.no_grad():
            a, b = graph(x)[0], folded(x)[0]
        assert float(torch.nn.functional.cosine_similarity(a, b, dim=0)) > 0.999999, clip
        assert float((a - b).abs().max()) < 1e-3 * float(a.abs().max()), clip


def test_int8_file_holds_the_weights_bias_correction_assumed(embedder):
    """Bias correction adds ``mean(x) @ (w - int8_rounded(w))`` to each int8 product's bias: that
    is only right if ``int8_rounded`` rounds as ONNX Runtime's quantiser did in the built file."""
    import onnx
    from onnx import numpy_helper

    from speakerid.voice import ecapa_int8, onnx_model

    graph, weights = onnx_model.prepared_graph(embedder.model, "int8")
    stored = {
        t.name: numpy_helper.to_array(t)
        for t in onnx.load(str(onnx_model.onnx_file(embedder.model, "int8"))).graph.initializer
    }
    parameters = dict(graph.named_parameters())
    assert len(weights) == len(graph.products()) + 1 == 31  # and the twice-quantised product's second weight
    for name in weights:
        ours = ecapa_int8.int8_rounded(parameters[name].detach()).numpy()
        theirs = stored[f"{name}_quantized"].astype(np.float32) * stored[f"{name}_scale"]
        assert np.abs(ours - theirs).max() <= 1e-6 * np.abs(ours).max(), name
    for name in graph.products():
        if f"{name}.bias" in stored:
            assert np.allclose(stored[f"{name}.bias"], parameters[f"{name}.bias"].detach().numpy(), atol=1e-6), name
