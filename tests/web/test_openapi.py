"""The OpenAPI description (GET /api/v1/openapi.json) and its page (/api/docs) on the app factory: a valid
OpenAPI 3.1 document naming every /api/v1 route, a page with no external source, and a schemathesis run of
every operation with a real API key: no server error, every answer as the description says."""

from __future__ import annotations

import re
import tempfile
import threading
from pathlib import Path

import jsonschema
import pytest
import schemathesis
from flask import Flask
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.configuration import set_hypothesis_home_dir
from hypothesis.errors import Unsatisfiable
from openapi_spec_validator import validate
from schemathesis import Case, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance, status_code_conformance
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait
from werkzeug.serving import make_server

from app import create_app
from emotion_detector.edge.messages import DeviceState, EventType
from emotion_detector.edge.models import Device, EdgeEvent
from emotion_detector.web import services
from emotion_detector.web.dashboard import StreamTiming
from emotion_detector.web.openapi import api_rules, described
from emotion_detector.web.security import CONTENT_SECURITY_POLICY
from tests.browser import ARTIFACTS, chromium
from tests.conftest import free_port

# Hypothesis keeps caches (constants, unicode data) in ./.hypothesis even without an example database: not in the checkout.
set_hypothesis_home_dir(Path(tempfile.gettempdir()) / "emotion-detector-hypothesis")
SPEC_URL = "/api/v1/openapi.json"
HIGH_LIMIT = "100000/minute"  # schemathesis sends many requests from one address and key
T0_MS = 1_789_999_200_000
FACE = {
    "box": [1.0, 2.0, 30.0, 40.0],
    "score": 0.9,
    "emotion": {"label": "happy", "confidence": 0.8, "uncertain": False, "probabilities": {"happy": 0.8, "neutral": 0.2}},
    "age": {"years": 30.0},
    "gender": {"label": "female", "confidence": 0.7},
}


def make_app(tmp: Path) -> Flask:
    database = f"sqlite:///{tmp / 'emotion-detector.db'}"  # its own (conftest's environment names a shared one)
    app = create_app(
        {
            "model_server": "inprocess",
            "environment": "test",
            "auth": "required",
            "database_url": database,
            "storage_dir": tmp / "videos",
            "rate_limit_analyze": HIGH_LIMIT,
            "rate_limit_upload": HIGH_LIMIT,
        }
    )
    # The live feed ends at once: the test client reads a response to its end.
    app.config["DASHBOARD_STREAM"] = StreamTiming(poll_s=0.0, heartbeat_s=0.0, max_s=0.0)
    return app


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Flask:
    app = make_app(tmp_path_factory.mktemp("openapi"))
    with app.app_context(), services().videos.sessions.begin() as session:  # a device with events: 200s with data
        session.add(Device(device_id="cam-1", state=DeviceState.ONLINE, last_seen_ms=T0_MS, version="1.0", dropped_events=0))
        for seq in range(1, 4):
            session.add(
                EdgeEvent(
                    event_id=f"cam-1-{seq}",
                    device_id="cam-1",
                    seq=seq,
                    type=EventType.TRACK_UPDATE,
                    timestamp_ms=T0_MS + seq * 1000,
                    track_id=1,
                    seen_ms=1500,
                    emotion="happy",
                    face=FACE,
                    received_ms=T0_MS + seq * 1000 + 20,
                )
            )
    return app


@pytest.fixture(scope="module")
def bearer(app: Flask) -> dict[str, str]:
    with app.app_context():
        return {"Authorization": f"Bearer {services().keys.create('schemathesis').secret}"}


@pytest.fixture(scope="module")
def spec(app: Flask, bearer: dict[str, str]) -> dict:
    answer = app.test_client().get(SPEC_URL, headers=bearer)
    assert answer.status_code == 200 and answer.mimetype == "application/json"
    return answer.get_json()


def test_the_description_is_valid_openapi_3(spec):
    validate(spec)  # raises on an invalid document
    assert spec["openapi"].startswith("3.")


def test_every_api_route_is_described(app, spec):
    undeclared = [rule.rule for rule in api_rules(app) if described(app.view_functions[rule.endpoint]) is None]
    assert undeclared == [], "declare these views with @operation (emotion_detector/web/openapi.py)"
    for rule in api_rules(app):
        path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule)
        methods = {m.lower() for m in rule.methods or ()} - {"head", "options"}
        assert path in spec["paths"] and methods <= set(spec["paths"][path]), (path, methods)


