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
# contempt has no FER2013 class (see CONTEMPT_POLICIES); unknown / NF ("not a face") carry no expression.
FERPLUS_TO_FER = {"neutral": 6, "happiness": 3, "surprise": 5, "sadness": 4, "anger": 0, "disgust": 1, "fear": 2}
JUNK_COLUMNS = ("unknown", "NF")
# What contempt votes become in the product's 7 labels: "drop" ignores them (the other votes renormalise),
# "neutral" counts them as neutral. training/reports/v4_training.md says which v4 uses and why.
CONTEMPT_POLICIES = ("drop", "neutral")

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


def ferplus_counts(votes: np.ndarray, columns: list[str], contempt: str = "drop") -> np.ndarray:
    """FER+ votes (N, 10) in ``columns`` order → vote counts (N, 7) over EMOTIONS, contempt per ``contempt``."""
    if contempt not in CONTEMPT_POLICIES:
        raise ValueError(f"contempt must be one of {CONTEMPT_POLICIES}, got {contempt!r}")
    counts = np.zeros((len(votes), len(EMOTIONS)), np.float32)
    for name, fer_index in FERPLUS_TO_FER.items():
        counts[:, fer_index] = votes[:, columns.index(name)]
    if contempt == "neutral":
        counts[:, EMOTIONS.index("neutral")] += votes[:, columns.index("contempt")]
    return counts


def junk_vote_share(votes: np.ndarray, columns: list[str]) -> np.ndarray:
    """Fraction of each image's FER+ votes that say unknown or not-a-face."""
    junk = votes[:, [columns.index(c) for c in JUNK_COLUMNS]].sum(axis=1)
    return junk / np.maximum(votes.sum(axis=1), 1)


def ferplus_majority(votes: np.ndarray, columns: list[str], fer2013_labels: np.ndarray, contempt: str) -> np.ndarray:
    """The FER+ majority label used for evaluation: index into EMOTIONS, or -1 for an excluded image.

    The label is the emotion with the most of the 10 FER+ votes (contempt votes per ``contempt``); a tie is
    broken by the original FER2013 label when it is among the tied emotions, else by EMOTIONS order. An image
    is excluded when unknown or NF has at least as many votes as that emotion (its majority is junk).
    """
    counts = ferplus_counts(votes, columns, contempt)
    top = counts.max(axis=1)
    junk_top = votes[:, [columns.index(c) for c in JUNK_COLUMNS]].max(axis=1)
    label = (counts + 0.5 * np.eye(len(EMOTIONS), dtype=np.float32)[fer2013_labels]).argmax(axis=1)
    return np.where((top > junk_top) & (top > 0), label, -1)


def carve_validation(count: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded split of ``count`` rows into (train, val) positions, each sorted."""
    order = torch.randperm(count, generator=torch.Generator().manual_seed(seed)).numpy()
    n_val = round(count * fraction)
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def fer2013_splits(
    images: np.ndarray,
    labels: np.ndarray,
    votes: np.ndarray,
    columns: list[str],
    usage: np.ndarray,
    ferplus_mix: float = 0.0,
    drop_non_faces: bool = False,
    contempt: str = "drop",
    drop_junk_votes: bool = False,
    val_from_training: float = 0.0,
    val_seed: int = 2026,
) -> Splits:
    """FER2013 as train / val (/ test) sets. Images uint8 (N, 48, 48); labels FER2013 class indices; votes the
    FER+ votes (N, 10); usage 0 = Training, 1 = PublicTest.

    Targets: ``emotion`` (the FER2013 label), ``emotion_soft`` ((1 - ferplus_mix) · one-hot FER2013 label +
    ferplus_mix · FER+ vote distribution over the 7 labels), ``ferplus_label`` (ferplus_majority, -1 = none),
    ``ferplus_votes`` (the raw votes). Without ``val_from_training`` val is PublicTest (v1–v3); with it, val is
    that seeded fraction of Training and PublicTest becomes the test set. Training images whose FER+ majority is
    NF (``drop_non_faces``) or whose votes are at least half unknown / NF (``drop_junk_votes``) are left out of
    train only.
    """
    ferplus = ferplus_counts(votes.astype(np.float32), columns, contempt)
    vote_total = ferplus.sum(axis=1, keepdims=True)
    has_votes = vote_total[:, 0] > 0
    ferplus = np.where(has_votes[:, None], ferplus / np.maximum(vote_total, 1), 0.0)
    one_hot = np.eye(len(EMOTIONS), dtype=np.float32)[labels]
    mix = np.where(has_votes, ferplus_mix, 0.0)[:, None]  # rows without FER+ votes keep their hard label
    soft = torch.from_numpy(((1 - mix) * one_hot + mix * ferplus).astype(np.float32))

    targets = {
        "emotion": torch.from_numpy(labels.astype(np.int64)),
        "emotion_soft": soft,
        "ferplus_label": torch.from_numpy(ferplus_majority(votes, columns, labels, contempt).astype(np.int64)),
        "ferplus_votes": torch.from_numpy(votes.astype(np.float32)),
    }
    everything = FaceSet(torch.from_numpy(images).unsqueeze(1), targets)
    training = np.flatnonzero(usage == 0)
    keep = np.ones(len(labels), bool)
    if drop_non_faces:
        keep &= ~(votes[:, columns.index("NF")] > votes[:, : columns.index("NF")].max(axis=1))
    if drop_junk_votes:
        keep &= junk_vote_share(votes, columns) < 0.5
    public_test = everything.subset(torch.from_numpy(np.flatnonzero(usage == 1)))
    if not val_from_training:
        return Splits(train=everything.subset(torch.from_numpy(training[keep[training]])), val=public_test)
    train_positions, val_positions = carve_validation(len(training), val_from_training, val_seed)
    train_rows = training[train_positions]
    return Splits(
        train=everything.subset(torch.from_numpy(train_rows[keep[train_rows]])),
        val=everything.subset(torch.from_numpy(training[val_positions])),
        test=public_test,
    )


def load_fer2013(data_dir: Path, **options) -> Splits:
    """FER2013 from ``fer2013.npz`` (options: see fer2013_splits)."""
    archive = np.load(data_dir / "fer2013" / "fer2013.npz")
    if tuple(archive["emotion_names"]) != EMOTIONS:
        raise ValueError(f"fer2013.npz emotion_names must be {EMOTIONS}, got {tuple(archive['emotion_names'])}")
    columns = [str(c) for c in archive["ferplus_columns"]]
    return fer2013_splits(archive["X"], archive["y"], archive["ferplus_votes"], columns, archive["usage"], **options)


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
