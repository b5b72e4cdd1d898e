"""Seed 000 Part 3's 15-layer CNN, without skips and with its two skip placements.

Exactly the seed's code: PyTorch default initialization (Kaiming-uniform with a = √5, the
``nn.Conv2d``/``nn.Linear`` default the seed relies on), the seed's hand-written leaky ReLU, and
the seed's skip placements. 384,858 parameters on 1×28×28; on 3×32×32 (CIFAR-10) only the first
layer's input channels and the flattened size change (28→14→7→3 becomes 32→16→8→4).
:func:`build_cnn15` adds the literature initializations of :mod:`deeplab.models.inits` (``--init``).
"""

from __future__ import annotations

import torch
import torch.nn as nn

import deeplab.models.inits as inits
from deeplab.models._common import pooled_size, reset_default

__all__ = ["DeepCNN15", "CNN15_SKIPS", "build_cnn15"]

#: skip placements of seed 000 Part 3: (source conv, destination conv); the
#: source's activation output is added to the destination's activation output.
CNN15_SKIPS: dict[str, tuple[tuple[int, int], ...]] = {
    "plain": (),
    "skip1": ((1, 2), (5, 6), (9, 10)),  # "short skips", length 1
    "skip2": ((1, 3), (5, 8), (9, 12)),  # "longer skips", length 2-3
}


def _seed000_leaky_relu(x: torch.Tensor) -> torch.Tensor:
    # Seed 000 Part 3 writes its own: torch.where(x > 0, x, 0.01 * x).
    return torch.where(x > 0, x, 0.01 * x)


class DeepCNN15(nn.Module):
    """Seed 000 Part 3's 15-layer CNN (``DeepCNN15_NoSkip``, ``_SkipConfig1``, ``_SkipConfig2``).

    Three blocks of four 3×3 convs (1→16,16,16,16 | 16→32,… | 32→64,…), leaky ReLU
    0.01 after every conv, a 2×2 max-pool after each block, then fc 576→256→256→10
    with tanh on fc1 and fc2. 384,858 parameters on 1×28×28, whatever the skips.
    A skip (s, d) adds conv s's activation output to conv d's activation output
    (the seed's ``x = x + identity`` after the activation), before any pool.
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 10,
        image_size: int = 28,
        skips: str = "plain",
    ):
        super().__init__()
        if skips not in CNN15_SKIPS:
            raise ValueError(f"skips must be one of {sorted(CNN15_SKIPS)}, not {skips!r}")
        self.skips = skips
        self._skip_sources = {source: dest for source, dest in CNN15_SKIPS[skips]}
        self._skip_destinations = {dest: source for source, dest in CNN15_SKIPS[skips]}
        widths = [16] * 4 + [32] * 4 + [64] * 4
        channels_in = [in_channels] + widths[:-1]
        self.convs = nn.ModuleList(
            nn.Conv2d(c_in, c_out, kernel_size=3, padding=1) for c_in, c_out in zip(channels_in, widths)
        )
        self.pool = nn.MaxPool2d(2, 2)
        side = pooled_size(image_size, 3)
        self.fc1 = nn.Linear(64 * side * side, 256)
        self.fc2 = nn.Linear(256, 256)
        self.fc3 = nn.Linear(256, num_classes)

    def init_weights(self) -> None:
        """PyTorch's default Conv2d/Linear init, as the seed uses."""
        reset_default(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        saved: dict[int, torch.Tensor] = {}
        for index, conv in enumerate(self.convs, start=1):
            x = _seed000_leaky_relu(conv(x))
            if index in self._skip_destinations:
                x = x + saved.pop(self._skip_destinations[index])
            if index in self._skip_sources:
                saved[index] = x
            if index % 4 == 0:
                x = self.pool(x)  # (B, 16, 14, 14) → (B, 32, 7, 7) → (B, 64, 3, 3)
        x = torch.tanh(self.fc1(x.flatten(1)))
        x = torch.tanh(self.fc2(x))
        return self.fc3(x)  # (B, num_classes) logits


def build_cnn15(
    skips: str,
    in_channels: int = 1,
    num_classes: int = 10,
    image_size: int = 28,
    init: str = "seed",
    sigma_w2: float | None = None,
    sigma_b2: float | None = None,
    family: str = "cnn15",
) -> DeepCNN15:
    """A :class:`DeepCNN15` initialized by ``init``: ``seed`` keeps PyTorch's default, any other
    scheme of :mod:`deeplab.models.inits` (issue 9) is applied with leaky ReLU 0.01's critical point;
    ``sigma_w2``/``sigma_b2`` set the variances of those that take them. The scheme and variances
    are checked before anything is built; ``family`` names the model in their errors."""
    inits.check_variances(inits.check_scheme(init, residual=False, family=family), sigma_w2, sigma_b2)
    model = DeepCNN15(in_channels, num_classes, image_size, skips=skips)
    if init != "seed":
        # Issue 9: literature inits on seed 000's 15-layer nets; leaky ReLU 0.01 sets the critical point.
        inits.apply_init(model, init, activation="leaky_relu", sigma_w2=sigma_w2, sigma_b2=sigma_b2)
    return model
