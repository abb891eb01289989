"""What ``emotion-detector analyze`` and ``from emotion_detector import analyze`` produce (DESIGN.md §2, "CLI")."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from emotion_detector.pipeline import Face
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


Record = FrameRecord | PersonRecord
