"""SpeechBrain's ECAPA-TDNN (with its Fbank features) restated as matrix products, for ONNX Runtime.

Used once per model and machine, by :mod:`speakerid.onnx_model`, to write the ONNX files the
embedder runs; nothing here runs when a clip is embedded. In fp32 the graph computes what
``EncoderClassifier.encode_batch`` computes, up to float rounding (tests/test_embedder.py):

- features: the short-time Fourier transform as one product with a windowed DFT basis (frames cut
  in numpy, :func:`speakerid.onnx_model.frames`), power spectrum, the model's own mel matrix, dB
  with ``top_db`` and the sentence mean removed;
- every convolution is one product, frames-major (``(N, T, C)``), with SpeechBrain's mirrored
  "same" padding (see :class:`Product`); batch norm (inference) as a scale and shift, folded
  into the product where ReLU sits between them and every scale is positive (ReLU and shift
  then one ``max``); means over time as products with a row of ones (ONNX Runtime reduces a
  middle axis slowly);
- attentive statistics pooling takes the constant (mean, std) share of its first product once
  per clip, not once per frame.

int8: :mod:`speakerid.ecapa_int8` prepares this graph's products for int8 weights and activations.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .onnx_ops import on_uint8_grid, sliced


MAX_ATTENTION_BOUND = 40.0  # exp(+-40), and its products with squared deviations, are normal fp32 numbers


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
    frames-major input, optionally followed by ReLU and batch norm (a ``TDNNBlock``).

    A kernel wider than one frame is restated one of two ways. With fewer input than output
    channels (the first layer), the input's shifted copies side by side, times all taps' weights at
    once. Otherwise (the Res2Net convolutions), the input times every tap's weights side by side,
    each tap's share of the output then shifted and summed: no concatenation, and an int8 product
    quantises the input once instead of once per tap.
    """

    def __init__(self, conv: nn.Conv1d, norm=None, relu: bool = False):
        super().__init__()
        self.out_channels, self.in_channels, self.kernel = conv.weight.shape
        self.dilation = conv.dilation[0]
        self.shift_outputs = self.kernel > 1 and self.out_channels <= self.in_channels
        weight = conv.weight.detach().permute(2, 1, 0)  # (k, in, out)
        bias = conv.bias.detach() if conv.bias is not None else torch.zeros(self.out_channels)
        self.relu = relu
        scale = shift = None
        if norm is not None:
            scale, shift = _batch_norm_affine(norm)
            if relu and bool((scale > 0).all()):
                # relu(z) * scale == relu(z * scale) when every scale is positive: the batch norm's
                # scale goes into the product's output columns (for int8, into their per-column scales)
                weight, bias, scale = weight * scale, bias * scale, None
        self.floor = None
        if relu and scale is None and shift is not None:  # relu(z) + shift == max(z + shift, shift): one pass
            bias, self.floor, shift, self.relu = bias + shift, _frozen(shift), None, False
        self.norm_scale, self.norm_shift = (None if t is None else _frozen(t) for t in (scale, shift))
        if self.shift_outputs:  # (in, k * out): every tap's output at once; bias added once, with tap 0
            self.weight = _frozen(weight.permute(1, 0, 2).reshape(self.in_channels, -1))
            bias = torch.cat([bias, bias.new_zeros((self.kernel - 1) * self.out_channels)])
        else:  # (k * in, out): rows ordered like the stacked shifted inputs
            self.weight = _frozen(weight.reshape(-1, self.out_channels))
        self.bias = _frozen(bias)
        self.input_scale: nn.Parameter | None = None  # set by ecapa_int8.smooth()
        self.residual_weight: nn.Parameter | None = None  # set by quantise_twice()

    def add_bias(self, delta: torch.Tensor) -> None:
        self.bias = _frozen(self.bias.detach() + delta)

    def quantise_twice(self) -> None:
        """Compute ``x @ w`` as ``q @ w + (q - x) @ -w``, ``q`` being ``x`` on int8's grid: as int8
        products (the second weight negated so that it is a tensor of its own) the input is rounded
        to ~16 bits instead of 8, at twice the int8 work, still less than one fp32 product."""
        if self.kernel != 1:
            raise ValueError("only products of one frame are quantised twice")
        self.residual_weight = _frozen(-self.weight.detach())

    def scale_inputs(self, factor: torch.Tensor) -> None:
        """Multiply the weights of each input channel by ``factor`` and divide the input by it."""
        weight = self.weight.detach()
        if self.shift_outputs:
            weight = weight * factor[:, None]
        else:
            weight = (weight.reshape(self.kernel, self.in_channels, -1) * factor[None, :, None]).reshape(weight.shape)
        self.weight = _frozen(weight)
        self.input_scale = _frozen(1.0 / factor)

    def input_weight_peaks(self) -> torch.Tensor:
        """Largest absolute weight per input channel, over taps and outputs."""
        weight = self.weight.detach()
        if not self.shift_outputs:
            weight = weight.reshape(self.kernel, self.in_channels, -1).transpose(0, 1)
        return weight.reshape(self.in_channels, -1).abs().amax(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.input_scale is not None:
            x = x * self.input_scale
        if self.residual_weight is not None:
            q = on_uint8_grid(x)
            y = torch.matmul(q, self.weight) + torch.matmul(q - x, self.residual_weight) + self.bias
        elif self.kernel == 1:
            y = torch.matmul(x, self.weight) + self.bias
        elif self.shift_outputs:
            taps = torch.matmul(self._mirrored(x), self.weight) + self.bias
            y = self._window(taps, 0, 0)
            for j in range(1, self.kernel):
                y = y + self._window(taps, j, j * self.out_channels)
        else:
            x = self._mirrored(x)
            y = torch.matmul(torch.cat([self._window(x, j) for j in range(self.kernel)], 2), self.weight) + self.bias
        if self.floor is not None:
            y = torch.maximum(y, self.floor)
        if self.relu:
            y = torch.relu(y)
        if self.norm_scale is not None:
            y = y * self.norm_scale
        if self.norm_shift is not None:
            y = y + self.norm_shift
        return y

    def _mirrored(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` with ``pad`` mirrored frames at each end (SpeechBrain's "same" padding)."""
        pad = self.dilation * (self.kernel - 1) // 2
        return torch.cat([sliced(x, (1, pad, 0, -1)), x, sliced(x, (1, -2, -pad - 2, -1))], 1) if pad else x

    def _window(self, mirrored: torch.Tensor, j: int, channel: int | None = None) -> torch.Tensor:
        """Tap ``j``'s frames of a mirrored sequence (and, for tapped outputs, its ``out_channels``
        from ``channel``). The bounds are constants (the end counted from the back), so the
        exported graph computes no shapes at run time."""
        start, end = j * self.dilation, (j - self.kernel + 1) * self.dilation
        frames = (1, start, end or None, 1)
        if channel is None:
            return sliced(mirrored, frames)
        return sliced(mirrored, frames, (2, channel, channel + self.out_channels, 1))


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
        # split, not chunk: one Split node (chunk exports shape arithmetic and a Slice per part)
        chunks = torch.split(self.tdnn1(x), self.tdnn1.out_channels // self.scale, dim=2)
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
        # softmax over time without its max and bias: |logit| <= attention_bound <= 40 (|tanh| <= 1), so
        # exp stays a normal fp32 number, and the bias, constant in time, cancels. (ONNX Runtime's
        # softmax over a middle axis is slow.)
        weights = torch.exp(torch.matmul(hidden, self.attention.weight))
        total = time_sum(weights)
        shift = time_sum(weights * deviation) / total  # attentive mean - plain mean
        variance = time_sum(weights * squared) / total - shift * shift
        pooled = torch.cat([mean + shift, torch.sqrt(torch.clamp(variance, min=self.eps))], 2)
        return self.fc(pooled * self.out_norm_scale + self.out_norm_shift)[:, 0]

    def products(self) -> dict[str, Product]:
        """The products run in int8: the per-frame ones with large weights, except the first layer
        (it reads the features: cosine 0.998 in int8). The once-per-clip products (squeeze-excitation,
        output) gain nothing from int8. The attention product reads tanh outputs (bounded, no
        outliers), so it needs no smoothing and has no measured range."""
        return {name: module for name, module in self.named_modules()
                if isinstance(module, Product) and min(module.weight.shape) >= 128
                and not name.endswith(("se1", "se2")) and name not in ("fc", "block0")}

    def twice_quantised(self) -> str:
        """The product quantised twice (:meth:`Product.quantise_twice`): the last block's second,
        whose int8 error on real speech was 4-10x any other layer's and took telephone-band cosine
        to 0.9986 (benchmarks/int8_calibration.py); its errors reach the pooling undiluted."""
        return f"blocks.{len(self.blocks) - 1}.tdnn2"


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


def export(graph: EcapaGraph, path, frames: int = 200) -> None:
    """Write ``graph`` as ONNX with a free batch and time axis."""
    example = torch.zeros(1, frames, graph.n_fft)
    example[0, :, 0] = 1e-3  # any audible input; the values do not shape the graph
    graph.eval()
    with torch.no_grad():
        torch.onnx.export(graph, (example,), str(path), input_names=["frames"], output_names=["embedding"],
                          dynamic_axes={"frames": {0: "clips", 1: "time"}}, opset_version=17, dynamo=False)