def test_path_ids_carry_the_pattern_routing_holds_them_to(spec):
    video = {"name": "video_id", "in": "path", "required": True, "schema": {"type": "string", "pattern": "^[0-9a-f]{32}$"}}
    assert video in spec["paths"]["/api/v1/videos/{video_id}/results"]["get"]["parameters"]
    device = spec["paths"]["/api/v1/devices/{device_id}/mix"]["get"]["parameters"][0]
    assert device["name"] == "device_id" and device["schema"]["pattern"].startswith("^[A-Za-z0-9]")


def test_every_route_but_health_needs_the_api_key(spec):
    assert spec["components"]["securitySchemes"]["bearer"] == {"type": "http", "scheme": "bearer", "description": "an API key"}
    assert spec["security"] == [{"bearer": []}]
    public = {(path, method) for path, ops in spec["paths"].items() for method, op in ops.items() if op.get("security") == []}
    assert public == {("/api/v1/health", "get")}
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            if (path, method) not in public:
                assert {"401", "403"} <= set(op["responses"]), (path, method)


def test_errors_files_and_streams_are_described_with_their_types(spec):
    paths = spec["paths"]
    error = {"$ref": "#/components/schemas/ErrorBody"}
    assert paths["/api/v1/videos/{video_id}"]["get"]["responses"]["404"]["content"]["application/json"]["schema"] == error
    assert "text/csv" in paths["/api/v1/videos/{video_id}/results.csv"]["get"]["responses"]["200"]["content"]
    assert "video/mp4" in paths["/api/v1/videos/{video_id}/annotated"]["get"]["responses"]["206"]["content"]
    assert "text/event-stream" in paths["/api/v1/events/stream"]["get"]["responses"]["200"]["content"]
    upload = paths["/api/v1/videos"]["post"]
    assert upload["requestBody"]["content"]["multipart/form-data"]["schema"]["properties"]["video"]["format"] == "binary"
    assert {"413", "415", "429"} <= set(upload["responses"])
    analyze = paths["/api/v1/analyze"]["post"]
    assert analyze["responses"]["200"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ImageAnalysis"}
    assert [p["name"] for p in analyze["parameters"]] == ["detect"]


def test_the_description_needs_the_key_like_the_rest(app):
    answer = app.test_client().get(SPEC_URL)
    assert answer.status_code == 401 and answer.get_json()["error"]["code"] == "unauthorized"


def test_the_docs_page_loads_nothing_from_elsewhere(app, bearer):
    client = app.test_client()
    signed_out = client.get("/api/docs")
    assert signed_out.status_code == 302 and "/signin" in signed_out.headers["Location"]  # a page, not a JSON 401
    answer = client.get("/api/docs", headers=bearer)
    assert answer.status_code == 200
    page = answer.get_data(as_text=True)
    assert answer.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY  # the pages' own: nothing relaxed
    assert not re.search(r"(src|href)=\"(https?:)?//", page), "no CDN"
    assert not re.search(r"<script>|<script [^>]*>[^<]", page), "no inline script (CSP)"
    for source in re.findall(r"(?:src|href)=\"(/[^\"]+)\"", page):
        assert client.get(source, headers=bearer).status_code == 200, source
    script = client.get("/static/api_docs.js", headers=bearer).get_data(as_text=True)
    assert "validatorUrl: null" in script and "http" not in script
    assert client.get("/api/docs/swagger-ui/../../openapi.py", headers=bearer).status_code == 404


# ---- schemathesis ------------------------------------------------------------------------------------


# schemathesis's own pytest integration (from_fixture) does not run on pytest 9 (it reads a removed private
# attribute), so each operation's strategy is drawn here with hypothesis directly.
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
EXAMPLES_PER_OPERATION = 15


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=["valid", "invalid"])
def test_the_api_answers_as_described(app, bearer, mode):
    api = schemathesis.openapi.from_wsgi(SPEC_URL, app, headers=dict(bearer))
    operations = [result.ok() for result in api.get_all_operations()]
    assert len(operations) >= 14
    failures = {}
    for operation in operations:

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            database=None,  # nothing written into the checkout
            derandomize=True,  # the same examples every run
            suppress_health_check=list(HealthCheck),
            phases=[Phase.explicit, Phase.generate],  # no shrinking: the first failure is reported as it is
        )
        def answers_as_described(case: Case) -> None:
            case.call_and_validate(headers=dict(bearer), checks=CHECKS)

        try:
            answers_as_described()
        except Unsatisfiable:  # nothing in it can be invalid (no parameters, no body): the health check
            assert mode is GenerationMode.NEGATIVE
        except Exception as exc:  # every operation runs; all failures are reported together
            failures[operation.label] = f"{type(exc).__name__}: {exc}"[:3000]
    assert failures == {}


