"""Seed 003's CIFAR-10 assignment networks: ``MLP_1``, ``MLP_2``, ``CNN_3``,
``CNN_4``, ``CNN_5`` (Part 3, ``models.py``) and their sigmoid twins (Part 4,
``MLP_1_Sigmoid`` ... ``CNN_5_Sigmoid``), as one class per kind with an
``activation`` keyword.

Exactly the seed's code: same layers, widths, kernel sizes ("same" padding
``k // 2``), 2×2 max-pools, ``bias=False`` on MLP_2's fc2, the activation after
every conv and after every hidden fc, and the seed's initialization, which its
``train_and_evaluate`` / ``CNN_train_and_evaluate`` apply before training:
``kaiming_uniform_`` with PyTorch's defaults (a = 0, fan-in, gain √2) on every
``Linear`` and ``Conv2d`` weight, biases zeroed. Here the constructor calls
:meth:`init_weights`, so a fresh model is already initialized as the seed
trains it (the sigmoid twins too: the seed applies the same He init to them).
Attribute names (``fc1``, ``conv1`` ...) are the seed's, so its saved
``state_dict`` files load.

Parameter counts on 3×32×32 are the seed's report's: mlp_1 98,666,
mlp_2 101,034, cnn_3 76,194, cnn_4 77,490, cnn_5 40,682. On 1×28×28 only the
first layer's inputs and the flattened size change: the MLPs see 1·28·28 = 784
inputs (the seed flattens to 3·32·32 = 3072 outside the model; deeplab's
models flatten in ``forward``), and the CNNs' two floor pools give 28→14→7, so
fc1 sees C·7·7 instead of C·8·8.

Prose and code disagree once: the report lists CNN-3 as "[Conv-3×3×16, ReLU,
Conv-5×5×8, ReLU, MaxPool-2×2, Conv-7×7×16, MaxPool-2×2]" (no ReLU after the
7×7 conv); its code applies ``F.relu(self.conv3(x))``, and deeplab follows the
code.

Protocol (Part 3, ``part3.py``): ``num_epochs = 15``, ``batch_size = 50``,
``learning_rate = 0.001``, ``torch.optim.Adam``, ``CrossEntropyLoss``, and a
``random_split`` of the CIFAR-10 training set 90/10 (``int(0.9 * len(...))``)
whose 10 % is the validation set, ``Normalize((0.4914, 0.4822, 0.4465),
(0.247, 0.243, 0.261))`` (``part3.py`` line 23: not seed 001's std), and
Gaussian noise ``0.007 * randn_like(images)`` added to every training batch
("adversarial training", after normalization). Part 4's sigmoid-vs-ReLU runs use ``SGD(momentum=0.0)`` with a
learning rate the seed's surviving text does not show.
"""

from __future__ import annotations

from typing import Callable, Union

import torch
import torch.nn as nn

from deeplab.models._registry import register_model

__all__ = ["SeedMLP", "SeedCNN", "MLP_HIDDEN", "CNN_LAYERS", "ACTIVATIONS"]

# Seed 003 Part 3 (part3.py): num_epochs = 15, batch_size = 50, learning_rate = 0.001,
# torch.optim.Adam, a 90/10 random_split of the training set for validation.
_SEED003_PROTOCOL = dict(
    epochs=15,
    batch_size=50,
    lr=1e-3,
    optimizer="adam",
    loss="torch",
    schedule="none",
    val_split=0.1,
    augment=False,
    input_noise_std=0.007,  # part 3 adds 0.007·randn to every training batch
    # part3.py line 23; applied on CIFAR-10 only (config.resolve_config), not to MNIST runs of these models
    normalize_mean=(0.4914, 0.4822, 0.4465),
    normalize_std=(0.247, 0.243, 0.261),
)

#: Part 3 uses ReLU; Part 4 swaps every hidden activation for the sigmoid
ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "relu": torch.relu,
    "sigmoid": torch.sigmoid,  # the seed's torch.nn.Sigmoid / F.sigmoid
}


