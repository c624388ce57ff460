"""Faster inference for SpeechBrain's speaker models without changing what they compute.

Applied by :class:`speakerid.embedder.Embedder` after loading. The first two rewrites are exact
algebra (only float rounding differs: fp32 stays within 1e-5 of plain SpeechBrain); bf16 rounds
more, and tests/test_embedder.py holds it to cosine >= 0.9999 against plain SpeechBrain on real
speech.

- Attentive statistics pooling with global context concatenates ``[x, mean, std]`` (3 x 3072
  channels, repeated over every frame) before a 1x1 convolution. Mean and std are constant in
  time, so their share of that convolution is computed once per clip, not once per frame.
- A 1x1 "same" convolution pads by zero frames, which still copies the input; it is made "valid".
- bf16 (where the CPU has native bf16 matrix units): convolution weights are cast to bf16 once at
  load, each convolution runs in bf16 and hands fp32 back, so normalisation, pooling and
  everything else stay fp32. (``torch.autocast`` would re-cast every weight on every call.)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def speed_up(module: torch.nn.Module, *, bf16: bool) -> int:
    """Rewrite ``module``'s layers in place; returns how many were rewritten."""
    from speechbrain.lobes.models.ECAPA_TDNN import AttentiveStatisticsPooling
    from speechbrain.nnet.CNN import Conv1d as SBConv1d

    count = 0
    pooling = [m for m in module.modules() if isinstance(m, AttentiveStatisticsPooling) and m.global_context]
    for layer in pooling:  # split the first conv's weights before any bf16 cast
        _split_pooling_weights(layer, bf16)
        layer.forward = _pooling_forward.__get__(layer)
        count += 1
    for child in list(module.modules()):
        if isinstance(child, SBConv1d) and child.padding == "same" and child.kernel_size == 1 and child.stride == 1:
            child.padding = "valid"
            count += 1
    if bf16:
        for parent in list(module.modules()):
            for name, child in list(parent.named_children()):
                if type(child) is torch.nn.Conv1d:
                    setattr(parent, name, Bf16Conv1d(child))
                    count += 1
    return count


def _split_pooling_weights(layer, bf16: bool) -> None:
    conv = layer.tdnn.conv.conv  # the torch Conv1d (1x1) inside TDNNBlock's SpeechBrain Conv1d
    weight = conv.weight.detach()[:, :, 0]
    channels = weight.shape[1] // 3
    layer._w_frames = weight[:, :channels].contiguous()[:, :, None].to(torch.bfloat16 if bf16 else torch.float32)
    layer._w_mean = weight[:, channels:2 * channels].contiguous()
    layer._w_std = weight[:, 2 * channels:].contiguous()
    layer._bias = conv.bias.detach().clone() if conv.bias is not None else torch.zeros(weight.shape[0])


def bf16_is_native() -> bool:
    """True on CPUs with AVX512-BF16 or AMX, where bf16 matrix products are faster than fp32."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


class Bf16Conv1d(torch.nn.Module):
    """A ``Conv1d`` run in bf16 with weights cast once; fp32 in, fp32 out."""

    def __init__(self, conv: torch.nn.Conv1d):
        super().__init__()
        self.weight = torch.nn.Parameter(conv.weight.detach().to(torch.bfloat16), requires_grad=False)
        bias = conv.bias.detach().to(torch.bfloat16) if conv.bias is not None else None
        self.bias = torch.nn.Parameter(bias, requires_grad=False) if bias is not None else None
        self.stride, self.padding, self.dilation, self.groups = conv.stride, conv.padding, conv.dilation, conv.groups
        if conv.padding_mode != "zeros":
            raise ValueError("only zero-padded convolutions can be rewritten")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.conv1d(x.to(torch.bfloat16), self.weight, self.bias, self.stride, self.padding, self.dilation,
                       self.groups)
        return out.float()


def _pooling_forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
    """SpeechBrain's AttentiveStatisticsPooling.forward (global context), with the constant part of
    the first convolution computed once per clip instead of once per frame."""
    from speechbrain.dataio.dataio import length_to_mask

    frames = x.shape[-1]
    if lengths is None:
        lengths = torch.ones(x.shape[0], device=x.device)
    mask = length_to_mask(lengths * frames, max_len=frames, device=x.device).unsqueeze(1)
    total = mask.sum(dim=2, keepdim=True).float()
    mean, std = _statistics(x, mask / total, self.eps)

    constant = self._w_mean @ mean.unsqueeze(2) + self._w_std @ std.unsqueeze(2) + self._bias[None, :, None]
    hidden = F.conv1d(x.to(self._w_frames.dtype), self._w_frames).float() + constant  # (N, A, frames)
    attn = self.tdnn.dropout(self.tdnn.norm(self.tdnn.activation(hidden)))
    attn = self.conv(self.tanh(attn))
    attn = attn.masked_fill(mask == 0, float("-inf"))
    attn = F.softmax(attn, dim=2)
    mean, std = _statistics(x, attn, self.eps)
    return torch.cat((mean, std), dim=1).unsqueeze(2)


def _statistics(x: torch.Tensor, weights: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    mean = (weights * x).sum(2)
    std = torch.sqrt((weights * (x - mean.unsqueeze(2)).pow(2)).sum(2).clamp(eps))
    return mean, std
