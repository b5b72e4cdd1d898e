"""Seed 001's CIFAR-10 architectures ("Day 9: Advanced CNN Architectures"):
VGGNet, the CIFAR ResNet-18/34/50, PlainNet-18, and a small network built from
the seed's ``InceptionModule``.

Exactly the seed's code: the same layers, widths, kernel sizes, biases
(``bias=False`` on every ResNet/PlainNet conv, default biases on VGG and
Inception convs), BatchNorm after every conv, and PyTorch's default
initialization (the seed sets none). On 3×32×32 each network is the seed's.
On 1×28×28 (MNIST) only what must change changes:

* the first conv takes ``in_channels`` inputs;
* ResNet/PlainNet/Inception end in ``AdaptiveAvgPool2d`` (the seed's own), so
  their spatial size adapts (28→28→14→7→4 through the four ResNet stages);
* VGG's five 2×2 max-pools would floor 28→14→7→3→1→0, so when the side is not
  a multiple of 32 its pools use ``ceil_mode=True`` (28→14→7→4→2→1); at 32×32
  the pools are the seed's floor pools, and the flattened size is computed from
  ``image_size`` (512·1·1 on both).

The seed's notebook prints no parameter counts (its outputs are stripped); the
counts here equal those of kuangliu/pytorch-cifar, whose ``VGG``/``ResNet``
code the seed's ResNet reproduces line for line: ResNet-18 11,173,962,
ResNet-34 21,282,122, ResNet-50 23,520,842 on 3×32×32.

Protocol (seed 001 Part 7.1 ``train_model``): ``optim.SGD(lr=0.1, momentum=0.9,
weight_decay=5e-4)``, ``CosineAnnealingLR(T_max=num_epochs)``, ``num_epochs=20``,
``batch_size = 128``, ``RandomCrop(32, padding=4)`` + ``RandomHorizontalFlip``,
evaluated on the test set (no validation split).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from deeplab.models._registry import register_model

__all__ = [
    "VGGBlock",
    "VGGNet",
    "BasicBlock",
    "BottleneckBlock",
    "PlainBlock",
    "ResNet",
    "PlainNet",
    "InceptionModule",
    "InceptionNet",
    "VGG_BLOCKS",
    "RESNET_LAYOUTS",
    "INCEPTION_STAGES",
]

# Seed 001 Part 7.1: SGD(lr=0.1, momentum=0.9, weight_decay=5e-4), cosine over
# num_epochs=20, batch_size = 128, random crop (pad 4) + horizontal flip.
_SEED001_PROTOCOL = dict(
    epochs=20,
    batch_size=128,
    lr=0.1,
    momentum=0.9,
    weight_decay=5e-4,
    optimizer="sgd",
    loss="torch",
    schedule="cosine",
    augment=True,
)


def _reset_default(module: nn.Module) -> None:
    """PyTorch's default initialization of every conv, linear and BatchNorm layer."""
    for layer in module.modules():
        if isinstance(layer, (nn.Conv2d, nn.Linear, nn.BatchNorm2d)):
            layer.reset_parameters()


# --------------------------------------------------------------------------- VGG

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
        _reset_default(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)  # (B, 512, 1, 1)
        return self.classifier(x)  # (B, num_classes) logits


# ------------------------------------------------------------------------ ResNet


class BasicBlock(nn.Module):
    """Seed 001's ``BasicBlock``: 3×3 conv → BN → ReLU → 3×3 conv → BN, plus the
    shortcut (identity, or 1×1 conv + BN projection when the stride or width
    changes), then ReLU. No conv biases."""

    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != self.expansion * planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, self.expansion * planes, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(self.expansion * planes),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out = out + self.shortcut(x)  # the seed's `out += ...`
        return F.relu(out)


class BottleneckBlock(nn.Module):
    """Seed 001's ``BottleneckBlock``: 1×1 reduce → 3×3 (carries the stride) → 1×1
    expand ×4, BN after each, ReLU after the first two, shortcut as in
    :class:`BasicBlock`, then ReLU. No conv biases."""

    expansion = 4

    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, self.expansion * planes, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm2d(self.expansion * planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != self.expansion * planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, self.expansion * planes, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(self.expansion * planes),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        out = out + self.shortcut(x)
        return F.relu(out)


class PlainBlock(nn.Module):
    """Seed 001's ``PlainBlock``: :class:`BasicBlock` without the shortcut, and with
    the ReLU after the second BN (``relu(bn2(conv2(·)))``)."""

    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)))  # NO skip connection


#: the seed's factories: (block, blocks per stage)
RESNET_LAYOUTS: dict[str, tuple[type[nn.Module], tuple[int, int, int, int]]] = {
    "resnet18": (BasicBlock, (2, 2, 2, 2)),
    "resnet34": (BasicBlock, (3, 4, 6, 3)),
    "resnet50": (BottleneckBlock, (3, 4, 6, 3)),
    "plainnet18": (PlainBlock, (2, 2, 2, 2)),
}


