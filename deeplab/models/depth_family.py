"""Seed 002's depth/trainability families on MNIST: how deep can a CNN be and still train?

Seven families, each exactly the seed's class, registered (:mod:`deeplab.models.zoo`)
with a ``depth`` k (a positive multiple of 3): 3 stages of k/3 3×3 convs (stride 1, padding 1)
with 4, 8, 16 channels, a 2×2 average pool closing each stage, then one
linear layer 16·s·s → classes returning logits (no activation after it).

=======================  ============================  ====================  =========================
name                     seed class                    layer                 seed init of the convs
=======================  ============================  ====================  =========================
``cnn_tanh``             ``CNNtanh``                   conv → tanh           N(0, std 0.05)
``cnn_tanh_newinit``     ``CNNtanh_newinit``           conv → tanh           N(0, std √(1/(9·C_in)))
``cnn_elu``              ``CNNelu``                    conv → ELU            N(0, std √(1/(9·C_in)))
``cnn_elu_bn``           ``CNNeluBN``                  conv → BN → ELU       N(0, std √(1/(9·C_in)))
``resnet_elu``           ``ResNet`` (``ResBlock``)     x + ELU(BN(conv x))   N(0, std √(1/(9·C_in)))
``cnn_tanh_bn_oldinit``  ``CNNtanhBN_oldinit``         conv → BN → tanh      N(0, std 0.05)
``resnet_elu_nobn``      ``ResNet_noBN``               x + ELU(conv x)       N(0, std √(1/(9·C_in)))
=======================  ============================  ====================  =========================

Initialization, as the seed's code has it (``m.weight.data.normal_(0, s)``:
``s`` is a *standard deviation*). The naive init has std 0.05, variance
0.0025, so a mean-field gain σ_w² = 0.0025·9·C_in = 0.0225·C_in (0.36 at
most, for C_in = 16: deep in the ordered phase). The "better" init has std
``np.sqrt(1 / (9 * C_in))``, variance 1/(9·C_in) = 1/fan_in, σ_w² = 1 (LeCun
normal). Conv biases are zeroed; the seed never touches the linear layer,
which keeps PyTorch's default (weights and bias U(±1/√fan_in)); batch norms
keep γ = 1, β = 0. Modules are built in the seed's order, so under the same
``torch.manual_seed`` a ``seed``-init model has bit-identical weights to the
seed's class, and its ``state_dict`` keys match the seed's (``stages.i.j...``,
``fully_connected``): a notebook checkpoint loads.

Residual families. As in the seed, the first Conv→[BN]→ELU of each stage
changes the channel count and is plain; every later block is
``u = ELU(BN(conv(x))) + x`` (the add after the activation; one conv per
residual branch, m = 1). At k = 3 there are no residual blocks, so
``resnet_elu`` equals ``cnn_elu_bn`` and ``resnet_elu_nobn`` equals
``cnn_elu``.

``init`` (see :mod:`deeplab.models.inits`): ``seed`` (default), ``xavier``,
``kaiming``, ``orthogonal``, ``delta_orthogonal``; the plain families without batch norm also ``tat``
(:mod:`deeplab.models.tat`: the activations transformed for the depth); residual families also
``fixup`` and ``skipinit``, which add scalar parameters to each residual block
(so they are constructor arguments, and parameter counts grow by 3 resp. 1
per block).

Input size. On 1×28×28 (MNIST) the spatial side goes 28→14→7→3 (floor), so
the classifier sees 16·3·3 = 144 features, and with no batch norm k = 3 has
2,954 parameters (40 + 296 + 1,168 convs + 1,450 linear); batch norm adds
2·(4 + 8 + 16) = 56 at k = 3. On 3×32×32 (CIFAR-10) it goes 32→16→8→4 and
the classifier sees 16·4·4 = 256 features.

Where the prose and the code disagree, deeplab follows the code: the prose
offers σ = √(1/(k²·C_out)) *or* √(1/(k²·C_in)) — the code uses C_in; the
prose calls the trainability criterion "less than 20% error (either train or
test)" — ``search()`` tests the last epoch's *test* error ≥ 0.2; the prose
names ``CNNtanhinit`` and ``CNNeluBN_oldinit`` for the classes
``CNNtanh_newinit`` and ``CNNtanhBN_oldinit``; and ``search()``'s final loop
re-trains ``model_factory(layers)`` (the last probed depth) instead of the
two boundary depths it announces. :data:`SEED002_SEARCH` records each
family's search upper bound and reported maximum.

Default depth: 9 (three convs per stage), small enough to build and train in
seconds on a CPU, deep enough that the families differ — at k = 9
``cnn_tanh`` is already past its seed maximum (3) while the others are well
within theirs.
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass

import torch
import torch.nn as nn
from torch.utils.checkpoint import checkpoint_sequential

import deeplab.models.inits as inits
from deeplab.config import BRANCH_SCALES  # "sqrt_depth": depth-µP's 1/√L (Yang, Yu, Zhu & Hayou 2023)
from deeplab.errors import DeeplabError

__all__ = [
    "FamilyConfig",
    "FAMILY_CONFIGS",
    "SEED002_SEARCH",
    "SEED002_ERROR_THRESHOLD",
    "STAGE_WIDTHS",
    "DEFAULT_DEPTH",
    "validate_depth",
    "check_checkpointing",
    "seed_weight_std",
    "ResidualBlock",
    "DepthCNN",
]

#: channels of the three stages (the seed's ``out_channels = [4, 8, 16]``)
STAGE_WIDTHS: tuple[int, int, int] = (4, 8, 16)
#: depth used when none is given (see the module docstring)
DEFAULT_DEPTH = 9
#: seed 002's trainability criterion: last-epoch test error below this
SEED002_ERROR_THRESHOLD = 0.2

@dataclass(frozen=True)
class FamilyConfig:
    """One seed 002 class: its layer recipe, seed init, and the seed's search result."""

    seed_class: str  # the seed's class name
    activation: str  # "tanh" | "elu"
    batch_norm: bool  # BatchNorm2d after every conv
    residual: bool  # x + block(x) wherever shapes match
    seed_std: str  # "0.05" (naive) | "fan_in" (√(1/(9·C_in)))
    search_upper: int  # the `upper` the seed passed to search()
    seed_max_depth: int  # the maximum trainable k the seed reports

    def seed_weight_std(self, in_channels: int, kernel_size: int = 3) -> float:
        """Standard deviation of the seed's conv weights for a layer with ``in_channels`` inputs."""
        return seed_weight_std(self.seed_std, in_channels, kernel_size)

    def seed_sigma_w2(self, in_channels: int, kernel_size: int = 3) -> float:
        """The seed init's mean-field gain σ_w² = std² · fan_in (0.0225·C_in, or 1)."""
        return self.seed_weight_std(in_channels, kernel_size) ** 2 * kernel_size * kernel_size * in_channels


