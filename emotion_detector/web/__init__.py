"""The web front end: the app factory (app.py), its blueprints, templates and static files."""

from __future__ import annotations

from typing import TYPE_CHECKING

from flask import current_app

if TYPE_CHECKING:
    from app import Services


def services() -> Services:
    """The Services object create_app attached to the running app."""
    found: Services = current_app.extensions["emotion_detector"]
    return found
