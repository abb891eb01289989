"""Golden answers: ``FaceAnalyzer.analyze_image`` (the default detector, the shipped models in process) on real
photographs and one without a face, against the reviewed JSON in tests/golden/analyze_image.json.

Tolerances: boxes within BOX_TOLERANCE_PX, every probability within PROBABILITY_TOLERANCE and the same top
label, age within AGE_TOLERANCE_YEARS. After a deliberate change (a new model version, another detector),
regenerate with ``python -m tests.test_golden``, review the diff, and commit it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from emotion_detector.detection import DetectorOptions, create_detector
from emotion_detector.face_models import FaceModels, InProcessModels
from emotion_detector.pipeline import FaceAnalyzer
from emotion_detector.settings import Settings
from tests.conftest import SHARED

GOLDEN = Path(__file__).parent / "golden" / "analyze_image.json"
IMAGES = ["obama.jpg", "two_people.jpg", "single_face.jpg", "astronaut.png", "BWPictureHuman.jpg"]  # the last: no frontal face
BOX_TOLERANCE_PX = 3.0
PROBABILITY_TOLERANCE = 0.02
AGE_TOLERANCE_YEARS = 1.0


def analyzer_for(models: FaceModels) -> FaceAnalyzer:
    settings = Settings(model_server="inprocess")
    return FaceAnalyzer(create_detector(DetectorOptions.from_settings(settings)), models, settings)


def answer(analyzer: FaceAnalyzer, name: str) -> dict:
    found = analyzer.analyze_image((SHARED / "media" / "images" / name).read_bytes()).to_json()
    del found["timing_ms"]
    return found


@pytest.fixture(scope="module")
def analyzer(inprocess_models) -> FaceAnalyzer:
    return analyzer_for(inprocess_models)


@pytest.fixture(scope="module")
def golden() -> dict:
    return json.loads(GOLDEN.read_text())


def test_the_golden_file_covers_faces_and_a_picture_without_one(golden):
    assert list(golden) == IMAGES
    assert sum(len(answer["faces"]) for answer in golden.values()) >= 5
    assert golden["BWPictureHuman.jpg"]["faces"] == []


@pytest.mark.parametrize("name", IMAGES)
def test_an_image_gives_its_golden_answer(analyzer, golden, name):
    expected, found = golden[name], answer(analyzer, name)
    assert (found["width"], found["height"]) == (expected["width"], expected["height"])
    assert (found["detection"], found.get("message")) == (expected["detection"], expected.get("message"))  # why it is empty
    assert len(found["faces"]) == len(expected["faces"]), found["faces"]
    for face, wanted in zip(found["faces"], expected["faces"], strict=True):  # in the detector's order
        assert face["box"] == pytest.approx(wanted["box"], abs=BOX_TOLERANCE_PX)
        assert face["score"] == pytest.approx(wanted["score"], abs=PROBABILITY_TOLERANCE)
        assert face["emotion"]["label"] == wanted["emotion"]["label"]
        assert face["emotion"]["uncertain"] == wanted["emotion"]["uncertain"]
        assert face["emotion"]["probabilities"] == pytest.approx(wanted["emotion"]["probabilities"], abs=PROBABILITY_TOLERANCE)
        assert face["age"]["years"] == pytest.approx(wanted["age"]["years"], abs=AGE_TOLERANCE_YEARS)
        assert face["gender"]["label"] == wanted["gender"]["label"]
        assert face["gender"]["confidence"] == pytest.approx(wanted["gender"]["confidence"], abs=PROBABILITY_TOLERANCE)


def regenerate() -> None:
    models = InProcessModels()
    analyzer = analyzer_for(models)
    GOLDEN.parent.mkdir(exist_ok=True)
    GOLDEN.write_text(json.dumps({name: answer(analyzer, name) for name in IMAGES}, indent=1) + "\n")
    models.close()
    print(f"wrote {GOLDEN}; review the diff before committing it", file=sys.stderr)


if __name__ == "__main__":
    regenerate()
