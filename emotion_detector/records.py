"""What ``emotion-detector analyze`` and ``from emotion_detector import analyze`` produce (DESIGN.md §2, "CLI")."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from emotion_detector.pipeline import Face
    from emotion_detector.schemas import DetectionInfo
    from emotion_detector.videos.summary import PersonStats


@dataclass(frozen=True)
class FrameRecord:
    """One analysed frame (or image): a JSON line of ``emotion-detector analyze``."""

    source: str
    frame: int
    timestamp_ms: float
    width: int
    height: int
    faces: list[Face]
    # Which detector looked and from which face size (not in the JSON line: the source's summary says it).
    detection: DetectionInfo | None = field(default=None, compare=False)

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "frame": self.frame,
            "timestamp_ms": self.timestamp_ms,
            "width": self.width,
            "height": self.height,
            "faces": [face.to_json() for face in self.faces],
        }


@dataclass(frozen=True)
class PersonRecord:
    """One track of a video, camera or stream: the statistics the video results page shows, and whether it
    counts as a person by the settings' rule (``counted``; false: a brief detection), as on that page."""

    source: str
    person: int
    stats: PersonStats
    counted: bool = True

    def to_json(self) -> dict[str, Any]:
        return {"source": self.source, "type": "person", "id": self.person, "counted": self.counted, **self.stats.to_json()}


@dataclass(frozen=True)
class SourceSummary:
    """After each source, with ``--summary``: which detector looked and from which face size, how many frames
    had faces, and when none did, why (the smallest face looked for) and what to try."""

    source: str
    detector: str
    min_face_px: float  # the smallest face height looked for, in the source's pixels
    frames: int
    frames_with_faces: int

    def to_json(self) -> dict[str, Any]:
        answer: dict[str, Any] = {
            "source": self.source,
            "type": "summary",
            "detector": self.detector,
            "min_face_px": self.min_face_px,
            "frames": self.frames,
            "frames_with_faces": self.frames_with_faces,
        }
        if self.frames and not self.frames_with_faces:
            from emotion_detector.schemas import no_faces_message  # pydantic: not for --help

            answer["message"] = no_faces_message(self.min_face_px)
        return answer


Record = FrameRecord | PersonRecord | SourceSummary
