"""Train one model from a TOML config; resumable from the run's last checkpoint.

    python -m training.train training/configs/emotion.toml            # runs/<run_name>/
    python -m training.train training/configs/emotion.toml --set epochs=3 --set run_name=smoke
    python -m training.train --resume runs/emo-v1                   # continue where it stopped

Every epoch writes runs/<run_name>/last.pt (model, EMA model, optimiser, schedule, RNG state, the config)
and appends one JSON line to runs/<run_name>/log.jsonl.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import time
from pathlib import Path

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from training.augment import augment
from training.config import TrainConfig
from training.data import FaceSet, default_data_dir
from training.models import build_model, count_macs
from training.tasks import Task, build_task

PIXEL_MEAN, PIXEL_STD = 0.5, 0.5  # network input = (pixel / 255 - 0.5) / 0.5, for every model here


def normalise(images_uint8: torch.Tensor) -> torch.Tensor:
    return (images_uint8.float() / 255 - PIXEL_MEAN) / PIXEL_STD


def build(config: TrainConfig) -> tuple[Task, nn.Module]:
    task = build_task(config)
    args = {"in_channels": task.in_channels, "input_size": task.input_size, **config.model_args}
    args = {k: tuple(v) if isinstance(v, list) else v for k, v in args.items()}
    return task, build_model(config.model, task.heads, **args)


@torch.no_grad()
def predict_logits(model: nn.Module, images: torch.Tensor, flip: bool = False, batch_size: int = 512) -> dict[str, torch.Tensor]:
    """Logits for uint8 images in fp32; with ``flip`` the logits of the image and its mirror are averaged."""
    model.eval()
    chunks: list[dict[str, torch.Tensor]] = []
    for start in range(0, len(images), batch_size):
        x = normalise(images[start : start + batch_size]).contiguous(memory_format=torch.channels_last)
        out = model(x)
        if flip:
            mirrored = model(torch.flip(x, dims=[3]))
            out = {k: (v + mirrored[k]) / 2 for k, v in out.items()}
        chunks.append(out)
    return {k: torch.cat([c[k] for c in chunks]) for k in chunks[0]}


def evaluate(task: Task, model: nn.Module, data: FaceSet) -> dict[str, float]:
    plain = task.metrics(predict_logits(model, data.images), data.targets)
    flipped = task.metrics(predict_logits(model, data.images, flip=True), data.targets)
    return {**plain, **{f"{k}_flip": v for k, v in flipped.items()}}


def lr_factor(step: int, total_steps: int, warmup_steps: int) -> float:
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return 0.5 * (1 + math.cos(math.pi * progress))


def train(config: TrainConfig, run_dir: Path, resume: bool) -> dict[str, float]:
    torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    task, model = build(config)
    model = model.to(memory_format=torch.channels_last)
    ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(config.ema_decay), use_buffers=True)

    data_dir = Path(config.data_dir) if config.data_dir else default_data_dir()
    splits = task.load(data_dir, Path(config.cache_dir))
    if config.train_limit:
        splits = dataclasses.replace(splits, train=splits.train.subset(torch.arange(min(config.train_limit, len(splits.train)))))
    steps_per_epoch = len(splits.train) // config.batch_size  # drop the ragged last batch (BatchNorm)
    total_steps = steps_per_epoch * config.epochs

    decay, no_decay = [], []
    for parameter in model.parameters():
        (no_decay if parameter.ndim <= 1 else decay).append(parameter)  # no decay on biases and BN
    optimizer = torch.optim.SGD(
        [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=config.lr,
        momentum=config.momentum,
        nesterov=True,
    )
    warmup_steps = int(config.warmup_epochs * steps_per_epoch)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, total_steps, warmup_steps))
    generator = torch.Generator().manual_seed(config.seed)
    start_epoch = 0

    run_dir.mkdir(parents=True, exist_ok=True)
    checkpoint_path = run_dir / "last.pt"
    if resume and checkpoint_path.exists():
        state = torch.load(checkpoint_path, weights_only=False)  # nosec B614  # our own run's checkpoint
        model.load_state_dict(state["model"])
        ema.load_state_dict(state["ema"])
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        generator.set_state(state["generator"])
        start_epoch = state["epoch"] + 1
        print(f"resumed {checkpoint_path} at epoch {start_epoch}", flush=True)
    else:
        (run_dir / "log.jsonl").unlink(missing_ok=True)

    input_shape = (task.in_channels, task.input_size, task.input_size)
    print(
        f"{config.run_name}: {config.model} {sum(p.numel() for p in model.parameters()) / 1e6:.2f} M params, "
        f"{count_macs(model, input_shape) / 1e6:.1f} M MACs; train {len(splits.train)}, val {len(splits.val)}; "
        f"{config.epochs} epochs x {steps_per_epoch} steps",
        flush=True,
    )
    # bf16 is ~3x faster where the CPU has it natively (AVX512-BF16 / AMX) and several times slower where not.
    use_bf16 = config.bf16 and cpu_has_native_bf16()
    metrics: dict[str, float] = {}
    for epoch in range(start_epoch, config.epochs):
        model.train()
        started = time.perf_counter()
        order = torch.randperm(len(splits.train), generator=generator)
        loss_sum = 0.0
        for step in range(steps_per_epoch):
            index = order[step * config.batch_size : (step + 1) * config.batch_size]
            batch = splits.train.subset(index)
            images = augment(batch.images.float() / 255, config.augment, generator)
            images = ((images - PIXEL_MEAN) / PIXEL_STD).contiguous(memory_format=torch.channels_last)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=use_bf16):
                logits = model(images)
            loss = task.loss(logits, batch.targets)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            ema.update_parameters(model)
            loss_sum += loss.item()
            if (step + 1) % 50 == 0:
                rate = (step + 1) * config.batch_size / (time.perf_counter() - started)
                print(
                    f"  epoch {epoch + 1} step {step + 1}/{steps_per_epoch} loss {loss_sum / (step + 1):.4f} {rate:.0f} img/s", flush=True
                )
        train_seconds = time.perf_counter() - started
        metrics = evaluate(task, ema.module, splits.val)
        raw_metrics = task.metrics(predict_logits(model, splits.val.images), splits.val.targets)
        record = {
            "epoch": epoch + 1,
            "train_loss": round(loss_sum / steps_per_epoch, 5),
            "lr": schedule.get_last_lr()[0],
            "train_seconds": round(train_seconds, 1),
            **{f"val_{k}": round(v, 5) for k, v in metrics.items()},
            **{f"val_raw_{k}": round(v, 5) for k, v in raw_metrics.items()},  # without EMA
        }
        print(json.dumps(record), flush=True)
        with open(run_dir / "log.jsonl", "a") as log:
            log.write(json.dumps(record) + "\n")
        state = {
            "config": config.to_dict(),
            "epoch": epoch,
            "model": model.state_dict(),
            "ema": ema.state_dict(),
            "optimizer": optimizer.state_dict(),
            "schedule": schedule.state_dict(),
            "generator": generator.get_state(),
            "metrics": record,
        }
        torch.save(state, run_dir / "last.tmp")
        (run_dir / "last.tmp").replace(checkpoint_path)  # atomic: a kill mid-save never corrupts last.pt
    return metrics


def cpu_has_native_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", nargs="?", type=Path, help="TOML config (not needed with --resume)")
    parser.add_argument("--resume", type=Path, help="run directory whose last.pt to continue from")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
    args = parser.parse_args(argv)
    if args.resume:
        saved = torch.load(args.resume / "last.pt", weights_only=False)["config"]  # nosec B614  # our own run's checkpoint
        runtime_only = {"threads", "epochs"}  # what may change mid-run without changing the experiment
        overrides = dict(o.split("=", 1) for o in args.set)
        if set(overrides) - runtime_only:
            parser.error(f"--resume only takes --set for {sorted(runtime_only)}")
        config = TrainConfig.from_dict(saved | {k: int(v) for k, v in overrides.items()})
        run_dir = args.resume
    elif args.config:
        config = TrainConfig.load(args.config, args.set)
        run_dir = Path(config.runs_dir) / config.run_name
    else:
        parser.error("give a config file or --resume RUN_DIR")
    (run_dir).mkdir(parents=True, exist_ok=True)
    (run_dir / "config.json").write_text(json.dumps(config.to_dict(), indent=2))
    train(config, run_dir, resume=bool(args.resume))


if __name__ == "__main__":
    main()
