"""Seed 001's Inception module ("Day 9: Advanced CNN Architectures", Part 6) and the small CIFAR
network deeplab builds from it (the seed defines and tests only the module).

Exactly the seed's module: default conv biases, BatchNorm and ReLU after every conv, PyTorch's
default initialization (the seed sets none). The network ends in ``AdaptiveAvgPool2d``, so on
1×28×28 only the first conv's input channels change.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from deeplab.models._common import reset_default

__all__ = ["InceptionModule", "InceptionNet", "INCEPTION_STAGES"]


class InceptionModule(nn.Module):
    """Seed 001's "simplified Inception module": four parallel branches
    (1×1; 1×1 → 3×3; 1×1 → 5×5; 3×3 max-pool → 1×1), each conv followed by BN
    and ReLU, concatenated along channels: ``ch1x1 + ch3x3 + ch5x5 + pool_proj``
    outputs at the input's resolution."""

    def __init__(
        self,
        in_channels: int,
        ch1x1: int,
        ch3x3_reduce: int,
        ch3x3: int,
        ch5x5_reduce: int,
        ch5x5: int,
        pool_proj: int,
    ):
        super().__init__()
        self.branch1 = nn.Sequential(
            nn.Conv2d(in_channels, ch1x1, kernel_size=1), nn.BatchNorm2d(ch1x1), nn.ReLU(inplace=True)
        )
        self.branch2 = nn.Sequential(
            nn.Conv2d(in_channels, ch3x3_reduce, kernel_size=1),
            nn.BatchNorm2d(ch3x3_reduce),
            nn.ReLU(inplace=True),
            nn.Conv2d(ch3x3_reduce, ch3x3, kernel_size=3, padding=1),
            nn.BatchNorm2d(ch3x3),
            nn.ReLU(inplace=True),
        )
        self.branch3 = nn.Sequential(
            nn.Conv2d(in_channels, ch5x5_reduce, kernel_size=1),
            nn.BatchNorm2d(ch5x5_reduce),
            nn.ReLU(inplace=True),
            nn.Conv2d(ch5x5_reduce, ch5x5, kernel_size=5, padding=2),
            nn.BatchNorm2d(ch5x5),
            nn.ReLU(inplace=True),
        )
        self.branch4 = nn.Sequential(
            nn.MaxPool2d(kernel_size=3, stride=1, padding=1),
            nn.Conv2d(in_channels, pool_proj, kernel_size=1),
            nn.BatchNorm2d(pool_proj),
            nn.ReLU(inplace=True),
        )
        self.out_channels = ch1x1 + ch3x3 + ch5x5 + pool_proj

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branches = (self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x))
        return torch.cat(branches, dim=1)  # (B, ch1x1 + ch3x3 + ch5x5 + pool_proj, H, W)


#: deeplab's design: three stages of two modules, (ch1x1, ch3x3_reduce, ch3x3,
#: ch5x5_reduce, ch5x5, pool_proj) each; a 3×3 stride-2 max-pool between stages.
#: The first module is the seed's own test module (64 in → 16 + 32 + 16 + 16 = 80).
INCEPTION_STAGES: tuple[tuple[tuple[int, int, int, int, int, int], ...], ...] = (
    ((16, 24, 32, 8, 16, 16), (32, 32, 48, 8, 24, 24)),  # 64 → 80 → 128 channels, 32×32
    ((48, 48, 96, 12, 32, 32), (64, 64, 128, 16, 32, 32)),  # 128 → 208 → 256, 16×16
    ((96, 64, 128, 16, 48, 48), (128, 96, 160, 24, 64, 64)),  # 256 → 320 → 416, 8×8
)


class InceptionNet(nn.Module):
    """A small CIFAR network of the seed's :class:`InceptionModule` (deeplab's design;
    the seed defines and tests only the module).

    A GoogLeNet-style layout shrunk for 32×32, in the seed's ResNet manner (3×3
    stride-1 stem, no early downsampling, global average pool): 3×3 conv 64 →
    BN → ReLU; three stages of two Inception modules (:data:`INCEPTION_STAGES`,
    80/128, 208/256, 320/416 channels) with a 3×3 stride-2 max-pool (padding 1)
    after the first two stages (32 → 16 → 8); adaptive average pool; fc 416 →
    ``num_classes``. The first module is exactly the one the seed instantiates
    (``InceptionModule(64, 16, 24, 32, 8, 16, 16)``). 670,942 parameters on
    3×32×32; PyTorch default initialization, as everywhere in seed 001.
    """

    def __init__(self, in_channels: int = 3, num_classes: int = 10):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, 64, kernel_size=3, padding=1), nn.BatchNorm2d(64), nn.ReLU(inplace=True)
        )
        stages = []
        channels = 64
        for stage_index, stage in enumerate(INCEPTION_STAGES):
            modules: list[nn.Module] = []
            for widths in stage:
                module = InceptionModule(channels, *widths)
                modules.append(module)
                channels = module.out_channels
            if stage_index < len(INCEPTION_STAGES) - 1:
                modules.append(nn.MaxPool2d(kernel_size=3, stride=2, padding=1))
            stages.append(nn.Sequential(*modules))
        self.stages = nn.Sequential(*stages)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(channels, num_classes)

    def init_weights(self) -> None:
        """PyTorch's default Conv2d/Linear/BatchNorm init, as the seed uses."""
        reset_default(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)  # (B, 64, 32, 32)
        x = self.stages(x)  # (B, 128, 32, 32) → (B, 256, 16, 16) → (B, 416, 8, 8)
        x = self.avgpool(x).flatten(1)  # (B, 416)
        return self.fc(x)  # (B, num_classes) logits

