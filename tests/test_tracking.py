"""Track ids on real videos, and per-track smoothing."""

from __future__ import annotations

import itertools

import cv2
import numpy as np
import pytest

from emotion_detector.detection import DetectorOptions
from emotion_detector.detection.yunet import YuNetDetector
from emotion_detector.tracking import AgeGenderSchedule, AttributeSmoother, FaceAttributes, FaceTracker


def tracked_ids(shared_dir, video: str) -> list[list[int]]:
    detector = YuNetDetector(shared_dir / "models" / "yunet" / "face_detection_yunet.onnx", DetectorOptions())
    capture = cv2.VideoCapture(str(shared_dir / "media" / "videos" / video))
    tracker = FaceTracker(capture.get(cv2.CAP_PROP_FPS), lost_after_s=1.0)
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            return frames
        detections = detector.detect(frame)
        ids = tracker.update(detections)
        frames.append([int(i) for i in ids[np.argsort(detections.xyxy[:, 0])]])  # left to right


def test_one_face_keeps_one_id_through_a_real_video(shared_dir):
    frames = tracked_ids(shared_dir, "single_face.mp4")
    assert len(frames) == 72
    assert all(ids == [frames[0][0]] for ids in frames)


def test_two_people_keep_their_own_ids(shared_dir):
    frames = tracked_ids(shared_dir, "head-pose-face-detection-female-and-male.mp4")
    assert all(len(ids) == 2 for ids in frames)
    left, right = frames[0]
    assert left != right and left >= 0 and right >= 0
    assert all(ids == [left, right] for ids in frames)


def test_a_face_that_leaves_and_comes_back_later_gets_a_new_id():
    tracker = FaceTracker(nominal_fps=10, lost_after_s=0.5)  # forgotten after 5 frames
    import supervision as sv

    def frame(boxes):
        return tracker.update(
            sv.Detections(xyxy=np.array(boxes, np.float32).reshape(-1, 4), confidence=np.full(len(boxes), 0.9, np.float32))
        )

    first = [frame([[100, 100, 200, 200]])[0] for _ in range(3)]
    for _ in range(10):
        frame([])
    again = [frame([[100, 100, 200, 200]])[0] for _ in range(3)]
    assert first[0] == first[1] == first[2] >= 0
    assert again[0] == -1 and again[1] == again[2] >= 0 and again[1] != first[0]  # new track, confirmed on its 2nd frame


def test_smoothing_averages_per_track_and_passes_untracked_faces_through():
    smoother = AttributeSmoother(new_frame_weight=0.5, forget_after_frames=5)
    happy = np.array([[0, 0, 0, 1, 0, 0, 0]], np.float32)
    sad = np.array([[0, 0, 0, 0, 1, 0, 0]], np.float32)
    male = np.array([[0.0, 1.0]], np.float32)
    smoother.update(np.array([7]), FaceAttributes(happy, np.array([30.0]), male))
    out = smoother.update(np.array([7]), FaceAttributes(sad, np.array([40.0]), male))
    np.testing.assert_allclose(out.emotion[0, 3:5], [0.5, 0.5])
    assert out.age_years[0] == pytest.approx(35.0)
    untracked = smoother.update(np.array([-1]), FaceAttributes(sad, np.array([50.0]), male))
    np.testing.assert_array_equal(untracked.emotion, sad)


