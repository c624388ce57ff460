"""Rewrite an ONNX model's 1-D convolutions as matrix products, for models that convolve many
short sequences at once.

Why: ONNX Runtime's ``Conv`` runs one small product per batch item. silero-vad's sequence model
feeds it ~31 frames per second of audio, each only 1-5 positions long, so its convolutions took
~7 of its ~9.5 ms per 5 s clip (AMD EPYC Zen 4). The same arithmetic as one product over every
item's positions: the sequence frames-major, its taps side by side, times the weights reshaped to
``(taps * channels, outputs)``. A kernel that is a whole number of strides over one channel (an
STFT basis) is cut into stride-sized hops first, so its taps are hops, not single samples.

Used once per source file, by :func:`speakerid.voice.onnx_model.restated_file`; the rewritten file is cached.
"""

from __future__ import annotations

import numpy as np


def restate(source: bytes) -> bytes:
    """``source`` (a serialized ONNX model) with each 1-D ``Conv`` restated as products; other
    nodes are left as they are. Only for models whose inputs have one free (batch) axis, so that
    every sequence length is fixed: the lengths are read off one run on zeros."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load_from_string(source)
    graph = model.graph
    lengths = _lengths(model, [node.input[0] for node in graph.node if node.op_type == "Conv"])
    weights = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    nodes = []
    for node in graph.node:
        restated = _as_products(node, lengths, weights, graph) if node.op_type == "Conv" else None
        nodes.extend(restated or [node])
    graph.ClearField("node")
    graph.node.extend(nodes)
    used = {name for node in graph.node for name in node.input}
    kept = [t for t in graph.initializer if t.name in used]
    graph.ClearField("initializer")
    graph.initializer.extend(kept)
    onnx.checker.check_model(model)
    return model.SerializeToString()


def _lengths(model, names: list[str]) -> dict[str, int]:
    """The last-axis length of each tensor in ``names`` that stays the same when the batch does
    (runs on zeros with batches of two and three); empty if an input has more than one free axis."""
    import onnx
    import onnxruntime as ort

    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    probe.graph.output.extend(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None) for name in names)
    runner = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
    runs = []
    for batch in (2, 3):
        feeds = {}
        for value in model.graph.input:
            dims = [d.dim_value or None for d in value.type.tensor_type.shape.dim]
            if sum(d is None for d in dims) > 1:
                return {}
            feeds[value.name] = np.zeros([d or batch for d in dims], dtype=np.float32)
        runs.append([out.shape for out in runner.run(names, feeds)])
    return {name: a[-1] for name, a, b in zip(names, *runs) if len(a) == 3 and a[-1] == b[-1]}


def _as_products(node, lengths: dict[str, int], weights, graph) -> list | None:
    """The nodes computing ``node`` (``(N, C, L)`` in and out) as one product, or ``None`` if this
    convolution is not one this rewrite covers (grouped, 2-D, unknown length, weights computed)."""
    from onnx import helper, numpy_helper

    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    x, w = node.input[0], node.input[1]
    if w not in weights or weights[w].ndim != 3 or attrs.get("group", 1) != 1 or x not in lengths:
        return None
    if any(d != 1 for d in attrs.get("dilations", [1])) or attrs.get("auto_pad", b"NOTSET") not in (
        b"NOTSET",
        "NOTSET",
    ):
        return None
    weight = weights[w]
    outputs, channels, kernel = weight.shape
    length = lengths[x]
    stride = attrs.get("strides", [1])[0]
    pad_left, pad_right = attrs.get("pads", [0, 0])
    count = (length + pad_left + pad_right - kernel) // stride + 1
    name = node.name or node.output[0]
    new: list = []

    def const(label: str, value) -> str:
        value = np.asarray(value)
        tensor = numpy_helper.from_array(
            value.astype(np.int64 if value.dtype.kind == "i" else np.float32), f"{name}/{label}"
        )
        graph.initializer.append(tensor)
        return tensor.name

    def add(op: str, inputs: list[str], label: str, **kwargs) -> str:
        new.append(helper.make_node(op, inputs, [f"{name}/{label}"], name=f"{name}/{label}", **kwargs))
        return f"{name}/{label}"

    frames = add("Transpose", [x], "frames", perm=[0, 2, 1])  # (N, L, C)
    if pad_left or pad_right:
        frames = add("Pad", [frames, const("pads", [0, pad_left, 0, 0, pad_right, 0])], "padded")
    if channels == 1 and stride > 1 and kernel % stride == 0 and not (pad_left or pad_right):
        # one channel, kernel a whole number of strides: cut into hops, which become the channels
        frames = add(
            "Slice",
            [
                frames,
                const("hops_start", [0]),
                const("hops_end", [(count - 1 + kernel // stride) * stride]),
                const("hops_axis", [1]),
            ],
            "whole_hops",
        )
        frames = add("Reshape", [frames, const("hops_shape", [0, -1, stride])], "hops")
        kernel, channels, stride = kernel // stride, stride, 1
        matrix = weight[:, 0, :].T  # rows ordered (hop, sample in hop), as the taps are stacked below
    else:
        matrix = weight.transpose(2, 1, 0).reshape(kernel * channels, outputs)  # rows ordered (tap, channel)
    axis, step = const("tap_axis", [1]), const("tap_step", [stride])
    taps = [
        add(
            "Slice",
            [frames, const(f"tap{k}_start", [k]), const(f"tap{k}_end", [k + (count - 1) * stride + 1]), axis, step],
            f"tap{k}",
        )
        for k in range(kernel)
    ]
    stacked = taps[0] if kernel == 1 else add("Concat", taps, "stacked", axis=2)
    y = add("MatMul", [stacked, const("matrix", matrix)], "product")
    if len(node.input) > 2 and node.input[2]:
        y = add("Add", [y, node.input[2]], "biased")
    new.append(helper.make_node("Transpose", [y], [node.output[0]], name=f"{name}/back", perm=[0, 2, 1]))
    return new
