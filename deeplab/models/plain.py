"""Seed 004's deep plain networks: Exercise 1's ``PlainConvNet(depth)`` and Exercise 2's
``PlainCNN(depth)``, the plain control for its ``ResNet(depth)``, as one :class:`PlainNet` whose
``stem`` is the only difference.

Exactly the seed's code: every conv keeps PyTorch's default bias, BatchNorm after every conv, all
64 channels, ``nn.ReLU(inplace=True)``, and PyTorch's default initialization (the seed sets none).
On 1×28×28 only the first conv's input channels change; the network ends in the seed's
``AdaptiveAvgPool2d((1, 1))``, so no flattened size depends on the image.

``depth`` counts *blocks of two convs* here (in seed 004's ``ResNet(depth)`` it counts convs:
:mod:`deeplab.models.resnet`). So Exercise 1's "20-layer vs 56-layer" plain nets have 2·20 + 2 =
42 and 2·56 + 2 = 114 weight layers, and Exercise 2 compares ``PlainCNN(56)`` (112 block convs)
with ``ResNet(56)`` (56 block convs). deeplab keeps each class's own meaning of ``depth`` (the
code) so ``--depth`` reproduces the seed's runs.

Seed bug fixed: ``PlainCNN.forward`` calls ``self.relu``, which ``PlainCNN.__init__`` never
defines (an ``AttributeError`` on the first batch, so Exercise 2's plain baseline could not have
run); deeplab defines it as ``nn.ReLU(inplace=True)``, as the seed's other classes do.

(Seed 001's ``PlainNet``, its ResNet-18 without shortcuts, is a :class:`~deeplab.models.resnet.ResNet`
with ``shortcut=False``: the seed builds it from its ResNet class.)
"""

from __future__ import annotations

import torch
import torch.nn as nn

from deeplab.errors import DeeplabError
from deeplab.models._common import is_int, reset_default, stem_conv

__all__ = ["PlainNet"]


def _plain_block(in_channels: int) -> nn.Sequential:
    """(3×3 conv → BN → ReLU) × 2 at 64 channels, no shortcut."""
    return nn.Sequential(
        nn.Conv2d(in_channels, 64, kernel_size=3, padding=1),
        nn.BatchNorm2d(64),
        nn.ReLU(inplace=True),
        nn.Conv2d(64, 64, kernel_size=3, padding=1),
        nn.BatchNorm2d(64),
        nn.ReLU(inplace=True),
    )


class PlainNet(nn.Module):
    """Stem conv 64 → BN → ReLU (→ 3×3 stride-2 max-pool for the ImageNet stem), then ``depth``
    plain blocks (two Conv-BN-ReLU at 64 channels each, no shortcut), global average pool, fc 64 →
    ``num_classes``.

    * ``stem="imagenet"``: Exercise 1's ``PlainConvNet(depth)`` (7×7 stride-2 conv and the
      max-pool; 32×32 → 8×8). 9,600 + 74,112·depth + 650 parameters on 3×32×32 (1,492,490 at
      depth 20).
    * ``stem="cifar"``: Exercise 2's ``PlainCNN(depth)`` (3×3 stride-1 conv, no max-pool).
      1,920 + 74,112·depth + 650 parameters on 3×32×32.

    ``family`` names the model in the error a bad ``depth`` raises.
    """

    def __init__(
        self, depth: int, in_channels: int = 3, num_classes: int = 10, *, stem: str, family: str = "PlainNet"
    ):
        super().__init__()
        if not is_int(depth) or depth < 1:
            raise DeeplabError(
                f"{family}: --depth counts blocks of two 3×3 convs and must be a positive integer "
                f"(the seed runs 20 and 56), got {depth!r}."
            )
        self.depth = depth
        self.conv1 = stem_conv(in_channels, stem, bias=True)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)  # PlainCNN: missing from the seed's __init__ (bug fix)
        self.stem = stem
        if stem == "imagenet":
            self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layers = nn.Sequential(*(_plain_block(64) for _ in range(depth)))
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(64, num_classes)

    def init_weights(self) -> None:
        """PyTorch's default Conv2d/Linear/BatchNorm init, as the seed uses."""
        reset_default(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))  # (B, 64, 32, 32); ImageNet stem (B, 64, 16, 16)
        if self.stem == "imagenet":
            x = self.maxpool(x)  # (B, 64, 8, 8); 28×28 → (B, 64, 7, 7)
        x = self.layers(x)
        x = self.avgpool(x).flatten(1)  # (B, 64)
        return self.fc(x)  # (B, num_classes) logits
