"""The OpenAPI 3.1 description of /api/v1 (``GET /api/v1/openapi.json``) and its browsable page (``/api/docs``).

Each API view declares itself with ``@operation(...)``: its query model (the same pydantic model validates the
query string, a mistake → 400 JSON), its request body and its responses (the pydantic models that shape the
JSON it answers with, or the media type of a file or stream). The description is built from those
declarations and the app's URL map, so it cannot drift from what the views do; tests/web/test_openapi.py fails
when an /api/v1 route has none, and runs schemathesis against it.

Request bodies are only described, never read here: the video upload streams its body itself (web/uploads.py).
The page is Swagger UI, served from the files of the flask-openapi3-swagger wheel (no CDN).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar, cast

from flask import Blueprint, Flask, abort, current_app, g, jsonify, render_template, request, send_from_directory
from flask.typing import ResponseReturnValue
from pydantic import BaseModel, ValidationError
from pydantic.json_schema import models_json_schema
from werkzeug.exceptions import BadRequest
from werkzeug.routing import Rule

from emotion_detector.web.security import ErrorBody

F = TypeVar("F", bound=Callable[..., ResponseReturnValue])
Q = TypeVar("Q", bound=BaseModel)
API_PREFIX = "/api/v1/"
SPEC_VERSION = "3.1.0"  # 3.1: pydantic's JSON Schema (2020-12) is used as it is
REF_TEMPLATE = "#/components/schemas/{model}"
SECURITY_SCHEME = "bearer"
SWAGGER_UI_FILES = frozenset({"js/swagger-ui-bundle.js", "js/swagger-ui-standalone-preset.js", "css/swagger-ui.css", "images/swagger.svg"})


BINARY: Mapping[str, Any] = {"type": "string", "format": "binary"}


@dataclass(frozen=True)
class Content:
    """A response or request body that is not a JSON model (a file, a stream, an upload): media type → schema."""

    schemas: Mapping[str, Mapping[str, Any]]
    models: tuple[type[BaseModel], ...] = ()  # the schemas' $refs (in components)

    @classmethod
    def binary(cls, *media_types: str) -> Content:
        return cls({media_type: BINARY for media_type in media_types})

    @classmethod
    def event_stream(cls, events: Mapping[str, type[BaseModel]]) -> Content:
        """Server-sent events, each named (``event:``) with a JSON ``data`` line of the given model."""
        data = {"type": "string", "contentMediaType": "application/json", "contentSchema": {"oneOf": [_ref(m) for m in events.values()]}}
        item = {
            "type": "object",
            "properties": {"event": {"enum": list(events)}, "id": {"type": "string"}, "data": data, "retry": {"type": "integer"}},
        }
        return cls({"text/event-stream": item}, tuple(events.values()))

    @classmethod
    def upload(cls, multipart_field: str, *raw_media_types: str) -> Content:
        """A file as the multipart field ``multipart_field``, or as the raw body of one of ``raw_media_types``."""
        multipart = {"type": "object", "properties": {multipart_field: BINARY}, "required": [multipart_field]}
        return cls({"multipart/form-data": multipart} | {media_type: BINARY for media_type in raw_media_types})


Body = type[BaseModel] | Content | None  # None: no body (204)

# What each error status means wherever it is listed (the body is always ErrorBody).
ERROR_DESCRIPTIONS = {
    400: "Bad request: a query parameter or the body is not what this operation takes",
    401: "No API key: send 'Authorization: Bearer <key>'",
    403: "The API key is unknown or revoked, or the request came from another site's page",
    404: "Not found (or not this key's)",
    409: "Conflict with the job's state",
    413: "The upload is larger than the server's limit",
    415: "The upload is not a supported image or video",
    416: "The requested range is outside the file",
    429: "Rate limited: see Retry-After",
    502: "The model server failed on this request",
    503: "A service this operation needs (the database, the model server) is unavailable: see Retry-After",
    507: "The server's storage is full: the upload was not stored",
}


RETRY_AFTER = {"Retry-After": "seconds to wait before trying again"}


@dataclass(frozen=True)
class Operation:
    summary: str
    tag: str
    responses: Mapping[int, tuple[str, Body]]  # status → (description, body)
    errors: frozenset[int]
    query: type[BaseModel] | None = None
    body: Content | None = None
    body_description: str = ""
    public: bool = False  # no API key needed (the health check)
    headers: Mapping[int, Mapping[str, str]] = field(default_factory=dict)  # status → response header → description


def operation(
    summary: str,
    *,
    tag: str,
    responses: Mapping[int, tuple[str, Body]],
    errors: Iterable[int] = (),
    query: type[BaseModel] | None = None,
    body: Content | None = None,
    body_description: str = "",
    public: bool = False,
    headers: Mapping[int, Mapping[str, str]] | None = None,
) -> Callable[[F], F]:
    """Declare a view for the OpenAPI description, and validate its query with ``query`` (read it back with
    ``parsed(Model)``). 401/403 are added unless ``public``; 400 with a query; 404 on paths with parameters."""
    implied = {400} if query else set()
    described = Operation(summary, tag, responses, frozenset(errors) | implied, query, body, body_description, public, headers or {})

    def decorate(view: F) -> F:
        @functools.wraps(view)
        def validated(*args: Any, **kwargs: Any) -> ResponseReturnValue:
            if query is not None:
                g.api_query = parse_query(query, request.args)
            return view(*args, **kwargs)

        validated.__openapi__ = described  # type: ignore[attr-defined]
        return cast(F, validated)

    return decorate


def parse_query(schema: type[Q], args: Mapping[str, str]) -> Q:
    """The query parameters ``schema`` names (an empty one counts as given: ``limit=`` is a mistake) → 400."""
    values = {name: args[name] for name in schema.model_fields if name in args}
    try:
        return schema.model_validate(values)
    except ValidationError as exc:
        # "limit: Input should be less than or equal to 1000 (got '5000')"
        problems = [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']} (got {e['input']!r})" for e in exc.errors()]
        raise BadRequest("; ".join(problems)) from None


def parsed(schema: type[Q]) -> Q:
    """The query that ``@operation(query=schema)`` validated for this request."""
    found = g.get("api_query")
    if not isinstance(found, schema):
        raise TypeError(f"the view must be declared with @operation(query={schema.__name__})")
    return found


def described(view: Callable[..., Any]) -> Operation | None:
    found = getattr(view, "__openapi__", None)
    return found if isinstance(found, Operation) else None


# ---- the description ---------------------------------------------------------------------------------


def api_rules(app: Flask) -> list[Rule]:
    return sorted((rule for rule in app.url_map.iter_rules() if rule.rule.startswith(API_PREFIX)), key=lambda r: r.rule)


RULE_ARGUMENT = re.compile(r"<(?:(?P<converter>\w+):)?(?P<name>\w+)>")


def _openapi_path(rule: Rule) -> str:
    # /api/v1/videos/<video_id:video_id> → /api/v1/videos/{video_id}
    return RULE_ARGUMENT.sub(lambda found: f"{{{found['name']}}}", rule.rule)


def _path_parameters(app: Flask, rule: Rule) -> list[dict[str, Any]]:
    """Each path argument, with the pattern its converter (web/ids.py) holds it to."""
    parameters = []
    for found in sorted(RULE_ARGUMENT.finditer(rule.rule), key=lambda found: found["name"]):
        schema: dict[str, Any] = {"type": "string"}
        converter = app.url_map.converters.get(found["converter"] or "default")
        if converter is not None and converter.regex != "[^/]+":
            schema["pattern"] = f"^{converter.regex}$"
        parameters.append({"name": found["name"], "in": "path", "required": True, "schema": schema})
    return parameters


def _query_parameters(schema: type[BaseModel], components: dict[str, Any]) -> list[dict[str, Any]]:
    found = schema.model_json_schema(mode="validation", ref_template=REF_TEMPLATE)
    components.update(found.pop("$defs", {}))
    required = set(found.get("required", []))
    parameters = []
    for name, prop in found.get("properties", {}).items():
        prop = dict(prop)
        # ``int | None = None``: absent means None; a query string cannot say null, so only the value is described.
        variants = [v for v in prop.pop("anyOf", []) if v.get("type") != "null"]
        if len(variants) == 1:
            prop.update(variants[0])
        elif variants:
            prop["anyOf"] = variants
        prop.pop("title", None)
        if prop.get("default", 0) is None:
            del prop["default"]
        parameter = {"name": name, "in": "query", "required": name in required, "schema": prop}
        if "description" in prop:
            parameter["description"] = prop.pop("description")
        parameters.append(parameter)
    return parameters


def _content(body: Body) -> dict[str, Any] | None:
    if body is None:
        return None
    if isinstance(body, Content):
        return {media_type: {"schema": dict(schema)} for media_type, schema in body.schemas.items()}
    return {"application/json": {"schema": _ref(body)}}


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": REF_TEMPLATE.format(model=model.__name__)}


def _models(operations: Iterable[Operation]) -> list[type[BaseModel]]:
    found: dict[str, type[BaseModel]] = {ErrorBody.__name__: ErrorBody}
    for op in operations:
        for _, body in op.responses.values():
            if isinstance(body, type):
                found[body.__name__] = body
            elif isinstance(body, Content):
                found.update((model.__name__, model) for model in body.models)
    return list(found.values())


def build_spec(app: Flask) -> dict[str, Any]:
    """The OpenAPI document of every /api/v1 route of ``app`` that is declared with ``@operation``."""
    paths: dict[str, dict[str, Any]] = {}
    declared: list[Operation] = []
    components: dict[str, Any] = {}
    for rule in api_rules(app):
        op = described(app.view_functions[rule.endpoint])
        if op is None:
            continue  # tests/web/test_openapi.py names it
        declared.append(op)
        parameters = _path_parameters(app, rule)
        if op.query is not None:
            parameters += _query_parameters(op.query, components)
        responses: dict[str, Any] = {}
        for status, (description, body) in sorted(op.responses.items()):
            responses[str(status)] = {"description": description} | ({"content": content} if (content := _content(body)) else {})
        errors = set(op.errors) | ({404} if rule.arguments else set()) | (set() if op.public else {401, 403})
        for status in sorted(errors - set(op.responses)):
            responses[str(status)] = {"description": ERROR_DESCRIPTIONS[status], "content": _content(ErrorBody)}
        for status, named in ({429: RETRY_AFTER, 503: RETRY_AFTER} | dict(op.headers)).items():
            if str(status) in responses:
                responses[str(status)]["headers"] = {
                    name: {"description": text, "schema": {"type": "string"}} for name, text in named.items()
                }
        entry: dict[str, Any] = {
            "operationId": rule.endpoint.replace(".", "_"),
            "summary": op.summary,
            "tags": [op.tag],
            "parameters": parameters,
            "responses": responses,
        }
        if op.body is not None:
            entry["requestBody"] = {"required": True, "description": op.body_description, "content": _content(op.body)}
        if op.public:
            entry["security"] = []
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            paths.setdefault(_openapi_path(rule), {})[method.lower()] = entry
    _, schemas = models_json_schema([(model, "serialization") for model in _models(declared)], ref_template=REF_TEMPLATE)
    components.update(schemas.get("$defs", {}))
    return {
        "openapi": SPEC_VERSION,
        "info": {
            "title": "Emotion Detector API",
            "version": "1",
            "description": (
                "Faces in images and videos: expression, apparent age and apparent gender; the edge devices' events. "
                "Every route but the health check needs an API key (`emotion-detector keys create NAME`) as "
                "'Authorization: Bearer <key>' when the server runs with EMOTION_AUTH=required. "
                'Errors are JSON: {"error": {"code", "message"}}.'
            ),
        },
        "servers": [{"url": "/"}],
        "paths": paths,
        "components": {
            "schemas": dict(sorted(components.items())),
            "securitySchemes": {SECURITY_SCHEME: {"type": "http", "scheme": "bearer", "description": "an API key"}},
        },
        "security": [{SECURITY_SCHEME: []}],
    }


# ---- routes ------------------------------------------------------------------------------------------

blueprint = Blueprint("docs", __name__)
SPEC_EXTENSION = "emotion_detector.openapi"


def swagger_ui_dir() -> Path:
    return Path(str(resources.files("flask_openapi3_swagger") / "templates" / "swagger"))


@blueprint.get("/api/v1/openapi.json")
@operation(
    "This description (OpenAPI 3.1)",
    tag="docs",
    responses={200: ("The OpenAPI document", Content({"application/json": {"type": "object"}}))},
)
def spec() -> ResponseReturnValue:
    if SPEC_EXTENSION not in current_app.extensions:  # built once, after every blueprint is registered
        current_app.extensions[SPEC_EXTENSION] = build_spec(current_app)
    return jsonify(current_app.extensions[SPEC_EXTENSION])


@blueprint.get("/api/docs")
def page() -> ResponseReturnValue:
    # Swagger UI renders under the pages' CSP as it is (no inline script or style; a browser test checks it).
    return render_template("api_docs.html")


@blueprint.get("/api/docs/swagger-ui/<path:filename>")
def swagger_ui(filename: str) -> ResponseReturnValue:
    if filename not in SWAGGER_UI_FILES:
        abort(404)
    return send_from_directory(swagger_ui_dir(), filename, max_age=3600)
