"""Seed 004's deep plain and residual CIFAR-10 networks ("Day 9: ResNet -
Solutions"): Exercise 1's ``PlainConvNet(depth)``, Exercise 2's
``ResNet(depth)`` and its ``PlainCNN(depth)`` control, and Exercise 4's
bottleneck ``DeepResNet`` at ResNet-50/101/152 block depths.

Exactly the seed's code: every conv keeps PyTorch's default bias (the seed
never passes ``bias=False``, unlike seed 001), BatchNorm after every conv, all
64 channels in the depth families, and PyTorch's default initialization (the
seed sets none). On 1×28×28 only the first conv's input channels change; every
network ends in the seed's ``AdaptiveAvgPool2d((1, 1))``, so no flattened size
depends on the image (7×7 stride-2 stems: 28→14→7 after the max-pool).

Seed bugs fixed:

* ``PlainCNN.forward`` calls ``self.relu``, which ``PlainCNN.__init__`` never
  defines (an ``AttributeError`` on the first batch, so Exercise 2's plain
  baseline could not have run); deeplab defines it as ``nn.ReLU(inplace=True)``,
  as the seed's other classes do.
* ``ResNet(depth)`` builds ``depth // 2`` blocks but always at least one
  (``_make_layer`` appends the first block unconditionally), so odd depths
  floor silently and depth 0 or 1 builds a 2-conv network; deeplab requires an
  even depth ≥ 2 and raises :class:`~deeplab.errors.DeeplabError` otherwise.

Prose and code disagree on depth: ``depth`` counts *blocks of two convs* in
``PlainConvNet`` and ``PlainCNN`` but *convs* in ``ResNet`` (``depth // 2``
blocks). So Exercise 1's "20-layer vs 56-layer" plain nets have 2·20 + 2 = 42
and 2·56 + 2 = 114 weight layers, and Exercise 2 compares ``PlainCNN(56)``
(112 block convs) with ``ResNet(56)`` (56 block convs). deeplab keeps each
class's own meaning of ``depth`` (the code) so ``--depth`` reproduces the
seed's runs.

Exercise 4's "Expected Output" (``Params: 23,520,000`` / ``44,549,000`` /
``60,192,000``) is not what its code prints: the seed's ``DeepResNet``, with
its conv biases and a 10-class fc, has 23,555,082 / 42,573,322 / 58,240,010
parameters on 3×32×32. (44,549,000 and 60,192,000 are torchvision's ImageNet
ResNet-101/152 with a 1000-class fc; 23,520,000 is close to seed 001's
bias-free CIFAR ResNet-50, 23,520,842.)

Protocol (Exercises 1, 2 and 4 alike): ``optim.SGD(lr=0.01, momentum=0.9)`` (no
weight decay), ``StepLR(step_size=5, gamma=0.1)``, ``for epoch in range(20)``,
``batch_size=128``, ``RandomHorizontalFlip`` as the only augmentation
(``crop_padding=0``: deeplab's crop + flip without the crop), evaluated on the
test set each epoch. The seed also applies the random flip to the *test* set
(one transform for both); deeplab evaluates unflipped images unless asked for
that quirk with ``--augment-eval``.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from deeplab.errors import DeeplabError
from deeplab.models._registry import register_model

__all__ = [
    "PlainConvNet",
    "PlainCNN",
    "ResidualBlock",
    "ResNetDeep",
    "Bottleneck",
    "DeepResNet",
    "BOTTLENECK_LAYOUTS",
]

# Seed 004 Exercises 1/2/4: optim.SGD(lr=0.01, momentum=0.9), StepLR(step_size=5, gamma=0.1),
# for epoch in range(20), DataLoader(batch_size=128), RandomHorizontalFlip.
_SEED004_PROTOCOL = dict(
    epochs=20,
    batch_size=128,
    lr=0.01,
    momentum=0.9,
    weight_decay=0.0,
    optimizer="sgd",
    loss="torch",
    schedule="step",
    augment=True,
    crop_padding=0,  # RandomHorizontalFlip() alone: no RandomCrop in any of the seed's transforms
)


def _reset_default(module: nn.Module) -> None:
    """PyTorch's default initialization of every conv, linear and BatchNorm layer."""
    for layer in module.modules():
        if isinstance(layer, (nn.Conv2d, nn.Linear, nn.BatchNorm2d)):
            layer.reset_parameters()


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_block_depth(model: str, depth: object) -> int:
    """``depth`` = number of two-conv blocks (PlainConvNet / PlainCNN): a positive integer."""
    if not _is_int(depth) or depth < 1:
        raise DeeplabError(
            f"{model}: --depth counts blocks of two 3×3 convs and must be a positive integer "
            f"(the seed runs 20 and 56), got {depth!r}."
        )
    return depth


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


