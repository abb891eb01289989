"""Reports to share (issue 19): a real video analysed by the job's own steps in this process (the web app's
upload, then the queued start / segment / render / finalise tasks run one after the other here, as a worker
would), then its HTML report (self-contained: nothing fetched, no script) and PDF report (every page
rendered with PDFium and read back), through the builder and through the owner-scoped API routes."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from xml.etree import ElementTree

import numpy as np
import pypdfium2 as pdfium
import pytest

from app import create_app
from emotion_detector.videos import charts, jobs
from emotion_detector.videos.leases import Database
from emotion_detector.videos.report import (
    NOTICE,
    UNKNOWN_EVALUATION,
    build_report,
    held_out_evaluation,
    model_evaluations,
    report_html,
    report_pdf,
)
from emotion_detector.videos.schemas import VideoResults
from emotion_detector.web import services
from tests.videos.conftest import embedded_settings

TWO_PEOPLE = "head-pose-face-detection-female-and-male.mp4"  # 56 frames at 12.5 fps; both people in every frame
API = "/api/v1/videos"


@dataclass
class Analysed:
    app: Any  # flask.Flask
    alice: dict[str, str]
    bob: dict[str, str]
    video_id: str
    results: VideoResults
    queued: list[tuple[Any, tuple[Any, ...]]]  # the tasks queued and not yet run
    video_bytes: bytes


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


@pytest.fixture(scope="module")
def analysed(tmp_path_factory, shared_dir) -> Iterator[Analysed]:
    tmp = tmp_path_factory.mktemp("reports")
    # segment_seconds: more than one segment, so people are joined across them, as in production
    app = create_app(embedded_settings(tmp, environment="test", auth="required", segment_seconds=2))
    with app.app_context():
        built = services()
        alice, bob = bearer(built.keys.create("alice").secret), bearer(built.keys.create("bob").secret)
    queued: list[tuple[Any, tuple[Any, ...]]] = []

    def run_queued() -> None:
        while queued:
            task, args = queued.pop(0)
            task(*args)

    with pytest.MonkeyPatch.context() as patch:
        # The tasks a worker would take from the queue are run here, in order, on this app's database and models.
        for task in (jobs.start, jobs.segment, jobs.render, jobs.finalise):
            patch.setattr(task, "delay", lambda *args, task=task: queued.append((task, args)))
        patch.setattr(jobs, "database", lambda: Database(built.settings, built.videos.sessions))
        patch.setattr(jobs, "context", lambda: jobs.WorkerContext(built.settings, built.videos.sessions, built.analyzer))
        client = app.test_client()
        video_bytes = (shared_dir / "media" / "videos" / TWO_PEOPLE).read_bytes()
        answer = client.post(f"{API}?filename=two people.mp4", data=video_bytes, headers=alice)
        assert answer.status_code == 202, answer.get_json()
        video_id = answer.get_json()["id"]
        run_queued()
        assert client.get(f"{API}/{video_id}", headers=alice).get_json()["status"] == "done"
        results = built.videos.results(video_id, owner=None)
        yield Analysed(app, alice, bob, video_id, results, queued, video_bytes)


@pytest.fixture(scope="module")
def page(analysed) -> str:
    return report_html(build_report(analysed.results))


@pytest.fixture(scope="module")
def pdf_pages(analysed) -> list[tuple[np.ndarray, str]]:
    return rendered(report_pdf(build_report(analysed.results)))


def rendered(pdf: bytes) -> list[tuple[np.ndarray, str]]:
    """Each page as PDFium draws it (RGB pixels) with its text."""
    document = pdfium.PdfDocument(pdf)
    pages = []
    for page in document:
        image = np.asarray(page.render(scale=1.0).to_pil().convert("RGB"))
        pages.append((image, page.get_textpage().get_text_range()))
    return pages


def visible(text: str) -> str:
    """Text as a reader sees it: the HTML's tags dropped and every run of white space one space."""
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", text)).split())


