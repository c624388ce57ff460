"""SpeechBrain's ECAPA-TDNN (with its Fbank features) restated as matrix products, for ONNX Runtime.

Used once per model and machine, by :mod:`speakerid.onnx_model`, to write the ONNX files the
embedder runs; nothing here runs when a clip is embedded. In fp32 the graph computes what
``EncoderClassifier.encode_batch`` computes, up to float rounding (tests/test_embedder.py):

- features: the short-time Fourier transform as one product with a windowed DFT basis (frames cut
  in numpy, :func:`speakerid.onnx_model.frames`), power spectrum, the model's own mel matrix, dB
  with ``top_db`` and the sentence mean removed;
- every convolution is one product over the kernel's shifted copies of the input, frames-major
  (``(N, T, C)``), with SpeechBrain's mirrored "same" padding; batch norm (inference) as a scale
  and shift; means over time as products with a row of ones (ONNX Runtime reduces a middle axis
  slowly);
- attentive statistics pooling takes the constant (mean, std) share of its first product once
  per clip, not once per frame.

int8 (:func:`smooth`): dividing a product's input channels by ``c`` and multiplying the weights'
rows by ``c`` changes nothing in exact arithmetic but moves the activations' outliers into the
weights, where per-channel weight scales absorb them ("SmoothQuant", Xiao et al. 2023). The
factors come from activation ranges measured on real speech, as recorded and through a telephone
band (benchmarks/int8_calibration.py).
"""

from __future__ import annotations

import math

import torch
from torch import nn


MAX_ATTENTION_BOUND = 40.0  # exp(-2 * 40) is still a normal fp32 number


def _frozen(tensor: torch.Tensor) -> nn.Parameter:
    return nn.Parameter(tensor.detach().clone().float(), requires_grad=False)


def _batch_norm_affine(norm) -> tuple[torch.Tensor, torch.Tensor]:
    scale = norm.weight / torch.sqrt(norm.running_var + norm.eps)
    return scale, norm.bias - norm.running_mean * scale


def time_sum(x: torch.Tensor) -> torch.Tensor:
    """Sum over frames of ``(N, T, C)`` as ``ones(1, T) @ x`` -> ``(N, 1, C)``."""
    return torch.matmul(torch.ones_like(x[:, :, :1]).transpose(1, 2), x)


def time_mean(x: torch.Tensor) -> torch.Tensor:
    return time_sum(x) / x.shape[1]


class Product(nn.Module):
    """A SpeechBrain ``Conv1d`` (odd kernel, dilation, mirrored "same" padding) as one product on
    frames-major input, optionally followed by ReLU and batch norm (a ``TDNNBlock``)."""

    def __init__(self, conv: nn.Conv1d, norm=None, relu: bool = False):
        super().__init__()
        out_channels, in_channels, self.kernel = conv.weight.shape
        self.dilation = conv.dilation[0]
        # (out, in, k) -> (k * in, out): rows ordered like the stacked shifted inputs below
        self.weight = _frozen(conv.weight.permute(2, 1, 0).reshape(self.kernel * in_channels, out_channels))
        self.bias = _frozen(conv.bias if conv.bias is not None else torch.zeros(out_channels))
        self.relu = relu
        self.norm_scale, self.norm_shift = (None, None) if norm is None else map(_frozen, _batch_norm_affine(norm))
        self.input_scale: nn.Parameter | None = None  # set by smooth()

    @property
    def in_channels(self) -> int:
        return self.weight.shape[0] // self.kernel

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.input_scale is not None:
            x = x * self.input_scale
        if self.kernel > 1:
            pad = self.dilation * (self.kernel - 1) // 2
            x = torch.cat([x[:, 1:pad + 1].flip(1), x, x[:, -pad - 1:-1].flip(1)], 1)
            frames = x.shape[1] - 2 * pad
            x = torch.cat([x[:, j * self.dilation:j * self.dilation + frames] for j in range(self.kernel)], 2)
        y = torch.matmul(x, self.weight) + self.bias
        if self.relu:
            y = torch.relu(y)
        if self.norm_scale is not None:
            y = y * self.norm_scale + self.norm_shift
        return y


def _tdnn(block) -> Product:
    return Product(block.conv.conv, block.norm.norm, relu=True)


class SERes2NetBlock(nn.Module):
    def __init__(self, block):
        super().__init__()
        if block.shortcut is not None:
            raise ValueError("SE-Res2Net blocks with a shortcut convolution are not supported")
        self.tdnn1, self.tdnn2 = _tdnn(block.tdnn1), _tdnn(block.tdnn2)
        self.scale = block.res2net_block.scale
        self.res2net = nn.ModuleList(_tdnn(b) for b in block.res2net_block.blocks)
        self.se1 = Product(block.se_block.conv1.conv)
        self.se2 = Product(block.se_block.conv2.conv)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = x
        chunks = torch.chunk(self.tdnn1(x), self.scale, dim=2)
        outputs = [chunks[0]]
        for i in range(1, self.scale):
            outputs.append(self.res2net[i - 1](chunks[i] if i == 1 else chunks[i] + outputs[-1]))
        x = self.tdnn2(torch.cat(outputs, 2))
        gate = torch.sigmoid(self.se2(torch.relu(self.se1(time_mean(x)))))
        return x * gate + residual


