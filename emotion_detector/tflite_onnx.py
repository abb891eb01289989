"""Translate a small TFLite float model (MediaPipe's BlazeFace) into an ONNX graph for ONNX Runtime.

Only the operators BlazeFace uses are translated: CONV_2D, DEPTHWISE_CONV_2D, MAX_POOL_2D, ADD, RELU, RELU6,
PAD, RESHAPE, CONCATENATION, RESIZE_BILINEAR and DEQUANTIZE (float16 weights, folded into float32
initialisers). Anything else fails with the operator's name, so a changed model file is noticed at once.

TFLite tensors are NHWC; ONNX's Conv and MaxPool are NCHW. The graph keeps the model's NHWC input and outputs
and works in NCHW inside: one transpose after the input, and one before each RESHAPE of a 4-D tensor, whose
element order must be TFLite's. The batch dimension is left free, so several tiles can run in one call.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx
import tflite
from onnx import TensorProto, helper, numpy_helper

OPSET = 17

_OPERATOR_NAMES = {code: name for name, code in vars(tflite.BuiltinOperator).items() if not name.startswith("_")}
_NUMPY_TYPES = {tflite.TensorType.FLOAT32: np.float32, tflite.TensorType.FLOAT16: np.float16, tflite.TensorType.INT32: np.int32}
_NHWC_TO_NCHW, _NCHW_TO_NHWC = [0, 3, 1, 2], [0, 2, 3, 1]
_NHWC_AXIS_IN_NCHW = {0: 0, 1: 2, 2: 3, 3: 1}


class UnsupportedModel(ValueError):
    """The .tflite file uses something this translator does not cover."""


@dataclass
class _Graph:
    model: tflite.Model
    subgraph: tflite.SubGraph
    nodes: list[onnx.NodeProto] = field(default_factory=list)
    initializers: list[onnx.TensorProto] = field(default_factory=list)
    constants: dict[int, np.ndarray] = field(default_factory=dict)  # TFLite tensor index -> value (float16 already float32)
    nchw: set[str] = field(default_factory=set)  # ONNX names of 4-D tensors held in NCHW order
    initialised: set[str] = field(default_factory=set)
    _counter: int = 0

    def fresh(self, hint: str) -> str:
        self._counter += 1
        return f"{hint}_{self._counter}"

    def shape(self, index: int) -> list[int]:
        return [int(d) for d in self.subgraph.Tensors(index).ShapeAsNumpy()]

    def constant(self, value: np.ndarray | np.generic, hint: str) -> str:
        name = self.fresh(hint)
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def add(self, op_type: str, inputs: list[str], hint: str, output: str | None = None, **attributes: Any) -> str:
        output = output or self.fresh(hint)
        self.nodes.append(helper.make_node(op_type, inputs, [output], name=self.fresh(op_type), **attributes))
        return output


def _tensor_name(index: int) -> str:
    return f"t{index}"


def _read_constant(model: tflite.Model, subgraph: tflite.SubGraph, index: int) -> np.ndarray | None:
    tensor = subgraph.Tensors(index)
    data = model.Buffers(tensor.Buffer()).DataAsNumpy()
    if isinstance(data, int):  # an empty buffer: an activation, not a constant
        return None
    if tensor.Type() not in _NUMPY_TYPES:
        raise UnsupportedModel(f"tensor {tensor.Name().decode()} has TFLite type {tensor.Type()}, expected float32, float16 or int32")
    return np.frombuffer(data.tobytes(), _NUMPY_TYPES[tensor.Type()]).reshape([int(d) for d in tensor.ShapeAsNumpy()])


def _same_padding(in_hw: list[int], kernel_hw: list[int], stride_hw: list[int]) -> list[int]:
    """TensorFlow's SAME padding as ONNX pads (begin_h, begin_w, end_h, end_w): the odd pixel goes at the end."""
    begins, ends = [], []
    for size, kernel, stride in zip(in_hw, kernel_hw, stride_hw, strict=True):
        total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
        begins.append(total // 2)
        ends.append(total - total // 2)
    return begins + ends


def _activation(graph: _Graph, value: str, fused: int, output: str) -> str:
    if fused == tflite.ActivationFunctionType.NONE:
        return graph.add("Identity", [value], "act", output)
    if fused == tflite.ActivationFunctionType.RELU:
        return graph.add("Relu", [value], "act", output)
    if fused == tflite.ActivationFunctionType.RELU6:
        low, high = graph.constant(np.float32(0), "zero"), graph.constant(np.float32(6), "six")
        return graph.add("Clip", [value, low, high], "act", output)
    raise UnsupportedModel(f"fused activation {fused} is not supported")


def _options(operator: tflite.Operator, options_class: type) -> Any:
    table = operator.BuiltinOptions()
    options = options_class()
    options.Init(table.Bytes, table.Pos)
    return options


def _input(graph: _Graph, index: int) -> str:
    """An operator input as an ONNX name; constants become initialisers in the layout ONNX expects."""
    name = _tensor_name(index)
    if index in graph.constants and name not in graph.initialised:
        value = graph.constants[index]
        if value.ndim == 4:  # an NHWC constant meeting NCHW activations
            value = value.transpose(_NHWC_TO_NCHW)
            graph.nchw.add(name)
        graph.initializers.append(numpy_helper.from_array(np.ascontiguousarray(value), name))
        graph.initialised.add(name)
    return name


def _convolution(graph: _Graph, operator: tflite.Operator, depthwise: bool) -> None:
    x_index, w_index, b_index = (operator.Inputs(i) for i in range(3))
    weights = graph.constants[w_index]
    if depthwise:
        options = _options(operator, tflite.DepthwiseConv2DOptions)
        channels_in = graph.shape(x_index)[3]
        kernel = weights.transpose(3, 0, 1, 2)  # [1, KH, KW, C*M] -> [C*M, 1, KH, KW]
        group = channels_in
    else:
        options = _options(operator, tflite.Conv2DOptions)
        kernel = weights.transpose(_NHWC_TO_NCHW)  # [O, KH, KW, I] -> [O, I, KH, KW]
        group = 1
    strides = [options.StrideH(), options.StrideW()]
    dilations = [options.DilationHFactor(), options.DilationWFactor()]
    effective_kernel = [(k - 1) * d + 1 for k, d in zip(kernel.shape[2:], dilations, strict=True)]
    pads = _same_padding(graph.shape(x_index)[1:3], effective_kernel, strides) if options.Padding() == tflite.Padding.SAME else [0] * 4
    inputs = [_input(graph, x_index), graph.constant(kernel.astype(np.float32), "kernel")]
    if b_index >= 0:
        inputs.append(graph.constant(graph.constants[b_index].astype(np.float32), "bias"))
    shape = list(kernel.shape[2:])
    conv = graph.add("Conv", inputs, "conv", group=group, strides=strides, dilations=dilations, pads=pads, kernel_shape=shape)
    output = _tensor_name(operator.Outputs(0))
    _activation(graph, conv, options.FusedActivationFunction(), output)
    graph.nchw.add(output)


def _max_pool(graph: _Graph, operator: tflite.Operator) -> None:
    options = _options(operator, tflite.Pool2DOptions)
    x_index = operator.Inputs(0)
    kernel, strides = [options.FilterHeight(), options.FilterWidth()], [options.StrideH(), options.StrideW()]
    pads = _same_padding(graph.shape(x_index)[1:3], kernel, strides) if options.Padding() == tflite.Padding.SAME else [0] * 4
    pooled = graph.add("MaxPool", [_input(graph, x_index)], "pool", kernel_shape=kernel, strides=strides, pads=pads)
    output = _tensor_name(operator.Outputs(0))
    _activation(graph, pooled, options.FusedActivationFunction(), output)
    graph.nchw.add(output)


def _add(graph: _Graph, operator: tflite.Operator) -> None:
    a, b = (operator.Inputs(i) for i in range(2))
    if graph.shape(a) != graph.shape(b):
        raise UnsupportedModel(f"ADD of shapes {graph.shape(a)} and {graph.shape(b)}: only equal shapes are supported")
    total = graph.add("Add", [_input(graph, a), _input(graph, b)], "add")
    output = _tensor_name(operator.Outputs(0))
    _activation(graph, total, _options(operator, tflite.AddOptions).FusedActivationFunction(), output)
    if len(graph.shape(a)) == 4:
        graph.nchw.add(output)


def _pad(graph: _Graph, operator: tflite.Operator) -> None:
    x_index, paddings_index = operator.Inputs(0), operator.Inputs(1)
    paddings = graph.constants[paddings_index].astype(np.int64)  # [rank, 2]: (before, after) per NHWC axis
    if paddings.shape != (4, 2):
        raise UnsupportedModel(f"PAD expects paddings of shape (4, 2), got {paddings.shape}")
    paddings = paddings[_NHWC_TO_NCHW]
    pads = graph.constant(np.concatenate([paddings[:, 0], paddings[:, 1]]), "pads")
    output = graph.add("Pad", [_input(graph, x_index), pads], "pad", _tensor_name(operator.Outputs(0)), mode="constant")
    graph.nchw.add(output)


def _reshape(graph: _Graph, operator: tflite.Operator) -> None:
    x_index = operator.Inputs(0)
    source = _input(graph, x_index)
    if source in graph.nchw:  # flatten in TFLite's element order
        source = graph.add("Transpose", [source], "nhwc", perm=_NCHW_TO_NHWC)
    target = graph.shape(operator.Outputs(0))
    if target[0] != graph.shape(x_index)[0]:
        raise UnsupportedModel(f"RESHAPE {graph.shape(x_index)} -> {target} changes the batch dimension")
    shape = graph.constant(np.array([0, *target[1:]], np.int64), "shape")  # 0: keep the (free) batch size
    graph.add("Reshape", [source, shape], "reshape", _tensor_name(operator.Outputs(0)))


def _concatenation(graph: _Graph, operator: tflite.Operator) -> None:
    inputs = [_input(graph, operator.Inputs(i)) for i in range(operator.InputsLength())]
    options = _options(operator, tflite.ConcatenationOptions)
    rank = len(graph.shape(operator.Inputs(0)))
    axis = options.Axis() % rank
    in_nchw = inputs[0] in graph.nchw
    if any((name in graph.nchw) != in_nchw for name in inputs):
        raise UnsupportedModel("CONCATENATION of tensors in different layouts")
    if in_nchw:
        axis = _NHWC_AXIS_IN_NCHW[axis]
    joined = graph.add("Concat", inputs, "concat", axis=axis)
    output = _tensor_name(operator.Outputs(0))
    _activation(graph, joined, options.FusedActivationFunction(), output)
    if in_nchw:
        graph.nchw.add(output)


def _resize_bilinear(graph: _Graph, operator: tflite.Operator) -> None:
    options = _options(operator, tflite.ResizeBilinearOptions)
    x_index = operator.Inputs(0)
    in_h, in_w = graph.shape(x_index)[1:3]
    out_h, out_w = graph.shape(operator.Outputs(0))[1:3]
    if options.AlignCorners():
        mode = "align_corners"
    elif options.HalfPixelCenters():
        mode = "half_pixel"  # TF's half_pixel_centers: source = (out + 0.5) / scale - 0.5, clamped to the image
    else:
        mode = "asymmetric"
    scales = graph.constant(np.array([1, 1, out_h / in_h, out_w / in_w], np.float32), "scales")
    output = _tensor_name(operator.Outputs(0))
    graph.add("Resize", [_input(graph, x_index), "", scales], "resize", output, mode="linear", coordinate_transformation_mode=mode)
    graph.nchw.add(output)


def _relu(graph: _Graph, operator: tflite.Operator, six: bool) -> None:
    source = _input(graph, operator.Inputs(0))
    output = _tensor_name(operator.Outputs(0))
    fused = tflite.ActivationFunctionType.RELU6 if six else tflite.ActivationFunctionType.RELU
    _activation(graph, source, fused, output)
    if source in graph.nchw:
        graph.nchw.add(output)


def convert(tflite_bytes: bytes, name: str = "model") -> onnx.ModelProto:
    """The first subgraph of a float TFLite model as an ONNX model (opset 17) with the same NHWC input and outputs."""
    model = tflite.Model.GetRootAsModel(tflite_bytes, 0)
    if model.SubgraphsLength() != 1:
        raise UnsupportedModel(f"expected one subgraph, got {model.SubgraphsLength()}")
    subgraph = model.Subgraphs(0)
    graph = _Graph(model, subgraph)
    for index in range(subgraph.TensorsLength()):
        value = _read_constant(model, subgraph, index)
        if value is not None:
            graph.constants[index] = value

    inputs = []
    for index in subgraph.InputsAsNumpy():
        shape = graph.shape(int(index))
        if len(shape) != 4:
            raise UnsupportedModel(f"expected one NHWC image input, got shape {shape}")
        tensor_name = subgraph.Tensors(int(index)).Name().decode()
        inputs.append(helper.make_tensor_value_info(tensor_name, TensorProto.FLOAT, ["batch", *shape[1:]]))
        graph.add("Transpose", [tensor_name], "nchw", _tensor_name(int(index)), perm=_NHWC_TO_NCHW)
        graph.nchw.add(_tensor_name(int(index)))

    handlers = {
        "CONV_2D": lambda op: _convolution(graph, op, depthwise=False),
        "DEPTHWISE_CONV_2D": lambda op: _convolution(graph, op, depthwise=True),
        "MAX_POOL_2D": lambda op: _max_pool(graph, op),
        "ADD": lambda op: _add(graph, op),
        "PAD": lambda op: _pad(graph, op),
        "RESHAPE": lambda op: _reshape(graph, op),
        "CONCATENATION": lambda op: _concatenation(graph, op),
        "RESIZE_BILINEAR": lambda op: _resize_bilinear(graph, op),
        "RELU": lambda op: _relu(graph, op, six=False),
        "RELU6": lambda op: _relu(graph, op, six=True),
    }
    for position in range(subgraph.OperatorsLength()):
        operator = subgraph.Operators(position)
        code = model.OperatorCodes(operator.OpcodeIndex())
        kind = _OPERATOR_NAMES.get(max(code.BuiltinCode(), code.DeprecatedBuiltinCode()), "custom")
        if kind == "DEQUANTIZE":  # float16 weights: folded into float32 constants
            source = graph.constants.get(operator.Inputs(0))
            if source is None:
                raise UnsupportedModel("DEQUANTIZE of an activation (a quantised model) is not supported")
            graph.constants[operator.Outputs(0)] = source.astype(np.float32)
            continue
        if kind not in handlers:
            raise UnsupportedModel(f"TFLite operator {kind} (operator {position}) is not supported")
        handlers[kind](operator)

    outputs = []
    for index in subgraph.OutputsAsNumpy():
        internal = _tensor_name(int(index))
        if internal in graph.nchw:
            internal = graph.add("Transpose", [internal], "nhwc", perm=_NCHW_TO_NHWC)
        tensor_name = subgraph.Tensors(int(index)).Name().decode()
        graph.add("Identity", [internal], "output", tensor_name)
        outputs.append(helper.make_tensor_value_info(tensor_name, TensorProto.FLOAT, ["batch", *graph.shape(int(index))[1:]]))

    onnx_graph = helper.make_graph(graph.nodes, name, inputs, outputs, graph.initializers)
    onnx_model = helper.make_model(onnx_graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="emotion_detector.tflite_onnx")
    onnx_model.ir_version = 8  # readable by every ONNX Runtime since 1.10
    onnx.checker.check_model(onnx_model)
    return onnx_model
