"""What differs between the emotion model and the age / gender model: data, heads, loss and metrics."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Protocol

import torch
import torch.nn.functional as F

from emotion_detector.labels import EMOTIONS, GENDERS
from training.config import TrainConfig
from training.data import FaceSet, Splits, load_fer2013, load_utkface

MAX_AGE_BIN = 100  # ages above are rare in UTKFace (0.3 %) and are trained as 100


class Task(Protocol):
    heads: dict[str, int]
    in_channels: int
    input_size: int

    def load(self, data_dir: Path, cache_dir: Path) -> Splits: ...
    def loss(self, logits: dict[str, torch.Tensor], targets: dict[str, torch.Tensor]) -> torch.Tensor: ...
    def metrics(self, logits: dict[str, torch.Tensor], targets: dict[str, torch.Tensor]) -> dict[str, float]: ...


@dataclass(frozen=True)
class EmotionTask:
    """The product's 7 labels; targets blend the FER2013 label with the FER+ vote distribution (``ferplus_mix``;
    v4 trains mostly on the votes). Options as training/data.py ``fer2013_splits``."""

    label_smoothing: float
    ferplus_mix: float = 0.0
    drop_non_faces: bool = False
    contempt: str = "drop"  # what FER+ contempt votes become: "drop" or "neutral" (data.CONTEMPT_POLICIES)
    drop_junk_votes: bool = False  # leave out training images whose votes are at least half unknown / NF
    val_from_training: float = 0.0  # > 0: validate on this seeded fraction of Training, PublicTest becomes test
    val_seed: int = 2026
    # Knowledge distillation: blend the targets with the averaged predictions of these trained runs.
    teacher_runs: tuple[str, ...] = ()
    teacher_weight: float = 0.0
    heads: ClassVar[dict[str, int]] = {"emotion": len(EMOTIONS)}
    in_channels = 1
    input_size = 48

    def load(self, data_dir: Path, cache_dir: Path) -> Splits:
        splits = load_fer2013(
            data_dir,
            ferplus_mix=self.ferplus_mix,
            drop_non_faces=self.drop_non_faces,
            contempt=self.contempt,
            drop_junk_votes=self.drop_junk_votes,
            val_from_training=self.val_from_training,
            val_seed=self.val_seed,
        )
        if not self.teacher_runs:
            return splits
        from training.distill import teacher_probabilities  # imports the trainer; only needed here

        teacher = teacher_probabilities([Path(run) for run in self.teacher_runs], "emotion", splits.train.images)
        soft = (1 - self.teacher_weight) * splits.train.targets["emotion_soft"] + self.teacher_weight * teacher
        return dataclasses.replace(splits, train=FaceSet(splits.train.images, {**splits.train.targets, "emotion_soft": soft}))

    def loss(self, logits, targets):
        soft = targets["emotion_soft"] * (1 - self.label_smoothing) + self.label_smoothing / len(EMOTIONS)
        return -(soft * F.log_softmax(logits["emotion"].float(), dim=1)).sum(dim=1).mean()

    def metrics(self, logits, targets):
        predicted = logits["emotion"].argmax(dim=1)
        result = {"accuracy": (predicted == targets["emotion"]).float().mean().item()}  # against the FER2013 label
        if "ferplus_label" in targets:
            scored = targets["ferplus_label"] >= 0
            result["ferplus_accuracy"] = (predicted[scored] == targets["ferplus_label"][scored]).float().mean().item()
        return result


@dataclass(frozen=True)
class AgeGenderTask:
    """Age as a distribution over 0..100 years (deep label distribution learning: a Gaussian target plus an
    L1 term on the expected age), gender as two classes; one shared network."""

    label_smoothing: float
    image_size: int = 64
    split_seed: int = 2026  # fixed apart from the training seed so the held-out test set never moves
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    age_sigma_years: float = 2.5
    age_l1_weight: float = 0.05
    heads: ClassVar[dict[str, int]] = {"age": MAX_AGE_BIN + 1, "gender": len(GENDERS)}
    in_channels = 3

    @property
    def input_size(self) -> int:
        return self.image_size

    def load(self, data_dir: Path, cache_dir: Path) -> Splits:
        return load_utkface(data_dir, self.image_size, self.split_seed, self.val_fraction, self.test_fraction, cache_dir)

    def loss(self, logits, targets):
        age_log_probs = F.log_softmax(logits["age"].float(), dim=1)
        bins = torch.arange(MAX_AGE_BIN + 1, dtype=torch.float32, device=age_log_probs.device)
        ages = targets["age_years"].clamp(max=MAX_AGE_BIN)
        target = torch.exp(-0.5 * ((bins[None] - ages[:, None]) / self.age_sigma_years) ** 2)
        target = target / target.sum(dim=1, keepdim=True)
        age_kl = F.kl_div(age_log_probs, target, reduction="batchmean")
        age_l1 = (expected_age(logits["age"]) - ages).abs().mean()
        gender = F.cross_entropy(logits["gender"].float(), targets["gender"], label_smoothing=self.label_smoothing)
        return age_kl + self.age_l1_weight * age_l1 + gender

    def metrics(self, logits, targets):
        age_error = (expected_age(logits["age"]) - targets["age_years"]).abs()
        gender_ok = logits["gender"].argmax(dim=1) == targets["gender"]
        return {"age_mae_years": age_error.mean().item(), "gender_accuracy": gender_ok.float().mean().item()}


def expected_age(age_logits: torch.Tensor) -> torch.Tensor:
    bins = torch.arange(age_logits.shape[1], dtype=torch.float32, device=age_logits.device)
    return F.softmax(age_logits.float(), dim=1) @ bins


def build_task(config: TrainConfig) -> Task:
    if config.task == "emotion":
        args = dict(config.task_args)
        args["teacher_runs"] = tuple(args.get("teacher_runs", ()))
        return EmotionTask(label_smoothing=config.label_smoothing, **args)
    if config.task == "age_gender":
        return AgeGenderTask(label_smoothing=config.label_smoothing, **config.task_args)
    raise ValueError(f"unknown task {config.task!r}; expected 'emotion' or 'age_gender'")