# ---- the analysed video (what the reports are made of) -------------------------------------------------


def test_the_video_was_analysed_for_real_into_two_people(analysed):
    people = [p for p in analysed.results.people if p.main]
    assert len(people) == 2 and all(p.frames_seen >= 45 for p in people)
    assert analysed.results.video.model_dump()["models"]  # the versions the report names


# ---- HTML --------------------------------------------------------------------------------------------


def test_the_html_report_fetches_nothing_and_runs_no_script(page):
    assert "<script" not in page.lower()
    assert not re.search(r"""(src|href|xlink:href)\s*=\s*["']?\s*(https?:)?//""", page, re.IGNORECASE)
    assert not re.search(r"https?://", page)  # not even the SVG namespace: inline SVG needs none
    assert not re.search(r"url\(|@import|<link|<iframe|<object|<embed|<img", page, re.IGNORECASE)
    assert """<meta http-equiv="Content-Security-Policy" content="default-src 'none';""" in page  # opened from disk too
    assert page.count("<svg") == 1 + 2 * 2  # the group mix, and per person the timeline and the shares


def test_the_html_report_shows_the_notice_models_people_and_charts(page, analysed):
    text = visible(page)
    assert NOTICE in text
    for name, version in analysed.results.video.model_dump()["models"].items():
        assert re.search(rf"{name}\s*</td>\s*<td>{version}</td>", page), (name, version)
    assert "On FER2013 PublicTest" in text and "%" in text  # the emotion model's held-out figures, from its card
    # Charts: a time axis in seconds with its tick labels, a probability axis, and a legend of the expressions.
    for tick in ("0 s", "1 s", "2 s", "3 s", "4 s", "time (s)"):
        assert f">{tick}</text>" in page, tick
    for expression in ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"):
        assert f">{expression}</text>" in page
    assert page.count("<polyline") >= 2 * 7  # a line per expression per person
    for person in analysed.results.people:
        assert f"Person {person.id}" in text and f"{person.frames_seen} (" in text
    assert "two people.mp4" in text and "480 x 270 pixels" in text


def test_the_person_rule_brief_detections_shot_cuts_and_affect_are_shown(analysed):
    data = analysed.results.to_json()
    data["video"] |= {
        "person_rule": {"min_seen_s": 1.5, "min_mean_score": 0.6},
        "people_counted": 1,
        "brief_detections": 1,
        "shot_cuts_s": [2.2],
    }
    for person, counted, valence in zip(data["people"], (True, False), (0.25, -0.5), strict=False):
        person |= {"counted": counted, "valence_mean": valence, "arousal_mean": -0.1}
    extended = VideoResults.model_validate(data)
    report = build_report(extended)
    text = visible(report_html(report))
    assert "at least 1.5 s with a mean detection score of at least 0.6" in text
    assert "Brief detections (not counted as people)" in text
    assert ("People", "1") in report.facts and ("Shot cuts", "1: 2.2 s") in report.facts
    assert len(report.sections) == 1 and report.brief is not None and len(report.brief.rows) == 1
    assert "stroke-dasharray" in report.sections[0].timeline.svg and "dashed: shot cut" in text
    assert "Valence / arousal" in report.people.header
    assert "+0.25 / -0.10" in report.people.rows[0] and "Mean valence +0.25, arousal -0.10" in report.sections[0].summary


# ---- PDF ---------------------------------------------------------------------------------------------


