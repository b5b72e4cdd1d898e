"""Multilayer perceptrons: seed 000's two-layer net and seed 003's ``MLP_1`` / ``MLP_2``.

Each is exactly its seed's code; they differ where the seeds do, so they stay two classes:

* :class:`TwoLayerNet` (seed 000 Part 1): 784→256→10 with the seed's *hand-written* sigmoid
  (:func:`deeplab.models.functional.sigmoid`) and PyTorch's default initialization.
* :class:`SeedMLP` (seed 003 Part 3 ``MLP_1``/``MLP_2``, Part 4's ``*_Sigmoid`` twins with
  ``activation="sigmoid"``): ``torch.relu`` or ``torch.sigmoid`` after every hidden layer,
  ``bias=False`` on MLP_2's fc2, and the seed's initialization, which its
  ``train_and_evaluate`` applies before training: ``kaiming_uniform_`` with PyTorch's defaults
  (a = 0, fan-in, gain √2) on every weight, biases zeroed. The constructor calls
  :meth:`SeedMLP.init_weights`, so a fresh model is already initialized as the seed trains it.
  Parameter counts on 3×32×32 are the seed's report's: mlp_1 98,666, mlp_2 101,034. On 1×28×28
  the MLPs see 1·28·28 = 784 inputs (the seed flattens to 3·32·32 = 3072 outside the model;
  deeplab's models flatten in ``forward``).

Attribute names (``fc1``, ``fc2`` ...) are the seeds', so their saved ``state_dict`` files load.
"""

from __future__ import annotations

import torch
import torch.nn as nn

import deeplab.models.functional as HF
from deeplab.models._common import reset_default, seed003_activation, seed003_init

__all__ = ["TwoLayerNet", "SeedMLP", "MLP_HIDDEN"]


class TwoLayerNet(nn.Module):
    """784→256 →(hand-written sigmoid)→ 10 (seed 000 Part 1, ``TwoLayerNet``).

    The seed's comment says "Linear + ReLU"; its code applies the hand-written
    sigmoid. deeplab follows the code. 203,530 parameters on 1×28×28.
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 10, image_size: int = 28, hidden: int = 256):
        super().__init__()
        self.fc1 = nn.Linear(in_channels * image_size * image_size, hidden)
        self.fc2 = nn.Linear(hidden, num_classes)

    def init_weights(self) -> None:
        """PyTorch's default Linear init, as the seed uses."""
        reset_default(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)  # (B, C·H·W)
        return self.fc2(HF.sigmoid(self.fc1(x)))  # (B, num_classes) logits


#: hidden fc layers of each of seed 003's MLPs: (width, bias)
MLP_HIDDEN: dict[str, tuple[tuple[int, bool], ...]] = {
    "mlp_1": ((32, True),),  # 3072 → 32 → 10
    "mlp_2": ((32, True), (64, False)),  # 3072 → 32 → 64 (no bias) → 10
}


class SeedMLP(nn.Module):
    """Seed 003's ``MLP_1`` / ``MLP_2``: flatten, hidden fc layers each followed by
    the activation, then the output fc (``fc1`` ... ``fcN``, the seed's names)."""

    def __init__(
        self,
        hidden: tuple[tuple[int, bool], ...],
        in_channels: int = 3,
        num_classes: int = 10,
        image_size: int = 32,
        activation: str = "relu",
    ):
        super().__init__()
        self.activation = activation
        self._act = seed003_activation(activation)
        features = in_channels * image_size * image_size  # 3072 on CIFAR-10, 784 on MNIST
        self.num_hidden = len(hidden)
        for index, (width, bias) in enumerate(hidden, start=1):
            setattr(self, f"fc{index}", nn.Linear(features, width, bias=bias))
            features = width
        setattr(self, f"fc{self.num_hidden + 1}", nn.Linear(features, num_classes))
        self.init_weights()

    def init_weights(self) -> None:
        """Kaiming-uniform weights (a = 0, fan-in), zero biases: the seed's ``init_weights``."""
        seed003_init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)  # (B, C·H·W); the seed reshapes to (-1, 3*32*32) before the call
        for index in range(1, self.num_hidden + 1):
            x = self._act(getattr(self, f"fc{index}")(x))  # (B, 32), then (B, 64)
        return getattr(self, f"fc{self.num_hidden + 1}")(x)  # (B, num_classes) logits
