"""Helpers more than one architecture file uses: PyTorch's default (re-)initialization, the side
left by floor max-pools, the strict integer test of the ``depth`` checks, the first conv of the
ResNets and plain nets, and seed 003's activation switch and He-uniform initialization (its MLPs
and its CNNs share them)."""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn

__all__ = [
    "reset_default",
    "pooled_size",
    "is_int",
    "STEMS",
    "stem_conv",
    "SEED003_ACTIVATIONS",
    "seed003_activation",
    "seed003_init",
]


def reset_default(module: nn.Module) -> None:
    """PyTorch's default initialization of every conv, linear and BatchNorm layer, in module order
    (what the seeds that set no initialization train with)."""
    for layer in module.modules():
        if isinstance(layer, (nn.Conv2d, nn.Linear, nn.BatchNorm2d)):
            layer.reset_parameters()


def pooled_size(image_size: int, pools: int) -> int:
    """Side length after ``pools`` 2×2 max-pools with floor division (28→14→7→3)."""
    for _ in range(pools):
        image_size //= 2
    return image_size


def is_int(value: object) -> bool:
    """An ``int`` and not a ``bool``."""
    return isinstance(value, int) and not isinstance(value, bool)


#: the stems of the ResNets and plain nets (a conv to 64 channels → BN → ReLU, and for
#: ``"imagenet"`` a 3×3 stride-2 max-pool after it): ``"cifar"`` is a 3×3 stride-1 conv (seed 001's
#: CIFAR ResNet, seed 004's Exercise 2), ``"imagenet"`` the ImageNet ResNet's 7×7 stride-2 conv
#: (seed 004's Exercises 1 and 4)
STEMS: tuple[str, ...] = ("cifar", "imagenet")


def stem_conv(in_channels: int, stem: str, bias: bool) -> nn.Conv2d:
    """The first conv of :data:`STEMS` ``stem``: ``in_channels`` → 64 channels."""
    if stem == "cifar":
        return nn.Conv2d(in_channels, 64, kernel_size=3, stride=1, padding=1, bias=bias)
    if stem == "imagenet":
        return nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=bias)
    raise ValueError(f"stem must be one of {', '.join(STEMS)}, not {stem!r}")


#: seed 003's activations: Part 3 uses ReLU; Part 4 swaps every hidden activation for the sigmoid
SEED003_ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "relu": torch.relu,
    "sigmoid": torch.sigmoid,  # the seed's torch.nn.Sigmoid / F.sigmoid
}


def seed003_activation(activation: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """The function named ``activation`` in :data:`SEED003_ACTIVATIONS`, else ``ValueError``."""
    if activation not in SEED003_ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(SEED003_ACTIVATIONS)}, not {activation!r}")
    return SEED003_ACTIVATIONS[activation]


def seed003_init(module: nn.Module) -> None:
    """Seed 003's ``init_weights``: ``kaiming_uniform_`` weights, zero biases, on Linear and Conv2d."""
    for layer in module.modules():
        if isinstance(layer, (nn.Linear, nn.Conv2d)):
            nn.init.kaiming_uniform_(layer.weight)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)
