"""Generated from the .proto files here by generate.sh; do not edit the *_pb2*.py files."""
