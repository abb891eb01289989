"""The v4 recipe on one GPU in a few minutes: per task, an ensemble of wide teachers, then shipped-size
students distilled from it online (the teachers score every augmented batch the students see).

    python -m training.gpu_recipe pack --out .gpu-data/pack.npz                       # here, from ../shared/data
    python -m training.gpu_recipe train --pack .gpu-data/pack.npz --out runs/gpu-v4   # on the GPU machine
    python -m training.gpu_recipe train --pack PACK --out /tmp/smoke --smoke          # any CPU, a minute

``pack`` writes what training needs into one file small enough to travel with the working tree (~40 MB):
FER2013 Training + PublicTest (WebP quality 85, with labels and FER+ votes) and the UTKFace train and
validation faces of the seeded split at 64 px (WebP quality 75) — never the UTKFace test faces.

``train`` runs two phases, each a set of processes side by side on the one GPU (small networks leave it idle
between kernel launches, so several processes fill it better than one):

1. teachers: ``--emotion-teachers`` × configs/emotion_v4_teacher.toml (heads: the FER+ vote distribution over
   the 7 labels + contempt, and the FER2013 label) and ``--age-gender-teachers`` × age_gender_v4_teacher.toml;
2. students: one process per task trains its students (configs/emotion_v4.toml with each ``--emotion-students``
   weight of the FER2013 label and contempt policy; age_gender_v4.toml with each ``--age-gender-distill-weights``)
   on the same augmented batches, against a blend of the ground truth and the teachers' averaged probabilities.

``collect`` copies the students (EMA weights) and all logs of a run into another folder, e.g. the GPU tool's $OUT.

Each phase has a time budget: after two epochs a job measures its epoch time and fits its cosine schedule's
length into what is left (capped by the config's ``epochs``). Data stay on the GPU; augmentation runs there
(training/augment.py); bf16 autocast. Everything goes to ``--out``: ``<run>/last.pt`` per student and teacher
(config, model, ema, epoch, metrics, calibration, recipe — the format ``training.export.load_trained``
reads, no optimiser state), ``<run>/log.jsonl``, ``<run>/metrics.json`` and a summary ``metrics.json``.
Emotion students carry a temperature fitted on their validation split (Training, not PublicTest) in
``calibration``, age / gender students one for the gender head.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from emotion_detector.labels import EMOTIONS
from training.augment import augment
from training.config import TrainConfig
from training.data import CONTEMPT_POLICIES, FaceSet, Splits, default_data_dir, fer2013_splits, ferplus_majority, load_utkface
from training.metrics import age_gender_report, emotion_report, fit_temperature, softmax
from training.models import build_model, count_macs
from training.tasks import AgeGenderTask, build_task, expected_age
from training.train import PIXEL_MEAN, PIXEL_STD, lr_factor

CONFIGS = Path(__file__).parent / "configs"
FERPLUS8 = (*EMOTIONS, "contempt")  # the emotion teachers' vote head: the product's labels, then contempt
FER2013_HEAD_WEIGHT = 0.5  # emotion teachers: loss weight of the FER2013-label head beside the FER+ head
RESERVE_S = 15.0  # kept back from a job's budget for the final evaluation and saving

# Tiny networks and data for a CPU smoke test of the whole recipe.
SMOKE_OVERRIDES = {
    "emotion": {"model_args": {"widths": [8, 16, 16, 32], "depths": [1, 1, 1, 1], "hidden": 16}},
    "age_gender": {"model_args": {"widths": [8, 8, 16, 16, 32], "depths": [1, 1, 1, 1, 1], "hidden": 16}},
}


# ---- the pack ----------------------------------------------------------------------------------------------


def _encode(images: np.ndarray, quality: int) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images (N, H, W) grey or (N, H, W, 3) BGR → concatenated WebP bytes and offsets (N + 1)."""
    encoded = [cv2.imencode(".webp", image, [cv2.IMWRITE_WEBP_QUALITY, quality])[1] for image in images]
    offsets = np.cumsum([0] + [len(e) for e in encoded]).astype(np.int64)
    return np.concatenate(encoded).astype(np.uint8), offsets


def _decode(data: np.ndarray, offsets: np.ndarray, flags: int) -> np.ndarray:
    with ThreadPoolExecutor(8) as pool:  # cv2 releases the GIL while decoding
        images = pool.map(lambda i: cv2.imdecode(data[offsets[i] : offsets[i + 1]], flags), range(len(offsets) - 1))
        return np.stack(list(images))


