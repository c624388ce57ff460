"""Preparing :class:`speakerid.voice.ecapa_graph.EcapaGraph` for int8 products, from activations measured
on real speech (as recorded and through a telephone band: benchmarks/int8_calibration.py, stored in
``speakerid/voice/data``). Used once per model and machine by :mod:`speakerid.voice.onnx_model`. Every step is
exact in real arithmetic; each only changes what int8 rounding does:

- smoothing (:func:`smooth`): dividing a product's input channels by ``c`` and multiplying the
  weights' rows by ``c`` moves the activations' outliers into the weights, where per-column weight
  scales absorb them ("SmoothQuant", Xiao et al. 2023);
- one product quantised twice (:meth:`speakerid.voice.ecapa_graph.Product.quantise_twice`);
- bias correction (:func:`correct_bias`): rounding the weights to int8 shifts every output by
  ``x @ (w - rounded(w))``, whose mean over speech goes into the bias ("Data-Free Quantization",
  Nagel et al. 2019). Measured on the 30 split-3 clips (not used for the means), min cosine to
  fp32: telephone band 0.99919 -> 0.99929, babble 5 dB 0.99728 -> 0.99790 (AMD EPYC Zen 4;
  benchmarks/README.md);
- folding (:meth:`speakerid.voice.ecapa_graph.EcapaGraph.fold_input_scales`): the Res2Net and pooling
  products' input scales move into whatever makes their inputs, a pass over each input fewer.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from speakerid.voice.ecapa_graph import EcapaGraph, Product


@dataclass
class Activations:
    """Per int8 product, its input channels' largest absolute value and mean over calibration speech."""

    peak: dict[str, torch.Tensor]
    mean: dict[str, torch.Tensor]

    def save(self, path: Path) -> None:
        np.savez_compressed(
            path,
            **{
                f"{kind}/{name}": t.numpy().astype(np.float32)
                for kind in ("peak", "mean")
                for name, t in getattr(self, kind).items()
            },
        )

    @classmethod
    def load(cls, path: Path) -> Activations:
        with np.load(path) as stored:
            found = {
                kind: {
                    key.split("/", 1)[1]: torch.from_numpy(stored[key])
                    for key in stored.files
                    if key.startswith(f"{kind}/")
                }
                for kind in ("peak", "mean")
            }
        return cls(**found)


def measure(graph: EcapaGraph, clips_frames: list[torch.Tensor]) -> Activations:
    """The inputs of ``graph``'s int8 products over ``clips_frames`` (before any smoothing)."""
    peak: dict[str, torch.Tensor] = {}
    total: dict[str, torch.Tensor] = {}
    frames: dict[str, int] = {}
    hooks = []
    for name, module in graph.products().items():

        def record(_module, inputs, name=name):
            x = inputs[0].detach()
            peak[name] = (
                torch.maximum(peak[name], x.abs().amax(dim=(0, 1))) if name in peak else x.abs().amax(dim=(0, 1))
            )
            total[name] = total.get(name, 0) + x.sum(dim=(0, 1))
            frames[name] = frames.get(name, 0) + x.shape[0] * x.shape[1]

        hooks.append(module.register_forward_pre_hook(record))
    try:
        with torch.no_grad():
            for clip in clips_frames:
                graph(clip)
    finally:
        for hook in hooks:
            hook.remove()
    return Activations(peak, {name: total[name] / frames[name] for name in total})


def smooth(graph: EcapaGraph, peaks: dict[str, torch.Tensor], alpha: float) -> None:
    """Per input channel ``c = peak^alpha / max|w|^(1 - alpha)``: inputs divided by ``c``, weight
    rows multiplied by it.

    Peaks are floored at their median: a channel that was quiet on the calibration speech is not
    amplified beyond a typical one, so audio unlike it cannot make that channel dominate the
    per-call int8 scale (unfloored peaks measured on wideband speech alone took telephone-band
    audio to cosine 0.959)."""
    for name, module in graph.products().items():
        if name in peaks:
            peak = peaks[name].float()
            peak = peak.clamp(min=max(float(peak.median()), 1e-5))
            module.scale_inputs(peak**alpha / module.input_weight_peaks().clamp(min=1e-5) ** (1 - alpha))


def int8_rounded(weight: torch.Tensor) -> torch.Tensor:
    """``weight`` as ONNX Runtime's quantiser stores it per column (symmetric int8, +-127 steps of
    the column's largest magnitude); tests/test_embedder.py checks this against the built file.

    >>> int8_rounded(torch.tensor([[1.0], [0.3]])).flatten().tolist()
    [1.0, 0.29921260476112366]
    """
    step = (weight.abs().amax(0, keepdim=True) / 127).clamp(min=torch.finfo(weight.dtype).tiny)
    return torch.round(weight / step) * step


def correct_bias(graph: EcapaGraph, means: dict[str, torch.Tensor]) -> None:
    """Add each int8 product's mean output error from rounding its weights to its bias. (The
    attention product has no mean: its bias, constant in time, cancels in the softmax.)"""
    for name, module in graph.products().items():
        if name in means:
            mean = means[name] * module.input_scale if module.input_scale is not None else means[name]
            if module.kernel > 1 and not module.shift_outputs:  # rows are the taps' inputs side by side
                mean = mean.repeat(module.kernel)
            module.add_bias(mean @ (module.weight - int8_rounded(module.weight)))


def prepare(graph: EcapaGraph, activations: Activations, alpha: float) -> set[str]:
    """Smooth ``graph``'s int8 products, quantise one of them twice and correct their biases; the
    names of the weights to quantise (:func:`speakerid.voice.onnx_model.quantise`)."""
    smooth(graph, activations.peak, alpha)
    correct_bias(graph, activations.mean)
    products: dict[str, Product] = graph.products()
    twice = graph.twice_quantised()
    products[twice].quantise_twice()
    graph.fold_input_scales()
    return {f"{name}.weight" for name in products} | {f"{twice}.residual_weight"}