def test_the_pdf_report_renders_every_page_with_the_notice_and_the_people(pdf_pages, analysed):
    assert 2 <= len(pdf_pages) <= 4  # the title page with the tables and the group mix, then the two people
    for image, _ in pdf_pages:
        assert image.shape[0] > image.shape[1] > 500  # A4 portrait
        ink = (image < 200).any(axis=2).mean()
        assert 0.005 < ink < 0.5, ink  # drawn on, not blank, not a black page
        assert len(np.unique(image.reshape(-1, 3), axis=0)) > 20  # colours of the charts and text, not one fill
    text = " ".join(page_text for _, page_text in pdf_pages)
    flat = " ".join(text.split())
    assert " ".join(NOTICE.split()) in flat
    header = " ".join(build_report(analysed.results).people.header)  # with valence / arousal once the results carry them
    assert header.startswith("Person In view Frames seen Most common expression") and header.endswith("Apparent age Apparent gender")
    assert header in flat  # the people's table
    for person in analysed.results.people:  # a row each, and a section each
        row = f"{person.id} {person.first_seen_s:.1f}-{person.last_seen_s:.1f} s {person.frames_seen} ("
        assert row in flat and f"{person.age.mean_years:.0f} +/- {person.age.std_years:.0f} years" in flat, row
        assert f"Person {person.id} In view" in flat
    for tick in ("0 s", "2 s", "4 s", "time (s)", "neutral", "happy"):
        assert tick in flat
    assert "age_gender" in flat and "emotion" in flat and "On FER2013 PublicTest" in flat


def test_the_pdf_charts_are_drawn_in_colour(pdf_pages):
    """The SVG charts come out as drawings: the expression colours of the charts are on the pages."""
    pixels = np.concatenate([image.reshape(-1, 3) for image, _ in pdf_pages])
    neutral = np.array([0x8B, 0x8D, 0x98])
    assert (np.abs(pixels.astype(int) - neutral).sum(axis=1) < 12).sum() > 500  # the neutral bars and lines


def test_a_video_without_people_still_makes_both_reports(analysed):
    data = analysed.results.to_json()
    data["people"] = []
    data["group_mix"] = [{**b, "faces": 0, "share": dict.fromkeys(b["share"], 0.0)} for b in data["group_mix"]]
    report = build_report(VideoResults.model_validate(data))
    assert "No person was found in this video." in visible(report_html(report))
    pages = rendered(report_pdf(report))
    assert len(pages) == 1 and "No person was found" in pages[0][1]


def test_names_outside_latin1_are_escaped_in_html_and_spelled_in_the_pdf(analysed):
    data = analysed.results.to_json()
    data["video"]["filename"] = "Gespräch – 東京 <b>.mp4"
    report = build_report(VideoResults.model_validate(data))
    page = report_html(report)
    assert "Gespräch – 東京 &lt;b&gt;.mp4" in page and "<b>" not in page
    text = " ".join(page_text for _, page_text in rendered(report_pdf(report)))
    assert "Gespräch - ?? <b>.mp4" in text


# ---- model cards ---------------------------------------------------------------------------------------


def test_each_models_held_out_figures_come_from_its_model_card(tmp_path):
    found = {m.name: m for m in model_evaluations({"emotion": 4, "age_gender": 3, "gender": 99})}
    assert found["emotion"].held_out.startswith("On FER2013 PublicTest (n = 3589): FER+ majority label 83.31 %")
    assert "Baseline" not in found["emotion"].held_out and "**" not in found["emotion"].held_out
    assert "age MAE 5.03 years" in found["age_gender"].held_out and "gender accuracy 94.12 %" in found["age_gender"].held_out
    assert found["gender"].held_out == UNKNOWN_EVALUATION  # no such version shipped
    assert held_out_evaluation("# Model card\n## Evaluation (held-out data)\n\n## Limitations\n") is None


# ---- charts --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("duration_s", "ticks"),
    [
        (4.5, [0, 1, 2, 3, 4]),
        (10, [0, 2, 4, 6, 8, 10]),
        (95, [0, 20, 40, 60, 80]),
        (1800, [0, 500, 1000, 1500]),
        (0.3, [0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3]),
    ],
)
def test_time_ticks_fall_on_round_seconds(duration_s, ticks):
    assert charts.time_ticks(duration_s) == pytest.approx(ticks)


