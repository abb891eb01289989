"""The events of edge mode (DESIGN.md §2 "Edge") from the analysed frames of one run: a pure unit, no I/O.

events = TrackEvents("door-1", interval_s=1.0, end_after_missing_frames=31)
for timestamp_ms, faces in analysed_frames:
    publish_all(events.update(timestamp_ms, faces))
publish_all(events.finish())
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from emotion_detector.edge.messages import Event, EventType
from emotion_detector.pipeline import Face


@dataclass
class _Track:
    first_seen_ms: int
    last_seen_ms: int
    last_update_ms: int | None  # None: no track_update sent yet
    face: Face  # the newest smoothed state (its JSON made only when an event goes out)
    missing_frames: int = 0


class TrackEvents:
    """Turns analysed frames into events: a ``track_update`` when a track is first seen and then at most one per
    ``interval_s`` while it stays in view, and one ``track_end`` when it has left (or the source ended).

    A track has left once it was missing from ``end_after_missing_frames`` analysed frames in a row. The edge
    command passes one more than the tracker keeps a lost track, so an ended track id never comes back."""

    def __init__(self, device_id: str, interval_s: float = 1.0, end_after_missing_frames: int = 1):
        if interval_s <= 0:
            raise ValueError(f"interval_s must be > 0, got {interval_s!r}")
        if end_after_missing_frames < 1:
            raise ValueError(f"end_after_missing_frames must be >= 1, got {end_after_missing_frames!r}")
        self.device_id = device_id
        self.interval_ms = round(interval_s * 1000)
        self.end_after_missing_frames = end_after_missing_frames
        self._tracks: dict[int, _Track] = {}
        self._next_seq = 0

    def update(self, timestamp_ms: int, faces: Sequence[Face]) -> list[Event]:
        """One analysed frame (``timestamp_ms``: its wall clock, ms since the epoch) → the events it causes, in
        order: the ends of tracks that have left, then the updates that are due. Faces without a track id
        (never the case in live mode) have no events."""
        in_view = {face.track_id: face for face in faces if face.track_id is not None}
        events = []
        for track_id in sorted(self._tracks.keys() - in_view.keys()):
            track = self._tracks[track_id]
            track.missing_frames += 1
            if track.missing_frames >= self.end_after_missing_frames:
                events.append(self._end(track_id))
        for track_id, face in sorted(in_view.items()):
            track = self._tracks.setdefault(track_id, _Track(timestamp_ms, timestamp_ms, None, face))
            track.last_seen_ms, track.face, track.missing_frames = timestamp_ms, face, 0
            if track.last_update_ms is None or timestamp_ms - track.last_update_ms >= self.interval_ms:
                track.last_update_ms = timestamp_ms
                events.append(self._event(EventType.TRACK_UPDATE, track_id, track, timestamp_ms))
        return events

    def finish(self) -> list[Event]:
        """The source ended: every track still open ends (in track id order)."""
        return [self._end(track_id) for track_id in sorted(self._tracks)]

    def _end(self, track_id: int) -> Event:
        # A track_end describes the last frame the face was seen in: its time and its state there.
        track = self._tracks.pop(track_id)
        return self._event(EventType.TRACK_END, track_id, track, track.last_seen_ms)

    def _event(self, kind: EventType, track_id: int, track: _Track, timestamp_ms: int) -> Event:
        event = Event(
            seq=self._next_seq,
            device_id=self.device_id,
            type=kind,
            timestamp_ms=timestamp_ms,
            track_id=track_id,
            seen_ms=timestamp_ms - track.first_seen_ms,
            face=track.face.to_json(),
        )
        self._next_seq += 1
        return event
