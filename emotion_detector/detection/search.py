"""Where and at which scale a detector network looks, so that faces from ``min_face_px`` high to the whole picture
are found at any picture size.

A network finds faces reliably only within its ``face_range_px`` (heights in pixels of its input: CenterFace
about 25-400). ``FaceSearch.find`` therefore sees a picture as a pyramid of levels: the first scaled so that
the smallest face looked for lands at the bottom of that range (CenterFace: 1.25x for 20-px faces), each next
one smaller by the range's ratio (halved, so neighbouring levels overlap) until a level's largest face is as
large as the picture itself. A level larger than the network takes (BlazeFace's fixed square) or than
``tile_side_px`` (memory) is cut into overlapping tiles. A face cut by a tile border counts once: a detection
touching a border shared with a neighbouring tile is dropped, because the overlap is as wide as the largest face
the next level leaves to this one, so the neighbour holds the whole face (or the next level does). Everything
found is merged by non-maximum suppression.

``FaceSearch.around`` looks again only near faces already known (the tracked modes between whole-picture
searches): a square region a few face widths wide around each, scaled so the face sits near the bottom of the
network's range, all regions in one batch.

The network's cost grows with its input's pixels, so a picture whose first level would exceed
``max_network_pixels`` is searched from a larger face instead; ``min_face_px_for`` says which, and answers say it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import cv2
import numpy as np
import supervision as sv

from emotion_detector.detection.base import FaceDetector, no_detections, nose_along_eyes

if TYPE_CHECKING:
    from emotion_detector.settings import Settings

# Each next level is smaller by half the network's range ratio, so a face near a level's upper limit is also in
# the next level's range.
LEVEL_OVERLAP = 2.0
# Regions around known faces: the face at this many times the bottom of the network's range (CenterFace: 31 px).
REGION_FACE_PER_MIN = 1.25
ALIGN_PX = 32  # region inputs of fully convolutional networks: a multiple of their largest stride


@dataclass(frozen=True)
class SearchOptions:
    min_face_px: float = 20.0  # the smallest face height looked for, in pixels of the picture
    max_network_pixels: int = 8_000_000  # per whole-picture search (CenterFace: ~3 s on one core of an AMD EPYC)
    tile_side_px: int = 1024  # levels larger than this are cut into tiles (bounded memory)
    region_side_per_face: float = 2.0  # regions around known faces: this many face sides wide (room to move)
    # Near-profile faces are skipped: the expression / age / gender models are trained on faces seen from the
    # front, and their outputs on a profile are noise. Measured with YuNet's landmarks: the nose's position
    # along the eye line is 0.5 when frontal and leaves [0, 1] as the head turns past ~60 degrees.
    max_nose_outside_eyes: float = 0.3
    # ...and a face seen from the side has its eyes almost on one spot: on the annotated media every readable
    # face's eyes are at least 0.22 of its box's width apart (a 60-degree turn), the profile in
    # BWPictureHuman.jpg's at most 0.12, whose nose the eye line alone cannot place.
    min_eye_span_per_face_width: float = 0.16
    # Faces smaller than min_face_px are not looked for, but kept when found (the classroom's back row at 14-19
    # px, bench/detectors.py), down to this share of it: below, the few pixels are noise to the models too.
    smallest_kept_per_min_face: float = 0.6
    merge_iou: float = 0.3
    # Around a face seen in the last frame, a lower score is enough (its share of the detector's threshold):
    # what scores there is far more likely that face than a false one, and small faces score lower in a
    # region than in a search (bench/detectors.py). As ByteTrack keeps tracks with low-score detections.
    region_score_per_threshold: float = 0.7

    def __post_init__(self) -> None:
        problems = [
            f"{name} must be {rule}, got {value!r}"
            for name, value, ok, rule in (
                ("min_face_px", self.min_face_px, self.min_face_px >= 4, ">= 4"),
                ("max_network_pixels", self.max_network_pixels, self.max_network_pixels >= 64 * 64, ">= 4096"),
                ("tile_side_px", self.tile_side_px, self.tile_side_px >= 128, ">= 128"),
                ("region_side_per_face", self.region_side_per_face, self.region_side_per_face >= 1.2, ">= 1.2"),
                ("merge_iou", self.merge_iou, 0 < self.merge_iou < 1, "in (0, 1)"),
            )
            if not ok
        ]
        if problems:
            raise ValueError("; ".join(problems))

    @classmethod
    def from_settings(cls, settings: Settings) -> SearchOptions:
        return cls(min_face_px=settings.detection_min_face_px, max_network_pixels=settings.detection_max_network_pixels)


@dataclass(frozen=True)
class Level:
    scale: float  # level pixels per picture pixel
    size_wh: tuple[int, int]
    tiles_xyxy: tuple[tuple[int, int, int, int], ...]  # in level pixels; all of one size


@dataclass(frozen=True)
class SearchPlan:
    min_face_px: float  # the smallest face looked for in this picture, in its pixels
    levels: tuple[Level, ...]

    @property
    def network_pixels(self) -> int:
        """What the network is fed, all levels and tiles together (its cost grows with it)."""
        total = 0
        for level in self.levels:
            x0, y0, x1, y1 = level.tiles_xyxy[0]  # a level's tiles are all of one size
            total += len(level.tiles_xyxy) * (x1 - x0) * (y1 - y0)
        return total


def _starts(length: int, tile: int, overlap: int) -> list[int]:
    """Tile starts along one side: tiles of ``tile`` covering ``length``, neighbours overlapping by at least ``overlap``."""
    if length <= tile:
        return [0]
    count = math.ceil((length - overlap) / (tile - overlap))
    return [round(i * (length - tile) / (count - 1)) for i in range(count)]


def merge(found: sv.Detections, iou: float) -> sv.Detections:
    """One detection per face: the best-scoring of boxes overlapping by more than ``iou`` (order: by score)."""
    if len(found) <= 1:
        return found
    scores = _scores(found)
    order = np.argsort(-scores, kind="stable")
    overlaps = sv.box_iou_batch(found.xyxy[order], found.xyxy[order])
    keep = np.ones(len(order), dtype=bool)
    for i in range(len(order)):
        if keep[i]:
            keep[i + 1 :] &= overlaps[i, i + 1 :] <= iou
    return _select(found, np.sort(order[keep]))


def _scores(found: sv.Detections) -> np.ndarray:
    if found.confidence is None:
        raise ValueError("detections need confidence scores to be merged")
    return found.confidence


def _select(found: sv.Detections, index: np.ndarray) -> sv.Detections:
    return found[index]  # type: ignore[return-value]  # an index array selects a Detections


def _moved(found: sv.Detections, scale: float, offset_xy: tuple[float, float]) -> sv.Detections:
    """Detections from a scaled copy (level or region pixels) back to the picture's: xy / scale + offset."""
    shift = np.array(offset_xy, np.float32)
    found.xyxy = found.xyxy / scale + np.tile(shift, 2)
    for key in ("landmarks", "keypoints"):
        if key in found.data:
            found.data[key] = np.asarray(found.data[key]) / scale + shift
    return found