FAMILY_CONFIGS: dict[str, FamilyConfig] = {
    "cnn_tanh": FamilyConfig("CNNtanh", "tanh", False, False, "0.05", 24, 3),
    "cnn_tanh_newinit": FamilyConfig("CNNtanh_newinit", "tanh", False, False, "fan_in", 120, 84),
    "cnn_elu": FamilyConfig("CNNelu", "elu", False, False, "fan_in", 150, 93),
    "cnn_elu_bn": FamilyConfig("CNNeluBN", "elu", True, False, "fan_in", 300, 156),
    "resnet_elu": FamilyConfig("ResNet", "elu", True, True, "fan_in", 450, 447),
    "cnn_tanh_bn_oldinit": FamilyConfig("CNNtanhBN_oldinit", "tanh", True, False, "0.05", 120, 96),
    "resnet_elu_nobn": FamilyConfig("ResNet_noBN", "elu", False, True, "fan_in", 24, 12),
}

#: family → (the seed's search upper bound, the maximum trainable depth it reports)
SEED002_SEARCH: dict[str, tuple[int, int]] = {
    name: (config.search_upper, config.seed_max_depth) for name, config in FAMILY_CONFIGS.items()
}

_ACTIVATIONS = {"tanh": nn.Tanh, "elu": nn.ELU, "leaky_relu": nn.LeakyReLU}  # leaky_relu: TAT's variant only
_SEED_STDS = ("0.05", "fan_in")