class ResNet(nn.Module):
    """Seed 001's CIFAR ``ResNet`` (and, with :class:`PlainBlock`, its ``PlainNet``).

    3×3 stride-1 stem conv 64 → BN → ReLU (no 7×7 conv, no max-pool), four
    stages of ``num_blocks`` blocks at 64/128/256/512 planes (strides 1, 2, 2,
    2; the first block of a stage carries the stride), global average pool,
    fc 512·expansion → ``num_classes``. The seed's ``PlainNet`` is this class
    with ``PlainBlock`` (its ``_make_layer`` sets ``in_planes = planes``, the
    same as ``planes * expansion`` with expansion 1).
    """

    def __init__(
        self,
        block: type[nn.Module],
        num_blocks: tuple[int, int, int, int],
        in_channels: int = 3,
        num_classes: int = 10,
    ):
        super().__init__()
        self.in_planes = 64
        self.conv1 = nn.Conv2d(in_channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.layer1 = self._make_layer(block, 64, num_blocks[0], stride=1)
        self.layer2 = self._make_layer(block, 128, num_blocks[1], stride=2)
        self.layer3 = self._make_layer(block, 256, num_blocks[2], stride=2)
        self.layer4 = self._make_layer(block, 512, num_blocks[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512 * block.expansion, num_classes)

    def _make_layer(self, block: type[nn.Module], planes: int, num_blocks: int, stride: int) -> nn.Sequential:
        layers = []
        for block_stride in [stride] + [1] * (num_blocks - 1):
            layers.append(block(self.in_planes, planes, block_stride))
            self.in_planes = planes * block.expansion
        return nn.Sequential(*layers)

    def init_weights(self) -> None:
        """PyTorch's default Conv2d/Linear/BatchNorm init, as the seed uses."""
        _reset_default(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))  # (B, 64, 32, 32)
        out = self.layer1(out)  # (B, 64·e, 32, 32)
        out = self.layer2(out)  # (B, 128·e, 16, 16)
        out = self.layer3(out)  # (B, 256·e, 8, 8)
        out = self.layer4(out)  # (B, 512·e, 4, 4)
        out = self.avgpool(out).flatten(1)  # (B, 512·e)
        return self.fc(out)  # (B, num_classes) logits


PlainNet = ResNet  # the seed's PlainNet differs only in its block; kept as a name for readers


# --------------------------------------------------------------------- Inception


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
        _reset_default(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)  # (B, 64, 32, 32)
        x = self.stages(x)  # (B, 128, 32, 32) → (B, 256, 16, 16) → (B, 416, 8, 8)
        x = self.avgpool(x).flatten(1)  # (B, 416)
        return self.fc(x)  # (B, num_classes) logits


# ---------------------------------------------------------------- registrations


@register_model(
    "vgg",
    family="seed001-vgg",
    seed="001 Part 3 (VGGNet)",
    description="VGG-16 for CIFAR: 13 BN convs (2/2/3/3/3), fc 512→4096→4096→10, dropout 0.5",
    dataset="cifar10",
    protocol=_SEED001_PROTOCOL,
)
def vgg(in_channels: int = 3, num_classes: int = 10, image_size: int = 32) -> nn.Module:
    return VGGNet(in_channels, num_classes, image_size)


def _register_resnet(name: str, experiment: str, description: str) -> None:
    block, num_blocks = RESNET_LAYOUTS[name]

    @register_model(
        name,
        family="seed001-resnet",
        seed=f"001 {experiment}",
        description=description,
        dataset="cifar10",
        protocol=_SEED001_PROTOCOL,
    )
    def factory(in_channels: int = 3, num_classes: int = 10, image_size: int = 32) -> nn.Module:
        # image_size is unused: the seed's global average pool adapts to any side ≥ 8
        return ResNet(block, num_blocks, in_channels, num_classes)


_register_resnet("resnet18", "Part 4 (ResNet18)", "CIFAR ResNet-18: 3×3 stem, BasicBlocks [2,2,2,2], projection shortcuts")
_register_resnet("resnet34", "Part 4 (ResNet34)", "CIFAR ResNet-34: 3×3 stem, BasicBlocks [3,4,6,3], projection shortcuts")
_register_resnet("resnet50", "Part 4 (ResNet50)", "CIFAR ResNet-50: 3×3 stem, Bottlenecks [3,4,6,3], projection shortcuts")
_register_resnet("plainnet18", "Part 5 (PlainNet18)", "resnet18 without shortcuts: the seed's skip-connection control")


@register_model(
    "inception",
    family="seed001-inception",
    seed="001 Part 6 (InceptionModule; network by deeplab)",
    description="3×3 stem + six of the seed's Inception modules in three stages, global avg pool",
    dataset="cifar10",
    protocol=_SEED001_PROTOCOL,
)
def inception(in_channels: int = 3, num_classes: int = 10, image_size: int = 32) -> nn.Module:
    return InceptionNet(in_channels, num_classes)
