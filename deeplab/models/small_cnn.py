"""Small CNNs (a few convs with 2×2 max-pools, then two fc layers): seed 000's five-layer CNN
and its all-sigmoid twin, and seed 003's ``CNN_3`` / ``CNN_4`` / ``CNN_5``.

Each is exactly its seed's code. Both classes build ``conv1`` … ``convN``, one shared ``pool``,
``fc1``, ``fc2`` in that order, but they stay two classes: seed 000 uses its hand-written
activations (leaky ReLU 0.1 on the convs and tanh on fc1, or the hand-written sigmoid
everywhere), a 256-wide fc1 and PyTorch's default initialization; seed 003 uses ``torch.relu``
or ``torch.sigmoid``, a 64-wide fc1 and its He-uniform initialization, applied in the
constructor (see :mod:`deeplab.models.mlp`).

* :class:`FiveLayerCNN` (seed 000 Part 2). On 1×28×28 it matches the parameter count the seed
  prints; on 3×32×32 (CIFAR-10) only the first layer's input channels and the flattened size
  change (28→14→7→3 becomes 32→16→8→4, so fc1 sees 64·4·4 = 1024 features, the
  "FC 1024→256" of the seed's own prose).
* :class:`SeedCNN` (seed 003 Part 3, ``models.py``; Part 4's ``*_Sigmoid`` twins with
  ``activation="sigmoid"``): the seed's layers, widths, kernel sizes ("same" padding ``k // 2``),
  2×2 max-pools and the activation after every conv and after fc1. Parameter counts on 3×32×32
  are the seed's report's: cnn_3 76,194, cnn_4 77,490, cnn_5 40,682. On 1×28×28 the two floor
  pools give 28→14→7, so fc1 sees C·7·7 instead of C·8·8. Prose and code disagree once: the
  report lists CNN-3 as "[Conv-3×3×16, ReLU, Conv-5×5×8, ReLU, MaxPool-2×2, Conv-7×7×16,
  MaxPool-2×2]" (no ReLU after the 7×7 conv); its code applies ``F.relu(self.conv3(x))``, and
  deeplab follows the code.

Attribute names are the seeds', so their saved ``state_dict`` files load.
"""

from __future__ import annotations

from typing import Union

import torch
import torch.nn as nn

import deeplab.models.functional as HF
from deeplab.models._common import pooled_size, reset_default, seed003_activation, seed003_init

__all__ = ["FiveLayerCNN", "SeedCNN", "CNN_LAYERS"]


