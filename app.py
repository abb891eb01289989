"""The web app factory under its checkout name, for the Procfile's ``gunicorn "app:create_app()"``.

The factory lives in the package (``emotion_detector.web.app``), so an installed package needs no checkout.
"""

from emotion_detector.web.app import Services, create_app

__all__ = ["Services", "create_app"]
