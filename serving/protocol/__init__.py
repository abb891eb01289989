"""The wire protocol the model server and its clients share, one copy imported by both sides:

- ``protos``: the TF Serving API subset (PredictionService, ModelService, TensorProto), compiled without TensorFlow;
- ``tensors``: TensorProto ⇄ numpy with TF's semantics;
- ``errors``: TF Serving's status codes as exceptions (and their HTTP statuses for REST);
- ``model_info``: the ``model.json`` schema each model ships beside its ``model.onnx`` (input size, channels,
  normalisation, labels, face-crop rules), which the server reads from disk and sends as model metadata.
"""
