"""Who is asking, and whether this request may do what it asks (DESIGN.md §2 "Auth").

Every request passes ``check`` before its view:
- **Origin**: a state-changing request or a live socket that a browser sent from another site (its ``Origin``
  is neither this server nor one of EMOTION_ALLOWED_ORIGINS) is refused, 403 ``origin_not_allowed``, whatever
  the auth mode: with auth off it is the only thing between a malicious page and this server's CPU.
- **Who**: ``Authorization: Bearer <key>`` (scripts), or the session cookie a page got by signing in with a
  key. With EMOTION_AUTH=required, none → 401 (pages redirect to /signin), a wrong or revoked key → 403.
  With auth off every request is the one local user (owner None: every video). A session is a row on the
  server (accounts/keys.py): signing out, "sign out everywhere" and revoking the key end it there, and it ends
  EMOTION_SESSION_LIFETIME_S after signing in. Valid keys and sessions are remembered briefly
  (accounts/recent.py), so a short database outage does not stop live and image analysis.
- **CSRF**: state-changing requests authenticated by the session cookie carry the page's CSRF token
  (Flask-WTF's): in the X-CSRFToken header (the pages' scripts), or as the ``csrf_token`` field of a small
  urlencoded form (the sign-out button). A multipart body is never read for it: uploads are streamed to disk
  by their views, and parsing the form here would consume them first. A bearer key cannot be sent by another
  site's page, so it needs none.
Rate limits (Flask-Limiter) count per API key and, separately, per client address.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, TypeVar, cast
from urllib.parse import urlsplit

from flask import Blueprint, Flask, g, redirect, render_template, request, session, url_for
from flask.typing import ResponseReturnValue
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_wtf.csrf import CSRFError, CSRFProtect, validate_csrf
from sqlalchemy.exc import DBAPIError
from wtforms import ValidationError

from emotion_detector.accounts.keys import Keys
from emotion_detector.settings import Settings
from emotion_detector.web import services
from emotion_detector.web.security import api_error

blueprint = Blueprint("auth", __name__)
csrf = CSRFProtect()
limiter = Limiter(key_func=get_remote_address, headers_enabled=True)

Limited = TypeVar("Limited", bound=Callable[..., Any] | Blueprint)
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# metrics.scrape checks its own token (web/metrics.py): an API key is a user's, not the operator's.
PUBLIC_ENDPOINTS = frozenset({"static", "favicon", "auth.signin", "api.health", "metrics.scrape"})
# Public, but a key (or a session) that comes along is looked at: the health check gives details to holders.
DETAILS_FOR_HOLDERS = frozenset({"api.health"})
SESSION_TOKEN = "sid"  # nosec B105  # the name of the cookie's entry holding the session token (accounts/keys.py)
SIGNIN_LIMIT = "20/minute"  # per address: keys are unguessable, this keeps the page from being a CPU sink


@dataclass(frozen=True)
class Principal:
    owner: str | None  # the API key's id; None when auth is off (one local user, every video)
    name: str
    via: Literal["bearer", "session", "none"]


ANONYMOUS = Principal(None, "", "none")


def principal() -> Principal:
    found: Principal = g.get("principal", ANONYMOUS)
    return found


def owner() -> str | None:
    """Whose videos this request may see."""
    return principal().owner


def by_key() -> str:
    return f"key:{principal().owner}"


def by_address() -> str:
    return f"addr:{get_remote_address()}"


def _without_key() -> bool:
    return principal().owner is None


def limited_per_key_and_address(limit: Callable[[], str]) -> Callable[[Limited], Limited]:
    """The same limit counted per API key and, apart, per client address (a request without a key counts
    for its address only). On a view, or on a blueprint (checked before its views run)."""
    keyed = limiter.limit(limit, key_func=by_key, exempt_when=_without_key)
    addressed = limiter.limit(limit, key_func=by_address)

    def apply(target: Limited) -> Limited:
        if isinstance(target, Blueprint):
            keyed(target)
            addressed(target)
            return target
        return cast(Limited, keyed(addressed(target)))

    return apply


def keys() -> Keys:
    found: Keys = services().keys
    return found


def install(app: Flask, settings: Settings) -> None:
    # Tokens live as long as the session (a page left open for hours still works); CSRF is checked in `check`
    # only where the session cookie is what authenticates.
    app.config.update(
        WTF_CSRF_CHECK_DEFAULT=False,
        WTF_CSRF_TIME_LIMIT=None,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.environment == "production",
        # The cookie ends with the server-side session (the server checks expires_at itself); not renewed by use.
        PERMANENT_SESSION_LIFETIME=dt.timedelta(seconds=settings.session_lifetime_s),
        SESSION_REFRESH_EACH_REQUEST=False,
        RATELIMIT_STORAGE_URI=settings.rate_limit_storage_url,
        # Redis (the counters' store in production) down must not stop analysis: the limits count in this
        # process's memory meanwhile (the store is tried again now and then), and any other failure of the
        # limiter lets the request through.
        RATELIMIT_IN_MEMORY_FALLBACK_ENABLED=True,
        RATELIMIT_SWALLOW_ERRORS=True,
    )
    csrf.init_app(app)
    app.before_request(check)  # before the limiter's own hook, so limits can count per key
    limiter.init_app(app)
    app.register_error_handler(CSRFError, _csrf_failed)
    app.register_blueprint(blueprint)

    @app.context_processor
    def signed_in() -> dict[str, Principal | str]:
        return {"principal": principal(), "session_hours": f"{settings.session_lifetime_s / 3600:g}"}


def _origin_allowed(origin: str) -> bool:
    origin = origin.strip().rstrip("/").lower()
    if origin in services().settings.allowed_origins:
        return True
    # This server's own pages: the host the browser addressed (the scheme may differ behind a TLS proxy).
    return urlsplit(origin).netloc == request.host.lower() and origin != "null"


def _wants_json() -> bool:
    # /api/docs is a page: it redirects to /signin like the others.
    return request.path.startswith(("/api/", "/ws/")) and not request.path.startswith("/api/docs")


def check() -> ResponseReturnValue | None:
    live_socket = request.path.startswith("/ws/")
    if request.method not in SAFE_METHODS or live_socket:
        origin = request.headers.get("Origin")
        if origin is not None and not _origin_allowed(origin):
            return api_error("origin_not_allowed", f"requests from {origin} are not accepted here", 403)
    if request.endpoint in DETAILS_FOR_HOLDERS:
        # Never refused, and answered during a database outage too: credentials that cannot be checked count as none.
        with contextlib.suppress(DBAPIError):
            found = _identify()
            if isinstance(found, Principal):
                g.principal = found
        return None
    if request.endpoint in PUBLIC_ENDPOINTS:
        return None
    found = _identify()
    if found is None:
        if _wants_json():
            message = "an API key is required: 'Authorization: Bearer <key>' (emotion-detector keys create NAME)"
            return api_error("unauthorized", message, 401, {"WWW-Authenticate": "Bearer"})
        return redirect(url_for("auth.signin", next=request.full_path.rstrip("?")))
    if not isinstance(found, Principal):
        return found
    g.principal = found
    if found.via == "session" and request.method not in SAFE_METHODS:
        _check_csrf_token()  # raises CSRFError
    return None


def _identify() -> Principal | ResponseReturnValue | None:
    """Who sent this request: a principal, an error to answer (a malformed or unknown key), or None (no
    credentials while auth is required)."""
    header = request.headers.get("Authorization")
    if header is not None:
        scheme, _, secret = header.strip().partition(" ")
        if scheme.lower() != "bearer" or not secret.strip():
            return api_error("unauthorized", "send the API key as 'Authorization: Bearer <key>'", 401, {"WWW-Authenticate": "Bearer"})
        key = keys().verify(secret.strip())
        if key is None:
            return api_error("forbidden", "this API key is unknown or revoked", 403)
        return Principal(key.key_id, key.name, "bearer")
    if services().settings.auth == "off":
        return ANONYMOUS
    token = session.get(SESSION_TOKEN)
    holder = keys().session(token) if isinstance(token, str) else None
    if holder is None:
        session.pop(SESSION_TOKEN, None)
        return None
    return Principal(holder.key_id, holder.name, "session")


CSRF_HEADER = "X-CSRFToken"
CSRF_FIELD = "csrf_token"


def _check_csrf_token() -> None:
    """Raises CSRFError unless the request carries this session's token, read without touching a streamed
    body (Flask-WTF's own protect() reads request.form, which parses and consumes a multipart upload). The
    Origin check in ``check`` stands in for its referrer check."""
    token = request.headers.get(CSRF_HEADER)
    if not token and request.mimetype == "application/x-www-form-urlencoded":
        token = request.form.get(CSRF_FIELD)  # a small form's body, bounded by MAX_CONTENT_LENGTH
    try:
        validate_csrf(token)
    except ValidationError as error:
        raise CSRFError(error.args[0]) from error


def _csrf_failed(exc: CSRFError) -> ResponseReturnValue:
    message = f"{exc.description} Reload the page and try again."
    if _wants_json():
        return api_error("csrf_failed", message, 400)
    return render_template("signin.html", problem=message, next=""), 400


def _local_path(target: str | None) -> str:
    """Where to go after signing in: a path on this server only (no open redirect). Judged as a browser reads
    it: browsers drop tabs and newlines anywhere in a URL ("/\\t/evil.example" is "//evil.example", another
    site), so every control character and space goes before the target is parsed (none belongs in our paths;
    a newline would also be refused as a header value: a 500)."""
    cleaned = "".join(ch for ch in target or "" if ch.isprintable() and not ch.isspace())
    parts = urlsplit(cleaned)
    if parts.scheme or parts.netloc or not parts.path.startswith("/") or cleaned.startswith("//") or "\\" in cleaned:
        return url_for("live.page")
    return cleaned


@blueprint.route("/signin", methods=["GET", "POST"])
@limiter.limit(SIGNIN_LIMIT, key_func=by_address, methods=["POST"])
def signin() -> ResponseReturnValue:
    target = _local_path(request.values.get("next"))
    if request.method == "GET":
        return render_template("signin.html", problem=None, next=target)
    csrf.protect()
    key = keys().verify(request.form.get("key", "").strip())
    if key is None:
        return render_template("signin.html", problem="That key is unknown or revoked.", next=target), 403
    token = keys().start_session(key, services().settings.session_lifetime_s)
    session.clear()  # a fresh session (and CSRF token) for the signed-in user
    session[SESSION_TOKEN] = token
    session.permanent = True
    return redirect(target)


@blueprint.post("/signout")
def signout() -> ResponseReturnValue:
    """End this browser's session on the server (a copy of the cookie stops working too), then forget it here.
    ``everywhere=1``: every session signed in with this key. A database outage answers 503 and keeps the
    cookie, so the sign-out can be tried again."""
    token, key_id = session.get(SESSION_TOKEN), principal().owner
    if request.form.get("everywhere") == "1" and key_id is not None:
        keys().end_sessions(key_id)
    elif isinstance(token, str):
        keys().end_session(token)
    session.clear()
    return redirect(url_for("auth.signin"))
