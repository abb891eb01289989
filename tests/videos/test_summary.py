"""Segment planning, joining tracks across segment boundaries, and per-person statistics."""

from __future__ import annotations

import pytest

from emotion_detector.labels import EMOTIONS
from emotion_detector.videos.jobs import plan_segments
from emotion_detector.videos.summary import (
    PersonFrame,
    PersonRule,
    PersonStats,
    Row,
    crosses_cut,
    csv_rows,
    group_mix,
    join_tracks,
    main_people,
    people_frames,
    person_stats,
)

HAPPY = tuple(0.9 if e == "happy" else 0.1 / 6 for e in EMOTIONS)
SAD = tuple(0.7 if e == "sad" else 0.05 for e in EMOTIONS)
UNSURE = tuple(0.4 if e == "sad" else 0.1 for e in EMOTIONS)  # sad on top, but at 40 %


def test_segments_cover_every_frame_once_and_overlap_their_neighbour():
    plan = plan_segments(frame_count=1800, fps=30, segment_seconds=10, overlap=6)
    assert [(s, e) for s, e, _ in plan] == [(0, 300), (300, 600), (600, 900), (900, 1200), (1200, 1500), (1500, 1800)]
    assert [o for _, _, o in plan] == [306, 606, 906, 1206, 1506, 1800]


def test_a_short_remainder_joins_the_last_segment():
    plan = plan_segments(frame_count=610, fps=30, segment_seconds=10, overlap=6)
    assert [(s, e) for s, e, _ in plan] == [(0, 300), (300, 610)]


def rows_for(segment: int, track: int, frames: range, x: float, owned_until: int, emotion=HAPPY) -> list[Row]:
    return [Row(segment, f, track, f >= owned_until, (x, 10.0, x + 50, 60.0), 0.9, emotion, 30.0, 0.2) for f in frames]


def test_two_people_keep_their_ids_across_a_segment_boundary():
    # Segment 0 owns frames 0-9 and also analyses 10-12; segment 1 owns 10-19. Local ids differ per segment.
    rows = [
        *rows_for(0, 1, range(0, 13), x=0, owned_until=10),
        *rows_for(0, 2, range(0, 13), x=200, owned_until=10, emotion=SAD),
        *rows_for(1, 7, range(10, 20), x=201, owned_until=99, emotion=SAD),
        *rows_for(1, 5, range(10, 20), x=2, owned_until=99),
    ]
    persons = join_tracks(rows)
    assert persons[(0, 1)] == persons[(1, 5)] == 1
    assert persons[(0, 2)] == persons[(1, 7)] == 2
    people = people_frames(rows, persons)
    assert [f.frame_index for f in people[1]] == list(range(20))  # overlap frames counted once
    stats = person_stats(people[2], fps=10, analysed_frames=20)
    assert stats.most_common_expression == "sad" and stats.frames_seen == 20
    assert stats.expression_counts["sad"] == 20 and stats.first_seen_s == 0.0 and stats.last_seen_s == pytest.approx(1.9)
    assert stats.gender.label == "male" and stats.age.mean_years == 30.0
    assert PersonStats.model_validate(stats.to_json()) == stats  # stored as JSON and read back whole


def test_a_face_that_appears_only_in_the_next_segment_is_a_new_person():
    rows = [*rows_for(0, 1, range(0, 13), x=0, owned_until=10), *rows_for(1, 3, range(15, 20), x=400, owned_until=99)]
    persons = join_tracks(rows)
    assert persons[(0, 1)] == 1 and persons[(1, 3)] == 2


def test_brief_sightings_are_not_main_people():
    rows = rows_for(0, 1, range(0, 90), x=0, owned_until=999) + rows_for(0, 2, range(0, 2), x=400, owned_until=999)
    people = people_frames(rows, join_tracks(rows))
    stats = {person: person_stats(frames, fps=10, analysed_frames=100) for person, frames in people.items()}
    assert main_people(stats) == [1]


