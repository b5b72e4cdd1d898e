"""ResNets: one :class:`BasicBlock`, one :class:`Bottleneck` and one :class:`ResNet` for seed
001's CIFAR ResNet-18/34/50 (and their shortcut-free control, PlainNet-18) and seed 004's
``ResNet(depth)`` and bottleneck ``DeepResNet`` (ResNet-50/101/152 block depths).

The seeds' ResNets differ only in layout arguments, as timm's ``resnet.py`` expresses its
variants:

* ``bias``: seed 001 passes ``bias=False`` to every conv; seed 004 never does, so its convs
  (shortcut projections included) keep PyTorch's default bias.
* ``inplace_relu``: seed 004 makes one ``self.relu = nn.ReLU(inplace=True)`` module per block and
  network (registered where the seed's ``__init__`` registers it: after ``bn1`` in the basic
  block and the stem, after ``bn3`` in the bottleneck); seed 001 calls ``F.relu``, no module.
* ``stem`` (:data:`~deeplab.models._common.STEMS`): seed 001 and seed 004's Exercise 2 use a
  3×3 stride-1 conv and no max-pool (``"cifar"``); seed 004's Exercise 4 the ImageNet stem, a 7×7
  stride-2 conv and a 3×3 stride-2 max-pool (``"imagenet"``: 32×32 → 8×8, and the four stages run
  at 8, 4, 2, 1 pixels; 28×28: 7, then 7, 4, 2, 1).
* ``widths``: stage planes, 64/128/256/512 (strides 1, 2, 2, 2; the first block of a stage carries
  the stride); seed 004's Exercise 2 has a single stage of 64 planes at stride 1.
* ``shortcut=False``: seed 001's ``PlainBlock`` is its ``BasicBlock`` without the shortcut (then
  ``relu(bn2(conv2(·)))``), and its ``PlainNet`` is its ``ResNet`` with that block.

Every layer is built in the seed's order, so under the same ``torch.manual_seed`` each model has
the seed's weights and ``state_dict`` keys; BatchNorm follows every conv; PyTorch's default
initialization (neither seed sets one). Every network ends in the seeds' ``AdaptiveAvgPool2d``,
so on 1×28×28 only the first conv's input channels change (the CIFAR stem's four stages run at
28→28→14→7→4).

Parameter counts on 3×32×32. Seed 001's notebook prints none (its outputs are stripped); the
counts equal those of kuangliu/pytorch-cifar, whose ``ResNet`` code the seed reproduces line for
line: ResNet-18 11,173,962, ResNet-34 21,282,122, ResNet-50 23,520,842. Seed 004 Exercise 4's
"Expected Output" (``Params: 23,520,000`` / ``44,549,000`` / ``60,192,000``) is not what its code
prints: its ``DeepResNet``, with its conv biases and a 10-class fc, has 23,555,082 / 42,573,322 /
58,240,010. (44,549,000 and 60,192,000 are torchvision's ImageNet ResNet-101/152 with a 1000-class
fc; 23,520,000 is close to seed 001's bias-free CIFAR ResNet-50, 23,520,842.) Seed 004's
``ResNet(depth)``: 1,920 + 74,112·depth/2 + 650 (2,077,706 at depth 56).

Seed 004's ``depth`` counts the *convs* of ``ResNet(depth)`` (``depth // 2`` blocks of two), but
blocks of two convs in its plain nets (:mod:`deeplab.models.plain`); deeplab keeps each class's
own meaning so ``--depth`` reproduces the seed's runs. Its ``ResNet(depth)`` builds ``depth // 2``
blocks but always at least one (``_make_layer`` appends the first block unconditionally), so odd
depths floor silently and depth 0 or 1 builds a 2-conv network; deeplab requires an even depth
≥ 2 (:func:`resnet_by_depth`) and raises :class:`~deeplab.errors.DeeplabError` otherwise.
"""

from __future__ import annotations

from typing import Any, Callable, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from deeplab.errors import DeeplabError
from deeplab.models._common import is_int, reset_default, stem_conv

