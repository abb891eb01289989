"""One FramePipeline behind every running mode: live and video apply the same rules (face cap, track-lost
time, age / gender carry-over, smoothing), so a face shows the same label on the live overlay, in a video's
timeline, in its statistics and in its annotated video. Real video, real models."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

import numpy as np
import pytest

from emotion_detector.detection import DetectorOptions, create_detector
from emotion_detector.labels import EMOTIONS, GENDERS
from emotion_detector.pipeline import FaceAnalyzer, FramePipeline, PipelineOptions, RunningMode, gender_probabilities
from emotion_detector.settings import Settings
from emotion_detector.videos.analysis import decode_frames, link_first_sightings
from emotion_detector.videos.render import OverlayTimeline
from emotion_detector.videos.summary import Row, join_tracks, people_frames, person_stats, shown_expressions

TWO_PEOPLE = "head-pose-face-detection-female-and-male.mp4"
FPS = 30.0


@pytest.fixture(scope="module")
def analyzer(inprocess_models) -> FaceAnalyzer:
    settings = Settings()
    return FaceAnalyzer(create_detector(DetectorOptions.from_settings(settings)), inprocess_models, settings)


def video_options(analyzer: FaceAnalyzer) -> PipelineOptions:
    return PipelineOptions.from_settings(analyzer.settings, RunningMode.VIDEO, FPS)


@pytest.fixture(scope="module")
def two_people(shared_dir) -> list[tuple[int, np.ndarray]]:
    return list(decode_frames(shared_dir / "media" / "videos" / TWO_PEOPLE, 0, 40))


@pytest.fixture(scope="module")
def video_mode(analyzer, two_people):
    return list(analyzer.pipeline(RunningMode.VIDEO, nominal_fps=FPS).run(two_people))


def test_live_and_video_modes_give_the_same_faces_frame_by_frame(analyzer, two_people):
    """Live takes one frame at a time, video batches 8 frames per model call with detection ahead: the
    same tracks, boxes, smoothed expressions and carried-over age and gender. (Their whole-picture searches
    differ by design - live by the clock, in the background - so both search only the first frame here, in
    line, and follow the faces from there.)"""
    settings = analyzer.settings.model_copy(update={"detection_search_every_s": 100.0})
    same_schedule = FaceAnalyzer(analyzer.detector, analyzer.client, settings, live_searches_in_background=False)
    video_mode = list(same_schedule.pipeline(RunningMode.VIDEO, nominal_fps=FPS).run(two_people))
    live = same_schedule.pipeline(RunningMode.LIVE, nominal_fps=FPS)
    live_mode = [live.process_image(image, index) for index, image in two_people]
    assert [a.frame_index for a in video_mode] == [index for index, _ in two_people]
    assert sum(len(a.faces) for a in video_mode) >= 2 * 40 - 4  # both people in (nearly) every frame
    for by_live, by_video in zip(live_mode, video_mode, strict=True):
        assert [f.track_id for f in by_live.faces] == [f.track_id for f in by_video.faces]
        for a, b in zip(by_live.faces, by_video.faces, strict=True):
            assert np.abs(np.subtract(a.box_xyxy, b.box_xyxy)).max() < 1e-3
            # int8 models quantise activations per batch, so a batch of 8 frames differs in the last digits
            np.testing.assert_allclose(a.emotion_probabilities, b.emotion_probabilities, atol=0.02)
            assert a.emotion_label == b.emotion_label or a.emotion_uncertain or b.emotion_uncertain
            assert a.age_years == pytest.approx(b.age_years, abs=1.0)
            assert a.gender_probabilities.argmax() == b.gender_probabilities.argmax()


def test_smoothing_is_applied_per_track_in_video_mode_too(analyzer, two_people, video_mode):
    raw = FramePipeline(analyzer, replace(video_options(analyzer), smoothing_new_frame_weight=1.0)).run(two_people)
    raw_faces = [face for analysis in raw for face in analysis.faces if face.track_id is not None]
    smoothed_faces = [face for analysis in video_mode for face in analysis.faces if face.track_id is not None]
    assert len(raw_faces) == len(smoothed_faces)

    def frame_to_frame(faces) -> float:  # mean change of a track's top probability from one frame to the next
        by_track: dict[int, list[float]] = {}
        for face in faces:
            by_track.setdefault(face.track_id, []).append(float(face.emotion_probabilities.max()))
        return float(np.mean([np.abs(np.diff(v)).mean() for v in by_track.values() if len(v) > 1]))

    assert frame_to_frame(smoothed_faces) < 0.8 * frame_to_frame(raw_faces)


def test_a_video_shows_one_label_per_face_and_frame_in_timeline_statistics_and_annotated_video(video_mode):
    """What the results page and the exports are made of (stored rows → people → timeline, statistics,
    annotated-video labels) all show the label the pipeline gave that face on that frame."""
    analysed = list(link_first_sightings(video_mode))
    rows = [
        Row(
            0,
            a.frame_index,
            f.track_id,
            False,
            f.box_xyxy,
            f.score,
            tuple(f.emotion_probabilities.tolist()),
            f.age_years,
            f.female_probability,
        )
        for a in analysed
        for f in a.faces
    ]
    uncertain_below = 0.61
    people = people_frames(rows, join_tracks(rows))
    timeline = OverlayTimeline(people, hold_frames=1, uncertain_below=uncertain_below)
    pipeline_label = {}
    for a in analysed:
        for f in a.faces:
            label = "uncertain" if float(f.emotion_probabilities.max()) < uncertain_below else f.emotion_label
            pipeline_label[(a.frame_index, f.box_xyxy)] = label
    for person, frames in people.items():
        shown = shown_expressions(np.array([f.emotion for f in frames]), uncertain_below)
        stats = person_stats(frames, FPS, len(analysed), uncertain_below)
        assert {k: v for k, v in stats.expression_counts.items() if v} == Counter(shown)
        for frame, expression in zip(frames, shown, strict=True):
            face_json = frame.face(person, uncertain_below).to_json()
            in_timeline = "uncertain" if face_json["emotion"]["uncertain"] else face_json["emotion"]["label"]
            (drawn,) = [label for label in timeline.labels_at(frame.frame_index) if label.person == person]
            in_video = "uncertain" if drawn.uncertain else EMOTIONS[int(np.argmax(drawn.probabilities))]
            assert expression == in_timeline == in_video == pipeline_label[(frame.frame_index, frame.box_xyxy)]
    assert len(people) == 2


def test_the_face_cap_applies_in_video_mode(analyzer, two_people):
    capped = list(FramePipeline(analyzer, replace(video_options(analyzer), max_faces_per_frame=1)).run(two_people[:10]))
    assert [len(a.faces) for a in capped] == [1] * 10


def test_every_mode_takes_its_rules_from_the_same_settings():
    settings = Settings(track_lost_after_s=2.5, max_faces_per_frame=3, smoothing_new_frame_weight=0.5, age_gender_every_n_frames=7)
    live, video = (PipelineOptions.from_settings(settings, mode) for mode in (RunningMode.LIVE, RunningMode.VIDEO))
    for options in (live, video):
        assert (options.track_lost_after_s, options.max_faces_per_frame, options.smoothing_new_frame_weight) == (2.5, 3, 0.5)
        assert options.age_gender_every_n_frames == 7


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"nominal_fps": 0}, "nominal_fps must be > 0, got 0"),
        ({"smoothing_new_frame_weight": 1.5}, "smoothing_new_frame_weight must be in (0, 1], got 1.5"),
        ({"max_faces_per_frame": 0}, "max_faces_per_frame must be >= 1, got 0"),
        ({"batch_frames": 0, "track_lost_after_s": -1}, "track_lost_after_s must be > 0, got -1; batch_frames must be >= 1, got 0"),
    ],
)
def test_bad_options_fail_fast_saying_what_was_expected(changes, message):
    with pytest.raises(ValueError) as error:
        PipelineOptions(RunningMode.VIDEO, **changes)
    assert str(error.value) == message


def test_run_needs_video_mode(analyzer):
    with pytest.raises(ValueError, match=r"needs RunningMode\.VIDEO, got live"):
        analyzer.pipeline(RunningMode.LIVE).run([])


def test_gender_is_stored_and_rebuilt_in_the_label_order():
    probabilities = gender_probabilities(0.8)
    assert probabilities[GENDERS.index("female")] == pytest.approx(0.8) and probabilities[GENDERS.index("male")] == pytest.approx(0.2)