class EcapaGraph(nn.Module):
    """Windowed frames ``(N, T, n_fft)`` in, unnormalised embeddings ``(N, D)`` out."""

    def __init__(self, classifier):
        super().__init__()
        if reasons := unsupported(classifier):
            raise ValueError("; ".join(reasons))
        mods = classifier.mods
        stft, fbanks = mods.compute_features.compute_STFT, mods.compute_features.compute_fbanks
        self.n_fft, self.hop = stft.n_fft, stft.hop_length
        self.bins = self.n_fft // 2 + 1
        n = torch.arange(self.n_fft, dtype=torch.float64)[:, None]
        k = torch.arange(self.bins, dtype=torch.float64)[None]
        angle = 2 * math.pi * n * k / self.n_fft
        window = stft.window.detach().double()[:, None]
        self.dft = _frozen(torch.cat([torch.cos(angle), -torch.sin(angle)], 1) * window)
        log_mel, fbanks.log_mel = fbanks.log_mel, False
        try:  # the filter bank's linear output for a unit spectrum is its matrix
            with torch.no_grad():
                self.mel = _frozen(fbanks(torch.eye(self.bins)[None])[0])
        finally:
            fbanks.log_mel = log_mel
        self.amin, self.top_db, self.multiplier = fbanks.amin, fbanks.top_db, fbanks.multiplier
        self.db_offset = fbanks.multiplier * fbanks.db_multiplier

        model = mods.embedding_model
        self.block0 = _tdnn(model.blocks[0])
        self.blocks = nn.ModuleList(SERes2NetBlock(b) for b in model.blocks[1:])
        self.mfa = _tdnn(model.mfa)
        pooling = model.asp
        weight = pooling.tdnn.conv.conv.weight[:, :, 0]
        channels = weight.shape[1] // 3
        frame_part = nn.Conv1d(channels, weight.shape[0], 1)
        frame_part.weight = nn.Parameter(weight[:, :channels, None].detach().clone())
        frame_part.bias = nn.Parameter(pooling.tdnn.conv.conv.bias.detach().clone())
        self.pool_frames = Product(frame_part)  # the (mean, std) share is added once per clip
        self.pool_stats = _frozen(weight[:, channels:].T)
        self.pool_norm_scale, self.pool_norm_shift = (_frozen(t) for t in _batch_norm_affine(pooling.tdnn.norm.norm))
        self.attention = Product(pooling.conv.conv)
        self.attention_bound = _attention_bound(model)
        self.eps = pooling.eps
        self.out_norm_scale, self.out_norm_shift = (_frozen(t) for t in _batch_norm_affine(model.asp_bn.norm))
        self.fc = Product(model.fc.conv)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        spectrum = torch.matmul(frames, self.dft)
        power = spectrum[..., :self.bins] ** 2 + spectrum[..., self.bins:] ** 2
        db = self.multiplier * torch.log10(torch.clamp(torch.matmul(power, self.mel), min=self.amin)) - self.db_offset
        db = torch.maximum(db, db.amax(dim=(1, 2), keepdim=True) - self.top_db)
        x = self.block0(db - time_mean(db))
        outputs = []
        for block in self.blocks:
            x = block(x)
            outputs.append(x)
        x = self.mfa(torch.cat(outputs, 2))

        mean = time_mean(x)
        deviation = x - mean
        squared = deviation * deviation
        std = torch.sqrt(torch.clamp(time_mean(squared), min=self.eps))
        hidden = self.pool_frames(x) + torch.matmul(torch.cat([mean, std], 2), self.pool_stats)
        hidden = torch.tanh(torch.relu(hidden) * self.pool_norm_scale + self.pool_norm_shift)
        # softmax over time, without its max: |logit| <= attention_bound (|tanh| <= 1), so exp never
        # overflows; the bias, constant in time, cancels (ONNX Runtime's softmax over a middle axis is slow)
        weights = torch.exp(torch.matmul(hidden, self.attention.weight) - self.attention_bound)
        total = time_sum(weights)
        shift = time_sum(weights * deviation) / total  # attentive mean - plain mean
        variance = time_sum(weights * squared) / total - shift * shift
        pooled = torch.cat([mean + shift, torch.sqrt(torch.clamp(variance, min=self.eps))], 2)
        return self.fc(pooled * self.out_norm_scale + self.out_norm_shift)[:, 0]

    def products(self) -> dict[str, Product]:
        """The products run in int8: the per-frame ones with large weights, except the first layer
        (it reads the features) and the last block's second product, whose int8 error was 4-10x
        any other layer's on real speech (benchmarks/int8_calibration.py). The once-per-clip
        products (squeeze-excitation, output) gain nothing from int8."""
        last = f"blocks.{len(self.blocks) - 1}.tdnn2"
        return {name: module for name, module in self.named_modules()
                if isinstance(module, Product) and min(module.weight.shape) >= 128
                and not name.endswith(("se1", "se2")) and name not in ("fc", "attention", "block0", last)}