__all__ = [
    "BasicBlock",
    "Bottleneck",
    "ResNet",
    "RESNET_LAYOUTS",
    "BOTTLENECK_LAYOUTS",
    "SEED004_LAYERS",
    "resnet_by_depth",
]


def _relu(inplace_relu: bool) -> Union[nn.Module, Callable[[torch.Tensor], torch.Tensor]]:
    """Seed 004's ``nn.ReLU(inplace=True)`` module, or seed 001's ``F.relu`` (no module)."""
    return nn.ReLU(inplace=True) if inplace_relu else F.relu


def _shortcut(inplanes: int, outplanes: int, stride: int, bias: bool) -> nn.Sequential:
    """Identity (an empty ``nn.Sequential``), or a 1×1 conv + BN projection when the stride or
    width changes."""
    if stride != 1 or inplanes != outplanes:
        return nn.Sequential(
            nn.Conv2d(inplanes, outplanes, kernel_size=1, stride=stride, bias=bias),
            nn.BatchNorm2d(outplanes),
        )
    return nn.Sequential()


class BasicBlock(nn.Module):
    """3×3 conv → BN → ReLU → 3×3 conv (stride 1) → BN, plus the shortcut, then ReLU: seed 001's
    ``BasicBlock`` (``bias=False``), seed 004's ``ResidualBlock`` (``bias=True,
    inplace_relu=True``), and with ``shortcut=False`` seed 001's ``PlainBlock``
    (``relu(bn2(conv2(·)))``, no ``shortcut`` attribute). The first conv carries the stride."""

    expansion = 1

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        *,
        bias: bool = False,
        inplace_relu: bool = False,
        shortcut: bool = True,
    ):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, kernel_size=3, stride=stride, padding=1, bias=bias)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = _relu(inplace_relu)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=1, padding=1, bias=bias)
        self.bn2 = nn.BatchNorm2d(planes)
        self.has_shortcut = shortcut
        if shortcut:  # without: no `shortcut` attribute at all, as the seed's PlainBlock
            self.shortcut = _shortcut(inplanes, planes * self.expansion, stride, bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.has_shortcut:
            out = out + self.shortcut(x)  # the seeds' `out += self.shortcut(x)`
        return self.relu(out)


class Bottleneck(nn.Module):
    """1×1 reduce → 3×3 (carries the stride) → 1×1 expand ×4, BN after each, ReLU after the first
    two, plus the shortcut, then ReLU: seed 001's ``BottleneckBlock`` (``bias=False``) and seed
    004's ``Bottleneck`` (``bias=True, inplace_relu=True``)."""

    expansion = 4

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        *,
        bias: bool = False,
        inplace_relu: bool = False,
        shortcut: bool = True,
    ):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, kernel_size=1, bias=bias)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=stride, padding=1, bias=bias)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, kernel_size=1, bias=bias)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = _relu(inplace_relu)
        self.has_shortcut = shortcut
        if shortcut:  # without: no `shortcut` attribute at all, as the seed's PlainBlock
            self.shortcut = _shortcut(inplanes, planes * self.expansion, stride, bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.has_shortcut:
            out = out + self.shortcut(x)
        return self.relu(out)


class ResNet(nn.Module):
    """Stem (conv 64 → BN → ReLU, and the ImageNet stem's max-pool), stages ``layer1`` …
    ``layerN`` of ``layers[i]`` blocks at ``widths[i]`` planes (strides 1, 2, 2, …; the first
    block of a stage carries the stride), global average pool, fc ``widths[-1]·expansion`` →
    ``num_classes``. The defaults are seed 001's CIFAR ``ResNet`` (3×3 stride-1 stem, no max-pool,
    no conv biases, ``F.relu``); the module docstring lists the other layout arguments.
    """

    def __init__(
        self,
        block: type[Union[BasicBlock, Bottleneck]],
        layers: tuple[int, ...],
        in_channels: int = 3,
        num_classes: int = 10,
        *,
        widths: tuple[int, ...] = (64, 128, 256, 512),
        stem: str = "cifar",
        bias: bool = False,
        inplace_relu: bool = False,
        shortcut: bool = True,
    ):
        super().__init__()
        if len(layers) != len(widths):
            raise ValueError(f"ResNet: {len(layers)} stages of blocks but {len(widths)} widths")
        self.in_planes = 64
        self.conv1 = stem_conv(in_channels, stem, bias)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = _relu(inplace_relu)
        self.stem = stem
        if stem == "imagenet":
            self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        block_options = dict(bias=bias, inplace_relu=inplace_relu, shortcut=shortcut)
        self.num_stages = len(layers)
        for index, (planes, num_blocks) in enumerate(zip(widths, layers), start=1):
            stride = 1 if index == 1 else 2
            setattr(self, f"layer{index}", self._make_layer(block, planes, num_blocks, stride, block_options))
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(widths[-1] * block.expansion, num_classes)

    def _make_layer(
        self, block: type[nn.Module], planes: int, num_blocks: int, stride: int, options: dict[str, Any]
    ) -> nn.Sequential:
        layers = []
        for block_stride in [stride] + [1] * (num_blocks - 1):
            layers.append(block(self.in_planes, planes, block_stride, **options))
            self.in_planes = planes * block.expansion
        return nn.Sequential(*layers)

    def init_weights(self) -> None:
        """PyTorch's default Conv2d/Linear/BatchNorm init, as the seeds use."""
        reset_default(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))  # (B, 64, 32, 32); ImageNet stem (B, 64, 16, 16)
        if self.stem == "imagenet":
            x = self.maxpool(x)  # (B, 64, 8, 8)
        for index in range(1, self.num_stages + 1):
            x = getattr(self, f"layer{index}")(x)  # CIFAR stem: (B, 64·e, 32, 32) … (B, 512·e, 4, 4)
        x = self.avgpool(x).flatten(1)  # (B, widths[-1]·e)
        return self.fc(x)  # (B, num_classes) logits


