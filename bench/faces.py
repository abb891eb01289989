"""The face-detection benchmark's data, both made from the real media in ../shared (read from there, never copied):

- ``annotated()``: pictures and sampled video frames with every face boxed by hand (bench/data/faces.json; its
  ``about`` says how it was made): readable faces, and ``ignore`` boxes for faces that exist but cannot be read
  (profiles, backs of heads), which count neither as found nor as false.
- ``scale_sweep()``: real pictures of one person, scaled so that the face is 16 to 256 px high, placed six at a
  time (fewer where six do not fit) on real scenes without faces; the truth is the scaled hand-drawn box.

``score(found, truth, ignore)`` matches detections to faces one to one by IoU >= 0.3 (the same face drawn by
two detectors overlaps by 0.5-0.8; neighbouring faces by 0): what is left over counts as found, missed or false.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import cv2
import numpy as np
import supervision as sv

# ../shared (EMOTION_SHARED_DIR moves it), as the tests read it; the tests import this module, so not from them.
SHARED = Path(os.environ.get("EMOTION_SHARED_DIR", Path(__file__).resolve().parents[2] / "shared"))
ANNOTATIONS = Path(__file__).parent / "data" / "faces.json"
MEDIA = SHARED / "media"
MATCH_IOU = 0.3
# Face heights (px) in the size buckets of the tables: [low, high).
BUCKETS = ((0, 20), (20, 32), (32, 64), (64, 128), (128, 100_000))
SWEEP_SIZES_PX = (16, 20, 24, 32, 48, 64, 96, 128, 192, 256)
SWEEP_SCENE_WH = (1280, 720)
# Real no-face scenes (people-detection.mp4 shows people from behind only): frame indices of each clip.
SWEEP_SCENES = {"videos/no_face.mp4": (0, 45, 90), "videos/people-detection.mp4": (0, 20), "images/BWPictureHuman.jpg": (None,)}
# Pictures of one person each (their hand-drawn face boxes), and of several (each face becomes one "person").
SWEEP_PEOPLE = ("images/obama.jpg", "images/biden.jpg", "images/single_face.jpg", "images/astronaut.png", "images/multi_face.jpg")


@dataclass(frozen=True)
class Item:
    source: str  # relative to ../shared/media
    frame: int | None  # a video's frame index (decode order), None for a picture
    faces_xyxy: np.ndarray  # (N, 4)
    ignore_xyxy: np.ndarray  # (M, 4)

    @property
    def is_video(self) -> bool:
        return self.frame is not None


@cache
def annotated() -> tuple[Item, ...]:
    items = json.loads(ANNOTATIONS.read_text())["items"]
    return tuple(
        Item(i["source"], i["frame"], np.array(i["faces"], np.float32).reshape(-1, 4), np.array(i["ignore"], np.float32).reshape(-1, 4))
        for i in items
    )


def picture(source: str) -> np.ndarray:
    image = cv2.imread(str(MEDIA / source))
    if image is None:
        raise FileNotFoundError(MEDIA / source)
    return image


@cache
def video_frames(source: str) -> tuple[np.ndarray, ...]:
    capture = cv2.VideoCapture(str(MEDIA / source))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            return tuple(frames)
        frames.append(frame)


def video_fps(source: str) -> float:
    return float(cv2.VideoCapture(str(MEDIA / source)).get(cv2.CAP_PROP_FPS) or 25.0)


def image_of(item: Item) -> np.ndarray:
    return video_frames(item.source)[item.frame] if item.frame is not None else picture(item.source)


@dataclass
class Tally:
    """Found / total per size bucket, and false faces, over many pictures."""

    found: dict[int, int] = field(default_factory=dict)
    total: dict[int, int] = field(default_factory=dict)
    false_faces: int = 0
    pictures: int = 0

    def add(self, found_xyxy: np.ndarray, truth_xyxy: np.ndarray, ignore_xyxy: np.ndarray) -> None:
        hit, false = score(found_xyxy, truth_xyxy, ignore_xyxy)
        for bucket, ok in zip(buckets_of(truth_xyxy), hit, strict=True):
            self.found[bucket] = self.found.get(bucket, 0) + int(ok)
            self.total[bucket] = self.total.get(bucket, 0) + 1
        self.false_faces += false
        self.pictures += 1

    def recall(self, bucket: int) -> float | None:
        return self.found.get(bucket, 0) / self.total[bucket] if self.total.get(bucket) else None

    def recall_from(self, low_px: int) -> float | None:
        """Recall over every bucket starting at ``low_px`` or above."""
        chosen = [b for b, (low, _) in enumerate(BUCKETS) if low >= low_px]
        total = sum(self.total.get(b, 0) for b in chosen)
        return sum(self.found.get(b, 0) for b in chosen) / total if total else None


def buckets_of(xyxy: np.ndarray) -> list[int]:
    heights = xyxy[:, 3] - xyxy[:, 1]
    return [next(b for b, (low, high) in enumerate(BUCKETS) if low <= h < high) for h in heights]


def score(found_xyxy: np.ndarray, truth_xyxy: np.ndarray, ignore_xyxy: np.ndarray) -> tuple[np.ndarray, int]:
    """(per true face: found?, false faces). Detections are matched one to one, best overlap first; a detection
    left over that overlaps an ignore box (or lies mostly inside one) is not counted as false."""
    found_xyxy, truth_xyxy = np.asarray(found_xyxy, np.float32).reshape(-1, 4), np.asarray(truth_xyxy, np.float32).reshape(-1, 4)
    hit = np.zeros(len(truth_xyxy), dtype=bool)
    used = np.zeros(len(found_xyxy), dtype=bool)
    if len(found_xyxy) and len(truth_xyxy):
        iou = sv.box_iou_batch(truth_xyxy, found_xyxy)
        while iou.size and iou.max() >= MATCH_IOU:
            t, f = np.unravel_index(int(np.argmax(iou)), iou.shape)
            hit[t], used[f] = True, True
            iou[t, :], iou[:, f] = -1, -1
    left = found_xyxy[~used]
    if len(left) and len(ignore_xyxy):
        iou = sv.box_iou_batch(left, ignore_xyxy).max(axis=1)
        inside = _inside_share(left, ignore_xyxy).max(axis=1)
        left = left[(iou < MATCH_IOU) & (inside < 0.7)]
    return hit, len(left)


def _inside_share(boxes: np.ndarray, others: np.ndarray) -> np.ndarray:
    """(N, M): the share of each box's area inside each other box."""
    x1 = np.maximum(boxes[:, None, 0], others[None, :, 0])
    y1 = np.maximum(boxes[:, None, 1], others[None, :, 1])
    x2 = np.minimum(boxes[:, None, 2], others[None, :, 2])
    y2 = np.minimum(boxes[:, None, 3], others[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    share: np.ndarray = inter / np.maximum(area[:, None], 1e-6)
    return share


@dataclass(frozen=True)
class SweepPicture:
    face_px: int  # the pasted faces' height
    image: np.ndarray
    faces_xyxy: np.ndarray


def sweep_scenes() -> list[np.ndarray]:
    scenes = []
    for source, frames in SWEEP_SCENES.items():
        for frame in frames:
            image = picture(source) if frame is None else video_frames(source)[frame]
            scenes.append(cv2.resize(image, SWEEP_SCENE_WH, interpolation=cv2.INTER_AREA))
    return scenes


def _people() -> list[tuple[np.ndarray, np.ndarray]]:
    by_source = {item.source: item for item in annotated()}
    return [(picture(source), box) for source in SWEEP_PEOPLE for box in by_source[source].faces_xyxy]


def _paste(scene: np.ndarray, person: np.ndarray, face_xyxy: np.ndarray, face_px: int, x: int, y: int) -> np.ndarray:
    """The person's head and shoulders (the face box widened), scaled so the face is ``face_px`` high, blended
    into ``scene`` through a soft ellipse with its top-left corner at (x, y); returns the face's box there."""
    x1, y1, x2, y2 = (float(v) for v in face_xyxy)
    width, height = x2 - x1, y2 - y1
    scale = face_px / height
    rx1, ry1, rx2, ry2 = x1 - 0.5 * width, y1 - 0.4 * height, x2 + 0.5 * width, y2 + 0.6 * height
    patch_w, patch_h = round((rx2 - rx1) * scale), round((ry2 - ry1) * scale)
    matrix = np.array([[scale, 0, -rx1 * scale], [0, scale, -ry1 * scale]], np.float32)
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    patch = cv2.warpAffine(person, matrix, (patch_w, patch_h), flags=interpolation, borderMode=cv2.BORDER_REFLECT).astype(np.float32)
    mask = np.zeros((patch_h, patch_w), np.float32)
    cv2.ellipse(mask, (patch_w // 2, patch_h // 2), (int(patch_w * 0.48), int(patch_h * 0.48)), 0, 0, 360, 1.0, -1)
    blur = max(3, (min(patch_w, patch_h) // 8) | 1)
    mask = cv2.GaussianBlur(mask, (blur, blur), 0)[..., None]
    region = scene[y : y + patch_h, x : x + patch_w].astype(np.float32)
    scene[y : y + patch_h, x : x + patch_w] = (mask * patch + (1 - mask) * region).astype(np.uint8)
    fx, fy = x + (x1 - rx1) * scale, y + (y1 - ry1) * scale
    return np.array([fx, fy, fx + width * scale, fy + face_px], np.float32)


def scale_sweep(seed: int = 0, copies: int = 6) -> Iterator[SweepPicture]:
    """For each face size and scene: up to ``copies`` people in cells of a grid (seeded choice of cells and people)."""
    rng = np.random.default_rng(seed)
    people = _people()
    scenes = sweep_scenes()
    for face_px in SWEEP_SIZES_PX:
        cell = int(face_px * 2.2) + 8  # the widened head region, with a margin
        columns, rows = max(1, SWEEP_SCENE_WH[0] // cell), max(1, SWEEP_SCENE_WH[1] // cell)
        for scene in scenes:
            canvas = scene.copy()
            cells = rng.choice(columns * rows, min(copies, columns * rows), replace=False)
            boxes = []
            for c in cells:
                image, box = people[int(rng.integers(len(people)))]
                x = int((c % columns) * cell + rng.integers(0, 5))
                y = int((c // columns) * cell + rng.integers(0, 5))
                boxes.append(_paste(canvas, image, box, face_px, x, y))
            yield SweepPicture(face_px, canvas, np.array(boxes, np.float32))
