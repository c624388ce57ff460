"""Faster inference for SpeechBrain's speaker models without changing what they compute.

Applied by :class:`speakerid.embedder.Embedder` after loading; inference only (eval mode). In fp32
every rewrite is exact algebra, so only float rounding differs (within 1e-5 of plain SpeechBrain,
tests/test_embedder.py); bf16 rounds more, and the same tests hold it to cosine >= 0.9999 against
plain SpeechBrain on real speech and to identical decisions.

- Every convolution is one matrix product (:class:`MatmulConv1d`): oneDNN's convolution reordered
  its operands on every call and ran these shapes 1.6-6x slower. The product's operand is built in
  one copy: cast, SpeechBrain's mirrored ("reflect") padding, the kernel's shifted copies, and the
  time axis padded to a bucket so that clips of different lengths reuse compiled kernels.
- Attentive statistics pooling with global context concatenates ``[x, mean, std]`` (3 x 3072
  channels, repeated over every frame) before a 1x1 convolution. Mean and std are constant in
  time, so their share of that convolution is computed once per clip, not once per frame; the
  deviations from the mean are computed once for both the plain and the attentive statistics.
- TDNN, SE-Res2Net and ECAPA forwards restated with fewer passes over memory: ReLU in place, the
  squeeze-excitation gate and the residual in one ``addcmul``, no masks when nothing is padded,
  block outputs joined in the dtype the next product reads.
- bf16 (where the CPU has native bf16 matrix units): weights are cast to bf16 once at load, each
  product runs in bf16 and hands fp32 back, so normalisation, pooling and everything else stay
  fp32. (``torch.autocast`` would re-cast every weight on every call.)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def speed_up(module: torch.nn.Module, *, bf16: bool) -> int:
    """Rewrite ``module``'s layers in place for inference; returns how many were rewritten."""
    from speechbrain.lobes.models.ECAPA_TDNN import ECAPA_TDNN, AttentiveStatisticsPooling, SERes2NetBlock, TDNNBlock
    from speechbrain.nnet.CNN import Conv1d as SBConv1d

    module.eval()
    dtype = torch.bfloat16 if bf16 else torch.float32
    count = 0
    pooling = [m for m in module.modules() if isinstance(m, AttentiveStatisticsPooling) and m.global_context]
    for layer in pooling:  # take the pooling's weights before its convolutions are rewritten
        _split_pooling_weights(layer, dtype)
        layer.forward = _pooling_forward.__get__(layer)
        count += 1
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, SBConv1d) and MatmulConv1d.takes(child):
                setattr(parent, name, MatmulConv1d(child.conv, dtype, reflect=child.padding == "same"))
                count += 1
            elif type(child) is torch.nn.Conv1d:
                setattr(parent, name, MatmulConv1d(child, dtype))
                count += 1
    for layer in module.modules():
        if isinstance(layer, TDNNBlock) and type(layer.activation) is torch.nn.ReLU:
            layer.forward = _tdnn_forward.__get__(layer)
            count += 1
        elif isinstance(layer, SERes2NetBlock):
            layer.forward = _se_res2net_forward.__get__(layer)
            count += 1
        elif isinstance(layer, ECAPA_TDNN) and isinstance(layer.mfa.conv, MatmulConv1d):
            layer.forward = _ecapa_forward.__get__(layer)
            count += 1
    return count


def _split_pooling_weights(layer, dtype: torch.dtype) -> None:
    conv = layer.tdnn.conv.conv  # the torch Conv1d (1x1) inside TDNNBlock's SpeechBrain Conv1d
    weight = conv.weight.detach()[:, :, 0]
    channels = weight.shape[1] // 3
    layer._w_frames = weight[:, :channels].contiguous().to(dtype)
    layer._w_mean = weight[:, channels:2 * channels].contiguous()
    layer._w_std = weight[:, 2 * channels:].contiguous()
    layer._bias = (conv.bias.detach().clone() if conv.bias is not None else torch.zeros(weight.shape[0]))[:, None]
    # The attention logits' bias is constant in time, and a softmax over time cancels it.
    layer._w_attention = layer.conv.conv.weight.detach()[:, :, 0].contiguous().to(dtype)


