"""Model server: emotion, age and gender models behind the TensorFlow Serving Predict API (gRPC + REST)."""
