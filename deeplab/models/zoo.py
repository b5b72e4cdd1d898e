"""Every registered model, seed document by seed document: each name, the seed cell it comes
from, its default dataset, the seed's training protocol, and the architecture configuration it
builds. The architectures live one family per file (``mlp``, ``small_cnn``, ``cnn15``, ``vgg``,
``resnet``, ``inception``, ``depth_family``, ``plain``); a seed's protocol is shared by models of
several families, so protocols live here.

Registration order is listing order (``list_models()``, ``fit.py --list-models``): seed 000 first,
then 001, 002, 003, 004, each in the order of its document.
"""

from __future__ import annotations

import torch.nn as nn

from deeplab.errors import DeeplabError
from deeplab.models._registry import register_model
from deeplab.models.cnn15 import build_cnn15
from deeplab.models.depth_family import DEFAULT_DEPTH, FAMILY_CONFIGS, DepthCNN
from deeplab.models.inits import VANILLA_SCHEMES
from deeplab.models.inception import InceptionNet
from deeplab.models.mlp import MLP_HIDDEN, SeedMLP, TwoLayerNet
from deeplab.models.plain import PlainNet
from deeplab.models.resnet import (
    BOTTLENECK_LAYOUTS,
    RESNET_LAYOUTS,
    SEED004_LAYERS,
    Bottleneck,
    ResNet,
    resnet_by_depth,
)
from deeplab.models.small_cnn import CNN_LAYERS, FiveLayerCNN, SeedCNN
from deeplab.models.vgg import VGGNet

__all__: list[str] = []  # importing this module registers the models; it exports nothing

# ================================================================================= seed 000
# Fashion-MNIST. Part 1's two-layer net trains at batch 1 with plain SGD; Part 2/3's five-layer and
# 15-layer CNNs for 10 epochs, batch 32, lr 0.005, hand-written momentum SGD α = 0.9; all with the
# seed's hand-written loss.
_SEED000_CNN_PROTOCOL = dict(
    epochs=10, batch_size=32, lr=0.005, momentum=0.9, optimizer="momentum_sgd", loss="manual"
)


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
        return build_cnn15(skips, in_channels, num_classes, image_size, init=init, sigma_w2=sigma_w2,
                           sigma_b2=sigma_b2, family=name)


_register_cnn15("cnn15_plain", "plain", "DeepCNN15_NoSkip", "15 layers (12 conv + 3 fc), no skips")
_register_cnn15("cnn15_skip1", "skip1", "DeepCNN15_SkipConfig1", "15 layers, skips conv1→2, conv5→6, conv9→10")
_register_cnn15("cnn15_skip2", "skip2", "DeepCNN15_SkipConfig2", "15 layers, skips conv1→3, conv5→8, conv9→12")

# ================================================================================= seed 001
# CIFAR-10, Part 7.1 ``train_model``: ``optim.SGD(lr=0.1, momentum=0.9, weight_decay=5e-4)``,
# ``CosineAnnealingLR(T_max=num_epochs)``, ``num_epochs=20``, ``batch_size = 128``,
# ``RandomCrop(32, padding=4)`` + ``RandomHorizontalFlip``, evaluated on the test set (no
# validation split).
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
    layout = RESNET_LAYOUTS[name]

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
        return ResNet(in_channels=in_channels, num_classes=num_classes, **layout)


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

# ================================================================================= seed 002
# MNIST, 3 epochs, batch 256, torch.optim.SGD(lr=0.01, momentum=0.9), nn.CrossEntropyLoss, constant
# learning rate.
_SEED002_PROTOCOL = dict(
    epochs=3, batch_size=256, optimizer="sgd", lr=0.01, momentum=0.9, loss="torch", schedule="none"
)


def _register_depth_family(name: str) -> None:
    config = FAMILY_CONFIGS[name]
    layer = {
        (False, False): f"conv→{config.activation}",
        (True, False): f"conv→BN→{config.activation}",
        (False, True): f"x + {config.activation}(conv x)",
        (True, True): f"x + {config.activation}(BN(conv x))",
    }[(config.batch_norm, config.residual)]
    std = "0.05" if config.seed_std == "0.05" else "√(1/(9·C_in))"
    description = (
        f"seed 002 {config.seed_class}: k convs ({layer}), 4/8/16 ch, avg-pool, N(0, std {std}); "
        f"seed search upper {config.search_upper}, reported max k={config.seed_max_depth}"
    )

    @register_model(
        name,
        family="seed002-depth",
        seed=f"002 ({config.seed_class})",
        description=description,
        dataset="mnist",
        protocol=_SEED002_PROTOCOL,
        default_depth=DEFAULT_DEPTH,
    )
    def factory(
        depth: int = DEFAULT_DEPTH,
        in_channels: int = 1,
        num_classes: int = 10,
        image_size: int = 28,
        init: str = "seed",
        sigma_w2: float | None = None,
        sigma_b2: float | None = None,
        activation_checkpointing: bool = False,
        branch_scale: str = "none",
        activation: str | None = None,
    ) -> nn.Module:
        if activation is not None and activation != config.activation and init not in VANILLA_SCHEMES:
            raise DeeplabError(f"{name}: activation {activation!r} replaces the family's {config.activation} only as "
                               "TAT's variant (Zhang et al. 2022's leaky ReLU): give init='tat' too")
        return DepthCNN(
            depth,
            activation=activation or config.activation,
            batch_norm=config.batch_norm,
            residual=config.residual,
            seed_std=config.seed_std,
            in_channels=in_channels,
            num_classes=num_classes,
            image_size=image_size,
            init=init,
            family=name,
            sigma_w2=sigma_w2,
            sigma_b2=sigma_b2,
            activation_checkpointing=activation_checkpointing,
            branch_scale=branch_scale,
        )

    factory.__name__ = factory.__qualname__ = name
    factory.__doc__ = f"{description}. ``depth`` k: a positive multiple of 3."