def test_age_and_gender_are_measured_every_nth_frame_of_a_track_and_carried_over_between():
    schedule = AgeGenderSchedule(every_n_frames=3)
    smoother = AttributeSmoother(new_frame_weight=1.0, forget_after_frames=5)
    happy = np.array([[0, 0, 0, 1, 0, 0, 0]], np.float32)
    not_measured = (np.array([np.nan], np.float32), np.full((1, 2), np.nan, np.float32))
    due = []
    for frame in range(7):
        track = np.array([4])
        due.append(bool(schedule.due(track)[0]))
        age, gender = (np.array([20.0 + frame]), np.array([[0.9, 0.1]], np.float32)) if due[-1] else not_measured
        out = smoother.update(track, FaceAttributes(happy, age, gender))
        assert out.age_years[0] == 20.0 + 3 * (frame // 3)  # the last measured value, never NaN
        np.testing.assert_allclose(out.gender[0], [0.9, 0.1])
    assert due == [True, False, False, True, False, False, True]
    # A face without a track, or a new track, is always measured.
    assert schedule.due(np.array([-1, 99])).tolist() == [True, True]
    with pytest.raises(ValueError, match="no age / gender"):
        smoother.update(np.array([-1]), FaceAttributes(happy, *not_measured))


def test_a_measurement_lost_to_a_model_server_outage_is_made_again_on_the_next_frame():
    schedule = AgeGenderSchedule(every_n_frames=5)
    smoother = AttributeSmoother(new_frame_weight=0.5, forget_after_frames=10)
    happy = np.array([[0, 0, 0, 1, 0, 0, 0]], np.float32)
    track = np.array([2])
    assert schedule.due(track, carried=smoother.track_ids).tolist() == [True]
    # ... the model server was down: this frame's prediction raised, nothing reached the smoother.
    due = schedule.due(track, carried=smoother.track_ids)
    assert due.tolist() == [True]  # without `carried` the schedule would wait 4 more frames
    out = smoother.update(track, FaceAttributes(happy, np.array([31.0], np.float32), np.array([[0.2, 0.8]], np.float32)))
    assert out.age_years[0] == pytest.approx(31.0)
    assert schedule.due(track, carried=smoother.track_ids).tolist() == [False]


def test_a_tracks_age_is_the_median_of_its_measurements_and_its_gender_confidence_grows_with_evidence():
    smoother = AttributeSmoother(new_frame_weight=0.35, forget_after_frames=5)
    happy = np.array([[0, 0, 0, 1, 0, 0, 0]], np.float32)
    ages = [31.0, 29.0, 52.0, 30.0, 59.0, 30.5, 29.5, 31.0, 30.0, 48.0, 30.0, 29.0]  # a turned face reads 20 y older now and then
    shown_ages, male_confidence = [], []
    for age in ages:
        out = smoother.update(np.array([3]), FaceAttributes(happy, np.array([age], np.float32), np.array([[0.15, 0.85]], np.float32)))
        shown_ages.append(float(out.age_years[0]))
        male_confidence.append(float(out.gender[0, 1]))
    assert shown_ages[-1] == pytest.approx(30.25) and np.std(shown_ages[3:]) < 3 < np.std(ages)
    assert male_confidence == sorted(male_confidence) and male_confidence[0] < 0.7 < 0.99 < male_confidence[-1]


def test_a_confident_gender_does_not_flip_on_contrary_frames_but_a_switched_person_turns_it_in_the_end():
    smoother = AttributeSmoother(new_frame_weight=0.35, forget_after_frames=5)
    happy = np.array([[0, 0, 0, 1, 0, 0, 0]], np.float32)

    def measure(gender: list[float]) -> str:
        out = smoother.update(np.array([8]), FaceAttributes(happy, np.array([40.0], np.float32), np.array([gender], np.float32)))
        return "female" if out.gender[0, 0] > 0.5 else "male"

    shown = [measure([0.05, 0.95]) for _ in range(20)]  # 20 measurements: about 4 s of a tracked face
    shown += [measure([0.9, 0.1]) for _ in range(6)]  # a tilted head read as the other gender, strongly
    assert set(shown) == {"male"}
    # The track now follows someone else (a tracker id switch): enough contrary evidence turns it, once.
    turned = [measure([0.98, 0.02]) for _ in range(20)]
    assert turned[-1] == "female" and sum(a != b for a, b in itertools.pairwise(turned)) == 1


def test_a_tilting_man_and_woman_each_keep_one_gender_and_a_steady_age(shared_dir):
    """head-pose-face-detection-female-and-male.mp4 (12.5 fps): a woman (left) and a man (right) tilt their
    heads up to 45 degrees. Before faces were turned upright and age and gender estimated from all of a track's
    measurements, the man was called a woman in 41 of 56 frames and his age went from 28 to 45."""
    from emotion_detector import analyze
    from emotion_detector.labels import GENDERS

    seen: dict[int, list[tuple[float, float, str, float]]] = {}
    for record in analyze(shared_dir / "media" / "videos" / "head-pose-face-detection-female-and-male.mp4"):
        for face in record.faces:
            assert face.track_id is not None
            gender = GENDERS[int(np.argmax(face.gender_probabilities))]
            seen.setdefault(face.track_id, []).append((face.box_xyxy[0], face.age_years, gender, float(face.gender_probabilities.max())))
    assert len(seen) == 2 and all(len(frames) == 56 for frames in seen.values())
    woman, man = sorted(seen.values(), key=lambda frames: frames[0][0])  # left, right
    for frames, expected in ((woman, "female"), (man, "male")):
        assert {gender for _, _, gender, _ in frames} == {expected}
        confident_from = next(i for i, (_, _, _, confidence) in enumerate(frames) if confidence >= 0.9)
        assert confident_from <= 25  # within about 2 s
        assert np.std([age for _, age, _, _ in frames[13:]]) <= 3  # after the first second
