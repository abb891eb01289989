"""The web app's model-server client: it learns models from metadata and runs age and gender in one pass."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from emotion_detector.crops import crop_faces
from emotion_detector.model_client import ModelServerClient
from tests.conftest import SHIPPED_MODELS, start_model_server, stop


def face_batch(shared_dir, spec) -> np.ndarray:
    image = cv2.imread(str(shared_dir / "media" / "images" / "two_people.jpg"))
    height, width = image.shape[:2]
    boxes = np.array([[0, 0, width / 2, height], [width / 2, 0, width, height]], np.float32)
    return spec.normalise(crop_faces(image, boxes, spec.crop_rule("none"), spec.size, spec.grey))


def test_age_and_gender_come_from_the_two_headed_model_in_one_request(model_server, shared_dir):
    client = ModelServerClient(model_server.grpc_target)
    specs = client.specs()
    assert set(specs) == {"emotion", "age_gender"}
    assert set(specs["age_gender"].outputs) == {"age", "gender"} and not specs["age_gender"].every_face
    assert specs["emotion"].every_face
    outputs = client.predict({"age_gender": face_batch(shared_dir, specs["age_gender"])})
    assert outputs["age"].shape == (2,) and outputs["gender"].shape == (2, 2)
    np.testing.assert_allclose(outputs["gender"].sum(axis=1), 1, atol=1e-5)
    assert client.labels("gender") == ("female", "male")
    client.close()


def test_a_server_without_the_two_headed_model_is_used_through_the_separate_ones(model_server, shared_dir, tmp_path):
    config = tmp_path / "models.config"
    entries = "".join(f'config {{ name: "{name}" base_path: "{SHIPPED_MODELS / name}" }}\n' for name in ("emotion", "age", "gender"))
    config.write_text(f"model_config_list {{\n{entries}}}\n")
    older = start_model_server(tmp_path, "--model_config_file", str(config))
    try:
        combined, separate = ModelServerClient(model_server.grpc_target), ModelServerClient(older.grpc_target)
        assert set(separate.specs()) == {"emotion", "age", "gender"}
        batch = face_batch(shared_dir, combined.specs()["age_gender"])
        one_pass = combined.predict({"age_gender": batch})
        two_passes = separate.predict({"age": batch, "gender": batch})
        # The same network's heads: the same answers, whichever way they are asked.
        assert two_passes["age"] == pytest.approx(one_pass["age"], abs=0.05)
        np.testing.assert_allclose(two_passes["gender"], one_pass["gender"], atol=0.01)
    finally:
        stop(older.process)
