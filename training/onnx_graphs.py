"""Graph surgery on exported models: back from QDQ int8 to float32, two heads' graphs into one, one output out.

A QDQ model holds everything its float32 original had, up to the int8 rounding of the weights: folding each
weight DequantizeLinear into a float initializer and dropping the activation QuantizeLinear / DequantizeLinear
pairs gives back a float32 graph that can be quantised again (training/requantize.py).
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper


def dequantize(model: onnx.ModelProto) -> onnx.ModelProto:
    """The float32 graph a QDQ model stands for: weights folded to float, activations no longer rounded."""
    model = onnx.ModelProto.FromString(model.SerializeToString())  # the caller's copy stays as it was
    graph = model.graph
    initializers = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    producers = {output: node for node in graph.node for output in node.output}
    folded: dict[str, np.ndarray] = {}
    renamed: dict[str, str] = {}  # a DequantizeLinear output -> the float tensor it stood for
    kept = []
    for node in graph.node:
        if node.op_type == "DequantizeLinear" and node.input[0] in initializers:
            folded[node.output[0]] = _dequantize_array(node, initializers)
        elif node.op_type == "DequantizeLinear" and producers.get(node.input[0], node).op_type == "QuantizeLinear":
            renamed[node.output[0]] = producers[node.input[0]].input[0]
        elif node.op_type != "QuantizeLinear":
            kept.append(node)
    for node in kept:
        node.input[:] = [renamed.get(name, name) for name in node.input]
    for output in graph.output:
        if output.name in renamed:
            raise ValueError(f"graph output {output.name!r} comes straight from a DequantizeLinear; expected a float op")
    del graph.node[:]
    graph.node.extend(kept)
    used = {name for node in kept for name in node.input}
    still_there = [i for i in graph.initializer if i.name in used]
    del graph.initializer[:]
    graph.initializer.extend(still_there)
    graph.initializer.extend(numpy_helper.from_array(value, name) for name, value in folded.items())
    del graph.value_info[:]  # shapes of the removed tensors; onnx.shape_inference can add them back
    onnx.checker.check_model(model)
    return model


def _dequantize_array(node: onnx.NodeProto, initializers: dict[str, np.ndarray]) -> np.ndarray:
    quantized, scale = initializers[node.input[0]], initializers[node.input[1]]
    zero_point = initializers[node.input[2]] if len(node.input) > 2 and node.input[2] else np.zeros_like(scale, quantized.dtype)
    axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
    if scale.ndim == 1:  # per channel: scale and zero point along `axis`
        shape = [1] * quantized.ndim
        shape[axis] = -1
        scale, zero_point = scale.reshape(shape), zero_point.reshape(shape)
    # float32 arithmetic, as ONNX Runtime's DequantizeLinear does, so the float graph matches the QDQ one
    return (quantized.astype(np.int64) - zero_point.astype(np.int64)).astype(np.float32) * scale.astype(np.float32)


def rename_output(model: onnx.ModelProto, old: str, new: str) -> onnx.ModelProto:
    if old == new:
        return model
    if any(new in (*node.input, *node.output) for node in model.graph.node):
        raise ValueError(f"cannot rename {old!r} to {new!r}: the graph already has a tensor named {new!r}")
    model = onnx.ModelProto.FromString(model.SerializeToString())
    for node in model.graph.node:
        node.input[:] = [new if name == old else name for name in node.input]
        node.output[:] = [new if name == old else name for name in node.output]
    for output in model.graph.output:
        if output.name == old:
            output.name = new
    return model


def merge(first: onnx.ModelProto, second: onnx.ModelProto) -> onnx.ModelProto:
    """One graph with the outputs of both (same inputs). What both compute alike — same operator, attributes and
    inputs, constants compared by value — is computed once, so two heads on one trunk make one forward pass."""
    merged = onnx.ModelProto.FromString(first.SerializeToString())
    first_keys = _tensor_keys(first.graph)
    name_of = {key: name for name, key in first_keys.items()}
    second_keys = _tensor_keys(second.graph)
    taken = set(first_keys)  # every tensor name of the first graph
    renamed: dict[str, str] = {}
    for name, key in second_keys.items():
        if key in name_of:
            renamed[name] = name_of[key]  # already computed by the first graph
        elif name in taken:
            renamed[name] = f"{name}__2"
    present = {name for name, key in second_keys.items() if key in name_of}  # tensors the merged graph has already
    constants = {i.name: i for i in second.graph.initializer}
    for node in second.graph.node:
        if all(output in present for output in node.output):
            continue
        added = onnx.NodeProto.FromString(node.SerializeToString())
        added.input[:] = [renamed.get(n, n) for n in node.input]
        added.output[:] = [renamed.get(n, n) for n in node.output]
        added.name = f"{node.name}__2" if node.name else ""
        merged.graph.node.append(added)
        present.update(node.output)
        for name in node.input:
            if name in constants and name not in present:
                constant = onnx.TensorProto.FromString(constants[name].SerializeToString())
                constant.name = renamed.get(name, name)
                merged.graph.initializer.append(constant)
                present.add(name)
    for output in second.graph.output:
        if output.name in renamed:
            raise ValueError(f"output {output.name!r} of the second graph is also a tensor of the first one; rename it first")
        merged.graph.output.append(output)
    onnx.checker.check_model(merged)
    return merged


def _tensor_keys(graph: onnx.GraphProto) -> dict[str, tuple]:
    """A key per tensor that is equal for tensors two graphs compute alike."""
    keys: dict[str, tuple] = {i.name: ("input", i.name) for i in graph.input}
    for constant in graph.initializer:
        keys[constant.name] = ("constant", constant.data_type, tuple(constant.dims), numpy_helper.to_array(constant).tobytes())
    for node in graph.node:
        attributes = tuple(sorted((a.name, a.SerializeToString()) for a in node.attribute))
        inputs = tuple(keys[name] if name else None for name in node.input)
        for index, output in enumerate(node.output):
            keys[output] = (node.op_type, node.domain, attributes, inputs, index)
    return keys


def select_outputs(model: onnx.ModelProto, names: dict[str, str]) -> onnx.ModelProto:
    """Only the named outputs (``{new name: output in model}``) and the nodes they need."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    graph = model.graph
    known = {o.name: o for o in graph.output}
    missing = sorted(set(names.values()) - set(known))
    if missing:
        raise ValueError(f"outputs {missing} not in the graph; it has {sorted(known)}")
    needed = set(names.values())
    kept = []
    for node in reversed(graph.node):  # nodes are in topological order
        if needed.intersection(node.output):
            kept.append(node)
            needed.update(name for name in node.input if name)
    del graph.node[:]
    graph.node.extend(reversed(kept))
    constants = [i for i in graph.initializer if i.name in needed]
    del graph.initializer[:]
    graph.initializer.extend(constants)
    outputs = [known[old] for old in names.values()]
    del graph.output[:]
    graph.output.extend(outputs)
    del graph.value_info[:]
    for new, old in names.items():
        model = rename_output(model, old, new)
    onnx.checker.check_model(model)
    return model
