"""The web front end: the app factory (app.py), its blueprints, templates and static files."""

from __future__ import annotations

from flask import current_app


def services():
    """The Services object create_app attached to the running app."""
    return current_app.extensions["emotion_detector"]
