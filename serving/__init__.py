"""Model server: emotion, age and gender models behind the TensorFlow Serving Predict API (gRPC + REST)."""

from pathlib import Path

# The models this project trained and ships (model.onnx, model.json, MODEL_CARD.md per version), installed as
# package data: found beside this file in a checkout and in site-packages alike.
SHIPPED_MODELS = Path(__file__).parent / "models"