class PlainConvNet(nn.Module):
    """Exercise 1's ``PlainConvNet(depth)``: 7×7 stride-2 conv 64 → BN → ReLU →
    3×3 stride-2 max-pool, then ``depth`` plain blocks (two Conv-BN-ReLU at 64
    channels each, no shortcut), global average pool, fc 64 → ``num_classes``.
    9,600 + 74,112·depth + 650 parameters on 3×32×32 (1,492,490 at depth 20)."""

    def __init__(self, depth: int = 20, in_channels: int = 3, num_classes: int = 10):
        super().__init__()
        self.depth = _check_block_depth("plain_deep", depth)
        self.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layers = nn.Sequential(*(_plain_block(64) for _ in range(depth)))
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(64, num_classes)

    def init_weights(self) -> None:
        """PyTorch's default Conv2d/Linear/BatchNorm init, as the seed uses."""
        _reset_default(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))  # (B, 64, 8, 8); 28×28 → (B, 64, 7, 7)
        x = self.layers(x)  # (B, 64, 8, 8)
        x = self.avgpool(x).flatten(1)  # (B, 64)
        return self.fc(x)  # (B, num_classes) logits


class PlainCNN(nn.Module):
    """Exercise 2's ``PlainCNN(depth)``, the plain control for ``ResNet(depth)``:
    3×3 stride-1 conv 64 → BN → ReLU (no max-pool), ``depth`` plain blocks of two
    Conv-BN-ReLU, global average pool, fc 64 → ``num_classes``.

    The seed's forward uses ``self.relu`` without defining it; deeplab defines it.
    Note ``depth`` counts blocks here: ``PlainCNN(56)`` has 112 block convs, twice
    ``ResNet(56)``'s 56. 1,920 + 74,112·depth + 650 parameters on 3×32×32.
    """

    def __init__(self, depth: int = 56, in_channels: int = 3, num_classes: int = 10):
        super().__init__()
        self.depth = _check_block_depth("plain_cnn_deep", depth)
        self.conv1 = nn.Conv2d(in_channels, 64, kernel_size=3, padding=1)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)  # missing from the seed's __init__ (bug fix)
        self.layers = nn.Sequential(*(_plain_block(64) for _ in range(depth)))
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(64, num_classes)

    def init_weights(self) -> None:
        """PyTorch's default Conv2d/Linear/BatchNorm init, as the seed uses."""
        _reset_default(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))  # (B, 64, 32, 32)
        x = self.layers(x)  # (B, 64, 32, 32)
        x = self.avgpool(x).flatten(1)  # (B, 64)
        return self.fc(x)  # (B, num_classes) logits


class ResidualBlock(nn.Module):
    """Seed 004's ``ResidualBlock``: 3×3 conv → BN → ReLU → 3×3 conv → BN, plus the
    shortcut (identity, or 1×1 conv + BN when the stride or width changes), then
    ReLU. Convs keep their biases."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=stride, padding=1)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=stride),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out = out + self.shortcut(x)  # the seed's `out += self.shortcut(identity)`
        return self.relu(out)


class ResNetDeep(nn.Module):
    """Exercise 2's ``ResNet(depth)``: 3×3 stride-1 conv 64 → BN → ReLU, one stage
    ``layer1`` of ``depth // 2`` :class:`ResidualBlock` s at 64 channels, stride 1
    (so every shortcut is the identity), global average pool, fc 64 →
    ``num_classes``. ``depth`` counts the blocks' convs and must be even, ≥ 2.
    1,920 + 74,112·depth/2 + 650 parameters on 3×32×32 (2,077,706 at depth 56).
    """

    def __init__(self, depth: int = 56, in_channels: int = 3, num_classes: int = 10):
        super().__init__()
        if not _is_int(depth) or depth < 2 or depth % 2:
            raise DeeplabError(
                f"resnet_deep: --depth counts the 3×3 convs of its residual blocks (depth/2 blocks of two) "
                f"and must be an even integer ≥ 2 (the seed runs 28 and 56), got {depth!r}."
            )
        self.depth = depth
        self.conv1 = nn.Conv2d(in_channels, 64, kernel_size=3, padding=1)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = self._make_layer(64, 64, depth // 2, stride=1)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(64, num_classes)

    @staticmethod
    def _make_layer(in_channels: int, out_channels: int, blocks: int, stride: int) -> nn.Sequential:
        layers = [ResidualBlock(in_channels, out_channels, stride)]
        layers += [ResidualBlock(out_channels, out_channels) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def init_weights(self) -> None:
        """PyTorch's default Conv2d/Linear/BatchNorm init, as the seed uses."""
        _reset_default(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))  # (B, 64, 32, 32)
        x = self.layer1(x)  # (B, 64, 32, 32)
        x = self.avgpool(x).flatten(1)  # (B, 64)
        return self.fc(x)  # (B, num_classes) logits


class Bottleneck(nn.Module):
    """Exercise 4's ``Bottleneck``: 1×1 reduce → 3×3 (carries the stride) → 1×1
    expand ×4, BN after each, ReLU after the first two, shortcut (identity or
    1×1 conv + BN projection), then ReLU. Convs keep their biases."""

    expansion = 4

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, kernel_size=1)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, kernel_size=3, stride=stride, padding=1)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.conv3 = nn.Conv2d(out_channels, out_channels * self.expansion, kernel_size=1)
        self.bn3 = nn.BatchNorm2d(out_channels * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_channels != out_channels * self.expansion:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels * self.expansion, kernel_size=1, stride=stride),
                nn.BatchNorm2d(out_channels * self.expansion),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        out = out + self.shortcut(x)
        return self.relu(out)


