"""Seed 001's VGGNet ("Day 9: Advanced CNN Architectures", Part 3): VGG-16 with BatchNorm for
CIFAR-10.

Exactly the seed's code: the same layers, widths, kernel sizes, default conv biases, BatchNorm
after every conv, dropout 0.5 in the classifier, and PyTorch's default initialization (the seed
sets none). On 3×32×32 the network is the seed's. On 1×28×28 (MNIST) only what must change
changes: the first conv takes ``in_channels`` inputs, and as the five 2×2 max-pools would floor
28→14→7→3→1→0, when the side is not a multiple of 32 its pools use ``ceil_mode=True``
(28→14→7→4→2→1); at 32×32 the pools are the seed's floor pools, and the flattened size is computed
from ``image_size`` (512·1·1 on both). The seed's notebook prints no parameter counts (its
outputs are stripped).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from deeplab.models._common import reset_default

__all__ = ["VGGBlock", "VGGNet", "VGG_BLOCKS"]

#: the seed's ``VGGNet.features``: (out_channels, convs) per block, each block
#: ending in a 2×2 max-pool (32 → 16 → 8 → 4 → 2 → 1)
VGG_BLOCKS: tuple[tuple[int, int], ...] = ((64, 2), (128, 2), (256, 3), (512, 3), (512, 3))


class VGGBlock(nn.Module):
    """``num_convs`` × (3×3 conv → BN → ReLU), then a 2×2 max-pool (seed's ``VGGBlock``).

    ``ceil_mode`` is deeplab's addition for sides that are not a multiple of 32
    (see the module docstring); the seed's pool is the floor pool.
    """

    def __init__(self, in_channels: int, out_channels: int, num_convs: int, ceil_mode: bool = False):
        super().__init__()
        layers: list[nn.Module] = []
        for index in range(num_convs):
            layers.append(nn.Conv2d(in_channels if index == 0 else out_channels, out_channels, 3, padding=1))
            layers.append(nn.BatchNorm2d(out_channels))
            layers.append(nn.ReLU(inplace=True))
        layers.append(nn.MaxPool2d(2, 2, ceil_mode=ceil_mode))
        self.block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x)


class VGGNet(nn.Module):
    """The seed's ``VGGNet``: 13 BN convs in blocks of 2/2/3/3/3 (64, 128, 256, 512,
    512 channels), five max-pools, then 512→4096→4096→``num_classes`` with ReLU
    and dropout 0.5. 33,646,666 parameters on 3×32×32.

    The seed's comparison table calls it "16 conv + 3 FC"; its code, followed
    here, has 13 convs + 3 FC (VGG-16).
    """

    def __init__(self, in_channels: int = 3, num_classes: int = 10, image_size: int = 32):
        super().__init__()
        ceil_mode = image_size % 32 != 0  # only where floor pooling would collapse; 32×32 stays the seed's
        blocks = []
        channels, side = in_channels, image_size
        for out_channels, num_convs in VGG_BLOCKS:
            blocks.append(VGGBlock(channels, out_channels, num_convs, ceil_mode=ceil_mode))
            channels = out_channels
            side = -(-side // 2) if ceil_mode else side // 2
        if side < 1:
            raise ValueError(f"VGGNet: image_size {image_size} leaves nothing after five 2×2 max-pools")
        self.features = nn.Sequential(*blocks)  # (B, 512, side, side); side = 1 for 32 and 28
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(512 * side * side, 4096),
            nn.ReLU(inplace=True),
            nn.Dropout(0.5),
            nn.Linear(4096, 4096),
            nn.ReLU(inplace=True),
            nn.Dropout(0.5),
            nn.Linear(4096, num_classes),
        )

    def init_weights(self) -> None:
        """PyTorch's default Conv2d/Linear/BatchNorm init, as the seed uses."""
        reset_default(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)  # (B, 512, 1, 1)
        return self.classifier(x)  # (B, num_classes) logits