def seed_weight_std(seed_std: str, in_channels: int, kernel_size: int = 3) -> float:
    """The seed's conv weight std: 0.05 (``normal_(0, 0.05)``) or ``np.sqrt(1 / (9 * C_in))``."""
    if seed_std == "0.05":
        return 0.05
    return math.sqrt(1.0 / (kernel_size * kernel_size * in_channels))


def validate_depth(depth: object) -> int:
    """``depth`` as an int if it is a positive multiple of 3, else DeeplabError."""
    message = f"depth must be a positive multiple of 3 (3, 6, 9, ...), got {depth!r}"
    if isinstance(depth, bool):
        raise DeeplabError(message)
    try:
        value = operator.index(depth)
    except TypeError:
        raise DeeplabError(message) from None
    if value <= 0 or value % 3:
        raise DeeplabError(message)
    return value


def _positive_int(value: object, name: str) -> int:
    if isinstance(value, bool):
        raise DeeplabError(f"{name} must be a positive integer, got {value!r}")
    try:
        number = operator.index(value)
    except TypeError:
        raise DeeplabError(f"{name} must be a positive integer, got {value!r}") from None
    if number <= 0:
        raise DeeplabError(f"{name} must be a positive integer, got {value!r}")
    return number


def check_checkpointing(family: str, batch_norm: bool) -> None:
    """``--activation-checkpointing`` recomputes each layer's forward in the backward pass, which would
    update a batch norm's running statistics twice: DeeplabError for a batch-norm family (the model and
    the config, which refuses it before any data is read, both ask here)."""
    if batch_norm:
        raise DeeplabError(f"--activation-checkpointing recomputes each layer's forward in the backward pass, "
                           f"which would update {family}'s batch norm running statistics twice; drop it "
                           f"(it is for the families without batch norm)")


class ResidualBlock(nn.Module):
    """``u = φ(BN(conv(x))) + x`` — the seed's ``ResBlock`` (``batch_norm=True``) / ``ResBlock_noBN``.

    One conv per residual branch (Fixup's m = 1). ``residual_init`` adds
    scalar parameters:

    * ``"fixup"``: ``u = x + scale · φ(BN(conv(x + bias_in))) + bias_out`` with
      ``bias_in = bias_out = 0``, ``scale = 1`` at init (Zhang et al. 2019's
      scalar biases before the conv and after the branch, and multiplier).
      The conv's own per-channel bias (or BN's β) is the bias before the
      activation.
    * ``"skipinit"``: ``u = x + gain · φ(BN(conv(x)))``, ``gain = 0`` at init.
    """

    def __init__(self, channels: int, activation: str, batch_norm: bool, residual_init: str | None = None,
                 multiplier: float = 1.0):
        super().__init__()
        self.multiplier = float(multiplier)  # depth-µP's a/√L (1: the seed's block)
        self.conv = nn.Conv2d(channels, channels, kernel_size=3, stride=1, padding=1)
        self.bn = nn.BatchNorm2d(channels) if batch_norm else None
        self.activation = _ACTIVATIONS[activation]()
        self.residual_init = residual_init
        if residual_init == "fixup":
            self.bias_in = nn.Parameter(torch.zeros(1))
            self.scale = nn.Parameter(torch.ones(1))
            self.bias_out = nn.Parameter(torch.zeros(1))
        elif residual_init == "skipinit":
            self.gain = nn.Parameter(torch.zeros(1))

    def branch_last_layer(self) -> nn.Module:
        """The branch's last weight layer, which Fixup zero-initializes.

        Without batch norm: the conv. With batch norm: BN's affine (γ, β) —
        zeroing the conv in front of a BN would be undone by the BN (it
        divides by the batch std, and the first step's gradient is scaled by
        1/√eps), whereas γ = β = 0 makes the branch exactly 0 and still lets
        it learn (ELU'(0) = 1).
        """
        return self.bn if self.bn is not None else self.conv

    @torch.no_grad()
    def reset_residual_scalars(self) -> None:
        """Fixup: biases 0, multiplier 1; SkipInit: gain 0."""
        if self.residual_init == "fixup":
            self.bias_in.zero_()
            self.scale.fill_(1.0)
            self.bias_out.zero_()
        elif self.residual_init == "skipinit":
            self.gain.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv(x + self.bias_in if self.residual_init == "fixup" else x)
        if self.bn is not None:
            out = self.bn(out)
        out = self.activation(out)
        if self.residual_init == "fixup":
            out = out * self.scale + self.bias_out
        elif self.residual_init == "skipinit":
            out = out * self.gain
        if self.multiplier != 1.0:
            out = out * self.multiplier
        return out + x  # (B, C, H, W), shapes match by construction