def _attention_bound(model) -> float:
    """Largest |attention logit| before its bias: the sum of |weights| per channel (inputs are tanh)."""
    return float(model.asp.conv.conv.weight.detach()[:, :, 0].abs().sum(1).max())


def unsupported(classifier) -> list[str]:
    """Why ``classifier`` is not the recipe this graph restates (an ECAPA-TDNN on Fbank features with
    sentence mean normalisation, as SpeechBrain's published speaker models are); empty if it is."""
    from speechbrain.lobes.features import Fbank
    from speechbrain.lobes.models.ECAPA_TDNN import ECAPA_TDNN
    from speechbrain.processing.features import InputNormalization

    mods = classifier.mods
    features, norm, model = (getattr(mods, n, None) for n in ("compute_features", "mean_var_norm", "embedding_model"))
    reasons = []
    if not isinstance(model, ECAPA_TDNN):
        reasons.append("not ECAPA-TDNN")
    if not isinstance(features, Fbank) or features.deltas or features.context or not features.compute_STFT.center:
        reasons.append("features are not plain Fbank")
    elif features.compute_STFT.pad_mode != "constant" or features.compute_STFT.win_length != features.compute_STFT.n_fft:
        reasons.append("unsupported STFT padding or window")
    if not isinstance(norm, InputNormalization) or norm.norm_type != "sentence" or norm.std_norm:
        reasons.append("normalisation is not sentence mean")
    if isinstance(model, ECAPA_TDNN) and not model.asp.global_context:
        reasons.append("pooling without global context")
    if isinstance(model, ECAPA_TDNN) and _attention_bound(model) > MAX_ATTENTION_BOUND:
        reasons.append("attention logits too large for an exp without its max")
    return reasons


def activation_ranges(graph: EcapaGraph, clips_frames: list[torch.Tensor]) -> dict[str, torch.Tensor]:
    """Largest absolute input per channel of each int8 product, over ``clips_frames``."""
    ranges: dict[str, torch.Tensor] = {}
    hooks = []
    for name, module in graph.products().items():
        def record(_module, inputs, name=name):
            peak = inputs[0].detach().abs().amax(dim=(0, 1))
            ranges[name] = torch.maximum(ranges[name], peak) if name in ranges else peak
        hooks.append(module.register_forward_pre_hook(record))
    try:
        with torch.no_grad():
            for frames in clips_frames:
                graph(frames)
    finally:
        for hook in hooks:
            hook.remove()
    return ranges


def smooth(graph: EcapaGraph, ranges: dict[str, torch.Tensor], alpha: float) -> None:
    """Per input channel ``c = range^alpha / max|w|^(1 - alpha)``: inputs divided by ``c``, weight
    rows multiplied by it. Exact in real arithmetic; only int8 rounding is affected.

    Ranges are floored at their median: a channel that was quiet on the calibration speech is not
    amplified beyond a typical one, so audio unlike it cannot make that channel dominate the
    per-call int8 scale (unfloored ranges measured on wideband speech alone took telephone-band
    audio to cosine 0.959)."""
    for name, module in graph.products().items():
        if name not in ranges:
            continue
        kernel, channels = module.kernel, module.in_channels
        weight = module.weight.detach().reshape(kernel, channels, -1)
        peak_weight = weight.abs().amax(dim=(0, 2)).clamp(min=1e-5)
        peak = ranges[name].float()
        peak = peak.clamp(min=max(float(peak.median()), 1e-5))
        factor = peak ** alpha / peak_weight ** (1 - alpha)
        module.weight = _frozen((weight * factor[None, :, None]).reshape(kernel * channels, -1))
        module.input_scale = _frozen(1.0 / factor)


def export(graph: EcapaGraph, path, frames: int = 200) -> None:
    """Write ``graph`` as ONNX with a free batch and time axis."""
    example = torch.zeros(1, frames, graph.n_fft)
    example[0, :, 0] = 1e-3  # any audible input; the values do not shape the graph
    graph.eval()
    with torch.no_grad():
        torch.onnx.export(graph, (example,), str(path), input_names=["frames"], output_names=["embedding"],
                          dynamic_axes={"frames": {0: "clips", 1: "time"}}, opset_version=17, dynamo=False)