class FiveLayerCNN(nn.Module):
    """Three 3×3 convs 1→16→32→64, each followed by 2×2 max-pool, then fc 576→256→10
    (seed 000 Part 2, ``FiveLayerCNN`` and ``FiveLayerCNN_Sigmoid``).

    ``activation="leaky_tanh"``: leaky ReLU (slope 0.1, ``max(x, 0.1x)``) on the
    convs and tanh on fc1; ``activation="sigmoid"``: the hand-written sigmoid
    everywhere. The seed's prose says "3→16" and "FC 1024→256, 288,554
    parameters" (its CIFAR-10 draft); its Fashion-MNIST code, followed here, has
    1 input channel, 576 features and 173,578 parameters.
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 10,
        image_size: int = 28,
        activation: str = "leaky_tanh",
    ):
        super().__init__()
        if activation not in ("leaky_tanh", "sigmoid"):
            raise ValueError(f"activation must be 'leaky_tanh' or 'sigmoid', not {activation!r}")
        self.activation = activation
        self.conv1 = nn.Conv2d(in_channels, 16, kernel_size=3, padding=1)
        self.conv2 = nn.Conv2d(16, 32, kernel_size=3, padding=1)
        self.conv3 = nn.Conv2d(32, 64, kernel_size=3, padding=1)
        self.pool = nn.MaxPool2d(kernel_size=2, stride=2)
        side = pooled_size(image_size, 3)
        self.fc1 = nn.Linear(64 * side * side, 256)
        self.fc2 = nn.Linear(256, num_classes)

    def init_weights(self) -> None:
        """PyTorch's default Conv2d/Linear init, as the seed uses."""
        reset_default(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.activation == "sigmoid":
            conv_act = fc_act = HF.sigmoid
        else:
            conv_act, fc_act = (lambda t: HF.leaky_relu(t, 0.1)), torch.tanh
        x = self.pool(conv_act(self.conv1(x)))  # (B, 16, 14, 14)
        x = self.pool(conv_act(self.conv2(x)))  # (B, 32, 7, 7)
        x = self.pool(conv_act(self.conv3(x)))  # (B, 64, 3, 3)
        x = fc_act(self.fc1(x.flatten(1)))  # (B, 256)
        return self.fc2(x)  # (B, num_classes) logits


#: each of seed 003's CNNs: (out_channels, kernel) for a conv (padding k // 2, then
#: the activation), "M" for a 2×2 max-pool; fc1 → 64 → activation → fc2 follow.
CNN_LAYERS: dict[str, tuple[Union[tuple[int, int], str], ...]] = {
    # Conv-3×3×16, Conv-5×5×8, pool, Conv-7×7×16, pool
    "cnn_3": ((16, 3), (8, 5), "M", (16, 7), "M"),
    # Conv-3×3×16, Conv-3×3×8, Conv-5×5×16, pool, Conv-5×5×16, pool
    "cnn_4": ((16, 3), (8, 3), (16, 5), "M", (16, 5), "M"),
    # Conv-3×3×8, ×16, ×8, ×16, pool, Conv-3×3×16, ×8, pool
    "cnn_5": ((8, 3), (16, 3), (8, 3), (16, 3), "M", (16, 3), (8, 3), "M"),
}


class SeedCNN(nn.Module):
    """Seed 003's ``CNN_3`` / ``CNN_4`` / ``CNN_5``: the conv stack of
    :data:`CNN_LAYERS` (``conv1`` ... ``convN``, activation after each, a shared
    2×2 ``pool``), flatten, ``fc1`` → 64 → activation → ``fc2`` → ``num_classes``."""

    def __init__(
        self,
        layers: tuple[Union[tuple[int, int], str], ...],
        in_channels: int = 3,
        num_classes: int = 10,
        image_size: int = 32,
        activation: str = "relu",
    ):
        super().__init__()
        self.activation = activation
        self._act = seed003_activation(activation)
        self.plan: list[str] = []  # "conv1", "pool", ... in forward order
        channels, side, conv_index = in_channels, image_size, 0
        for entry in layers:
            if entry == "M":
                self.plan.append("pool")
                side //= 2  # floor pooling: 32 → 16 → 8, 28 → 14 → 7
            else:
                out_channels, kernel = entry
                conv_index += 1
                setattr(self, f"conv{conv_index}", nn.Conv2d(channels, out_channels, kernel, padding=kernel // 2))
                self.plan.append(f"conv{conv_index}")
                channels = out_channels
        self.pool = nn.MaxPool2d(2, 2)
        self.fc1 = nn.Linear(channels * side * side, 64)  # 16·8·8 = 1024 (cnn_3/4), 8·8·8 = 512 (cnn_5)
        self.fc2 = nn.Linear(64, num_classes)
        self.init_weights()

    def init_weights(self) -> None:
        """Kaiming-uniform weights (a = 0, fan-in), zero biases: the seed's ``init_weights``."""
        seed003_init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for step in self.plan:  # cnn_5: (B, 8, 32, 32) … (B, 16, 16, 16) … (B, 8, 8, 8)
            x = self.pool(x) if step == "pool" else self._act(getattr(self, step)(x))
        x = self._act(self.fc1(x.flatten(1)))  # (B, 64)
        return self.fc2(x)  # (B, num_classes) logits
