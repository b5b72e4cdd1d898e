"""Seed 000's Fashion-MNIST networks: the two-layer net, the five-layer CNN,
its all-sigmoid twin, and the 15-layer CNN with and without skip connections.

Exactly the seed's code: PyTorch default initialization (Kaiming-uniform with
a = √5, the ``nn.Conv2d``/``nn.Linear`` default the seed relies on), the
seed's hand-written activations, and the seed's skip placements. On 1×28×28
input each matches the parameter count the seed prints; on 3×32×32 (CIFAR-10)
only the first layer's input channels and the flattened size change
(28→14→7→3 becomes 32→16→8→4, so fc1 sees 64·4·4 = 1024 features, the
"FC 1024→256" of the seed's own prose).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from deeplab import functional as HF
from deeplab.models._registry import register_model

__all__ = ["TwoLayerNet", "FiveLayerCNN", "DeepCNN15", "CNN15_SKIPS"]

# Seed 000 Part 2/3 protocol for the five-layer and 15-layer CNNs:
# Fashion-MNIST, 10 epochs, batch 32, lr 0.005, hand-written momentum SGD α = 0.9.
_SEED000_CNN_PROTOCOL = dict(
    epochs=10, batch_size=32, lr=0.005, momentum=0.9, optimizer="momentum_sgd", loss="manual"
)


def _pooled_size(image_size: int, pools: int) -> int:
    """Side length after ``pools`` 2×2 max-pools with floor division (28→14→7→3)."""
    for _ in range(pools):
        image_size //= 2
    return image_size


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
        for layer in (self.fc1, self.fc2):
            layer.reset_parameters()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)  # (B, C·H·W)
        return self.fc2(HF.sigmoid(self.fc1(x)))  # (B, num_classes) logits


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
        side = _pooled_size(image_size, 3)
        self.fc1 = nn.Linear(64 * side * side, 256)
        self.fc2 = nn.Linear(256, num_classes)

    def init_weights(self) -> None:
        """PyTorch's default Conv2d/Linear init, as the seed uses."""
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                module.reset_parameters()

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
        side = _pooled_size(image_size, 3)
        self.fc1 = nn.Linear(64 * side * side, 256)
        self.fc2 = nn.Linear(256, 256)
        self.fc3 = nn.Linear(256, num_classes)

    def init_weights(self) -> None:
        """PyTorch's default Conv2d/Linear init, as the seed uses."""
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                module.reset_parameters()

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


@register_model(
    "two_layer_mlp",
    family="seed000-baseline",
    seed="000 Part 1 (TwoLayerNet)",
    description="784→256 hand-written sigmoid →10 at batch 1: the shallow baseline",
    dataset="fashion_mnist",
    protocol=dict(epochs=10, batch_size=1, lr=0.005, momentum=0.0, optimizer="momentum_sgd", loss="manual"),
)
def two_layer_mlp(in_channels: int = 1, num_classes: int = 10, image_size: int = 28) -> nn.Module:
    return TwoLayerNet(in_channels, num_classes, image_size)


@register_model(
    "cnn5",
    family="seed000-cnn5",
    seed="000 Part 2 (FiveLayerCNN)",
    description="3 convs (leaky ReLU 0.1) + max-pool, tanh fc 576→256→10",
    dataset="fashion_mnist",
    protocol=_SEED000_CNN_PROTOCOL,
)
def cnn5(in_channels: int = 1, num_classes: int = 10, image_size: int = 28) -> nn.Module:
    return FiveLayerCNN(in_channels, num_classes, image_size, activation="leaky_tanh")


@register_model(
    "cnn5_sigmoid",
    family="seed000-cnn5",
    seed="000 Part 2 Exp. 1a (FiveLayerCNN_Sigmoid)",
    description="cnn5's layers with hand-written sigmoid everywhere: the vanishing-gradient demo",
    dataset="fashion_mnist",
    protocol=dict(epochs=10, batch_size=1, lr=0.005, momentum=0.0, optimizer="momentum_sgd", loss="manual"),
)
def cnn5_sigmoid(in_channels: int = 1, num_classes: int = 10, image_size: int = 28) -> nn.Module:
    return FiveLayerCNN(in_channels, num_classes, image_size, activation="sigmoid")


def _register_cnn15(name: str, skips: str, experiment: str, description: str) -> None:
    @register_model(
        name,
        family="cnn15",
        seed=f"000 Part 3 ({experiment})",
        description=description,
        dataset="fashion_mnist",
        protocol=_SEED000_CNN_PROTOCOL,
    )
    def factory(in_channels: int = 1, num_classes: int = 10, image_size: int = 28, init: str = "seed",
                sigma_w2: float | None = None, sigma_b2: float | None = None) -> nn.Module:
        from deeplab.inits import apply_init, check_scheme, check_variances

        check_variances(check_scheme(init, residual=False, family=name), sigma_w2, sigma_b2)
        model = DeepCNN15(in_channels, num_classes, image_size, skips=skips)
        if init != "seed":
            # Issue 9: literature inits on seed 000's 15-layer nets; leaky ReLU 0.01 sets the critical point.
            apply_init(model, init, activation="leaky_relu", sigma_w2=sigma_w2, sigma_b2=sigma_b2)
        return model


_register_cnn15("cnn15_plain", "plain", "DeepCNN15_NoSkip", "15 layers (12 conv + 3 fc), no skips")
_register_cnn15("cnn15_skip1", "skip1", "DeepCNN15_SkipConfig1", "15 layers, skips conv1→2, conv5→6, conv9→10")
_register_cnn15("cnn15_skip2", "skip2", "DeepCNN15_SkipConfig2", "15 layers, skips conv1→3, conv5→8, conv9→12")
