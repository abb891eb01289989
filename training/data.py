"""Datasets from ``$EMOTION_SHARED_DIR/data`` (default ``../shared/data``) as in-memory uint8 tensors.

Both sets are small enough to keep in RAM, which is what makes CPU training practical: a batch is an
index into a tensor, augmentation runs batched in torch (training/augment.py), and no worker processes
compete with the model for the two cores.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from emotion_detector.labels import EMOTIONS

# FER+ vote columns in the order of fer2013.npz's `ferplus_columns`, mapped to FER2013 class indices.
# contempt has no FER2013 class; unknown / NF ("not a face") carry no expression.
FERPLUS_TO_FER = {"neutral": 6, "happiness": 3, "surprise": 5, "sadness": 4, "anger": 0, "disgust": 1, "fear": 2}

UTK_GENDER_TO_OURS = {0: 1, 1: 0}  # UTKFace: 0 = male, 1 = female; ours: GENDERS = (female, male)


def shared_dir() -> Path:
    return Path(os.environ.get("EMOTION_SHARED_DIR", Path(__file__).resolve().parents[2] / "shared"))


def default_data_dir() -> Path:
    return shared_dir() / "data"


@dataclass(frozen=True)
class FaceSet:
    """Images as uint8 (N, C, H, W) plus named per-image targets."""

    images: torch.Tensor
    targets: dict[str, torch.Tensor]

    def __len__(self) -> int:
        return self.images.shape[0]

    def subset(self, index: torch.Tensor) -> FaceSet:
        return FaceSet(self.images[index], {k: v[index] for k, v in self.targets.items()})


@dataclass(frozen=True)
class Splits:
    train: FaceSet
    val: FaceSet
    test: FaceSet | None = None


def load_fer2013(data_dir: Path, ferplus_mix: float = 0.0, drop_non_faces: bool = False) -> Splits:
    """FER2013 Training → train, PublicTest → val. Targets: ``emotion`` (hard FER2013 label) and
    ``emotion_soft`` ((1 - ferplus_mix) · one-hot + ferplus_mix · FER+ vote distribution)."""
    archive = np.load(data_dir / "fer2013" / "fer2013.npz")
    if tuple(archive["emotion_names"]) != EMOTIONS:
        raise ValueError(f"fer2013.npz emotion_names must be {EMOTIONS}, got {tuple(archive['emotion_names'])}")
    images = torch.from_numpy(archive["X"]).unsqueeze(1)
    labels = torch.from_numpy(archive["y"].astype(np.int64))
    votes = archive["ferplus_votes"].astype(np.float32)
    columns = list(archive["ferplus_columns"])

    ferplus = np.zeros((len(labels), len(EMOTIONS)), np.float32)
    for name, fer_index in FERPLUS_TO_FER.items():
        ferplus[:, fer_index] = votes[:, columns.index(name)]
    vote_total = ferplus.sum(axis=1, keepdims=True)
    has_votes = vote_total[:, 0] > 0
    ferplus = np.where(has_votes[:, None], ferplus / np.maximum(vote_total, 1), 0.0)

    one_hot = np.eye(len(EMOTIONS), dtype=np.float32)[archive["y"]]
    mix = np.where(has_votes, ferplus_mix, 0.0)[:, None]  # rows without FER+ votes keep their hard label
    soft = torch.from_numpy((1 - mix) * one_hot + mix * ferplus)

    everything = FaceSet(images, {"emotion": labels, "emotion_soft": soft})
    usage = archive["usage"]
    train_mask = usage == 0
    if drop_non_faces:
        non_face = votes[:, columns.index("NF")] > votes[:, : columns.index("NF")].max(axis=1)
        train_mask &= ~non_face
    return Splits(
        train=everything.subset(torch.from_numpy(np.flatnonzero(train_mask))),
        val=everything.subset(torch.from_numpy(np.flatnonzero(usage == 1))),
    )


def load_utkface(data_dir: Path, image_size: int, seed: int, val_fraction: float, test_fraction: float, cache_dir: Path) -> Splits:
    """UTKFace with a seeded random split into train / val / test. Targets: ``age_years`` (float),
    ``gender`` (index into GENDERS). Decoded images are cached as one .npz per size."""
    root = data_dir / "utkface"
    with open(root / "labels.csv", newline="") as handle:
        rows = [row for row in csv.DictReader(handle)]
    cache = cache_dir / f"utkface_{image_size}px_{len(rows)}.npz"
    if cache.exists():
        pixels = np.load(cache)["pixels"]
    else:
        pixels = np.stack([_read_rgb(root / "images" / row["file"], image_size) for row in rows])
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cache, pixels=pixels)
    images = torch.from_numpy(pixels).permute(0, 3, 1, 2).contiguous()
    ages = torch.tensor([float(row["age"]) for row in rows])
    genders = torch.tensor([UTK_GENDER_TO_OURS[int(row["gender"])] for row in rows])
    everything = FaceSet(images, {"age_years": ages, "gender": genders})

    order = torch.randperm(len(rows), generator=torch.Generator().manual_seed(seed))
    n_test = round(len(rows) * test_fraction)
    n_val = round(len(rows) * val_fraction)
    return Splits(
        test=everything.subset(order[:n_test]),
        val=everything.subset(order[n_test : n_test + n_val]),
        train=everything.subset(order[n_test + n_val :]),
    )


def utkface_split_files(data_dir: Path, seed: int, val_fraction: float, test_fraction: float) -> dict[str, list[str]]:
    """File names of each split, in the same order load_utkface uses (for baselines and reports)."""
    with open(data_dir / "utkface" / "labels.csv", newline="") as handle:
        files = [row["file"] for row in csv.DictReader(handle)]
    order = torch.randperm(len(files), generator=torch.Generator().manual_seed(seed)).tolist()
    n_test = round(len(files) * test_fraction)
    n_val = round(len(files) * val_fraction)
    return {
        "test": [files[i] for i in order[:n_test]],
        "val": [files[i] for i in order[n_test : n_test + n_val]],
        "train": [files[i] for i in order[n_test + n_val :]],
    }


def _read_rgb(path: Path, size: int) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(f"cannot decode {path}")
    image = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
