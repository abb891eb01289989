"""TensorProto <-> numpy with TF's rules."""

from __future__ import annotations

import numpy as np
import pytest

from serving.protocol.errors import InvalidArgument, ResourceExhausted
from serving.protocol.protos import tensorflow_framework_pb2 as tf
from serving.protocol.tensors import from_numpy, to_numpy


def proto(dtype: int, shape: list[int], **fields) -> tf.TensorProto:
    tensor = tf.TensorProto(dtype=dtype, **fields)
    tensor.tensor_shape.dim.extend(tf.TensorShapeProto.Dim(size=s) for s in shape)
    return tensor


@pytest.mark.parametrize(
    "dtype", ["float32", "float64", "float16", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "bool"]
)
def test_round_trip_through_tensor_content(dtype):
    array = (np.arange(24) % 7).astype(dtype).reshape(2, 3, 4)
    back = to_numpy(from_numpy(array))
    assert back.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(back, array)


@pytest.mark.parametrize(
    ("tensor", "expected"),
    [
        (proto(tf.DT_FLOAT, [2, 2], float_val=[1, 2, 3, 4]), np.array([[1, 2], [3, 4]], np.float32)),
        (proto(tf.DT_FLOAT, [2, 2], float_val=[7]), np.full((2, 2), 7, np.float32)),  # one value fills the shape
        (proto(tf.DT_INT32, [3], int_val=[1, -2, 3]), np.array([1, -2, 3], np.int32)),
        (proto(tf.DT_UINT8, [2], int_val=[0, 255]), np.array([0, 255], np.uint8)),
        (proto(tf.DT_INT64, [1], int64_val=[2**40]), np.array([2**40], np.int64)),
        (proto(tf.DT_HALF, [2], half_val=[0x3C00, 0xC000]), np.array([1.0, -2.0], np.float16)),
        (proto(tf.DT_BOOL, [2], bool_val=[True, False]), np.array([True, False])),
        (proto(tf.DT_FLOAT, [0, 48]), np.zeros((0, 48), np.float32)),
    ],
)
def test_typed_value_fields(tensor, expected):
    array = to_numpy(tensor)
    assert array.dtype == expected.dtype
    np.testing.assert_array_equal(array, expected)


@pytest.mark.parametrize(
    ("tensor", "error", "message"),
    [
        (proto(tf.DT_FLOAT, [2, 2], float_val=[1, 2, 3]), InvalidArgument, "3 values in float_val, expected 4"),
        (proto(tf.DT_FLOAT, [2], tensor_content=b"\0" * 7), InvalidArgument, "7 bytes, expected 8"),
        (proto(tf.DT_FLOAT, [-1, 2], float_val=[1]), InvalidArgument, ">= 0"),
        (proto(tf.DT_STRING, [1], string_val=[b"x"]), InvalidArgument, "unsupported tensor dtype DT_STRING"),
        (proto(tf.DT_FLOAT, [100000, 100000, 3], float_val=[1]), ResourceExhausted, "exceeds the limit"),
        (tf.TensorProto(dtype=tf.DT_FLOAT, tensor_shape=tf.TensorShapeProto(unknown_rank=True)), InvalidArgument, "unknown_rank"),
    ],
)
def test_malformed_tensors_are_refused_with_a_reason(tensor, error, message):
    with pytest.raises(error, match=message):
        to_numpy(tensor)