def bf16_is_native() -> bool:
    """True on CPUs with AVX512-BF16 or AMX, where bf16 matrix products are faster than fp32."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def _padded_frames(frames: int) -> int:
    """Frames rounded up to a bucket: 32 frames up to 1023, then 1/16 of the power of two below.

    oneDNN builds (JIT-compiles) a kernel for every new matrix shape: +8-10 ms on a 30 ms clip of
    a length not seen before. Padding the time axis to buckets lets clips share kernels; a matrix
    product's columns are independent, so the padding never touches the real frames' values.
    """
    step = max(32, 1 << max(frames.bit_length() - 5, 0))
    return -(-frames // step) * step


def _operand(x: torch.Tensor, dtype: torch.dtype, kernel: int = 1, dilation: int = 1,
             reflect: int = 0) -> tuple[torch.Tensor, int]:
    """``x`` (N, C, T) as a product's right operand, built in one copy: ``kernel`` shifted copies
    stacked along channels, cast to ``dtype``, the time axis zero-padded to a bucket. ``reflect``
    frames are mirrored in at both ends first (SpeechBrain's "same" padding), written in place
    rather than padded into another copy. Returns the operand and the number of real frames."""
    batch, channels, length = x.shape
    frames = length + 2 * reflect - dilation * (kernel - 1)
    operand = torch.empty((batch, kernel * channels, _padded_frames(frames)), dtype=dtype, device=x.device)
    for j in range(kernel):
        rows = operand[:, j * channels:(j + 1) * channels]
        start = j * dilation - reflect  # frame of x under this copy's first column
        if start < 0:  # mirrored head: x[-start], ..., x[1]
            rows[..., :-start].copy_(x[..., 1:1 - start].flip(-1))
            rows[..., -start:frames].copy_(x[..., :frames + start])
        else:
            inside = min(frames, length - start)
            rows[..., :inside].copy_(x[..., start:start + inside])
            if inside < frames:  # mirrored tail: x[T-2], x[T-3], ...
                rows[..., inside:frames].copy_(x[..., 2 * length - 1 - start - frames:length - 1].flip(-1))
    operand[..., frames:].zero_()
    return operand, frames


def _matmul(weight: torch.Tensor, x: torch.Tensor, kernel: int = 1, dilation: int = 1, reflect: int = 0,
            bias: torch.Tensor | None = None) -> torch.Tensor:
    """``weight @ x (+ bias)`` for ``x`` of shape (N, C, T) (see :func:`_operand`), fp32 out."""
    operand, frames = _operand(x, weight.dtype, kernel, dilation, reflect)
    if operand.shape[0] == 1:  # a 2-D product: torch.matmul would broadcast to a slower batched one
        out = torch.mm(weight, operand[0])[None]
    else:
        out = torch.matmul(weight, operand)
    out = out[..., :frames].to(torch.float32, copy=True)
    return out.add_(bias) if bias is not None else out  # (a mixed bf16 + fp32 add is 25 % slower)


class MatmulConv1d(torch.nn.Module):
    """A ``Conv1d`` run as one matrix product (bf16 or fp32), weights laid out once.

    oneDNN's convolution reorders its operands on every call; for these shapes a plain matrix
    product is 1.6-6x faster. A kernel wider than 1 becomes one product over ``k`` shifted copies of
    the input stacked along channels (``k * C_in`` rows). ``reflect`` pads like SpeechBrain's
    "same" convolutions (mirrored frames).
    """

    def __init__(self, conv: torch.nn.Conv1d, dtype: torch.dtype = torch.bfloat16, *, reflect: bool = False):
        super().__init__()
        if conv.padding_mode != "zeros" or conv.groups != 1 or conv.stride != (1,) or isinstance(conv.padding, str):
            raise ValueError("only ungrouped, stride-1, zero-padded convolutions can be rewritten")
        out_channels, in_channels, self.kernel = conv.weight.shape
        self.dilation = conv.dilation[0]
        self.padding = self.dilation * (self.kernel - 1) // 2 if reflect else conv.padding[0]
        self.reflect = reflect
        # (out, in, k) -> (out, k * in), columns ordered like the stacked shifted inputs below
        weight = conv.weight.detach().permute(0, 2, 1).reshape(out_channels, self.kernel * in_channels)
        self.weight = torch.nn.Parameter(weight.contiguous().to(dtype), requires_grad=False)
        bias = conv.bias.detach().float()[:, None] if conv.bias is not None else None
        self.bias = torch.nn.Parameter(bias, requires_grad=False) if bias is not None else None

    @staticmethod
    def takes(sb_conv) -> bool:
        """Whether a SpeechBrain ``Conv1d`` wrapper can be replaced whole (channels-first, odd kernel)."""
        return (sb_conv.skip_transpose and not sb_conv.unsqueeze and sb_conv.stride == 1
                and sb_conv.padding in ("same", "valid") and sb_conv.kernel_size % 2 == 1
                and (sb_conv.padding == "valid" or sb_conv.padding_mode == "reflect"))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.padding and not self.reflect:
            x = F.pad(x, (self.padding, self.padding))
        return _matmul(self.weight, x, self.kernel, self.dilation, self.padding if self.reflect else 0, self.bias)


def _ecapa_forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
    """SpeechBrain's ECAPA_TDNN.forward; the blocks' outputs are joined for the multi-layer feature
    aggregation in the dtype its matrix product reads (bf16: half the bytes to copy)."""
    from speechbrain.lobes.models.ECAPA_TDNN import TDNNBlock

    x = x.transpose(1, 2)
    outputs = []
    for layer in self.blocks:
        x = layer(x) if isinstance(layer, TDNNBlock) else layer(x, lengths=lengths)
        outputs.append(x)
    dtype = self.mfa.conv.weight.dtype
    x = self.mfa(torch.cat([out.to(dtype) for out in outputs[1:]], dim=1))
    x = self.asp_bn(self.asp(x, lengths=lengths))
    return self.fc(x).transpose(1, 2)


def _tdnn_forward(self, x: torch.Tensor) -> torch.Tensor:
    """SpeechBrain's TDNNBlock (conv, ReLU, batch norm, dropout), in place where it can be."""
    norm = self.norm.norm
    return F.batch_norm(self.conv(x).relu_(), norm.running_mean, norm.running_var, norm.weight, norm.bias,
                        False, 0.0, norm.eps)


def _se_res2net_forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
    """SpeechBrain's SERes2NetBlock; the squeeze-excitation gate and the residual in one pass."""
    residual = self.shortcut(x) if self.shortcut else x
    x = self.tdnn2(self.res2net_block(self.tdnn1(x)))
    se = self.se_block
    mean = _time_mean(x, _padding_mask(lengths, x.shape[-1], x.device))
    gate = se.sigmoid(se.conv2(se.relu(se.conv1(mean))))
    return torch.addcmul(residual, x, gate)


def _padding_mask(lengths: torch.Tensor | None, frames: int, device) -> torch.Tensor | None:
    """(N, 1, frames), 1 on each clip's real frames; None when no clip of the batch is padded."""
    if lengths is None or bool((lengths >= 1).all()):
        return None
    from speechbrain.dataio.dataio import length_to_mask

    return length_to_mask(lengths * frames, max_len=frames, device=device).unsqueeze(1)


def _time_mean(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean over each clip's real frames, (N, C, T) -> (N, C, 1)."""
    if mask is None:
        return x.mean(dim=2, keepdim=True)
    return (x * mask).sum(dim=2, keepdim=True) / mask.sum(dim=2, keepdim=True)


def _pooling_forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
    """SpeechBrain's AttentiveStatisticsPooling.forward (global context), restated for speed.

    The constant (mean, std) part of the first convolution is computed once per clip instead of
    once per frame; deviations from the plain mean are computed once and serve both the plain and
    the attentive statistics; a clip without padding skips the masks.
    """
    mask = _padding_mask(lengths, x.shape[-1], x.device)
    mean = _time_mean(x, mask)
    deviation = x - mean
    squared = deviation * deviation
    std = _time_mean(squared, mask).clamp(self.eps).sqrt()

    constant = torch.matmul(self._w_mean, mean) + torch.matmul(self._w_std, std) + self._bias
    hidden = _matmul(self._w_frames, x) + constant  # (N, attention channels, frames)
    hidden = self.tdnn.dropout(self.tdnn.norm(self.tdnn.activation(hidden)))
    logits = _matmul(self._w_attention, torch.tanh(hidden))
    if mask is not None:
        logits = logits.masked_fill(mask == 0, float("-inf"))
    attention = F.softmax(logits, dim=2)
    # attentive mean = mean + shift; attentive variance = E_att[(x - mean)^2] - shift^2
    shift = torch.einsum("nct,nct->nc", attention, deviation).unsqueeze(2)  # one pass; mul + sum makes two
    variance = torch.einsum("nct,nct->nc", attention, squared).unsqueeze(2) - shift * shift
    return torch.cat((mean + shift, variance.clamp(self.eps).sqrt()), dim=1)


def keep_freed_memory() -> bool:
    """Ask glibc to keep freed memory for reuse instead of returning it to the kernel.

    glibc serves large blocks (an activation of 3072 x 500 floats is 6 MB) by mmap and unmaps them
    on free, so every layer of every clip paid for fresh zeroed pages: 43 ms per 5 s clip instead of
    35 ms here. The process keeps up to 512 MB of freed heap mapped (~100 MB after a 10 s clip).
    Returns False where the C library is not glibc.
    """
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    # 32 MiB is glibc's ceiling for the mmap threshold: every activation of a clip under ~50 s fits
    return bool(mallopt(m_mmap_threshold, 32 << 20)) and bool(mallopt(m_trim_threshold, 512 << 20))
