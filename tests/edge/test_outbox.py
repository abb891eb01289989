"""The edge command's on-disk queue: order, deletion only on acknowledgement, the bound, survival of a restart."""

from pathlib import Path

import pytest

from emotion_detector.edge.outbox import Outbox


def fill(outbox: Outbox, n: int, start: int = 0) -> None:
    for i in range(start, start + n):
        outbox.append("emotion-detector/door-1/events", f"event {i}".encode())


def payloads(rows: list[tuple[int, str, bytes]]) -> list[str]:
    return [payload.decode() for _, _, payload in rows]


def test_events_come_out_in_order_and_leave_only_when_acknowledged(tmp_path: Path):
    outbox = Outbox(tmp_path / "outbox.sqlite3", max_events=100)
    fill(outbox, 5)
    first = outbox.take(2)
    assert payloads(first) == ["event 0", "event 1"]
    assert payloads(outbox.take(10)) == ["event 2", "event 3", "event 4"]  # taken ones are not handed out twice
    assert outbox.take(10) == []
    assert len(outbox) == 5 and outbox.waiting == 0
    for row_id, _, _ in first:
        outbox.ack(row_id)
    assert len(outbox) == 3


def test_beyond_the_bound_the_oldest_waiting_events_are_dropped_and_counted_never_those_in_flight(tmp_path: Path):
    outbox = Outbox(tmp_path / "outbox.sqlite3", max_events=3)
    fill(outbox, 2)
    in_flight = outbox.take(2)
    fill(outbox, 5, start=2)  # events 2..6 wait; only the newest 3 are kept
    assert outbox.dropped == 2
    assert payloads(outbox.take(10)) == ["event 4", "event 5", "event 6"]
    assert len(outbox) == 5  # the 2 in flight are still there until acknowledged
    for row_id, _, _ in in_flight:
        outbox.ack(row_id)
    assert len(outbox) == 3


def test_unacknowledged_events_survive_a_restart_and_go_first_in_their_order(tmp_path: Path):
    path = tmp_path / "deep" / "outbox.sqlite3"
    outbox = Outbox(path, max_events=10)
    fill(outbox, 3)
    row_id, _, _ = outbox.take(1)[0]
    outbox.ack(row_id)
    outbox.take(1)  # in flight when the process stopped: not acknowledged, so sent again
    outbox.close()
    reopened = Outbox(path, max_events=10)
    fill(reopened, 1, start=3)
    assert payloads(reopened.take(10)) == ["event 1", "event 2", "event 3"]
    assert reopened.dropped == 0


def test_a_bound_below_one_is_refused(tmp_path: Path):
    with pytest.raises(ValueError, match="max_events must be >= 1, got 0"):
        Outbox(tmp_path / "outbox.sqlite3", max_events=0)