def save_pack(path: Path, fer: dict[str, np.ndarray], utk: dict[str, np.ndarray], split: AgeGenderTask) -> None:
    """fer: images (N, 48, 48) uint8, labels, usage, votes (N, 10), columns; utk: images (M, S, S, 3) uint8 RGB,
    age_years, gender, is_val — the faces of ``split``'s train and val sets, never its test set."""
    fer_bytes, fer_offsets = _encode(fer["images"], quality=85)
    utk_bytes, utk_offsets = _encode(utk["images"][..., ::-1].copy(), quality=75)  # WebP wants BGR from cv2
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(
        path,
        fer_webp=fer_bytes,
        fer_offsets=fer_offsets,
        fer_labels=fer["labels"].astype(np.int8),
        fer_usage=fer["usage"].astype(np.int8),
        fer_votes=fer["votes"].astype(np.uint8),
        fer_columns=np.array([str(c) for c in fer["columns"]]),
        utk_webp=utk_bytes,
        utk_offsets=utk_offsets,
        utk_age_years=utk["age_years"].astype(np.float32),
        utk_gender=utk["gender"].astype(np.int8),
        utk_is_val=utk["is_val"].astype(bool),
        utk_split=np.array([split.split_seed, split.val_fraction, split.test_fraction, split.image_size]),
    )


def write_pack(data_dir: Path, path: Path, cache_dir: Path) -> None:
    archive = np.load(data_dir / "fer2013" / "fer2013.npz")
    fer = {
        "images": archive["X"],
        "labels": archive["y"],
        "usage": archive["usage"],
        "votes": archive["ferplus_votes"],
        "columns": archive["ferplus_columns"],
    }
    split = AgeGenderTask(label_smoothing=0.0)  # the split and size the v4 configs use
    faces = load_utkface(data_dir, split.image_size, split.split_seed, split.val_fraction, split.test_fraction, cache_dir)
    kept = [faces.train, faces.val]  # never the test faces
    utk = {
        "images": torch.cat([s.images for s in kept]).permute(0, 2, 3, 1).numpy(),
        "age_years": torch.cat([s.targets["age_years"] for s in kept]).numpy(),
        "gender": torch.cat([s.targets["gender"] for s in kept]).numpy(),
        "is_val": np.concatenate([np.zeros(len(faces.train), bool), np.ones(len(faces.val), bool)]),
    }
    save_pack(path, fer, utk, split)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB): FER {len(fer['images'])} faces, UTKFace {len(utk['images'])}")


def load_pack_task(path: Path, config: TrainConfig) -> Splits:
    """The task's splits from the pack, as ``task.load`` gives them from ../shared (up to WebP loss); the
    UTKFace split has no test set here."""
    pack = np.load(path)
    if config.task == "emotion":
        images = _decode(pack["fer_webp"], pack["fer_offsets"], cv2.IMREAD_GRAYSCALE)
        options = {k: v for k, v in config.task_args.items() if k not in ("teacher_runs", "teacher_weight")}
        columns = [str(c) for c in pack["fer_columns"]]
        return fer2013_splits(images, pack["fer_labels"], pack["fer_votes"], columns, pack["fer_usage"], **options)
    task = build_task(config)
    seed, val_fraction, test_fraction, size = pack["utk_split"]
    if (seed, val_fraction, test_fraction, size) != (task.split_seed, task.val_fraction, task.test_fraction, task.image_size):
        raise ValueError(f"the pack holds the UTKFace split {pack['utk_split'].tolist()}, the config asks for another")
    bgr = _decode(pack["utk_webp"], pack["utk_offsets"], cv2.IMREAD_COLOR)
    images = torch.from_numpy(bgr[..., ::-1].copy()).permute(0, 3, 1, 2).contiguous()
    everything = FaceSet(
        images, {"age_years": torch.from_numpy(pack["utk_age_years"]), "gender": torch.from_numpy(pack["utk_gender"]).long()}
    )
    is_val = torch.from_numpy(pack["utk_is_val"])
    return Splits(train=everything.subset(torch.nonzero(~is_val).flatten()), val=everything.subset(torch.nonzero(is_val).flatten()))


# ---- networks and losses -----------------------------------------------------------------------------------


def heads_of(config: TrainConfig, role: str) -> dict[str, int]:
    if config.task == "emotion" and role == "teacher":
        return {"ferplus": len(FERPLUS8), "fer2013": len(EMOTIONS)}
    return dict(build_task(config).heads)


def build_network(config: TrainConfig, role: str) -> nn.Module:
    task = build_task(config)
    args = {"in_channels": task.in_channels, "input_size": task.input_size, **config.model_args}
    args = {k: tuple(v) if isinstance(v, list) else v for k, v in args.items()}
    return build_model(config.model, heads_of(config, role), **args)


def soft_cross_entropy(logits: torch.Tensor, target: torch.Tensor, smoothing: float = 0.0) -> torch.Tensor:
    target = target * (1 - smoothing) + smoothing / target.shape[1]
    return -(target * F.log_softmax(logits.float(), dim=1)).sum(dim=1).mean()


def ferplus8_counts(votes: torch.Tensor, columns: list[str]) -> torch.Tensor:
    """FER+ votes (N, 10) in ``columns`` order → vote counts (N, 8) in FERPLUS8 order (unknown / NF left out)."""
    names = ("anger", "disgust", "fear", "happiness", "sadness", "surprise", "neutral", "contempt")  # = FERPLUS8
    return torch.stack([votes[:, columns.index(name)] for name in names], dim=1)


