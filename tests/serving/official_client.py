"""An independent TF Serving client: the official tensorflow-serving-api protos (with TensorFlow's own
tensor protos from min-tfs-client, no TensorFlow), run in its own process so that none of the model
server's code or protos are imported. Reads a JSON request on stdin, writes a JSON answer on stdout.

    {"target": "localhost:8500", "calls": [{"rpc": "predict", "model": "emotion", "version": null,
      "inputs": {"image": {"npy": "/tmp/faces.npy", "encoding": "tensor_content" | "float_val"}}}, ...]}
"""

import base64
import json
import sys

import grpc
import numpy as np
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2
from tensorflow_serving.apis import get_model_metadata_pb2, predict_pb2, prediction_service_pb2_grpc

NUMPY_TO_DT = {np.dtype("float32"): types_pb2.DT_FLOAT, np.dtype("float64"): types_pb2.DT_DOUBLE, np.dtype("int32"): types_pb2.DT_INT32}


def tensor(array: np.ndarray, encoding: str) -> tensor_pb2.TensorProto:
    shape = tensor_shape_pb2.TensorShapeProto(dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=s) for s in array.shape])
    proto = tensor_pb2.TensorProto(dtype=NUMPY_TO_DT[array.dtype], tensor_shape=shape)
    if encoding == "tensor_content":
        proto.tensor_content = array.tobytes()
    elif array.dtype == np.float32:
        proto.float_val.extend(array.ravel().tolist())
    else:
        proto.int_val.extend(array.ravel().tolist())
    return proto


def to_numpy(proto: tensor_pb2.TensorProto) -> np.ndarray:
    shape = [d.size for d in proto.tensor_shape.dim]
    if proto.tensor_content:
        return np.frombuffer(proto.tensor_content, dtype=np.float32).reshape(shape)
    return np.asarray(proto.float_val, dtype=np.float32).reshape(shape)


def entries(field) -> dict:
    """A proto map as a dict. min-tfs-client's older generated code makes the maps of its TF messages
    (SignatureDef.inputs) plain repeated key/value entries under the pure-Python protobuf runtime."""
    if hasattr(field, "keys"):
        return dict(field.items())
    return {entry.key: entry.value for entry in field}


def call(stub, spec: dict) -> dict:
    try:
        if spec["rpc"] == "predict":
            request = predict_pb2.PredictRequest()
            request.model_spec.name = spec["model"]
            if spec.get("version") is not None:
                request.model_spec.version.value = spec["version"]
            for name, source in spec["inputs"].items():
                request.inputs[name].CopyFrom(tensor(np.load(source["npy"]), source.get("encoding", "tensor_content")))
            response = stub.Predict(request, timeout=30)
            return {
                "code": "OK",
                "model_version": response.model_spec.version.value,
                "outputs": {k: base64.b64encode(to_numpy(v).astype("<f4").tobytes()).decode() for k, v in response.outputs.items()},
                "shapes": {k: [d.size for d in v.tensor_shape.dim] for k, v in response.outputs.items()},
            }
        if spec["rpc"] == "metadata":
            from google.protobuf import struct_pb2
            from google.protobuf.json_format import MessageToDict

            request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def", "emotion_detector"])
            request.model_spec.name = spec["model"]
            response = stub.GetModelMetadata(request, timeout=30)
            signatures = get_model_metadata_pb2.SignatureDefMap()
            response.metadata["signature_def"].Unpack(signatures)
            info = struct_pb2.Struct()
            response.metadata["emotion_detector"].Unpack(info)
            signature = entries(signatures.signature_def)["serving_default"]
            described = {
                direction: {
                    name: {"dtype": types_pb2.DataType.Name(t.dtype), "shape": [d.size for d in t.tensor_shape.dim]}
                    for name, t in entries(getattr(signature, direction)).items()
                }
                for direction in ("inputs", "outputs")
            }
            return {
                "code": "OK",
                "signature": described,
                "method_name": signature.method_name,
                "info": MessageToDict(info),
                "version": response.model_spec.version.value,
            }
    except grpc.RpcError as error:
        return {"code": error.code().name, "details": error.details()}
    raise ValueError(f"unknown rpc {spec['rpc']}")


def main() -> None:
    job = json.load(sys.stdin)
    with grpc.insecure_channel(job["target"]) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        json.dump([call(stub, spec) for spec in job["calls"]], sys.stdout)


if __name__ == "__main__":
    main()