#: seed 001's factories (Part 4 ``ResNet18``/``34``/``50``, Part 5 ``PlainNet18``): ResNet arguments
RESNET_LAYOUTS: dict[str, dict[str, Any]] = {
    "resnet18": dict(block=BasicBlock, layers=(2, 2, 2, 2)),
    "resnet34": dict(block=BasicBlock, layers=(3, 4, 6, 3)),
    "resnet50": dict(block=Bottleneck, layers=(3, 4, 6, 3)),
    "plainnet18": dict(block=BasicBlock, layers=(2, 2, 2, 2), shortcut=False),
}

#: seed 004's layers: every conv keeps its bias, one ``nn.ReLU(inplace=True)`` module each
SEED004_LAYERS: dict[str, bool] = dict(bias=True, inplace_relu=True)

#: seed 004 Exercise 4's ``resnet_configs``: bottleneck blocks per stage of its ``DeepResNet``
#: (``ResNet(Bottleneck, layers, stem="imagenet", **SEED004_LAYERS)``)
BOTTLENECK_LAYOUTS: dict[str, tuple[int, int, int, int]] = {
    "bottleneck_resnet50": (3, 4, 6, 3),
    "bottleneck_resnet101": (3, 4, 23, 3),
    "bottleneck_resnet152": (3, 8, 36, 3),
}


def resnet_by_depth(depth: int = 56, in_channels: int = 3, num_classes: int = 10) -> ResNet:
    """Seed 004 Exercise 2's ``ResNet(depth)``: 3×3 stride-1 conv 64 → BN → ReLU, one stage
    ``layer1`` of ``depth // 2`` basic blocks at 64 channels, stride 1 (so every shortcut is the
    identity), global average pool, fc 64 → ``num_classes``. ``depth`` counts the blocks' convs
    and must be even, ≥ 2; the model keeps it as ``.depth``."""
    if not is_int(depth) or depth < 2 or depth % 2:
        raise DeeplabError(
            f"resnet_deep: --depth counts the 3×3 convs of its residual blocks (depth/2 blocks of two) "
            f"and must be an even integer ≥ 2 (the seed runs 28 and 56), got {depth!r}."
        )
    model = ResNet(BasicBlock, (depth // 2,), in_channels, num_classes, widths=(64,), **SEED004_LAYERS)
    model.depth = depth
    return model
