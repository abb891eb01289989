"""The image page, ``/images``: drop one or more pictures and see each face's box, expression, apparent age and
gender. The page itself analyses nothing: its script posts every image to ``POST /api/v1/analyze``
(emotion_detector/web/api.py), draws the answers over the picture and offers them all as one JSON download."""

from __future__ import annotations

from flask import Blueprint, render_template
from flask.typing import ResponseReturnValue

from emotion_detector.web import services

blueprint = Blueprint("images", __name__)


@blueprint.get("/images")
def page() -> ResponseReturnValue:
    return render_template("images.html", max_image_bytes=services().settings.max_image_bytes)
