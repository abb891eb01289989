"""Training pipeline for the emotion, age and gender models (see training/README.md)."""
