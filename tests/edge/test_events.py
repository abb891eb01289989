"""Edge events from analysed frames (TrackEvents): rate per track, one end per track, seq, payloads."""

import json

import numpy as np
import pytest

from emotion_detector.edge.events import TrackEvents
from emotion_detector.edge.messages import MAX_PAYLOAD_BYTES, Event, EventType
from emotion_detector.labels import EMOTIONS
from emotion_detector.pipeline import Face

START_MS = 1_765_000_000_000  # a wall clock in ms since the epoch


def face(track_id: int, happy: float = 0.9, x: float = 10.0) -> Face:
    emotion = np.full(len(EMOTIONS), (1 - happy) / (len(EMOTIONS) - 1), np.float32)
    emotion[EMOTIONS.index("happy")] = happy
    return Face((x, 20.0, x + 100.0, 140.0), 0.97, emotion, 31.5, np.array([0.8, 0.2], np.float32), track_id)


def run(events: TrackEvents, frames: list[tuple[int, list[Face]]], finish: bool = True) -> list[Event]:
    found = [event for timestamp_ms, faces in frames for event in events.update(START_MS + timestamp_ms, faces)]
    return found + (events.finish() if finish else [])


def test_updates_come_at_most_once_per_interval_per_track_and_one_end_when_the_source_ends():
    # Two faces at 10 frames a second for 3.5 s: updates at 0, 1, 2, 3 s each, then the ends.
    frames = [(t_ms, [face(1), face(2, x=300)]) for t_ms in range(0, 3500, 100)]
    events = run(TrackEvents("door-1", interval_s=1.0), frames)
    kinds = [(e.type, e.track_id, e.timestamp_ms - START_MS) for e in events]
    assert kinds == [
        *[(EventType.TRACK_UPDATE, track, t_ms) for t_ms in (0, 1000, 2000, 3000) for track in (1, 2)],
        (EventType.TRACK_END, 1, 3400),
        (EventType.TRACK_END, 2, 3400),
    ]
    assert [e.seq for e in events] == list(range(len(events)))
    assert [e.seen_ms for e in events if e.track_id == 1] == [0, 1000, 2000, 3000, 3400]
    assert len({e.event_id for e in events}) == len(events)


def test_a_track_ends_once_after_it_is_missing_for_enough_frames_and_a_short_gap_is_no_end():
    frames = [
        (0, [face(1)]),
        (100, []),  # missed once: still in view
        (200, [face(1)]),
        (300, []),
        (400, []),  # missed twice in a row: it has left
        (500, []),
        (600, [face(2)]),
    ]
    events = run(TrackEvents("door-1", interval_s=1.0, end_after_missing_frames=2), frames)
    assert [(e.type, e.track_id, e.timestamp_ms - START_MS, e.seen_ms) for e in events] == [
        (EventType.TRACK_UPDATE, 1, 0, 0),
        (EventType.TRACK_END, 1, 200, 200),  # the last frame it was seen in
        (EventType.TRACK_UPDATE, 2, 600, 0),
        (EventType.TRACK_END, 2, 600, 0),
    ]


def test_the_face_is_the_tracks_newest_smoothed_state_with_its_id_and_the_payload_is_small():
    events = run(TrackEvents("door-1"), [(0, [face(7, happy=0.6)]), (100, [face(7, happy=0.8)])])
    update, end = events
    assert update.face["id"] == 7 and update.face["emotion"]["confidence"] == pytest.approx(0.6)
    assert end.face["emotion"]["confidence"] == pytest.approx(0.8) and end.emotion == "happy"
    for event in events:
        payload = event.payload()
        assert len(payload) < MAX_PAYLOAD_BYTES
        assert Event.model_validate_json(payload) == event
        assert json.loads(payload)["device_id"] == "door-1"


def test_no_faces_no_events():
    assert run(TrackEvents("door-1"), [(t_ms, []) for t_ms in range(0, 2000, 100)]) == []


@pytest.mark.parametrize(
    ("options", "message"),
    [({"interval_s": 0}, "interval_s must be > 0, got 0"), ({"end_after_missing_frames": 0}, "end_after_missing_frames must be >= 1")],
)
def test_bad_options_say_why(options: dict, message: str):
    with pytest.raises(ValueError, match=message):
        TrackEvents("door-1", **options)
