"""FaceSearch's geometry, pinned with a detector whose answers are known exactly: white squares on black are the
"faces", and the fake network reports every square it sees, cut ones clipped to what it was given, like a real
network's boxes at a border. Pyramid plans, tiles that cut faces, merging, regions around known faces."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import pytest
import supervision as sv

from emotion_detector.detection import FaceSearch, SearchOptions
from emotion_detector.detection.base import detections, no_detections
from emotion_detector.detection.search import merge


class SquareFinder:
    """Finds white squares between ``face_range_px`` in whatever picture it is given, as boxes in its pixels."""

    name = "squares"
    model = "none"
    degraded = False
    execution_provider = "cpu"
    score_threshold = 0.5

    def __init__(self, face_range_px=(25.0, 400.0), fixed_input_side_px: int | None = None):
        self.face_range_px = face_range_px
        self.fixed_input_side_px = fixed_input_side_px
        self.seen_shapes: list[tuple[int, int]] = []

    def detect(self, image_bgr: np.ndarray, min_score: float | None = None) -> sv.Detections:
        self.seen_shapes.append(image_bgr.shape[:2])
        grey = cv2.cvtColor(image_bgr, cv2.COLOR_BGR2GRAY) if image_bgr.ndim == 3 else image_bgr
        count, _, stats, _ = cv2.connectedComponentsWithStats((grey > 127).astype(np.uint8))
        boxes = [(x, y, x + w, y + h) for x, y, w, h, _ in stats[1:count] if max(w, h) >= self.face_range_px[0] * 0.5]
        if not boxes:
            return no_detections()
        return detections(np.array(boxes, np.float32), np.full(len(boxes), 0.9), np.full((len(boxes), 5, 2), np.nan))

    def detect_many(self, images_bgr: Sequence[np.ndarray], min_score: float | None = None) -> list[sv.Detections]:
        return [self.detect(image, min_score) for image in images_bgr]


def picture_with_squares(size_wh: tuple[int, int], squares_xyxy: list[tuple[int, int, int, int]]) -> np.ndarray:
    image = np.zeros((size_wh[1], size_wh[0], 3), np.uint8)
    for x1, y1, x2, y2 in squares_xyxy:
        image[y1:y2, x1:x2] = 255
    return image


def assert_found_once_each(found: sv.Detections, squares: list[tuple[int, int, int, int]], tolerance_px: float) -> None:
    assert len(found) == len(squares), f"found {len(found)} for {len(squares)}: {found.xyxy.round(1).tolist()}"
    iou = sv.box_iou_batch(np.array(squares, np.float32), found.xyxy)
    assert sorted(iou.argmax(axis=1).tolist()) == list(range(len(squares)))
    matched = found.xyxy[iou.argmax(axis=1)]
    np.testing.assert_allclose(matched, np.array(squares, np.float32), atol=tolerance_px)


def test_a_small_picture_is_one_level_scaled_for_the_smallest_face():
    search = FaceSearch(SquareFinder(), SearchOptions(min_face_px=20))
    plan = search.plan(320, 240)
    assert len(plan.levels) == 1 and plan.min_face_px == 20
    assert plan.levels[0].scale == pytest.approx(1.25) and plan.levels[0].size_wh == (400, 300)
    assert plan.levels[0].tiles_xyxy == ((0, 0, 400, 300),)


def test_a_level_ends_the_pyramid_once_its_largest_face_fills_the_picture():
    search = FaceSearch(SquareFinder(), SearchOptions(min_face_px=20))
    plan = search.plan(1280, 720)  # 400 / 1.25 = 320 px < 720: a smaller level for the largest faces
    assert [round(level.scale, 4) for level in plan.levels] == [1.25, round(1.25 / 8, 4)]
    assert 400 / plan.levels[-1].scale >= 720


def test_large_levels_are_tiled_with_an_overlap_that_holds_the_next_levels_smallest_face():
    search = FaceSearch(SquareFinder(), SearchOptions(min_face_px=20, tile_side_px=512))
    level = search.plan(1280, 720).levels[0]  # 1600 x 900
    xs = sorted({x0 for x0, *_ in level.tiles_xyxy})
    ys = sorted({y0 for _, y0, *_ in level.tiles_xyxy})
    assert all(x1 - x0 == 512 and y1 - y0 == 512 for x0, y0, x1, y1 in level.tiles_xyxy)
    assert xs[0] == 0 and xs[-1] == 1600 - 512 and ys[0] == 0 and ys[-1] == 900 - 512
    overlap = 512 - max(np.diff(xs).max(), np.diff(ys).max())
    assert overlap >= 25 * 8  # the next level (1/8 the scale) finds faces from 25 px at its input: 200 here


def test_very_large_pictures_are_searched_from_a_larger_face_within_the_pixel_budget():
    search = FaceSearch(SquareFinder(), SearchOptions(min_face_px=20, max_network_pixels=4_000_000))
    assert search.min_face_px_for(1600, 900) == 20  # 2.25 MP at 1.25x: within the budget
    plan = search.plan(6000, 4000)
    assert plan.min_face_px == pytest.approx(25 / np.sqrt(4_000_000 / 24_000_000))  # 61 px
    assert plan.levels[0].size_wh[0] * plan.levels[0].size_wh[1] <= 4_000_000 * 1.001
    assert search.largest_picture_at_min_face_px() == int(4_000_000 / 1.25**2)


@pytest.mark.parametrize("fixed", [None, 128], ids=["any-size network", "fixed 128-px network"])
def test_faces_cut_by_tile_borders_are_found_once_with_their_whole_box(fixed):
    """Squares of 30-200 px straddling every kind of tile border, corner included, on a 1280x720 picture."""
    squares = [(100, 100, 130, 130), (496, 300, 540, 344), (380, 380, 470, 470), (700, 60, 900, 260), (1000, 500, 1040, 540)]
    finder = SquareFinder(face_range_px=(16.0, 120.0) if fixed else (25.0, 400.0), fixed_input_side_px=fixed)
    search = FaceSearch(finder, SearchOptions(min_face_px=20, tile_side_px=400))
    plan = search.plan(1280, 720)
    assert sum(len(level.tiles_xyxy) for level in plan.levels) > 4  # the picture really is cut into tiles
    found = search.find(picture_with_squares((1280, 720), squares))
    # Boxes come back through a scaled copy: within a few pixels (a level at 1/4 scale: 4 px per pixel).
    assert_found_once_each(found, squares, tolerance_px=6)


def test_a_level_that_fits_the_network_is_not_cut():
    finder = SquareFinder()
    FaceSearch(finder, SearchOptions(min_face_px=20)).find(np.zeros((240, 320, 3), np.uint8))
    assert finder.seen_shapes == [(300, 400)]


def test_regions_around_known_faces_find_them_where_they_moved():
    squares = [(100, 100, 140, 140), (400, 200, 424, 224)]
    moved = [(x1 + 8, y1 - 5, x2 + 8, y2 - 5) for x1, y1, x2, y2 in squares]
    finder = SquareFinder()
    search = FaceSearch(finder, SearchOptions(min_face_px=20))
    found = search.around(picture_with_squares((640, 360), moved), np.array(squares, np.float32))
    assert_found_once_each(found, moved, tolerance_px=1.5)
    assert finder.seen_shapes == [(64, 64), (64, 64)]  # one region per face, at the network's region size


def test_a_neighbour_cut_by_a_region_is_left_to_its_own_region():
    near = [(100, 100, 140, 140), (150, 100, 190, 140)]  # each region (120 px wide) cuts 30 px into the other face
    search = FaceSearch(SquareFinder(), SearchOptions(min_face_px=20, region_side_per_face=3.0))
    found = search.around(picture_with_squares((640, 360), near), np.array(near[:1], np.float32))
    assert_found_once_each(found, near[:1], tolerance_px=1.5)  # the cut neighbour is not reported as a face
    found = search.around(picture_with_squares((640, 360), near), np.array(near, np.float32))
    assert_found_once_each(found, near, tolerance_px=1.5)


def test_a_region_at_the_pictures_edge_keeps_a_face_cut_by_the_edge():
    at_edge = [(0, 100, 30, 140)]  # the visible part of a face leaving the picture
    search = FaceSearch(SquareFinder(), SearchOptions(min_face_px=20))
    found = search.around(picture_with_squares((640, 360), at_edge), np.array(at_edge, np.float32))
    assert_found_once_each(found, at_edge, tolerance_px=1.5)


def test_nothing_to_look_around_and_empty_pictures_give_no_faces():
    search = FaceSearch(SquareFinder())
    assert len(search.around(np.zeros((360, 640, 3), np.uint8), np.zeros((0, 4)))) == 0
    assert len(search.find(np.zeros((0, 640, 3), np.uint8))) == 0
    assert len(search.find(np.zeros((360, 640, 3), np.uint8))) == 0


def test_too_small_and_near_profile_faces_are_dropped():
    finder = SquareFinder()
    search = FaceSearch(finder, SearchOptions(min_face_px=20))
    tiny = search.find(picture_with_squares((320, 240), [(10, 10, 20, 20), (40, 10, 54, 24), (100, 100, 140, 140)]))
    assert tiny.xyxy.round().tolist() == [[40, 10, 54, 24], [100, 100, 140, 140]]  # kept from 0.6 * 20 = 12 px high
    box = np.array([[0, 0, 40, 40]], np.float32)
    frontal = np.array([[[10, 15], [30, 15], [20, 25], [12, 32], [28, 32]]], np.float32)
    profile = frontal.copy()
    profile[0, 2] = [38, 25]  # the nose beyond the far eye: a head turned past ~60 degrees
    side_on = frontal.copy()
    side_on[0, :2] = [[18, 15], [22, 15]]  # the eyes on almost one spot (4 px apart in a 40-px box): seen from the side
    for landmarks, kept in ((frontal, 1), (profile, 0), (side_on, 0)):
        found = search._kept(detections(box, np.ones(1), landmarks), 20, profiles=False)
        assert len(found) == kept


def test_merge_keeps_the_best_of_overlapping_boxes():
    found = detections(
        np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60], [0, 0, 30, 30]], np.float32),
        np.array([0.6, 0.9, 0.8, 0.7]),
        np.zeros((4, 5, 2)),
    )
    merged = merge(found, iou=0.3)
    assert merged.xyxy.tolist() == [[1, 1, 11, 11], [50, 50, 60, 60], [0, 0, 30, 30]]  # detection order kept


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"min_face_px": 2}, "min_face_px must be >= 4, got 2"),
        ({"tile_side_px": 64}, "tile_side_px must be >= 128, got 64"),
        ({"region_side_per_face": 1.0}, "region_side_per_face must be >= 1.2, got 1.0"),
        ({"merge_iou": 1.5}, "merge_iou must be in (0, 1), got 1.5"),
    ],
)
def test_misuse_fails_fast_saying_why(options, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        SearchOptions(**options)


def test_a_detector_without_a_face_range_is_refused():
    with pytest.raises(ValueError, match="face_range_px must be"):
        FaceSearch(SquareFinder(face_range_px=(40.0, 20.0)))
