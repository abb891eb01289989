"""TensorProto ⇄ numpy, with TF's semantics (tensor_content or typed *_val fields, one value broadcast to
the whole shape) and errors that say what was expected and what came."""

from __future__ import annotations

import math

import numpy as np

from serving.protocol.errors import InvalidArgument, ResourceExhausted
from serving.protocol.protos import tensorflow_framework_pb2 as tf

MAX_ELEMENTS = 64 * 1024 * 1024  # 256 MB of float32: far above any batch of faces, far below the RAM

# DataType → (numpy dtype, TensorProto field holding typed values)
_TYPES: dict[int, tuple[np.dtype, str]] = {
    tf.DT_FLOAT: (np.dtype("<f4"), "float_val"),
    tf.DT_DOUBLE: (np.dtype("<f8"), "double_val"),
    tf.DT_HALF: (np.dtype("<f2"), "half_val"),
    tf.DT_INT8: (np.dtype("i1"), "int_val"),
    tf.DT_INT16: (np.dtype("<i2"), "int_val"),
    tf.DT_INT32: (np.dtype("<i4"), "int_val"),
    tf.DT_INT64: (np.dtype("<i8"), "int64_val"),
    tf.DT_UINT8: (np.dtype("u1"), "int_val"),
    tf.DT_UINT16: (np.dtype("<u2"), "int_val"),
    tf.DT_UINT32: (np.dtype("<u4"), "uint32_val"),
    tf.DT_UINT64: (np.dtype("<u8"), "uint64_val"),
    tf.DT_BOOL: (np.dtype("?"), "bool_val"),
}
_BY_NUMPY = {np_dtype: dtype for dtype, (np_dtype, _) in _TYPES.items()}


def dtype_name(dtype: int) -> str:
    return tf.DataType.Name(dtype) if dtype in tf.DataType.values() else f"DataType({dtype})"


def numpy_dtype(dtype: int) -> np.dtype:
    if dtype not in _TYPES:
        supported = ", ".join(sorted(dtype_name(d) for d in _TYPES))
        raise InvalidArgument(f"unsupported tensor dtype {dtype_name(dtype)}; supported: {supported}")
    return _TYPES[dtype][0]


def data_type(np_dtype: np.dtype) -> int:
    try:
        return _BY_NUMPY[np.dtype(np_dtype)]
    except KeyError:
        raise InvalidArgument(f"no TensorFlow dtype for numpy {np.dtype(np_dtype)}") from None


def to_numpy(proto: tf.TensorProto, name: str = "tensor") -> np.ndarray:
    np_dtype = numpy_dtype(proto.dtype)
    if proto.tensor_shape.unknown_rank:
        raise InvalidArgument(f"{name}: tensor_shape must be known, got unknown_rank")
    shape = tuple(dim.size for dim in proto.tensor_shape.dim)
    if any(size < 0 for size in shape):
        raise InvalidArgument(f"{name}: tensor_shape sizes must be >= 0, got {list(shape)}")
    count = math.prod(shape)
    if count > MAX_ELEMENTS:
        raise ResourceExhausted(f"{name}: {count} elements exceeds the limit of {MAX_ELEMENTS}")
    if proto.tensor_content:
        expected = count * np_dtype.itemsize
        if len(proto.tensor_content) != expected:
            raise InvalidArgument(
                f"{name}: tensor_content has {len(proto.tensor_content)} bytes, expected {expected} "
                f"for shape {list(shape)} of {dtype_name(proto.dtype)}"
            )
        return np.frombuffer(proto.tensor_content, dtype=np_dtype).reshape(shape)
    values = getattr(proto, _TYPES[proto.dtype][1])
    # half_val carries float16 bit patterns in int32 slots
    array = np.asarray(values, dtype=np.uint16).view(np.float16) if proto.dtype == tf.DT_HALF else np.asarray(values, dtype=np_dtype)
    if array.size == count:
        return array.reshape(shape)
    if array.size == 1:  # TF fills the whole shape with a single given value
        return np.full(shape, array[0], dtype=np_dtype)
    raise InvalidArgument(f"{name}: {array.size} values in {_TYPES[proto.dtype][1]}, expected {count} for shape {list(shape)}")


def from_numpy(array: np.ndarray) -> tf.TensorProto:
    array = np.ascontiguousarray(array)
    if array.dtype.byteorder == ">":
        array = array.astype(array.dtype.newbyteorder("<"))
    proto = tf.TensorProto(dtype=data_type(array.dtype), tensor_content=array.tobytes())
    proto.tensor_shape.dim.extend(tf.TensorShapeProto.Dim(size=size) for size in array.shape)
    return proto