def _touching(xyxy: np.ndarray, size_wh: tuple[int, int], open_sides: tuple[bool, bool, bool, bool]) -> np.ndarray:
    """Boxes touching a side of their tile / region that is shared with another one (left, top, right, bottom)."""
    margin = 1.0
    width, height = size_wh
    touches = np.stack([xyxy[:, 0] <= margin, xyxy[:, 1] <= margin, xyxy[:, 2] >= width - margin, xyxy[:, 3] >= height - margin], axis=1)
    result: np.ndarray = (touches & np.array(open_sides)).any(axis=1)
    return result


class FaceSearch:
    """``find(picture)`` for every face in it; ``around(picture, boxes)`` near known faces. Thread-safe (state-free)."""

    def __init__(self, detector: FaceDetector, options: SearchOptions | None = None):
        self.detector = detector
        self.options = options or SearchOptions()
        low, high = detector.face_range_px
        if not 0 < low < high:
            raise ValueError(f"{detector.name}: face_range_px must be (low, high) with 0 < low < high, got {detector.face_range_px}")
        self.level_ratio = max(LEVEL_OVERLAP, high / low / LEVEL_OVERLAP)
        fixed = detector.fixed_input_side_px
        self.region_side_px = fixed or ALIGN_PX * math.ceil(self.options.region_side_per_face * low * REGION_FACE_PER_MIN / ALIGN_PX)

    @property
    def name(self) -> str:
        return self.detector.name

    def min_face_px_for(self, width: int, height: int) -> float:
        """The smallest face looked for in a picture of this size (``min_face_px`` unless the picture is so large
        that the network would see more than ``max_network_pixels``)."""
        return self.plan(width, height).min_face_px

    def largest_picture_at_min_face_px(self) -> int:
        """The most pixels a picture may have and still be searched from ``min_face_px``."""
        scale = self.detector.face_range_px[0] / self.options.min_face_px
        return int(self.options.max_network_pixels / (scale * scale))

    def plan(self, width: int, height: int) -> SearchPlan:
        low, high = self.detector.face_range_px
        scale = low / self.options.min_face_px
        if width * height * scale * scale > self.options.max_network_pixels:
            scale = math.sqrt(self.options.max_network_pixels / (width * height))
        min_face_px = low / scale
        levels = []
        while True:
            levels.append(self._level(width, height, scale))
            if high / scale >= min(width, height) or len(levels) >= 8:
                break
            scale /= self.level_ratio
        return SearchPlan(min_face_px, tuple(levels))

    def _level(self, width: int, height: int, scale: float) -> Level:
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        low = self.detector.face_range_px[0]
        fixed = self.detector.fixed_input_side_px
        tile = fixed or self.options.tile_side_px
        # The overlap holds any face smaller than the next level's smallest, so such a face is whole in one tile.
        overlap = min(tile // 2, math.ceil(low * self.level_ratio))
        if not fixed:
            overlap = ALIGN_PX * math.ceil(overlap / ALIGN_PX)
        xs, ys = _starts(size[0], tile, overlap), _starts(size[1], tile, overlap)
        tiles = tuple((x, y, min(x + tile, size[0]), min(y + tile, size[1])) for y in ys for x in xs)
        return Level(scale, size, tiles)

    def find(self, image_bgr: np.ndarray, profiles: bool = False) -> sv.Detections:
        """Every face in the picture, in its pixels (``profiles``: near-profile faces too, marked
        ``data["frontal"] == False``: the stream schedules keep following a face while it is turned away)."""
        height, width = image_bgr.shape[:2]
        if width == 0 or height == 0:
            return no_detections()
        plan = self.plan(width, height)
        return self._kept(self._levels(image_bgr, plan.levels), plan.min_face_px, profiles)

    def _levels(self, image_bgr: np.ndarray, levels: Sequence[Level]) -> sv.Detections:
        parts = []
        for level in levels:
            scaled = _resized(image_bgr, level.size_wh)
            for x0, y0, x1, y1 in level.tiles_xyxy:
                found = self.detector.detect(scaled[y0:y1, x0:x1])
                shared_sides = (x0 > 0, y0 > 0, x1 < level.size_wh[0], y1 < level.size_wh[1])
                found = _select(found, np.flatnonzero(~_touching(found.xyxy, (x1 - x0, y1 - y0), shared_sides)))
                parts.append(_moved(found, level.scale, (x0 / level.scale, y0 / level.scale)))
        return _merged(parts)

    def around(
        self,
        image_bgr: np.ndarray,
        boxes_xyxy: np.ndarray,
        side_per_face: float | np.ndarray | None = None,
        profiles: bool = False,
        whole_picture: bool = False,
    ) -> sv.Detections:
        """Faces within regions around ``boxes_xyxy`` (known faces, e.g. last frame's), ``side_per_face`` face
        sides wide (one for all or one per box; default: the options'), each scaled to the network's region
        input, all in one batch. ``whole_picture``: the whole picture shrunk to one more region of that size, which
        finds the largest faces anywhere (from 25 px at 64: a 250-px face in a 640-px frame) for no more than
        another face's cost. ``profiles``: as for ``find``."""
        boxes = np.asarray(boxes_xyxy, np.float32).reshape(-1, 4)
        height, width = image_bgr.shape[:2]
        if width == 0 or height == 0 or not (len(boxes) or whole_picture):
            return no_detections()
        factor = np.broadcast_to(
            np.asarray(self.options.region_side_per_face if side_per_face is None else side_per_face, np.float32), len(boxes)
        )
        centres = (boxes[:, :2] + boxes[:, 2:]) / 2
        sides = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]).clip(min=1) * factor
        if whole_picture:
            centres = np.concatenate([centres, [[width / 2, height / 2]]]).astype(np.float32)
            sides = np.concatenate([sides, [max(width, height)]]).astype(np.float32)
        side_px = self.region_side_px
        crops, regions = [], []
        for (cx, cy), side in zip(centres, sides, strict=True):
            scale = side_px / side
            x0, y0 = cx - side / 2, cy - side / 2
            matrix = np.array([[scale, 0, -x0 * scale], [0, scale, -y0 * scale]], np.float32)
            interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
            crops.append(cv2.warpAffine(image_bgr, matrix, (side_px, side_px), flags=interpolation, borderMode=cv2.BORDER_CONSTANT))
            regions.append((scale, float(x0), float(y0), float(side)))
        parts = []
        min_score = self.detector.score_threshold * self.options.region_score_per_threshold
        for found, (scale, x0, y0, side) in zip(self.detector.detect_many(crops, min_score), regions, strict=True):
            # A face cut by the region's side belongs to a neighbour (found whole in its own region or the next
            # search), unless that side is the picture's own edge.
            shared_sides = (x0 > 0, y0 > 0, x0 + side < width, y0 + side < height)
            found = _select(found, np.flatnonzero(~_touching(found.xyxy, (side_px, side_px), shared_sides)))
            found = _moved(found, scale, (x0, y0))
            found.xyxy = np.clip(found.xyxy, 0, [width, height, width, height])
            parts.append(found)
        return self._kept(_merged(parts), self.min_face_px_for(width, height), profiles)

    def _kept(self, found: sv.Detections, min_face_px: float, profiles: bool) -> sv.Detections:
        """Merged, without faces too small to read, and marked frontal or not where the network gives landmarks
        (near profiles dropped unless ``profiles``)."""
        if not len(found):
            return frontal_only(found) if not profiles else _marked(found, np.zeros(0, bool))
        found = merge(found, self.options.merge_iou)
        heights = found.xyxy[:, 3] - found.xyxy[:, 1]  # a face's size is its height (faces are narrower than tall)
        found = _select(found, np.flatnonzero(heights >= self.options.smallest_kept_per_min_face * min_face_px))
        landmarks = np.asarray(found.data.get("landmarks", np.full((len(found), 5, 2), np.nan)))
        along = nose_along_eyes(landmarks)
        eye_span = np.linalg.norm(landmarks[:, 1] - landmarks[:, 0], axis=1) / np.maximum(found.xyxy[:, 2] - found.xyxy[:, 0], 1e-6)
        nose_between = np.isnan(along) | (np.abs(along - 0.5) <= 0.5 + self.options.max_nose_outside_eyes)
        eyes_apart = np.isnan(eye_span) | (eye_span >= self.options.min_eye_span_per_face_width)
        found = _marked(found, nose_between & eyes_apart)
        return found if profiles else frontal_only(found)