for _name in FAMILY_CONFIGS:
    _register_depth_family(_name)

# ================================================================================= seed 003
# CIFAR-10, Part 3 (``part3.py``): ``num_epochs = 15``, ``batch_size = 50``, ``learning_rate =
# 0.001``, ``torch.optim.Adam``, ``CrossEntropyLoss``, and a ``random_split`` of the CIFAR-10
# training set 90/10 (``int(0.9 * len(...))``) whose 10 % is the validation set,
# ``Normalize((0.4914, 0.4822, 0.4465), (0.247, 0.243, 0.261))`` (``part3.py`` line 23: not seed
# 001's std), and Gaussian noise ``0.007 * randn_like(images)`` added to every training batch
# ("adversarial training", after normalization). Part 4's sigmoid-vs-ReLU runs use
# ``SGD(momentum=0.0)`` with a learning rate the seed's surviving text does not show.
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
    # part3.py line 23; applied on CIFAR-10 only (training.resolve.resolve_config), not to MNIST runs of these models
    normalize_mean=(0.4914, 0.4822, 0.4465),
    normalize_std=(0.247, 0.243, 0.261),
)


def _register_seed003(name: str, seed_class: str, description: str) -> None:
    """Seed 003's MLPs (``mlp_*``: :class:`SeedMLP`) and CNNs (``cnn_*``: :class:`SeedCNN`), one factory shape."""
    mlp = name.startswith("mlp")

    @register_model(
        name,
        family="seed003-mlp" if mlp else "seed003-cnn",
        seed=f"003 Part 3 ({seed_class}; Part 4 {seed_class}_Sigmoid with activation='sigmoid')",
        description=description,
        dataset="cifar10",
        protocol=_SEED003_PROTOCOL,
    )
    def factory(
        in_channels: int = 3, num_classes: int = 10, image_size: int = 32, activation: str = "relu"
    ) -> nn.Module:
        if mlp:
            return SeedMLP(MLP_HIDDEN[name], in_channels, num_classes, image_size, activation)
        return SeedCNN(CNN_LAYERS[name], in_channels, num_classes, image_size, activation)


_register_seed003("mlp_1", "MLP_1", "3072→32→10 MLP, He-uniform init (98,666 params)")
_register_seed003("mlp_2", "MLP_2", "3072→32→64 (no bias)→10 MLP, He-uniform init (101,034 params)")
_register_seed003("cnn_3", "CNN_3", "conv 3×3×16, 5×5×8, pool, 7×7×16, pool, fc 1024→64→10 (76,194 params)")
_register_seed003("cnn_4", "CNN_4", "conv 3×3×16, 3×3×8, 5×5×16, pool, 5×5×16, pool, fc 1024→64→10 (77,490 params)")
_register_seed003("cnn_5", "CNN_5", "six 3×3 convs 8/16/8/16, pool, 16/8, pool, fc 512→64→10 (40,682 params)")

# ================================================================================= seed 004
# CIFAR-10, Exercises 1, 2 and 4 alike: ``optim.SGD(lr=0.01, momentum=0.9)`` (no weight decay),
# ``StepLR(step_size=5, gamma=0.1)``, ``for epoch in range(20)``, ``batch_size=128``,
# ``RandomHorizontalFlip`` as the only augmentation (``crop_padding=0``: deeplab's crop + flip
# without the crop), evaluated on the test set each epoch. The seed also applies the random flip
# to the *test* set (one transform for both); deeplab evaluates unflipped images unless asked for
# that quirk with ``--augment-eval``.
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
    return PlainNet(depth, in_channels, num_classes, stem="imagenet", family="plain_deep")


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
    return PlainNet(depth, in_channels, num_classes, stem="cifar", family="plain_cnn_deep")


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
    return resnet_by_depth(depth, in_channels, num_classes)


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
        # Exercise 4's DeepResNet(block_depths): the ImageNet stem on CIFAR, four bottleneck stages
        return ResNet(Bottleneck, block_depths, in_channels, num_classes, stem="imagenet", **SEED004_LAYERS)


_register_bottleneck("bottleneck_resnet50", "ResNet-50")
_register_bottleneck("bottleneck_resnet101", "ResNet-101")
_register_bottleneck("bottleneck_resnet152", "ResNet-152")