def ferplus8_distribution(votes: torch.Tensor, columns: list[str], fer2013: torch.Tensor) -> torch.Tensor:
    """FER+ votes (N, 10) → distribution over FERPLUS8 (no emotion votes → the FER2013 label)."""
    counts = ferplus8_counts(votes, columns)
    total = counts.sum(dim=1, keepdim=True)
    fallback = F.one_hot(fer2013, len(FERPLUS8)).float()
    return torch.where(total > 0, counts / total.clamp(min=1), fallback)


def fold_contempt(probabilities8: torch.Tensor, contempt: str) -> torch.Tensor:
    """FERPLUS8 probabilities → the 7 labels: contempt added to neutral, or dropped and the rest renormalised."""
    seven = probabilities8[:, : len(EMOTIONS)]
    if contempt == "neutral":
        neutral = F.one_hot(torch.tensor(EMOTIONS.index("neutral"), device=seven.device), len(EMOTIONS))
        return seven + neutral * probabilities8[:, len(EMOTIONS) :]
    return seven / seven.sum(dim=1, keepdim=True).clamp(min=1e-6)


def emotion_probabilities(logits: dict[str, np.ndarray], contempt: str, temperature: float = 1.0) -> np.ndarray:
    """Probabilities over the 7 labels from a student's ``emotion`` head or a teacher's ``ferplus`` head."""
    if "emotion" in logits:
        return softmax(logits["emotion"], temperature)
    return fold_contempt(torch.from_numpy(softmax(logits["ferplus"], temperature)), contempt).numpy()


Loss = Callable[[dict[str, torch.Tensor], dict[str, torch.Tensor], dict[str, torch.Tensor] | None], torch.Tensor]


def emotion_teacher_loss(config: TrainConfig) -> Loss:
    def loss(logits, targets, _teachers):
        ferplus = soft_cross_entropy(logits["ferplus"], targets["ferplus8"], config.label_smoothing)
        fer2013 = F.cross_entropy(logits["fer2013"].float(), targets["emotion"], label_smoothing=0.1)
        return ferplus + FER2013_HEAD_WEIGHT * fer2013

    return loss


def emotion_student_loss(config: TrainConfig, distill_weight: float) -> Loss:
    """Target = (1 − w) · ground truth + w · teachers, each as (1 − m) · FER+ votes + m · FER2013 label, where m is
    1 − ferplus_mix and w the distillation weight; contempt votes per the config's ``contempt``."""
    fer2013_weight = 1 - config.task_args["ferplus_mix"]
    contempt = config.task_args["contempt"]

    def loss(logits, targets, teachers):
        one_hot = F.one_hot(targets["emotion"], len(EMOTIONS)).float()
        target = (1 - fer2013_weight) * fold_contempt(targets["ferplus8"], contempt) + fer2013_weight * one_hot
        if teachers is not None:
            teacher = (1 - fer2013_weight) * fold_contempt(teachers["ferplus"], contempt) + fer2013_weight * teachers["fer2013"]
            target = (1 - distill_weight) * target + distill_weight * teacher
        return soft_cross_entropy(logits["emotion"], target, config.label_smoothing)

    return loss


def age_gender_loss(config: TrainConfig, distill_weight: float) -> Loss:
    task = build_task(config)

    def loss(logits, targets, teachers):
        own = task.loss(logits, targets)
        if teachers is None or distill_weight == 0:
            return own
        age = F.kl_div(F.log_softmax(logits["age"].float(), dim=1), teachers["age"], reduction="batchmean")
        gender = soft_cross_entropy(logits["gender"], teachers["gender"])
        return (1 - distill_weight) * own + distill_weight * (age + gender)

    return loss


# ---- one training job: several learners on one stream of augmented batches ---------------------------------


@dataclass
class Learner:
    """One network being trained, with what it is saved with."""

    config: TrainConfig
    role: str  # "teacher" | "student"
    network: nn.Module
    loss: Loss
    recipe: dict  # how it was trained beyond its config (teachers, distillation weight), saved in its checkpoint


@dataclass
class CosinePlan:
    """Warm-up then cosine decay; ``total_steps`` is fixed once the job knows its epoch time."""

    warmup_steps: int
    total_steps: int

    def factor(self, step: int) -> float:
        return lr_factor(step, self.total_steps, self.warmup_steps)


def autocast(device: torch.device) -> torch.autocast:
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")


def normalise_batch(images: torch.Tensor) -> torch.Tensor:
    return ((images - PIXEL_MEAN) / PIXEL_STD).contiguous(memory_format=torch.channels_last)


@torch.no_grad()
def predict(network: nn.Module, images: torch.Tensor, flip: bool = False, batch_size: int = 1024) -> dict[str, np.ndarray]:
    """float32 logits of uint8 images (on the network's device) as numpy; with ``flip`` averaged with the mirror's."""
    network.eval()
    chunks = []
    for start in range(0, len(images), batch_size):
        x = normalise_batch(images[start : start + batch_size].float() / 255)
        out = {k: v.float() for k, v in network(x).items()}
        if flip:
            mirrored = network(torch.flip(x, dims=[3]))
            out = {k: (v + mirrored[k].float()) / 2 for k, v in out.items()}
        chunks.append(out)
    return {k: torch.cat([c[k] for c in chunks]).cpu().numpy() for k in chunks[0]}