def _merged(parts: list[sv.Detections]) -> sv.Detections:
    """One Detections of many; with no face at all, an empty one that still has its landmarks (merge drops them)."""
    found = [part for part in parts if len(part)]
    return sv.Detections.merge(found) if found else no_detections()


def _marked(found: sv.Detections, frontal: np.ndarray) -> sv.Detections:
    found.data["frontal"] = np.asarray(frontal, bool)
    return found


def frontal_only(found: sv.Detections) -> sv.Detections:
    """Without the near-profile faces (``data["frontal"]``, set by FaceSearch); the mark itself is dropped."""
    frontal = np.asarray(found.data.pop("frontal", np.ones(len(found), bool)), bool)
    return _select(found, np.flatnonzero(frontal))


def _resized(image: np.ndarray, size_wh: tuple[int, int]) -> np.ndarray:
    if size_wh == (image.shape[1], image.shape[0]):
        return image
    shrinking = size_wh[0] < image.shape[1]
    if shrinking and 2 * size_wh[0] < image.shape[1] and 2 * size_wh[1] < image.shape[0]:
        # Large reductions: bilinear to twice the size, then area averaging by two - what INTER_AREA over the
        # whole picture finds, at a third of its cost (aliasing from bilinear alone loses small faces).
        image = cv2.resize(image, (2 * size_wh[0], 2 * size_wh[1]), interpolation=cv2.INTER_LINEAR)
    return cv2.resize(image, size_wh, interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)
