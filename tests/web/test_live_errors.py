"""The live handler's error answers, in process (the websocket itself is in test_live_socket.py, slow)."""

from __future__ import annotations


def test_an_unexpected_error_in_one_frame_becomes_an_internal_error_message(monkeypatch):
    from emotion_detector.web import live

    class Broken:
        def process(self, frame: bytes):
            raise IndexError("a bug")

    answer = live._process(Broken(), b"frame", 7, 0)
    assert answer == {"type": "error", "frame": 7, "code": "internal_error", "message": answer["message"]}
