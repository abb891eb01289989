#!/usr/bin/env bash
# Regenerates the committed *_pb2*.py files from the .proto sources here (needs grpcio-tools, pinned in
# requirements-dev.txt; the protobuf runtime in requirements.txt must be the same major version).
set -euo pipefail
cd "$(dirname "$0")/../../.."
python -m grpc_tools.protoc -I . --python_out=. --pyi_out=. \
  serving/protocol/protos/tensorflow_error.proto serving/protocol/protos/tensorflow_framework.proto
python -m grpc_tools.protoc -I . --python_out=. --pyi_out=. --grpc_python_out=. serving/protocol/protos/tensorflow_serving.proto