class DepthCNN(nn.Module):
    """Any of seed 002's seven classes: k convs in 3 stages of k/3, 4/8/16 channels.

    Args:
        depth: k, the number of conv layers, a positive multiple of 3.
        activation: "tanh" or "elu".
        batch_norm: BatchNorm2d after every conv (before the activation).
        residual: skip connections on every block whose input and output
            shapes match (all but each stage's first).
        seed_std: the seed's conv init, "0.05" or "fan_in" (:class:`FamilyConfig`).
        in_channels, num_classes, image_size: input channels, classes, input
            side (≥ 8: three 2×2 pools).
        init: a scheme of :mod:`deeplab.models.inits`.
        sigma_w2, sigma_b2: the variances of the ``orthogonal``, ``delta_orthogonal`` and ``gaussian``
            schemes (default: the activation's critical point, :func:`deeplab.models.inits.resolve_variances`).
        branch_scale: "sqrt_depth" multiplies every residual branch by 1/√L, L the network's residual blocks
            (depth-µP; ``"none"``: the seed's ``x + f(x)``).
        activation_checkpointing: recompute each stage's activations in the backward pass
            (:func:`torch.utils.checkpoint.checkpoint_sequential`, √(k/3) segments per stage) instead of
            storing them: memory per stage ~√ of the layers, about one more forward pass of time.
    """

    def __init__(
        self,
        depth: int,
        activation: str,
        batch_norm: bool,
        residual: bool,
        seed_std: str,
        in_channels: int = 1,
        num_classes: int = 10,
        image_size: int = 28,
        init: str = "seed",
        family: str = "DepthCNN",
        sigma_w2: float | None = None,
        sigma_b2: float | None = None,
        activation_checkpointing: bool = False,
        branch_scale: str = "none",
    ):
        super().__init__()
        depth = validate_depth(depth)
        if branch_scale not in BRANCH_SCALES:
            raise DeeplabError(f"branch_scale must be one of {', '.join(BRANCH_SCALES)}, got {branch_scale!r}")
        if branch_scale != "none" and not residual:
            raise DeeplabError(f"branch_scale {branch_scale!r} multiplies residual branches; {family} has none")
        blocks = 3 * (depth // 3 - 1) if residual else 0
        self.branch_scale = branch_scale
        self.branch_multiplier = 1.0 / math.sqrt(blocks) if branch_scale == "sqrt_depth" and blocks else 1.0
        in_channels = _positive_int(in_channels, "in_channels")
        num_classes = _positive_int(num_classes, "num_classes")
        image_size = _positive_int(image_size, "image_size")
        if image_size < 8:
            raise DeeplabError(f"image_size must be at least 8 (three 2×2 pools), got {image_size}")
        if activation not in _ACTIVATIONS:
            raise DeeplabError(f"activation must be one of {', '.join(_ACTIVATIONS)}, got {activation!r}")
        if seed_std not in _SEED_STDS:
            raise DeeplabError(f"seed_std must be one of {', '.join(_SEED_STDS)}, got {seed_std!r}")
        self.init = inits.check_scheme(init, residual=residual, family=family)
        if self.init in inits.VANILLA_SCHEMES and batch_norm:
            raise DeeplabError(f"init {init!r} is for vanilla networks (no normalization, no skips); {family} has "
                               "batch norm (use cnn_tanh, cnn_tanh_newinit or cnn_elu)")
        inits.check_variances(self.init, sigma_w2, sigma_b2)
        self.sigma_w2, self.sigma_b2 = sigma_w2, sigma_b2
        if activation_checkpointing:
            check_checkpointing(family, batch_norm)
        self.activation_checkpointing = bool(activation_checkpointing)
        self.family = family
        self.depth = depth
        self.activation_name = activation
        self.batch_norm = batch_norm
        self.is_residual = residual  # read by deeplab.models.inits.apply_init
        self.seed_std = seed_std
        residual_init = init if init in inits.RESIDUAL_SCHEMES else None

        # Built in the seed's order (conv, [bn], act per layer; pool per stage; then
        # the linear layer), so the RNG draws and state_dict keys match the seed's.
        layers_per_stage = depth // 3
        stages = []
        channels = in_channels
        for width in STAGE_WIDTHS:
            stage: list[nn.Module] = []
            for index in range(layers_per_stage):
                if residual and index > 0:
                    stage.append(ResidualBlock(width, activation, batch_norm, residual_init, self.branch_multiplier))
                    continue
                stage.append(nn.Conv2d(channels, width, kernel_size=3, stride=1, padding=1))
                if batch_norm:
                    stage.append(nn.BatchNorm2d(width))
                stage.append(self._activation_module(activation))
                channels = width
            stage.append(nn.AvgPool2d(kernel_size=2, stride=2))
            stages.append(nn.Sequential(*stage))
        self.stages = nn.ModuleList(stages)
        side = image_size // 2 // 2 // 2  # 28→14→7→3, 32→16→8→4
        self.fully_connected = nn.Linear(STAGE_WIDTHS[-1] * side * side, num_classes)
        self._initialize()

    def _activation_module(self, activation: str) -> nn.Module:
        """A plain layer's activation: the family's own, or with ``init="tat"`` its TAT transform for this depth."""
        if self.init in inits.VANILLA_SCHEMES:
            from deeplab.models.tat import TransformedActivation

            return TransformedActivation(activation, self.depth)
        return _ACTIVATIONS[activation]()

    # -- initialization -----------------------------------------------------------------

    def residual_blocks(self) -> list[ResidualBlock]:
        return [m for m in self.modules() if isinstance(m, ResidualBlock)]

    @torch.no_grad()
    def seed_init_weights(self) -> None:
        """The seed's loop: every conv weight ~ N(0, std²), every conv bias 0."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                module.weight.normal_(0, seed_weight_std(self.seed_std, module.in_channels))
                module.bias.zero_()

    @torch.no_grad()
    def _initialize(self) -> None:
        if self.init in ("seed",) + inits.RESIDUAL_SCHEMES:
            self.seed_init_weights()
            blocks = self.residual_blocks()
            for block in blocks:
                block.reset_residual_scalars()
            if self.init == "fixup":
                inits.fixup_([[block.branch_last_layer()] for block in blocks], self.fully_connected)
        else:
            inits.apply_init(self, self.init, activation=self.activation_name, sigma_w2=self.sigma_w2,
                             sigma_b2=self.sigma_b2)

    def init_weights(self) -> None:
        """(Re-)initialize every parameter by ``self.init``: the classifier and batch
        norms to PyTorch's defaults (as the seed leaves them), then the scheme."""
        self.fully_connected.reset_parameters()
        for module in self.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.reset_parameters()
        self._initialize()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for stage in self.stages:
            if self.activation_checkpointing and self.training and torch.is_grad_enabled():
                segments = max(1, round(math.sqrt(len(stage))))
                x = checkpoint_sequential(stage, segments, x, use_reentrant=False)
            else:
                x = stage(x)  # (B, 4, 14, 14) → (B, 8, 7, 7) → (B, 16, 3, 3) on 1×28×28
        return self.fully_connected(x.flatten(1))  # (B, num_classes) logits