@torch.no_grad()
def ensemble_probabilities(teachers: list[nn.Module], images: torch.Tensor) -> dict[str, torch.Tensor]:
    total: dict[str, torch.Tensor] = {}
    with autocast(images.device):
        for teacher in teachers:
            for head, logits in teacher(images).items():
                total[head] = total.get(head, 0) + F.softmax(logits.float(), dim=1)
    return {head: value / len(teachers) for head, value in total.items()}


def fit(
    learners: list[Learner],
    train: FaceSet,
    deadline: float,
    teachers: list[nn.Module],
    evaluate: Callable[[nn.Module, TrainConfig], dict[str, float]],
    log: Callable[[str], None],
    run_dirs: list[Path],
) -> list[AveragedModel]:
    """Train all learners on the same augmented batches until the schedule (fitted into ``deadline``) ends.
    Batch size, augmentation and seed come from the first learner's config."""
    device = train.images.device
    first = learners[0].config
    generator = torch.Generator(device=device).manual_seed(first.seed)
    torch.manual_seed(first.seed)
    steps_per_epoch = max(1, len(train) // first.batch_size)
    max_epochs = max(learner.config.epochs for learner in learners)
    plan = CosinePlan(int(first.warmup_epochs * steps_per_epoch), max_epochs * steps_per_epoch)
    optimizers, schedules, emas = [], [], []
    for learner in learners:
        network, config = learner.network.to(device, memory_format=torch.channels_last), learner.config
        decay = [p for p in network.parameters() if p.ndim > 1]
        no_decay = [p for p in network.parameters() if p.ndim <= 1]  # no decay on biases and BatchNorm
        optimizer = torch.optim.SGD(
            [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=config.lr,
            momentum=config.momentum,
            nesterov=True,
        )
        optimizers.append(optimizer)
        schedules.append(torch.optim.lr_scheduler.LambdaLR(optimizer, plan.factor))
        emas.append(AveragedModel(network, multi_avg_fn=get_ema_multi_avg_fn(config.ema_decay), use_buffers=True))
    for run_dir in run_dirs:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "log.jsonl").unlink(missing_ok=True)

    planned_epochs = max_epochs
    epoch = 0
    while epoch < planned_epochs:
        started = time.perf_counter()
        for learner in learners:
            learner.network.train()
        order = torch.randperm(len(train), generator=generator, device=device)
        loss_sums = [torch.zeros((), device=device) for _ in learners]
        for step in range(steps_per_epoch):
            index = order[step * first.batch_size : (step + 1) * first.batch_size]
            images = normalise_batch(augment(train.images[index].float() / 255, first.augment, generator))
            targets = {k: v[index] for k, v in train.targets.items()}
            teacher_out = ensemble_probabilities(teachers, images) if teachers else None
            for i, learner in enumerate(learners):
                with autocast(device):
                    logits = learner.network(images)
                loss = learner.loss(logits, targets, teacher_out)
                optimizers[i].zero_grad(set_to_none=True)
                loss.backward()
                optimizers[i].step()
                schedules[i].step()
                emas[i].update_parameters(learner.network)
                loss_sums[i] += loss.detach()
        epoch += 1
        if device.type == "cuda":
            torch.cuda.synchronize()
        epoch_s = time.perf_counter() - started
        if epoch == 2:  # the first epoch pays for start-up (cuDNN autotuning); the second is the steady state
            left_s = deadline - time.time() - RESERVE_S
            planned_epochs = int(min(max_epochs, max(3, epoch + left_s // (epoch_s * 1.05))))
            plan.total_steps = planned_epochs * steps_per_epoch
            log(f"epoch time {epoch_s:.2f} s → {planned_epochs} epochs in the budget")
        last = epoch >= planned_epochs
        checked = last or epoch % 10 == 0 or epoch <= 2
        for i, learner in enumerate(learners):
            record = {
                "epoch": epoch,
                "train_loss": round(loss_sums[i].item() / steps_per_epoch, 5),
                "lr": round(schedules[i].get_last_lr()[0], 6),
                "epoch_seconds": round(epoch_s, 2),
            }
            if checked:  # the EMA weights (what is saved and shipped), then the raw ones
                record |= {f"val_{k}": round(v, 4) for k, v in evaluate(emas[i].module, learner.config).items()}
                record |= {f"val_raw_{k}": round(v, 4) for k, v in evaluate(learner.network, learner.config).items()}
            with open(run_dirs[i] / "log.jsonl", "a") as handle:
                handle.write(json.dumps(record) + "\n")
            if checked:
                log(f"{learner.config.run_name} {json.dumps(record)}")
        if time.time() > deadline:  # a hard stop: the schedule did not fit after all
            log(f"deadline reached after epoch {epoch} of {planned_epochs}")
            break
    return emas


def save_checkpoint(run_dir: Path, learner: Learner, ema: AveragedModel, epochs: int, metrics: dict, calibration: dict) -> None:
    config = dataclasses.replace(learner.config, epochs=epochs)
    state = {
        "config": config.to_dict(),
        "epoch": epochs - 1,
        "model": {k: v.cpu() for k, v in learner.network.state_dict().items()},
        "ema": {k: v.cpu() for k, v in ema.state_dict().items()},
        "metrics": metrics,
        "calibration": calibration,
        "recipe": learner.recipe,
        "heads": heads_of(learner.config, learner.role),
    }
    run_dir.mkdir(parents=True, exist_ok=True)
    torch.save(state, run_dir / "last.tmp")
    (run_dir / "last.tmp").replace(run_dir / "last.pt")
    (run_dir / "config.json").write_text(json.dumps(config.to_dict(), indent=2) + "\n")
    (run_dir / "metrics.json").write_text(
        json.dumps({"metrics": metrics, "calibration": calibration, "recipe": learner.recipe}, indent=2) + "\n"
    )


def load_teacher(run_dir: Path, device: torch.device) -> nn.Module:
    state = torch.load(run_dir / "last.pt", map_location="cpu", weights_only=False)  # nosec B614  # our own run's checkpoint
    config = TrainConfig.from_dict(state["config"])
    network = build_network(config, "teacher")
    network.load_state_dict({k.removeprefix("module."): v for k, v in state["ema"].items() if k.startswith("module.")})
    return network.to(device, memory_format=torch.channels_last).eval()


# ---- jobs --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Job:
    """One process: the teacher or the students of one task."""

    task: str  # "emotion" | "age_gender"
    role: str  # "teacher" | "students"
    run_names: tuple[str, ...]
    variants: tuple[float, ...]  # per run: teacher seed, emotion FER2013 weight, or age / gender distillation weight
    deadline: float  # time.time() by which the job is done
    contempt: tuple[str, ...] = ()  # emotion students: per run, what contempt votes become (data.CONTEMPT_POLICIES)
    teacher_runs: tuple[str, ...] = ()
    distill_weight: float = 0.6  # emotion students
    smoke: bool = False
    train_limit: int = 0

    def config(self, index: int) -> TrainConfig:
        variant, run_name = self.variants[index], self.run_names[index]
        name = {"emotion": "emotion_v4", "age_gender": "age_gender_v4"}[self.task] + ("_teacher" if self.role == "teacher" else "")
        config = TrainConfig.load(CONFIGS / f"{name}.toml")
        changes: dict = {"run_name": run_name}
        if self.role == "teacher":
            changes["seed"] = int(variant)
        elif self.task == "emotion":
            changes["task_args"] = {**config.task_args, "ferplus_mix": round(1 - variant, 4), "contempt": self.contempt[index]}
        if self.smoke:
            smoke = SMOKE_OVERRIDES[self.task]
            changes |= {"model_args": {**config.model_args, **smoke["model_args"]}, "epochs": 2, "batch_size": 32}
        return dataclasses.replace(config, **changes)


def run_job(job: Job, pack: Path, out: Path, device: torch.device) -> None:
    torch.backends.cudnn.benchmark = True
    torch.set_num_threads(2)
    tag = f"[{job.task} {job.role}]"

    def log(message: str) -> None:
        print(f"{tag} {message}", flush=True)

    configs = [job.config(i) for i in range(len(job.run_names))]
    splits = load_pack_task(pack, configs[0])  # each emotion student makes its own targets from the votes
    if job.train_limit:
        splits = dataclasses.replace(splits, train=splits.train.subset(torch.arange(min(job.train_limit, len(splits.train)))))
        splits = dataclasses.replace(splits, val=splits.val.subset(torch.arange(min(job.train_limit, len(splits.val)))))
    columns = [str(c) for c in np.load(pack)["fer_columns"]] if job.task == "emotion" else []
    train = splits.train
    if job.task == "emotion":
        ferplus8 = ferplus8_distribution(train.targets["ferplus_votes"], columns, train.targets["emotion"])
        train = FaceSet(train.images, {**train.targets, "ferplus8": ferplus8})
    train = FaceSet(train.images.to(device), {k: v.to(device) for k, v in train.targets.items()})
    val_images = splits.val.images.to(device)
    log(f"train {len(train)}, val {len(splits.val)}" + (f", test {len(splits.test)}" if splits.test is not None else ""))

    teachers = [load_teacher(out / name, device) for name in job.teacher_runs if (out / name / "last.pt").exists()]
    if job.role == "students":
        log(f"distilling from {len(teachers)} teachers: {[n for n in job.teacher_runs if (out / n / 'last.pt').exists()]}")
    if job.task == "emotion" and teachers:
        contempt_measurement(teachers, splits, columns, log, out / "contempt_measurement.json")

    learners = []
    for config, variant in zip(configs, job.variants, strict=True):
        network = build_network(config, "teacher" if job.role == "teacher" else "student")
        shape = (build_task(config).in_channels, build_task(config).input_size, build_task(config).input_size)
        recipe = {"script": "training/gpu_recipe.py", "role": job.role, "macs": count_macs(network, shape)}
        if job.role == "teacher":
            loss = emotion_teacher_loss(config) if job.task == "emotion" else age_gender_loss(config, 0.0)
        elif job.task == "emotion":
            loss = emotion_student_loss(config, job.distill_weight)
            recipe |= {
                "teachers": list(job.teacher_runs),
                "distill_weight": job.distill_weight if teachers else 0.0,
                "fer2013_weight": variant,
            }
        else:
            loss = age_gender_loss(config, variant)
            recipe |= {"teachers": list(job.teacher_runs), "distill_weight": variant if teachers else 0.0}
        log(f"{config.run_name}: {sum(p.numel() for p in network.parameters()) / 1e6:.2f} M params, {recipe['macs'] / 1e6:.0f} M MACs")
        learners.append(Learner(config, "teacher" if job.role == "teacher" else "student", network, loss, recipe))

    val = {k: v.numpy() for k, v in splits.val.targets.items()}

    def evaluate(network: nn.Module, config: TrainConfig) -> dict[str, float]:
        logits = predict(network, val_images)
        if job.task == "emotion":
            contempt = config.task_args["contempt"]
            report = emotion_report(emotion_probabilities(logits, contempt), val["emotion"], val["ferplus_votes"], columns, contempt)
            return {"ferplus_accuracy": report["ferplus_majority"]["accuracy"], "fer2013_accuracy": report["fer2013"]["accuracy"]}
        years = expected_age(torch.from_numpy(logits["age"])).numpy()
        report = age_gender_report(years, softmax(logits["gender"]), val["age_years"], val["gender"])
        return {"age_mae_years": report["mae_years"], "gender_accuracy": report["gender_accuracy"]}

    run_dirs = [out / config.run_name for config in configs]
    emas = fit(learners, train, job.deadline, teachers, evaluate, log, run_dirs)
    epochs = len((run_dirs[0] / "log.jsonl").read_text().splitlines())
    for learner, ema, run_dir in zip(learners, emas, run_dirs, strict=True):
        metrics, calibration = final_metrics(job, learner, ema.module, splits, val_images, columns, device)
        save_checkpoint(run_dir, learner, ema, epochs, metrics, calibration)
        log(f"{learner.config.run_name} final ({epochs} epochs): {json.dumps(headline(metrics))} calibration {calibration}")


def final_metrics(job: Job, learner: Learner, network: nn.Module, splits: Splits, val_images, columns, device) -> tuple[dict, dict]:
    """Validation (and PublicTest for emotion) figures of the EMA weights, plain and with flip averaging; the
    temperature is fitted on validation and its figures reported beside."""
    metrics: dict = {}
    calibration: dict = {}
    sets = {"val": (splits.val, val_images)}
    if splits.test is not None:
        sets["test"] = (splits.test, splits.test.images.to(device))
    if job.task == "emotion":
        contempt = learner.config.task_args["contempt"]
        temperature = 1.0
        if learner.role == "student":
            val_logits = predict(network, val_images)["emotion"]
            val_targets = {k: v.numpy() for k, v in splits.val.targets.items()}
            scored = ferplus_majority(val_targets["ferplus_votes"], columns, val_targets["emotion"], contempt)
            temperature = fit_temperature(val_logits[scored >= 0], scored[scored >= 0])
            calibration = {"emotion_temperature": temperature, "fitted_on": "validation split of FER2013 Training (FER+ majority labels)"}
        for name, (faces, images) in sets.items():
            votes, labels = faces.targets["ferplus_votes"].numpy(), faces.targets["emotion"].numpy()
            for flip in (False, True):
                logits = predict(network, images, flip=flip)
                metrics[f"{name}{'_flip' if flip else ''}"] = emotion_report(
                    emotion_probabilities(logits, contempt), labels, votes, columns, contempt
                )
                if not flip and calibration:
                    calibrated = emotion_probabilities(logits, contempt, temperature)
                    metrics[f"{name}_calibrated"] = emotion_report(calibrated, labels, votes, columns, contempt)
        return metrics, calibration
    val_logits = predict(network, val_images)
    calibration = {
        "gender_temperature": fit_temperature(val_logits["gender"], splits.val.targets["gender"].numpy()),
        "fitted_on": "UTKFace validation split",
    }
    for name, (faces, images) in sets.items():
        for flip in (False, True):
            logits = predict(network, images, flip=flip)
            years = expected_age(torch.from_numpy(logits["age"])).numpy()
            metrics[f"{name}{'_flip' if flip else ''}"] = age_gender_report(
                years, softmax(logits["gender"]), faces.targets["age_years"].numpy(), faces.targets["gender"].numpy()
            )
    return metrics, calibration


def contempt_measurement(teachers: list[nn.Module], splits: Splits, columns: list[str], log: Callable[[str], None], path: Path) -> None:
    """Would contempt earn an 8th label? The teacher ensemble's contempt recall and precision against the FER+
    plurality over the 8 emotions, on validation (and PublicTest)."""
    result = {}
    for name, faces in (("val", splits.val), ("test", splits.test)):
        if faces is None:
            continue
        device = next(teachers[0].parameters()).device
        probabilities = np.mean([softmax(predict(t, faces.images.to(device))["ferplus"]) for t in teachers], axis=0)
        votes = faces.targets["ferplus_votes"]
        counts8 = ferplus8_counts(votes, columns).numpy()
        junk = votes[:, [columns.index("unknown"), columns.index("NF")]].max(dim=1).values.numpy()
        label8 = np.where(counts8.max(axis=1) > junk, counts8.argmax(axis=1), -1)
        predicted = probabilities.argmax(axis=1)
        contempt = FERPLUS8.index("contempt")
        truth, chosen = label8 == contempt, predicted == contempt
        result[name] = {
            "faces_scored": int((label8 >= 0).sum()),
            "contempt_majority_faces": int(truth.sum()),
            "contempt_recall": round(float(chosen[truth].mean()), 4) if truth.any() else None,
            "contempt_predicted": int(chosen.sum()),
            "contempt_precision": round(float(truth[chosen].mean()), 4) if chosen.any() else None,
            "accuracy_8_labels": round(float((predicted == label8)[label8 >= 0].mean()), 4),
            "mean_contempt_probability_on_contempt_faces": round(float(probabilities[truth, contempt].mean()), 4) if truth.any() else None,
        }
    path.write_text(json.dumps(result, indent=2) + "\n")
    log(f"contempt as an 8th label (teacher ensemble): {json.dumps(result)}")


def headline(metrics: dict) -> dict:
    out = {}
    for name, report in metrics.items():
        if "ferplus_majority" in report:
            out[name] = {
                "ferplus": report["ferplus_majority"]["accuracy"],
                "fer2013": report["fer2013"]["accuracy"],
                "ece_ferplus": report["ferplus_majority"]["ece_15_bins"],
            }
        else:
            out[name] = {"mae_years": report["mae_years"], "gender": report["gender_accuracy"]}
    return out


# ---- the two phases ----------------------------------------------------------------------------------------


def plan_phase(role: str, args: argparse.Namespace, deadline: float) -> list[Job]:
    common = {"deadline": deadline, "smoke": args.smoke, "train_limit": args.train_limit}
    if role == "teacher":
        jobs = [Job("emotion", "teacher", (f"emo-v4-teacher{i}",), (float(i + 1),), **common) for i in range(args.emotion_teachers)]
        jobs += [Job("age_gender", "teacher", (f"ag-v4-teacher{i}",), (float(i + 1),), **common) for i in range(args.age_gender_teachers)]
        return [job for job in jobs if job.task in args.tasks]
    emotion_teachers = tuple(f"emo-v4-teacher{i}" for i in range(args.emotion_teachers))
    age_gender_teachers = tuple(f"ag-v4-teacher{i}" for i in range(args.age_gender_teachers))
    jobs = [
        Job(
            "emotion",
            "students",
            tuple(f"emo-v4-m{round(m * 100):02d}{policy[0]}" for m, policy in args.emotion_students),
            tuple(m for m, _ in args.emotion_students),
            contempt=tuple(policy for _, policy in args.emotion_students),
            teacher_runs=emotion_teachers,
            **common,
        ),
        Job(
            "age_gender",
            "students",
            tuple(f"ag-v4-d{round(w * 100):02d}" for w in args.age_gender_distill_weights),
            tuple(args.age_gender_distill_weights),
            teacher_runs=age_gender_teachers,
            **common,
        ),
    ]
    return [job for job in jobs if job.task in args.tasks]


def run_phase(jobs: list[Job], args: argparse.Namespace) -> None:
    if args.in_process:  # tests: one after the other, no subprocesses
        for job in jobs:
            run_job(job, args.pack, args.out, torch.device(args.device))
        return
    processes = []
    for job in jobs:
        spec = json.dumps(dataclasses.asdict(job))
        command = [
            sys.executable,
            "-m",
            "training.gpu_recipe",
            "job",
            spec,
            "--pack",
            str(args.pack),
            "--out",
            str(args.out),
            "--device",
            args.device,
        ]
        processes.append((job, subprocess.Popen(command)))  # nosec B603  # a fixed argument list, no shell
    for job, process in processes:
        if process.wait() != 0:
            print(f"job {job.task} {job.role} {job.run_names} failed with exit code {process.returncode}", flush=True)


def train_recipe(args: argparse.Namespace) -> dict:
    started = time.time()
    args.out.mkdir(parents=True, exist_ok=True)
    print(f"recipe on {args.device}: teachers {args.teacher_budget_s:.0f} s, students {args.student_budget_s:.0f} s", flush=True)
    run_phase(plan_phase("teacher", args, time.time() + args.teacher_budget_s), args)
    print(f"teachers done after {time.time() - started:.0f} s", flush=True)
    run_phase(plan_phase("students", args, time.time() + args.student_budget_s), args)
    summary = {"seconds": round(time.time() - started, 1), "runs": {}}
    for metrics_file in sorted(args.out.glob("*/metrics.json")):
        saved = json.loads(metrics_file.read_text())
        summary["runs"][metrics_file.parent.name] = {"headline": headline(saved["metrics"]), "calibration": saved["calibration"]}
    contempt = args.out / "contempt_measurement.json"
    if contempt.exists():
        summary["contempt_measurement"] = json.loads(contempt.read_text())
    (args.out / "metrics.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=1), flush=True)
    return summary


def collect(out: Path, to: Path) -> None:
    """Copy the students and the logs of a recipe run into ``to`` compactly: each student's ``last.pt`` keeps
    its EMA weights only (``model`` then names the same tensors, stored once, and ``model_is_ema`` says so),
    every log, config and metrics file goes into one ``logs.tar.gz``. Teachers stay behind (too large)."""
    import tarfile

    to.mkdir(parents=True, exist_ok=True)
    for checkpoint in sorted(out.glob("*/last.pt")):
        state = torch.load(checkpoint, map_location="cpu", weights_only=False)  # nosec B614  # our own run's checkpoint
        if state["recipe"].get("role") != "students":
            continue
        ema_weights = {k.removeprefix("module."): v for k, v in state["ema"].items() if k.startswith("module.")}
        slim = {**state, "model": ema_weights, "model_is_ema": True}
        (to / checkpoint.parent.name).mkdir(exist_ok=True)
        torch.save(slim, to / checkpoint.parent.name / "last.pt")
    with tarfile.open(to / "logs.tar.gz", "w:gz") as archive:
        for path in sorted(out.rglob("*")):
            if path.is_file() and path.suffix in (".json", ".jsonl", ".log"):
                archive.add(path, arcname=str(path.relative_to(out)))
    if (out / "metrics.json").exists():
        (to / "metrics.json").write_text((out / "metrics.json").read_text())


def _emotion_student(text: str) -> tuple[float, str]:
    weight, _, contempt = text.partition(":")
    if contempt not in CONTEMPT_POLICIES:
        raise argparse.ArgumentTypeError(f"expected WEIGHT:CONTEMPT with CONTEMPT in {CONTEMPT_POLICIES}, got {text!r}")
    return float(weight), contempt


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    pack = sub.add_parser("pack", help="write the data pack from ../shared/data")
    pack.add_argument("--out", type=Path, default=Path(".gpu-data/pack.npz"))
    pack.add_argument("--cache-dir", type=Path, default=Path(".cache"))
    train = sub.add_parser("train", help="teachers, then distilled students")
    job = sub.add_parser("job", help="one process of a phase (started by train)")
    gather = sub.add_parser("collect", help="copy the students (EMA weights) and the logs of a run elsewhere")
    gather.add_argument("--out", type=Path, required=True, help="the run's --out")
    gather.add_argument("--to", type=Path, required=True)
    job.add_argument("spec")
    for p in (train, job):
        p.add_argument("--pack", type=Path, default=Path(".gpu-data/pack.npz"))
        p.add_argument("--out", type=Path, required=True)
        p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    train.add_argument("--teacher-budget-s", type=float, default=220)
    train.add_argument("--student-budget-s", type=float, default=230)
    train.add_argument("--tasks", nargs="+", choices=["emotion", "age_gender"], default=["emotion", "age_gender"])
    train.add_argument("--emotion-teachers", type=int, default=2)
    train.add_argument("--age-gender-teachers", type=int, default=2)
    train.add_argument(
        "--emotion-students",
        type=_emotion_student,
        nargs="+",
        default=[(0.15, "neutral"), (0.25, "neutral"), (0.35, "neutral"), (0.25, "drop")],
        help="WEIGHT:CONTEMPT per student: the FER2013 label's weight in the target, what contempt votes become",
    )
    train.add_argument("--age-gender-distill-weights", type=float, nargs="+", default=[0.7])
    train.add_argument("--smoke", action="store_true", help="tiny networks, 2 epochs, 256 faces: a test of the recipe")
    train.add_argument("--train-limit", type=int, default=0, help="use only the first N training faces (0 = all)")
    train.add_argument("--in-process", action="store_true", help="run the jobs one after another in this process")
    args = parser.parse_args(argv)
    if args.command == "pack":
        write_pack(default_data_dir(), args.out, args.cache_dir)
    elif args.command == "collect":
        collect(args.out, args.to)
    elif args.command == "job":
        spec = json.loads(args.spec)
        job = Job(**{k: tuple(v) if isinstance(v, list) else v for k, v in spec.items()})
        run_job(job, args.pack, args.out, torch.device(args.device))
    else:
        if args.smoke and not args.train_limit:
            args.train_limit = 256
        train_recipe(args)


if __name__ == "__main__":
    main()
