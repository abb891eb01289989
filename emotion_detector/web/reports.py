"""A finished video's report to share (DESIGN.md §2, video jobs), for the result page's export buttons and
for scripts:

GET /api/v1/videos/<id>/report.html   one self-contained page (charts inline, no scripts, nothing fetched)
GET /api/v1/videos/<id>/report.pdf    the same content as a PDF
    ?download=1: as an attachment named after the video (``clip-report.pdf``); else shown in the browser

Owner-scoped like every video route (another key gets 404); 409 while the job is not done.
"""

from __future__ import annotations

import functools
import io

from flask import Blueprint, send_file
from flask.typing import ResponseReturnValue
from pydantic import BaseModel, ConfigDict

from emotion_detector.videos.report import Report, build_report, report_html, report_pdf
from emotion_detector.videos.service import Conflict, NotFound
from emotion_detector.web.auth import owner
from emotion_detector.web.native import run_on_native_thread
from emotion_detector.web.openapi import Content, operation, parsed
from emotion_detector.web.videos import conflict, not_found, service

blueprint = Blueprint("reports", __name__)
blueprint.register_error_handler(NotFound, not_found)
blueprint.register_error_handler(Conflict, conflict)

# The report is a document, not a page of this app: it needs its inline styles and drawings, and nothing else
# (no script, no request to anywhere), also when opened from this server.
REPORT_CONTENT_SECURITY_POLICY = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


class ReportQuery(BaseModel):
    model_config = ConfigDict(frozen=True)

    download: bool = False  # true: as an attachment named after the video


def _report(video_id: str) -> tuple[Report, str]:
    results = service().results(video_id, owner=owner())  # NotFound (404) for another key, Conflict (409) until done
    stem = results.video.filename.rsplit(".", 1)[0] or "video"
    return build_report(results), f"{stem}-report"


def _answer(content: bytes, mimetype: str, name: str) -> ResponseReturnValue:
    response = send_file(io.BytesIO(content), mimetype=mimetype, as_attachment=parsed(ReportQuery).download, download_name=name)
    response.headers["Content-Security-Policy"] = REPORT_CONTENT_SECURITY_POLICY
    response.headers["Cache-Control"] = "no-store"  # a private document: not kept by shared caches
    return response


@blueprint.get("/api/v1/videos/<video_id:video_id>/report.html")
@operation(
    "A finished video's report as one self-contained HTML page (charts inline, no scripts, nothing fetched)",
    tag="videos",
    query=ReportQuery,
    responses={200: ("The report", Content.binary("text/html"))},
    errors=(409, 503),
)
def html(video_id: str) -> ResponseReturnValue:
    report, stem = _report(video_id)
    return _answer(report_html(report).encode("utf-8"), "text/html", f"{stem}.html")


@blueprint.get("/api/v1/videos/<video_id:video_id>/report.pdf")
@operation(
    "A finished video's report as a PDF (the same content as report.html)",
    tag="videos",
    query=ReportQuery,
    responses={200: ("The report", Content.binary("application/pdf"))},
    errors=(409, 503),
)
def pdf(video_id: str) -> ResponseReturnValue:
    report, stem = _report(video_id)
    # Laying out the PDF takes CPU for a while (long videos, many people): off the gevent loop, like uploads.
    content = run_on_native_thread(functools.partial(report_pdf, report))
    return _answer(content, "application/pdf", f"{stem}.pdf")
