"""Emotion Detector: face detection, tracking and expression / age / gender analysis."""
