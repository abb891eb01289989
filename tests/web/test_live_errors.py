"""The live handler's error answers, in process (the websocket itself is in test_live_socket.py, slow)."""

from __future__ import annotations


def test_an_unexpected_error_in_one_frame_becomes_an_internal_error_message(monkeypatch):
    from emotion_detector.web import live

    class Broken:
        def process(self, frame: bytes):
            raise IndexError("a bug")

    answer = live._process(Broken(), b"frame", 7, 0)
    assert answer == {"type": "error", "frame": 7, "code": "internal_error", "message": answer["message"]}


def test_a_config_message_with_an_unknown_field_is_refused_naming_it():
    from emotion_detector.web import live

    answer = live._control('{"type": "config", "min_face_px": 10}')
    assert answer["type"] == "error" and answer["code"] == "bad_message"
    assert "unknown field 'min_face_px' in a config message" in answer["message"]
    assert live._control('{"type": "ping", "t": 1, "extra": true}')["code"] == "bad_message"


def test_known_control_messages_are_answered():
    from emotion_detector.web import live

    assert live._control('{"type": "config"}') == {"type": "config", "accepted": True}
    assert live._control('{"type": "ping", "t": 5}') == {"type": "pong", "t": 5}
