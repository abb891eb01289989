"""Teacher predictions for knowledge distillation: the mean softmax (image + mirror) of trained runs."""

from __future__ import annotations

from pathlib import Path

import torch

from training.train import predict_logits


def teacher_probabilities(run_dirs: list[Path], head: str, images: torch.Tensor) -> torch.Tensor:
    from training.export import load_trained

    total = None
    for run_dir in run_dirs:
        _, network, state = load_trained(run_dir)
        probabilities = torch.softmax(predict_logits(network, images, flip=True)[head].float(), dim=1)
        total = probabilities if total is None else total + probabilities
        print(f"teacher {run_dir} (epoch {state['epoch'] + 1}) scored {len(images)} training images", flush=True)
    return total / len(run_dirs)