#: Exercise 4's ``resnet_configs``: bottleneck blocks per stage
BOTTLENECK_LAYOUTS: dict[str, tuple[int, int, int, int]] = {
    "bottleneck_resnet50": (3, 4, 6, 3),
    "bottleneck_resnet101": (3, 4, 23, 3),
    "bottleneck_resnet152": (3, 8, 36, 3),
}


class DeepResNet(nn.Module):
    """Exercise 4's ``DeepResNet(block_depths)``: the ImageNet ResNet stem (7×7
    stride-2 conv 64 → BN → ReLU → 3×3 stride-2 max-pool) on CIFAR, four stages
    of :class:`Bottleneck` s at 64/128/256/512 planes (strides 1, 2, 2, 2),
    global average pool, fc 2048 → ``num_classes``. On 32×32 the stem leaves
    8×8 and the four stages run at 8, 4, 2, 1 pixels (28×28: 7, then 7, 4, 2, 1)."""

    def __init__(
        self,
        block_depths: tuple[int, int, int, int] = (3, 4, 6, 3),
        in_channels: int = 3,
        num_classes: int = 10,
    ):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(64, 64, block_depths[0], stride=1)
        self.layer2 = self._make_layer(256, 128, block_depths[1], stride=2)
        self.layer3 = self._make_layer(512, 256, block_depths[2], stride=2)
        self.layer4 = self._make_layer(1024, 512, block_depths[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512 * Bottleneck.expansion, num_classes)

    @staticmethod
    def _make_layer(in_channels: int, out_channels: int, blocks: int, stride: int) -> nn.Sequential:
        layers = [Bottleneck(in_channels, out_channels, stride)]
        layers += [Bottleneck(out_channels * Bottleneck.expansion, out_channels) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def init_weights(self) -> None:
        """PyTorch's default Conv2d/Linear/BatchNorm init, as the seed uses."""
        _reset_default(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))  # (B, 64, 8, 8)
        x = self.layer1(x)  # (B, 256, 8, 8)
        x = self.layer2(x)  # (B, 512, 4, 4)
        x = self.layer3(x)  # (B, 1024, 2, 2)
        x = self.layer4(x)  # (B, 2048, 1, 1)
        x = self.avgpool(x).flatten(1)  # (B, 2048)
        return self.fc(x)  # (B, num_classes) logits


# ---------------------------------------------------------------- registrations


@register_model(
    "plain_deep",
    family="seed004-depth",
    seed="004 Exercise 1 (PlainConvNet)",
    description="7×7/2 stem + max-pool, `depth` plain blocks of two Conv-BN-ReLU at 64 ch, avg pool, fc",
    dataset="cifar10",
    protocol=_SEED004_PROTOCOL,
    default_depth=20,
)
def plain_deep(in_channels: int = 3, num_classes: int = 10, image_size: int = 32, depth: int = 20) -> nn.Module:
    # image_size is unused: the seed's global average pool adapts to the image
    return PlainConvNet(depth, in_channels, num_classes)


@register_model(
    "plain_cnn_deep",
    family="seed004-depth",
    seed="004 Exercise 2 (PlainCNN)",
    description="resnet_deep's plain control: 3×3 stem, `depth` plain blocks of two Conv-BN-ReLU at 64 ch",
    dataset="cifar10",
    protocol=_SEED004_PROTOCOL,
    default_depth=56,
)
def plain_cnn_deep(
    in_channels: int = 3, num_classes: int = 10, image_size: int = 32, depth: int = 56
) -> nn.Module:
    return PlainCNN(depth, in_channels, num_classes)


@register_model(
    "resnet_deep",
    family="seed004-depth",
    seed="004 Exercise 2 (ResNet)",
    description="3×3 stem, depth/2 residual blocks (identity shortcuts) at 64 ch, avg pool, fc",
    dataset="cifar10",
    protocol=_SEED004_PROTOCOL,
    default_depth=56,
)
def resnet_deep(in_channels: int = 3, num_classes: int = 10, image_size: int = 32, depth: int = 56) -> nn.Module:
    return ResNetDeep(depth, in_channels, num_classes)


def _register_bottleneck(name: str, label: str) -> None:
    block_depths = BOTTLENECK_LAYOUTS[name]

    @register_model(
        name,
        family="seed004-bottleneck",
        seed=f"004 Exercise 4 (DeepResNet, {label})",
        description=f"{label}: 7×7/2 stem + max-pool, Bottlenecks {list(block_depths)}, avg pool, fc 2048→10",
        dataset="cifar10",
        protocol=_SEED004_PROTOCOL,
    )
    def factory(in_channels: int = 3, num_classes: int = 10, image_size: int = 32) -> nn.Module:
        return DeepResNet(block_depths, in_channels, num_classes)


_register_bottleneck("bottleneck_resnet50", "ResNet-50")
_register_bottleneck("bottleneck_resnet101", "ResNet-101")
_register_bottleneck("bottleneck_resnet152", "ResNet-152")
