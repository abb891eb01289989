"""What every response of an exposed server carries, whatever route made it: security headers, and JSON
errors (never an HTML page) for any status under /api/ — an unknown API path or a wrong method included."""

from __future__ import annotations

import logging

from flask import Flask, Response, jsonify, request
from flask.typing import ResponseReturnValue
from pydantic import BaseModel, ConfigDict
from sqlalchemy.exc import DBAPIError
from werkzeug.exceptions import HTTPException

log = logging.getLogger(__name__)

# The pages load scripts, styles and pictures from this origin only (no CDN, no inline script); the live page's
# websocket and the API are same-origin too. frame-ancestors: no other site may frame a page (clickjacking).
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data: blob:",
        "media-src 'self' blob:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",  # frame-ancestors for browsers that predate it
    # Video ids in page URLs stay on this server. Not "no-referrer": under it browsers send "Origin: null" with
    # the pages' own POSTs (sign-in form, fetch), which the Origin check must refuse.
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(self), microphone=(), geolocation=()",
}
# Production is served over HTTPS (behind a TLS proxy): browsers must not fall back to plain HTTP for two years,
# on any subdomain. Not on a laptop, whose http://localhost must stay usable.
STRICT_TRANSPORT_SECURITY = "max-age=63072000; includeSubDomains"
CACHEABLE_ENDPOINTS = frozenset({"static", "openapi.swagger_ui"})
# Retry-After means "come back later": on a 429 or a 503 only (Flask-Limiter adds it to every answer it counts).
RETRY_AFTER_STATUSES = frozenset({429, 503})
ERROR_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    414: "uri_too_long",
    415: "unsupported_media_type",
    417: "expectation_failed",
    429: "rate_limited",
    431: "headers_too_large",
    500: "internal_error",
    501: "not_implemented",
    503: "unavailable",
    507: "storage_full",
}


class ErrorDetail(BaseModel):
    model_config = ConfigDict(frozen=True)

    code: str  # stable, for programs: "not_found", "unsupported_format", "rate_limited", ...
    message: str  # for people


class ErrorBody(BaseModel):
    """Every error under /api: ``{"error": {"code", "message"}}`` (DESIGN.md §2)."""

    model_config = ConfigDict(frozen=True)

    error: ErrorDetail

    @classmethod
    def of(cls, code: str, message: str) -> Response:
        return jsonify(cls(error=ErrorDetail(code=code, message=message)).model_dump(mode="json"))


def api_error(code: str, message: str, status: int, headers: dict[str, str] | None = None) -> ResponseReturnValue:
    return ErrorBody.of(code, message), status, headers or {}


def install(app: Flask, production: bool) -> None:
    # Registered before the limiter's hook, so this runs after it (Flask runs them in reverse).
    @app.after_request
    def security_headers(response: Response) -> Response:
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        if production:
            response.headers["Strict-Transport-Security"] = STRICT_TRANSPORT_SECURITY
        # Pages show a signed-in user's videos, answers carry results and reports: no cache (a browser's
        # back button, a shared proxy) keeps them, also where send_file said "no-cache" (stored, revalidated).
        # Static files are the same for everyone and may be kept.
        if request.endpoint not in CACHEABLE_ENDPOINTS:
            response.headers["Cache-Control"] = "no-store"
        if response.status_code not in RETRY_AFTER_STATUSES:
            response.headers.pop("Retry-After", None)
        return response

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> ResponseReturnValue:
        """Blueprints answer their own errors; this catches the rest (no route matched, a wrong method)."""
        if not request.path.startswith("/api/"):
            return exc
        return json_error(exc)

    app.register_error_handler(DBAPIError, database_unavailable)


def database_unavailable(exc: DBAPIError) -> ResponseReturnValue:
    """The database is unreachable or refused the statement: an outage, said as one, not a 500."""
    log.error("database error on %s: %s", request.path, exc.orig)
    message = "the database is unavailable; try again shortly"
    if request.path.startswith("/api/"):
        return ErrorBody.of("database_unavailable", message), 503, {"Retry-After": "5"}
    return message, 503, {"Content-Type": "text/plain; charset=utf-8", "Retry-After": "5"}


def json_error(exc: HTTPException) -> Response:
    """An HTTP error as the API's JSON error, keeping its headers (Allow on a 405, Retry-After on a 429)."""
    status = exc.code or 500
    code = ERROR_CODES.get(status, "bad_request" if status < 500 else "internal_error")
    response = ErrorBody.of(code, exc.description or exc.name)
    response.status_code = status
    for name, value in exc.get_headers():
        if name.lower() != "content-type":
            response.headers[name] = value
    return response
