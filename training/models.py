"""Model registry. Every network maps (N, C, H, W) normalised images to a dict of logits, one entry per
head, so one training loop serves the single-task emotion model and the multi-task age / gender model.

- ``mini_vgg``: plain 3×3 conv stages + max-pool, widths doubling as resolution halves. Dense 3×3 convs are
  what ONNX Runtime (and oneDNN for bf16 training) run fastest on a CPU, so at equal latency this family
  trains and serves faster than depthwise-separable designs.
- ``mini_xception``: the mini-XCEPTION of Arriaga et al. (2017), the public baseline's family, kept for
  comparison.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn


def conv_bn_relu(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class MultiHead(nn.Module):
    """Flatten the final feature map (keeps where on the face a feature fired), one shared hidden layer,
    then one linear layer per head."""

    def __init__(self, in_features: int, hidden: int, dropout: float, heads: dict[str, int]):
        super().__init__()
        self.shared = nn.Sequential(
            nn.Flatten(), nn.Dropout(dropout), nn.Linear(in_features, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout)
        )
        self.heads = nn.ModuleDict({name: nn.Linear(hidden, size) for name, size in heads.items()})

    def forward(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        shared = self.shared(features)
        return {name: head(shared) for name, head in self.heads.items()}


class MiniVGG(nn.Module):
    def __init__(
        self,
        heads: dict[str, int],
        in_channels: int = 1,
        input_size: int = 48,
        widths: tuple[int, ...] = (32, 64, 128, 256),
        depths: tuple[int, ...] = (2, 2, 2, 2),
        hidden: int = 256,
        dropout: float = 0.4,
    ):
        super().__init__()
        if len(widths) != len(depths):
            raise ValueError(f"widths and depths must have the same length, got {len(widths)} and {len(depths)}")
        layers: list[nn.Module] = []
        channels = in_channels
        for width, depth in zip(widths, depths, strict=True):
            for _ in range(depth):
                layers.append(conv_bn_relu(channels, width))
                channels = width
            layers.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*layers)
        final_size = input_size // 2 ** len(widths)
        self.head = MultiHead(channels * final_size * final_size, hidden, dropout, heads)

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.head(self.features(images))


class _XceptionModule(nn.Module):
    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()

        def separable(cin: int, cout: int) -> list[nn.Module]:
            return [
                nn.Conv2d(cin, cin, 3, padding=1, groups=cin, bias=False),
                nn.Conv2d(cin, cout, 1, bias=False),
                nn.BatchNorm2d(cout),
            ]

        self.residual = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride=2, bias=False), nn.BatchNorm2d(out_channels))
        self.main = nn.Sequential(
            *separable(in_channels, out_channels),
            nn.ReLU(inplace=True),
            *separable(out_channels, out_channels),
            nn.MaxPool2d(3, stride=2, padding=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x) + self.residual(x)


class MiniXception(nn.Module):
    def __init__(self, heads: dict[str, int], in_channels: int = 1, input_size: int = 64, widths=(16, 32, 64, 128)):
        super().__init__()
        self.stem = nn.Sequential(conv_bn_relu(in_channels, 8), conv_bn_relu(8, 8))
        modules, channels = [], 8
        for width in widths:
            modules.append(_XceptionModule(channels, width))
            channels = width
        self.body = nn.Sequential(*modules)
        self.heads = nn.ModuleDict({name: nn.Conv2d(channels, size, 3, padding=1) for name, size in heads.items()})
        self.pool = nn.AdaptiveAvgPool2d(1)

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        features = self.body(self.stem(images))
        return {name: self.pool(head(features)).flatten(1) for name, head in self.heads.items()}


MODELS: dict[str, Callable[..., nn.Module]] = {"mini_vgg": MiniVGG, "mini_xception": MiniXception}


def build_model(name: str, heads: dict[str, int], **kwargs) -> nn.Module:
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; expected one of {sorted(MODELS)}")
    return MODELS[name](heads=heads, **kwargs)


def count_macs(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Multiply-accumulates of one forward pass (convolutions and linear layers)."""
    total = 0

    def hook(module: nn.Module, _inputs, output: torch.Tensor) -> None:
        nonlocal total
        if isinstance(module, nn.Conv2d):
            kh, kw = module.kernel_size
            total += output.numel() * module.in_channels // module.groups * kh * kw
        elif isinstance(module, nn.Linear):
            total += module.in_features * module.out_features * (output.numel() // module.out_features)

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    was_training = model.training
    model.eval()
    with torch.no_grad():
        model(torch.zeros(1, *input_shape))
    model.train(was_training)
    for handle in handles:
        handle.remove()
    return total
