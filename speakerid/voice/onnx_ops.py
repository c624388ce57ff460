"""Torch functions that export as the ONNX nodes we choose, where the exporter's own choice is slow.

Used only by :mod:`speakerid.voice.ecapa_graph` while it writes the ONNX files; in torch they compute
the same values as the nodes they export as, so the graph can be checked against SpeechBrain.
"""

from __future__ import annotations

import torch


class _Slice(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, spec: tuple) -> torch.Tensor:
        for axis, start, end, step in spec:
            x = x.index_select(axis, torch.arange(*slice(start, end, step).indices(x.shape[axis])))
        return x

    @staticmethod
    def symbolic(g, x, spec: tuple):
        axes, starts, ends, steps = zip(*spec)
        ends = [(2**62 if step > 0 else -(2**62)) if end is None else end for end, step in zip(ends, steps)]
        const = [g.op("Constant", value_t=torch.tensor(v, dtype=torch.int64)) for v in (starts, ends, axes, steps)]
        return g.op("Slice", x, *const)


def sliced(x: torch.Tensor, *spec: tuple[int, int, int | None, int]) -> torch.Tensor:
    """Python's ``x[start:end:step]`` along each ``(axis, start, end, step)``, exported as one ONNX
    ``Slice``: the exporter writes a node per indexed axis (each copying its input) and cannot step
    backwards.

    >>> sliced(torch.arange(12).reshape(1, 6, 2), (1, 3, 0, -1), (2, 1, None, 1)).tolist()
    [[[7], [5], [3]]]
    """
    return _Slice.apply(x, spec)


class _Uint8Grid(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # ONNX DynamicQuantizeLinear's arithmetic
        low, high = torch.clamp(x.amin(), max=0.0), torch.clamp(x.amax(), min=0.0)
        scale = (high - low) / 255
        zero = torch.clamp(torch.round(-low / scale), 0, 255)
        return (torch.clamp(torch.round(x / scale) + zero, 0, 255) - zero) * scale

    @staticmethod
    def symbolic(g, x):
        quantised, scale, zero = g.op("DynamicQuantizeLinear", x, outputs=3)
        return g.op("DequantizeLinear", quantised, scale, zero)


def on_uint8_grid(x: torch.Tensor) -> torch.Tensor:
    """``x`` rounded as ONNX Runtime's per-call int8 products round their input (256 steps from
    ``min(x, 0)`` to ``max(x, 0)``), exported as ``DynamicQuantizeLinear`` + ``DequantizeLinear``.
    An int8 product of the result is exact up to its weights' rounding, and ``x - on_uint8_grid(x)``,
    itself quantised, carries what the first rounding lost.

    >>> [round(v, 4) for v in on_uint8_grid(torch.tensor([-1.0, 0.004, 1.0])).tolist()]  # steps of 2/255
    [-0.9961, 0.0078, 0.9961]
    """
    return _Uint8Grid.apply(x)


class _Mirrored(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, pad: int) -> torch.Tensor:
        return torch.nn.functional.pad(x.transpose(1, 2), (pad, pad), mode="reflect").transpose(1, 2)

    @staticmethod
    def symbolic(g, x, pad: int):
        pads = g.op("Constant", value_t=torch.tensor([0, pad, 0, 0, pad, 0], dtype=torch.int64))
        return g.op("Pad", x, pads, mode_s="reflect")


def mirrored(x: torch.Tensor, pad: int) -> torch.Tensor:
    """``(N, T, C)`` with ``pad`` frames mirrored at each end, the edge frame not repeated (torch's
    and SpeechBrain's "reflect"), exported as one ONNX ``Pad``.

    >>> mirrored(torch.arange(4.0).reshape(1, 4, 1), 2).flatten().tolist()
    [2.0, 1.0, 0.0, 1.0, 2.0, 3.0, 2.0, 1.0]
    """
    return _Mirrored.apply(x, pad)