def _check_activation(activation: str) -> Callable[[torch.Tensor], torch.Tensor]:
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, not {activation!r}")
    return ACTIVATIONS[activation]


def _seed003_init(module: nn.Module) -> None:
    """The seed's ``init_weights``: ``kaiming_uniform_`` weights, zero biases, on Linear and Conv2d."""
    for layer in module.modules():
        if isinstance(layer, (nn.Linear, nn.Conv2d)):
            nn.init.kaiming_uniform_(layer.weight)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)


#: hidden fc layers of each MLP: (width, bias)
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
        self._act = _check_activation(activation)
        features = in_channels * image_size * image_size  # 3072 on CIFAR-10, 784 on MNIST
        self.num_hidden = len(hidden)
        for index, (width, bias) in enumerate(hidden, start=1):
            setattr(self, f"fc{index}", nn.Linear(features, width, bias=bias))
            features = width
        setattr(self, f"fc{self.num_hidden + 1}", nn.Linear(features, num_classes))
        self.init_weights()

    def init_weights(self) -> None:
        """Kaiming-uniform weights (a = 0, fan-in), zero biases: the seed's ``init_weights``."""
        _seed003_init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)  # (B, C·H·W); the seed reshapes to (-1, 3*32*32) before the call
        for index in range(1, self.num_hidden + 1):
            x = self._act(getattr(self, f"fc{index}")(x))  # (B, 32), then (B, 64)
        return getattr(self, f"fc{self.num_hidden + 1}")(x)  # (B, num_classes) logits


#: each CNN's conv stack: (out_channels, kernel) for a conv (padding k // 2, then
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
        self._act = _check_activation(activation)
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
        _seed003_init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for step in self.plan:  # cnn_5: (B, 8, 32, 32) … (B, 16, 16, 16) … (B, 8, 8, 8)
            x = self.pool(x) if step == "pool" else self._act(getattr(self, step)(x))
        x = self._act(self.fc1(x.flatten(1)))  # (B, 64)
        return self.fc2(x)  # (B, num_classes) logits


def _register_mlp(name: str, seed_class: str, description: str) -> None:
    @register_model(
        name,
        family="seed003-mlp",
        seed=f"003 Part 3 ({seed_class}; Part 4 {seed_class}_Sigmoid with activation='sigmoid')",
        description=description,
        dataset="cifar10",
        protocol=_SEED003_PROTOCOL,
    )
    def factory(
        in_channels: int = 3, num_classes: int = 10, image_size: int = 32, activation: str = "relu"
    ) -> nn.Module:
        return SeedMLP(MLP_HIDDEN[name], in_channels, num_classes, image_size, activation)


def _register_cnn(name: str, seed_class: str, description: str) -> None:
    @register_model(
        name,
        family="seed003-cnn",
        seed=f"003 Part 3 ({seed_class}; Part 4 {seed_class}_Sigmoid with activation='sigmoid')",
        description=description,
        dataset="cifar10",
        protocol=_SEED003_PROTOCOL,
    )
    def factory(
        in_channels: int = 3, num_classes: int = 10, image_size: int = 32, activation: str = "relu"
    ) -> nn.Module:
        return SeedCNN(CNN_LAYERS[name], in_channels, num_classes, image_size, activation)


_register_mlp("mlp_1", "MLP_1", "3072→32→10 MLP, He-uniform init (98,666 params)")
_register_mlp("mlp_2", "MLP_2", "3072→32→64 (no bias)→10 MLP, He-uniform init (101,034 params)")
_register_cnn("cnn_3", "CNN_3", "conv 3×3×16, 5×5×8, pool, 7×7×16, pool, fc 1024→64→10 (76,194 params)")
_register_cnn("cnn_4", "CNN_4", "conv 3×3×16, 3×3×8, 5×5×16, pool, 5×5×16, pool, fc 1024→64→10 (77,490 params)")
_register_cnn("cnn_5", "CNN_5", "six 3×3 convs 8/16/8/16, pool, 16/8, pool, fc 512→64→10 (40,682 params)")