def test_an_analysed_face_is_what_the_description_says(app, bearer, spec, shared_dir):
    image = next((shared_dir / "media" / "images").glob("*.jpg")).read_bytes()
    answer = app.test_client().post("/api/v1/analyze?detect=false", data=image, headers=bearer)
    assert answer.status_code == 200
    body = answer.get_json()
    schema = {"$ref": "#/components/schemas/ImageAnalysis", "components": spec["components"]}
    jsonschema.Draft202012Validator(schema).validate(body)  # raises on a mismatch
    (face,) = body["faces"]
    assert set(face) == {"box", "score", "emotion", "age", "gender"}  # the wire format of DESIGN.md §2 (no id for images)


@pytest.mark.slow
def test_the_docs_page_renders_in_a_browser_under_the_content_security_policy(tmp_path):
    app = create_app(
        {"model_server": "inprocess", "environment": "test", "auth": "off", "database_url": f"sqlite:///{tmp_path / 'db.sqlite'}"}
    )
    server = make_server("127.0.0.1", free_port(), app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    browser = chromium(tmp_path, camera=None, allow_camera=False)
    try:
        browser.get(f"http://127.0.0.1:{server.server_port}/api/docs")
        WebDriverWait(browser, 20).until(lambda b: len(b.find_elements(By.CSS_SELECTOR, ".opblock")) >= 14)
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        browser.save_screenshot(str(ARTIFACTS / "api-docs-chromium.png"))
        problems = [e["message"] for e in browser.get_log("browser") if e["level"] == "SEVERE" and "favicon.ico" not in e["message"]]
        assert problems == []  # a CSP violation is logged as SEVERE
    finally:
        browser.quit()
        server.shutdown()
        thread.join()


def test_a_video_job_answers_as_described_through_its_life(app, bearer, shared_dir):
    """Random ids only reach the 404s: one real job (never run: no worker here) reaches the rest."""
    api = schemathesis.openapi.from_wsgi(SPEC_URL, app, headers=dict(bearer))

    def call(method: str, path: str, status: int, **case: object) -> dict | None:
        answer = api[path][method].Case(headers=dict(bearer), **case).call_and_validate(checks=CHECKS)
        assert answer.status_code == status, (method, path, answer.text)
        return answer.json() if answer.content else None

    video = (shared_dir / "media" / "videos" / "single_face.mp4").read_bytes()
    created = call(
        "POST",
        "/api/v1/videos",
        202,
        body=video,
        media_type="application/octet-stream",
        query={"filename": "clip.mp4", "every_n_frames": 5},
    )
    job = {"video_id": created["id"]}
    assert call("GET", "/api/v1/videos/{video_id}", 200, path_parameters=job)["status"] == "queued"
    assert created["id"] in [v["id"] for v in call("GET", "/api/v1/videos", 200)["videos"]]
    for path in ("/results", "/results.csv", "/annotated", "/report.html", "/report.pdf"):
        assert call("GET", f"/api/v1/videos/{{video_id}}{path}", 409, path_parameters=job)["error"]["code"] == "conflict"
    assert call("POST", "/api/v1/videos/{video_id}/retry", 409, path_parameters=job)["error"]["code"] == "conflict"
    assert call("POST", "/api/v1/videos/{video_id}/cancel", 200, path_parameters=job)["status"] == "cancelled"
    assert call("POST", "/api/v1/videos/{video_id}/retry", 202, path_parameters=job)["status"] == "queued"
    call("DELETE", "/api/v1/videos/{video_id}", 204, path_parameters=job)
    assert call("GET", "/api/v1/videos/{video_id}", 404, path_parameters=job)["error"]["code"] == "not_found"