@pytest.mark.parametrize(("seconds", "label"), [(0, "0 s"), (2.5, "2.5 s"), (0.05, "0.05 s"), (90, "90 s"), (1200, "1200 s")])
def test_tick_labels(seconds, label):
    assert charts.tick_label(seconds) == label


def test_every_chart_is_well_formed_svg_of_the_charts_width(analysed):
    report = build_report(analysed.results)
    drawings = [report.group_mix, *(c for section in report.sections for c in (section.timeline, section.shares))]
    for chart in drawings:
        root = ElementTree.fromstring(chart.svg)
        assert root.tag == "{http://www.w3.org/2000/svg}svg" and root.get("width") == str(charts.WIDTH)
        assert {element.tag.split("}")[1] for element in root.iter()} <= {"svg", "title", "line", "polyline", "rect", "text"}


def test_a_timeline_leaves_gaps_open_and_keeps_long_videos_small():
    times = [i / 10 for i in range(50)] + [20 + i / 10 for i in range(50)]  # out of view from 5 s to 20 s
    svg = charts.expression_timeline(times, {"happy": [0.5] * 100}, 30.0)
    assert svg.count("<polyline") == 2
    long = charts.expression_timeline([i / 30 for i in range(30 * 600)], {"happy": [0.5] * 18000}, 600.0)
    assert long.count(",") <= charts.MAX_POINTS + 10 and len(long) < 40_000
    with pytest.raises(ValueError, match="one probability per time"):
        charts.expression_timeline([0.0, 1.0], {"happy": [0.5]}, 2.0)


# ---- the API -------------------------------------------------------------------------------------------


def test_the_routes_answer_the_reports_to_their_owner_only(analysed):
    client = analysed.app.test_client()
    base = f"{API}/{analysed.video_id}"
    page = client.get(f"{base}/report.html", headers=analysed.alice)
    assert page.status_code == 200 and page.mimetype == "text/html"
    assert "attachment" not in page.headers.get("Content-Disposition", "")
    assert NOTICE in visible(page.get_data(as_text=True))
    assert "script-src" not in page.headers["Content-Security-Policy"] and "default-src 'none'" in page.headers["Content-Security-Policy"]
    download = client.get(f"{base}/report.html?download=1", headers=analysed.alice)
    assert download.headers["Content-Disposition"].startswith("attachment") and "report.html" in download.headers["Content-Disposition"]

    assert client.get(f"{base}/report.html?download=maybe", headers=analysed.alice).status_code == 400
    document = client.get(f"{base}/report.pdf?download=1", headers=analysed.alice)
    assert document.status_code == 200 and document.mimetype == "application/pdf"
    assert document.data.startswith(b"%PDF-") and "report.pdf" in document.headers["Content-Disposition"]
    assert len(rendered(document.data)) >= 2

    for path in ("report.html", "report.pdf"):
        other = client.get(f"{base}/{path}", headers=analysed.bob)
        assert other.status_code == 404 and other.get_json()["error"]["code"] == "not_found", path
        assert client.get(f"{base}/{path}").status_code == 401  # no key at all
    assert client.get(f"{API}/no-such-video/report.pdf", headers=analysed.alice).status_code == 404


def test_a_job_not_done_yet_has_no_report(analysed):
    client = analysed.app.test_client()
    answer = client.post(f"{API}?filename=later.mp4", data=analysed.video_bytes, headers=analysed.alice)
    video_id = answer.get_json()["id"]
    assert analysed.queued  # its start waits in the queue: no worker has taken it
    for path in ("report.html", "report.pdf"):
        pending = client.get(f"{API}/{video_id}/{path}", headers=analysed.alice)
        assert pending.status_code == 409 and pending.get_json()["error"]["code"] == "conflict", path
        assert "queued" in pending.get_json()["error"]["message"]
        assert client.get(f"{API}/{video_id}/{path}", headers=analysed.bob).status_code == 404  # and not another key's 409
    analysed.queued.clear()
