"""A whole video job in process (the leased tasks run in order, the real analysis on the shipped models) on a
real video with a shot cut: the results JSON of issue 19 (who counts as a person, brief detections, the cut,
raw and smoothed expressions, valence and arousal), with the cut inside a segment overlap, at a segment
boundary and just before one."""

from __future__ import annotations

import itertools
import shutil
from pathlib import Path

import pytest
from sqlalchemy import select

from emotion_detector.detection import DetectorOptions, create_detector
from emotion_detector.labels import EMOTIONS
from emotion_detector.pipeline import FaceAnalyzer
from emotion_detector.settings import Settings
from emotion_detector.videos import jobs
from emotion_detector.videos.db import migrate, sessions
from emotion_detector.videos.leases import Database
from emotion_detector.videos.models import JobState, Segment, Video
from emotion_detector.videos.probe import probe
from emotion_detector.videos.service import VideoService
from tests.videos.test_leases import Queue
from tests.videos.test_shot_cuts import FPS, spliced  # noqa: F401  # the fixture: two real clips joined

SHAPES = {  # segment_seconds → where the cut falls (segments of round(s × 25) frames, 6 frames of overlap)
    2.8: "in the overlap",  # (0, 70) analyses up to 76; the cut is at 72
    2.88: "at the boundary",  # (0, 72), (72, ...): only segment 0 sees the frame before the cut
    2.92: "just before the boundary",  # (0, 73): the cut is the last frame segment 0 owns
}


def run_job(tmp_path: Path, monkeypatch, inprocess_models, source: Path, **settings) -> tuple[VideoService, Settings]:
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    configured = Settings(instance_dir=tmp_path, database_url=url, model_server="inprocess", **settings)
    migrate(url)
    db = Database(configured, sessions(url))
    analyzer = FaceAnalyzer(create_detector(DetectorOptions.from_settings(configured)), inprocess_models, configured)
    context = jobs.WorkerContext(configured, db.sessions, analyzer)
    monkeypatch.setattr(jobs, "database", lambda: db)
    monkeypatch.setattr(jobs, "context", lambda: context)
    queue = Queue(monkeypatch)
    copied = tmp_path / "v" / "source.mp4"
    copied.parent.mkdir()
    shutil.copyfile(source, copied)
    info = probe(copied, 60)
    with db.sessions.begin() as session:
        session.add(
            Video(
                id="v",
                filename="spliced.mp4",
                source_path=str(copied),
                width=info.width,
                height=info.height,
                fps=info.fps,
                frame_count=info.frame_count,
                duration_s=info.duration_s,
            )
        )
    queue.waiting.append(("start", ("v",)))
    queue.run()
    return VideoService(configured), configured


@pytest.mark.parametrize("segment_seconds", list(SHAPES), ids=list(SHAPES.values()))
def test_no_person_spans_a_cut_wherever_it_falls_among_the_segments(tmp_path, monkeypatch, inprocess_models, spliced, segment_seconds):  # noqa: F811
    path, cut = spliced
    service, _ = run_job(tmp_path, monkeypatch, inprocess_models, path, segment_seconds=segment_seconds)
    with service.sessions() as session:
        assert len(session.scalars(select(Segment)).all()) == 2
    results = service.results("v", owner=None).to_json()
    video, people = results["video"], results["people"]
    assert results["status"] == JobState.DONE
    assert video["shot_cuts_s"] == [round(cut / FPS, 3)]
    for person in people:
        frames = [entry["frame"] for entry in person["timeline"]]
        assert max(frames) < cut or min(frames) >= cut, f"person {person['id']} spans the cut at frame {cut}"
    counted = [p for p in people if p["counted"]]
    # One face before the cut (single_face.mp4, 72 frames), one after (62 frames), each in view for > 1 s.
    assert [(p["first_frame"], p["last_frame"]) for p in counted] == [(0, cut - 1), (cut, cut + 61)]
    assert video["people_counted"] == len(counted) == 2
    assert video["brief_detections"] == len(people) - 2


def test_the_results_carry_the_person_rule_raw_expressions_and_derived_valence_and_arousal(
    tmp_path,
    monkeypatch,
    inprocess_models,
    spliced,  # noqa: F811
):
    path, _cut = spliced
    # A rule no one passes in a 3-second shot: everyone is listed, as a brief detection.
    service, configured = run_job(tmp_path, monkeypatch, inprocess_models, path, person_min_seen_s=3.0, person_min_mean_score=0.8)
    results = service.results("v", owner=None).to_json()
    video = results["video"]
    assert video["person_rule"] == {"min_seen_s": 3.0, "min_mean_score": 0.8}
    assert (video["people_counted"], video["brief_detections"]) == (0, len(results["people"]))
    assert not any(p["counted"] or p["main"] for p in results["people"])
    assert all(b["faces"] == 0 for b in results["group_mix"])  # the mix is of the people counted
    smiling = results["people"][0]  # single_face.mp4: one smiling face
    assert -1 <= smiling["arousal_mean"] <= 1 and smiling["valence_mean"] > 0.3
    entries = smiling["timeline"]
    for entry in entries:
        assert set(entry["raw_probabilities"]) == set(EMOTIONS) == set(entry["emotion"]["probabilities"])
        assert sum(entry["raw_probabilities"].values()) == pytest.approx(1, abs=1e-3)
        assert -1 <= entry["valence"] <= 1 and -1 <= entry["arousal"] <= 1
    # Smoothing: the first frame of a track is its raw measurement; later ones differ from theirs, and the
    # smoothed curve moves less from frame to frame than the raw one.
    assert entries[0]["raw_probabilities"] == pytest.approx(entries[0]["emotion"]["probabilities"], abs=1e-3)
    assert any(e["raw_probabilities"] != pytest.approx(e["emotion"]["probabilities"], abs=1e-3) for e in entries[1:])

    def wiggle(key: str) -> float:
        series = [e[key]["happy"] if key == "raw_probabilities" else e["emotion"]["probabilities"]["happy"] for e in entries]
        return sum(abs(a - b) for a, b in itertools.pairwise(series))

    assert wiggle("emotion") < wiggle("raw_probabilities")
    # The rule of the job is kept with it: today's settings do not rewrite a finished job's counts.
    later = VideoService(configured.model_copy(update={"person_min_seen_s": 0.0}))
    assert later.results("v", owner=None).to_json()["video"]["person_rule"] == {"min_seen_s": 3.0, "min_mean_score": 0.8}