def test_frames_below_the_models_threshold_count_as_uncertain_not_as_their_top_expression():
    rows = rows_for(0, 1, range(0, 4), x=0, owned_until=99, emotion=UNSURE) + rows_for(0, 1, range(4, 6), x=0, owned_until=99, emotion=SAD)
    people = people_frames(rows, join_tracks(rows))
    stats = person_stats(people[1], fps=10, analysed_frames=6, uncertain_below=0.5)
    assert stats.expression_counts["uncertain"] == 4 and stats.expression_counts["sad"] == 2
    assert stats.most_common_expression == "sad"  # the most common expression that was clear enough to name
    assert person_stats(people[1][:4], fps=10, analysed_frames=6, uncertain_below=0.5).most_common_expression == "uncertain"
    assert person_stats(people[1], fps=10, analysed_frames=6).expression_counts["sad"] == 6  # a model without a threshold
    (first_second,) = group_mix(people, fps=10, duration_s=0.6, uncertain_below=0.5)
    assert first_second["share"]["uncertain"] == pytest.approx(4 / 6, abs=1e-4)
    assert first_second["share"]["sad"] == pytest.approx(2 / 6, abs=1e-4)
    flags = [row[9] for row in csv_rows(people, fps=10, uncertain_below=0.5)]
    assert flags == [True] * 4 + [False] * 2
    faces = [frame.face(1, uncertain_below=0.5).to_json()["emotion"] for frame in people[1]]
    assert [f["uncertain"] for f in faces] == flags and {f["label"] for f in faces} == {"sad"}  # the JSON keeps the label and probabilities


def test_the_person_rule_counts_tracks_seen_long_and_confidently_enough():
    rule = PersonRule(min_seen_s=1.0, min_mean_score=0.75)
    long = [PersonFrame(f, (0.0, 0.0, 50.0, 50.0), HAPPY, 30.0, 0.2, 0.9) for f in range(10)]
    faint = [PersonFrame(f, (0.0, 0.0, 50.0, 50.0), HAPPY, 30.0, 0.2, 0.72) for f in range(10)]
    assert rule.counts(person_stats(long, fps=10, analysed_frames=10))  # 10 frames at 10 fps: 1 s
    assert not rule.counts(person_stats(long[:9], fps=10, analysed_frames=10))  # 0.9 s: a brief detection
    assert rule.counts(person_stats(long[:5], fps=10, analysed_frames=10, every_n_frames=2))  # every 2nd frame analysed
    assert not rule.counts(person_stats(faint, fps=10, analysed_frames=10))
    stats = {1: person_stats(long, fps=10, analysed_frames=10), 2: person_stats(faint, fps=10, analysed_frames=10)}
    assert main_people(stats) == [1, 2]
    assert main_people(stats, rule=rule) == [1]


def test_person_statistics_carry_valence_and_arousal_derived_from_the_expressions():
    happy = person_stats([PersonFrame(f, (0.0, 0.0, 9.0, 9.0), HAPPY, 30.0, 0.2, 0.9) for f in range(4)], fps=10, analysed_frames=4)
    sad = person_stats([PersonFrame(f, (0.0, 0.0, 9.0, 9.0), SAD, 30.0, 0.2, 0.9) for f in range(4)], fps=10, analysed_frames=4)
    assert happy.valence_mean > 0.5 > -0.3 > sad.valence_mean
    assert sad.arousal_mean < 0
    assert (happy.seen_s, happy.mean_score) == (0.4, 0.9)


def test_statistics_stored_before_valence_and_score_were_kept_still_load():
    stored = person_stats([PersonFrame(f, (0.0, 0.0, 9.0, 9.0), HAPPY, 30.0, 0.2, 0.9) for f in range(4)], fps=10, analysed_frames=4)
    old = stored.to_json()
    for key in ("seen_s", "mean_score", "valence_mean", "arousal_mean"):
        old.pop(key)
    loaded = PersonStats.model_validate(old)
    assert loaded.mean_score is None and loaded.seen_s == 0.3
    assert loaded.valence_mean == pytest.approx(stored.valence_mean, abs=1e-3)


@pytest.mark.parametrize(
    ("frames", "cuts", "crosses"),
    [
        ([3, 4, 5], [], False),
        ([3, 4, 5], [5], True),  # the cut starts a new shot at frame 5
        ([3, 4, 5], [3], False),  # all of it after the cut
        ([3, 4, 5], [6], False),
        ([5, 3], [4, 9], True),
    ],
)
def test_frames_cross_a_cut_when_it_starts_a_shot_between_them(frames, cuts, crosses):
    assert crosses_cut(frames, cuts) is crosses


def test_tracks_are_never_joined_across_a_cut_in_the_overlap():
    # Segment 0 owns 0-9 and analyses 10-12; a cut at 11 that only segment 0 saw (say) left segment 1's
    # track 5 running from 10 to 19 at the same place: the join must not bridge the cut.
    rows = [*rows_for(0, 1, range(0, 11), x=0, owned_until=10), *rows_for(1, 5, range(10, 20), x=2, owned_until=99)]
    assert join_tracks(rows)[(0, 1)] == join_tracks(rows)[(1, 5)]
    persons = join_tracks(rows, shot_cuts=[11])
    assert persons[(0, 1)] != persons[(1, 5)]
