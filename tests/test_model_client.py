"""The face models, over gRPC (``ModelServerClient``, against the model server's gRPC front end on a thread of
this process) and in process (``InProcessModels``): the same models, heads, labels and numbers either way."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from emotion_detector.crops import crop_faces
from emotion_detector.detection import DetectorOptions, create_detector
from emotion_detector.face_models import FaceModels, InProcessModels, create_models
from emotion_detector.model_client import ModelServerClient, ModelServerError
from emotion_detector.settings import Settings
from tests.conftest import SHIPPED_MODELS, start_thread_model_server


def face_batch(shared_dir, spec) -> np.ndarray:
    image = cv2.imread(str(shared_dir / "media" / "images" / "two_people.jpg"))
    height, width = image.shape[:2]
    boxes = np.array([[0, 0, width / 2, height], [width / 2, 0, width, height]], np.float32)
    return spec.normalise(crop_faces(image, boxes, spec.crop_rule("none"), spec.size, spec.grey))


@pytest.fixture(scope="module")
def grpc_models(thread_model_server):
    client = ModelServerClient(thread_model_server.grpc_target)
    yield client
    client.close()


@pytest.fixture(scope="module")
def real_faces(shared_dir) -> list[tuple[np.ndarray, np.ndarray, str]]:
    """(image, face boxes, detector name): faces the default detector finds in real photographs, and aligned
    UTKFace faces whole (detector "none")."""
    detector = create_detector(DetectorOptions.from_settings(Settings()))
    found = []
    for name in ("obama.jpg", "biden.jpg", "two_people.jpg", "multi_face.jpg", "single_face.jpg", "obama_small.jpg"):
        image = cv2.imread(str(shared_dir / "media" / "images" / name))
        found.append((image, detector.detect(image).xyxy, detector.name))
    for path in sorted((shared_dir / "data" / "utkface" / "images").glob("*.jpg"))[::2500][:8]:
        image = cv2.imread(str(path))
        found.append((image, np.array([[0, 0, image.shape[1], image.shape[0]]], np.float32), "none"))
    assert sum(len(boxes) for _, boxes, _ in found) >= 12
    return found


def crops(faces: list[tuple[np.ndarray, np.ndarray, str]], spec) -> np.ndarray:
    return spec.normalise(
        np.concatenate([crop_faces(image, boxes, spec.crop_rule(detector), spec.size, spec.grey) for image, boxes, detector in faces])
    )


def test_age_and_gender_come_from_the_two_headed_model_in_one_request(grpc_models, shared_dir):
    specs = grpc_models.specs()
    assert set(specs) == {"emotion", "age_gender"}
    assert set(specs["age_gender"].outputs) == {"age", "gender"} and not specs["age_gender"].every_face
    assert specs["emotion"].every_face
    outputs = grpc_models.predict({"age_gender": face_batch(shared_dir, specs["age_gender"])})
    assert outputs["age"].shape == (2,) and outputs["gender"].shape == (2, 2)
    np.testing.assert_allclose(outputs["gender"].sum(axis=1), 1, atol=1e-5)
    assert grpc_models.labels("gender") == ("female", "male")


def test_a_server_without_the_two_headed_model_is_used_through_the_separate_ones(grpc_models, shared_dir, tmp_path):
    config = tmp_path / "models.config"
    entries = "".join(f'config {{ name: "{name}" base_path: "{SHIPPED_MODELS / name}" }}\n' for name in ("emotion", "age", "gender"))
    config.write_text(f"model_config_list {{\n{entries}}}\n")
    older = start_thread_model_server(config)
    separate = ModelServerClient(older.grpc_target)
    try:
        assert set(separate.specs()) == {"emotion", "age", "gender"}
        batch = face_batch(shared_dir, grpc_models.specs()["age_gender"])
        one_pass = grpc_models.predict({"age_gender": batch})
        two_passes = separate.predict({"age": batch, "gender": batch})
        # The same network's heads: the same answers, whichever way they are asked.
        assert two_passes["age"] == pytest.approx(one_pass["age"], abs=0.05)
        np.testing.assert_allclose(two_passes["gender"], one_pass["gender"], atol=0.01)
    finally:
        separate.close()
        older.server.stop(grace=None)


def test_both_implementations_satisfy_the_interface(grpc_models, inprocess_models):
    assert isinstance(grpc_models, FaceModels) and isinstance(inprocess_models, FaceModels)


def test_in_process_and_grpc_describe_the_same_models(grpc_models, inprocess_models):
    ours, theirs = inprocess_models.specs(), grpc_models.specs()
    assert ours.keys() == theirs.keys() == {"emotion", "age_gender"}
    for name in ours:
        assert ours[name] == theirs[name], name  # version, input, outputs with labels and thresholds, crop rules
    for head in ("emotion", "gender"):
        assert inprocess_models.labels(head) == grpc_models.labels(head)
    assert inprocess_models.uncertain_below("emotion") == grpc_models.uncertain_below("emotion") > 0


def test_in_process_and_grpc_give_the_same_numbers_on_real_faces(grpc_models, inprocess_models, real_faces):
    specs = inprocess_models.specs()
    batches = {
        name: spec.normalise(
            np.concatenate(
                [crop_faces(image, boxes, spec.crop_rule(detector), spec.size, spec.grey) for image, boxes, detector in real_faces]
            )
        )
        for name, spec in specs.items()
    }
    here, there = inprocess_models.predict(batches), grpc_models.predict(batches)
    pending_here, pending_there = inprocess_models.submit(batches), grpc_models.submit(batches)
    assert here.keys() == there.keys() == {"emotion", "age", "gender"}
    for outputs in (pending_here.result(), pending_there.result()):
        for head in here:
            np.testing.assert_allclose(outputs[head], here[head], atol=1e-5, err_msg=head)
    np.testing.assert_allclose(here["emotion"], there["emotion"], atol=1e-5)
    np.testing.assert_allclose(here["gender"], there["gender"], atol=1e-5)
    np.testing.assert_allclose(here["age"], there["age"], atol=1e-3)  # years
    assert len(set(here["emotion"].argmax(axis=1))) > 1  # the faces differ: the comparison means something


def test_a_bad_batch_is_a_model_error_either_way(grpc_models, inprocess_models):
    wrong_size = {"emotion": np.zeros((1, 12, 12, 1), np.float32)}
    for models in (grpc_models, inprocess_models):
        with pytest.raises(ModelServerError, match=r"\[-1, 48, 48, 1\]"):
            models.predict(wrong_size)


def test_create_models_runs_them_in_process_unless_given_a_model_server(tmp_path):
    assert isinstance(create_models(Settings(model_server="inprocess")), InProcessModels)
    assert isinstance(create_models(Settings(model_server="")), InProcessModels)
    remote = create_models(Settings(model_server="127.0.0.1:1"), timeout_s=7.0)
    assert isinstance(remote, ModelServerClient) and remote.timeout_s == 7.0
    remote.close()
    default = Settings.model_fields["model_server"].default
    assert isinstance(create_models(Settings(model_server=default)), ModelServerClient)  # the web app's default: the model server
    with pytest.raises(ModelServerError, match="none of the model sets"):
        InProcessModels(tmp_path)
