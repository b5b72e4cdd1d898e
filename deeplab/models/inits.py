"""Weight initializations beyond the seeds' own (issue 9, "Beyond the seeds").

Every scheme is named, so ``init`` can be a model constructor argument and a
command-line flag. Gain convention throughout: ``σ_w²`` is the *variance gain*
of mean-field theory (:mod:`deeplab.theory.mean_field`) — a Gaussian weight has
standard deviation ``σ_w / √fan_in`` with ``fan_in = C_in · k_h · k_w``, and an
orthogonal weight matrix is scaled by ``σ_w = √σ_w²`` (not by σ_w²: the usual
slip). Biases have variance ``σ_b²``.

Schemes (:data:`SCHEMES`):

``seed``
    The model's own initialization, exactly as its seed document writes it
    (seed 002: N(0, 0.05²) or N(0, 1/(9·C_in)) convs, zero conv biases,
    PyTorch's default for the classifier; seed 000: PyTorch's defaults).
``xavier``
    Glorot & Bengio (AISTATS 2010), normal form with gain 1:
    ``std = √(2 / (fan_in + fan_out))``, i.e. σ_w² = 2·fan_in/(fan_in + fan_out)
    (= 1 where C_in = C_out); biases 0.
``kaiming``
    He et al. (ICCV 2015), fan-in mode: ``std = √(2 / fan_in)``, σ_w² = 2 for
    every activation (the ReLU derivation; for tanh this is the chaotic phase,
    χ₁ > 1 — on purpose, it is a comparison point); biases 0.
``orthogonal``
    Saxe et al. (ICLR 2014): the weight, flattened to (C_out, C_in·k·k), is a
    Haar-random matrix with orthonormal rows (or columns, if it is tall) times
    ``σ_w``; biases N(0, σ_b²). (σ_w², σ_b²) default to the activation's
    critical point (below), so it differs from ``delta_orthogonal`` only in the
    kernel's spatial structure.
``delta_orthogonal``
    Xiao et al., "Dynamical Isometry and a Mean Field Theory of CNNs: How to
    Train 10,000-Layer Vanilla Convolutional Neural Networks" (ICML 2018),
    Algorithm 2: every tap of the kernel is zero except the centre, which is
    ``σ_w · H`` with ``H`` a Haar-random (C_out × C_in) matrix with orthonormal
    columns (HᵀH = I, needs C_out ≥ C_in: true of every conv in seed 002, whose
    channels go 1→4→8→16 and never shrink), so the centre tap ``W`` has
    ``WᵀW = σ_w² I``. Where C_out < C_in (not in seed 002; e.g. a shrinking
    Linear) ``H`` has orthonormal rows instead, ``W Wᵀ = σ_w² I``. Linear
    layers (the classifier) get ``σ_w · H`` directly. Biases N(0, σ_b²).
    (σ_w², σ_b²) is a critical point of the activation, χ₁ = 1, computed by
    :func:`deeplab.theory.mean_field.critical_sigma_w2` for the σ_b² of
    :data:`DEFAULT_SIGMA_B2`: see :func:`critical_point`.
``gaussian``
    The mean-field papers' i.i.d. Gaussian (Poole et al. 2016; Schoenholz et
    al., "Deep Information Propagation", ICLR 2017): weights N(0, σ_w²/fan_in),
    biases N(0, σ_b²), on every Conv/Linear layer. (σ_w², σ_b²) default to the
    activation's critical point like the orthogonal schemes; the phase diagram
    (``scripts/experiment.py phase_diagram``) sweeps σ_w² at σ_b² = 0.05.
``fixup`` (residual models only)
    Zhang, Dauphin & Ma, "Fixup Initialization: Residual Learning Without
    Normalization" (ICLR 2019): (1) zero-initialize the classifier and the
    last layer of each residual branch; (2) initialize the other layers by a
    standard method and scale the weight layers *inside* branches by
    ``L^(−1/(2m−2))``, L = number of residual branches, m = weight layers per
    branch; (3) add a scalar bias before each conv and activation and a
    scalar multiplier (init 1) at each branch's end. With m = 1 (seed 002's
    ResBlock has one conv per branch) the exponent's denominator is 0; its
    limit m → 1⁺ gives a factor of 0, which is exactly rule (1) zeroing the
    branch's only layer — rule (2) has nothing left to scale. So Fixup with
    m = 1 is: zero branch, zero classifier, scalar biases and multiplier.
    The model must be *built* with ``init="fixup"`` to own those scalars.
    Caveat, measured (issue 9): with m = 1 every block of a stage is the
    identity at init, so all branches of a stage get the *same* gradient and
    become the same conv (cosine 1 after three steps); the stage then computes
    a power of one map, which explodes with depth — ResNet_noBN at k = 300
    diverged at step 17 with η = 0.01 and swung to chance with η = 0.001.
    Fixup's analysis assumes m ≥ 2, where the random inner layers keep the
    branches distinct; with m = 1 use ``skipinit``.
``tat`` (vanilla models only: no skips, no normalization)
    Zhang, Botev & Martens, "Deep Learning without Shortcuts" (ICLR 2022): Tailored Activation
    Transformation through DeepMind's ``dks`` package — each activation transformed for the network's depth
    and Delta scaled-uniform-orthogonal weights, so the whole network's kernel stays near the identity
    (:mod:`deeplab.models.tat`). The model must be built with ``init="tat"`` (its activations change).
``skipinit`` (residual models only)
    De & Smith, "Batch Normalization Biases Residual Blocks Towards the
    Identity Function in Deep Networks" (NeurIPS 2020): a learnable scalar
    gain α on each residual branch, ``x + α·f(x)``, initialized to 0, so every
    block starts as the identity. Other layers keep the seed's init. The model
    must be built with ``init="skipinit"``.

:func:`apply_init` applies ``xavier``, ``kaiming``, ``orthogonal``,
``delta_orthogonal`` and ``gaussian`` to any model's ``Conv2d``/``Linear`` layers (e.g. seed
000's cnn15); ``seed``, ``fixup`` and ``skipinit`` defer to the model.
"""

from __future__ import annotations

import difflib
import math
from functools import lru_cache
from typing import Iterable, Sequence

import torch
import torch.nn as nn

from deeplab.errors import DeeplabError

__all__ = [
    "SCHEMES",
    "RESIDUAL_SCHEMES",
    "VANILLA_SCHEMES",
    "VARIANCE_SCHEMES",
    "check_variances",
    "resolve_variances",
    "gaussian_",
    "DEFAULT_SIGMA_B2",
    "check_scheme",
    "critical_point",
    "sigma_w2_for",
    "sigma_b2_for",
    "xavier_",
    "kaiming_",
    "orthogonal_",
    "delta_orthogonal_",
    "fixup_scale",
    "fixup_",
    "apply_init",
]

#: every initialization scheme deeplab knows, ``seed`` (the model's own) first
SCHEMES: tuple[str, ...] = ("seed", "xavier", "kaiming", "orthogonal", "delta_orthogonal", "gaussian", "fixup",
                            "skipinit", "tat")
#: schemes whose (σ_w², σ_b²) can be chosen (``sigma_w2=``/``sigma_b2=``, ``--sigma-w2``/``--sigma-b2``)
VARIANCE_SCHEMES: tuple[str, ...] = ("orthogonal", "delta_orthogonal", "gaussian")
#: schemes that need residual branches (and scalar parameters made at construction)
RESIDUAL_SCHEMES: tuple[str, ...] = ("fixup", "skipinit")
#: schemes for vanilla networks only (no skips, no normalization), that also transform the activations
#: (so the model must be built with them): TAT, :mod:`deeplab.models.tat`
VANILLA_SCHEMES: tuple[str, ...] = ("tat",)

#: σ_b² of the critical point used by ``orthogonal``/``delta_orthogonal``.
#: Smooth activations: a small bias variance puts q* small but non-zero (tanh:
#: q* ≈ 0.046 at σ_w² ≈ 1.086; elu: q* ≈ 0.032 at σ_w² ≈ 1.131), close to the
#: linear regime where the Jacobian is nearly isometric (Pennington et al. 2017)
#: yet away from the degenerate q* = 0 of σ_b = 0. ReLU-like and linear: σ_b² =
#: 0, the only bias variance with a finite q* at their critical σ_w².
DEFAULT_SIGMA_B2: dict[str, float] = {
    "tanh": 1e-4,
    "elu": 1e-4,
    "sigmoid": 1e-4,
    "relu": 0.0,
    "leaky_relu": 0.0,
    "linear": 0.0,
}


def check_scheme(scheme: str, *, residual: bool, family: str = "this model") -> str:
    """Return ``scheme`` if ``family`` (residual or not) can use it, else raise DeeplabError."""
    if not isinstance(scheme, str) or scheme not in SCHEMES:
        close = difflib.get_close_matches(str(scheme), SCHEMES, n=1, cutoff=0.5)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise DeeplabError(f"unknown init {scheme!r}.{hint} Choose one of: {', '.join(SCHEMES)}.")
    if scheme in RESIDUAL_SCHEMES and not residual:
        plain = ", ".join(s for s in SCHEMES if s not in RESIDUAL_SCHEMES)
        raise DeeplabError(
            f"init {scheme!r} acts on residual branches and {family} has none; use it with a residual "
            f"model (resnet_elu, resnet_elu_nobn) or pick one of: {plain}."
        )
    if scheme in VANILLA_SCHEMES and residual:
        raise DeeplabError(f"init {scheme!r} shapes the kernel of a network without skip connections; {family} has "
                           "them (TAT is for vanilla networks: cnn_tanh, cnn_tanh_newinit, cnn_elu)")
    return scheme


def check_variances(scheme: str, sigma_w2: float | None, sigma_b2: float | None) -> None:
    """DeeplabError unless σ_w²/σ_b² are unset or finite numbers ≥ 0 given to a scheme that uses them."""
    if sigma_w2 is None and sigma_b2 is None:
        return
    if scheme not in VARIANCE_SCHEMES:
        raise DeeplabError(f"--sigma-w2/--sigma-b2 set the variances of {', '.join(VARIANCE_SCHEMES)}; "
                           f"init {scheme!r} has its own: drop them or pick one of those inits")
    for option, value in (("--sigma-w2", sigma_w2), ("--sigma-b2", sigma_b2)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                  or not math.isfinite(value) or value < 0):
            raise DeeplabError(f"{option} is a variance, a finite number ≥ 0; got {value!r}")


@lru_cache(maxsize=None)
def critical_point(activation: str) -> tuple[float, float]:
    """(σ_w², σ_b²) on the edge of chaos (χ₁ = 1) for ``activation``, σ_b² from :data:`DEFAULT_SIGMA_B2`.

    Computed by :func:`deeplab.theory.mean_field.critical_sigma_w2` (cached): tanh
    (1.0860, 1e-4), elu (1.1309, 1e-4), relu (2, 0), leaky_relu(0.01)
    (2/(1 + 0.01²), 0), linear (1, 0).
    """
    import deeplab.theory.mean_field as mean_field
    if activation not in DEFAULT_SIGMA_B2:
        raise DeeplabError(
            f"no critical point known for activation {activation!r}; choose one of "
            f"{', '.join(DEFAULT_SIGMA_B2)} or pass sigma_w2 and sigma_b2 explicitly."
        )
    sigma_b2 = DEFAULT_SIGMA_B2[activation]
    if activation == "relu":
        return 2.0, sigma_b2  # χ₁ = σ_w²/2 exactly
    if activation == "leaky_relu":
        return 2.0 / (1.0 + 0.01**2), sigma_b2  # χ₁ = σ_w² (1 + a²)/2 exactly
    if activation == "linear":
        return 1.0, sigma_b2
    return mean_field.critical_sigma_w2(activation, sigma_b2), sigma_b2


def resolve_variances(activation: str, sigma_w2: float | None, sigma_b2: float | None) -> tuple[float, float]:
    """(σ_w², σ_b²) with unset ones filled: σ_b² from :data:`DEFAULT_SIGMA_B2`, σ_w² critical at that σ_b²."""
    default_w2, default_b2 = critical_point(activation)
    if sigma_b2 is None:
        sigma_b2 = default_b2
    if sigma_w2 is None:
        if sigma_b2 == default_b2 or activation in ("relu", "leaky_relu", "linear"):  # χ₁ free of σ_b² there
            sigma_w2 = default_w2
        else:
            import deeplab.theory.mean_field as mean_field
            sigma_w2 = mean_field.critical_sigma_w2(activation, sigma_b2)
    return float(sigma_w2), float(sigma_b2)


def sigma_w2_for(scheme: str, activation: str, *, in_channels: int, out_channels: int, kernel_size: int = 3) -> float:
    """The mean-field σ_w² a conv layer gets under ``scheme`` (not ``seed``: that is the family's).

    xavier: 2·C_in/(C_in + C_out) (kernel area cancels); kaiming: 2;
    orthogonal/delta_orthogonal: the activation's critical σ_w² (the squared
    gain; exact per unit where the matrix has orthonormal rows).
    """
    if scheme == "xavier":
        fan_in = in_channels * kernel_size * kernel_size
        fan_out = out_channels * kernel_size * kernel_size
        return 2.0 * fan_in / (fan_in + fan_out)
    if scheme == "kaiming":
        return 2.0
    if scheme in VARIANCE_SCHEMES:
        return critical_point(activation)[0]
    raise ValueError(f"sigma_w2_for: scheme {scheme!r} has no per-layer plain-network σ_w²")


def sigma_b2_for(scheme: str, activation: str) -> float:
    """Bias variance under ``scheme``: the critical σ_b² for the orthogonal and Gaussian schemes, else 0."""
    if scheme in VARIANCE_SCHEMES:
        return critical_point(activation)[1]
    return 0.0


def _weight_layers(model: nn.Module) -> Iterable[nn.Module]:
    return (m for m in model.modules() if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)))


def _init_bias_(layer: nn.Module, sigma_b2: float) -> None:
    if layer.bias is not None:
        if sigma_b2 > 0:
            layer.bias.normal_(0.0, math.sqrt(sigma_b2))
        else:
            layer.bias.zero_()


@torch.no_grad()
def xavier_(layer: nn.Module) -> None:
    """Glorot normal, gain 1: std = √(2/(fan_in + fan_out)); bias 0."""
    nn.init.xavier_normal_(layer.weight, gain=1.0)
    _init_bias_(layer, 0.0)


@torch.no_grad()
def kaiming_(layer: nn.Module) -> None:
    """He normal, fan-in: std = √(2/fan_in), i.e. σ_w² = 2; bias 0."""
    nn.init.kaiming_normal_(layer.weight, mode="fan_in", nonlinearity="relu")
    _init_bias_(layer, 0.0)


@torch.no_grad()
def orthogonal_(layer: nn.Module, sigma_w2: float, sigma_b2: float) -> None:
    """Weight flattened to (C_out, fan_in) = σ_w · (Haar orthogonal rows/columns); bias N(0, σ_b²)."""
    nn.init.orthogonal_(layer.weight, gain=math.sqrt(sigma_w2))
    _init_bias_(layer, sigma_b2)


@torch.no_grad()
def gaussian_(layer: nn.Module, sigma_w2: float, sigma_b2: float) -> None:
    """Poole et al. / Schoenholz et al.: weight N(0, σ_w²/fan_in), fan_in = C_in·k_h·k_w; bias N(0, σ_b²)."""
    fan_in = layer.weight[0].numel()
    layer.weight.normal_(0.0, math.sqrt(sigma_w2 / fan_in))
    _init_bias_(layer, sigma_b2)


@torch.no_grad()
def delta_orthogonal_(layer: nn.Module, sigma_w2: float, sigma_b2: float) -> None:
    """Xiao et al. (2018): zero kernel, centre tap σ_w·H, H (C_out × C_in) Haar with orthonormal columns.

    ``WᵀW = σ_w² I`` at the centre when C_out ≥ C_in (``W Wᵀ = σ_w² I`` when
    C_out < C_in); a Linear layer gets ``σ_w · H``. Kernel sides must be odd.
    Grouped convs are not supported. Bias N(0, σ_b²).
    """
    weight = layer.weight
    if isinstance(layer, nn.Linear):
        nn.init.orthogonal_(weight, gain=math.sqrt(sigma_w2))
    else:
        if getattr(layer, "groups", 1) != 1:
            raise DeeplabError("delta_orthogonal supports ungrouped convolutions only (groups=1).")
        spatial = weight.shape[2:]
        if any(side % 2 == 0 for side in spatial):
            raise DeeplabError(
                f"delta_orthogonal needs a centre tap, so odd kernel sizes; got {tuple(spatial)}. "
                "Use orthogonal instead."
            )
        centre = torch.empty(weight.shape[0], weight.shape[1], dtype=weight.dtype, device=weight.device)
        nn.init.orthogonal_(centre, gain=math.sqrt(sigma_w2))  # (C_out, C_in)
        weight.zero_()
        weight[(slice(None), slice(None)) + tuple(side // 2 for side in spatial)] = centre
    _init_bias_(layer, sigma_b2)


def fixup_scale(num_branches: int, layers_per_branch: int) -> float:
    """Fixup's factor ``L^(−1/(2m−2))`` for the non-last layers of a branch (needs m ≥ 2).

    With m = 1 there is no non-last layer: rule (1) zeroes the only one, and the
    exponent's limit m → 1⁺ (a factor of 0) agrees; calling this with m = 1 is
    a programming error.
    """
    if layers_per_branch < 2:
        raise ValueError("fixup_scale: m = 1 branches have no layer to scale (their only layer is zeroed)")
    return float(num_branches) ** (-1.0 / (2 * layers_per_branch - 2))


@torch.no_grad()
def fixup_(branches: Sequence[Sequence[nn.Module]], classifier: nn.Module | None) -> None:
    """Fixup rules (1)–(2) on given branches (each: its weight layers, in order).

    The last layer of each branch and the classifier get weight and bias 0;
    the other branch layers (already initialized by a standard method) are
    scaled by :func:`fixup_scale`. The model resets its own scalar biases (0)
    and multipliers (1).
    """
    num_branches = len(branches)
    for layers in branches:
        *inner, last = layers
        if inner:
            factor = fixup_scale(num_branches, len(layers))
            for layer in inner:
                layer.weight.mul_(factor)
        last.weight.zero_()
        if getattr(last, "bias", None) is not None:
            last.bias.zero_()
    if classifier is not None:
        classifier.weight.zero_()
        if classifier.bias is not None:
            classifier.bias.zero_()


@torch.no_grad()
def apply_init(
    model: nn.Module,
    scheme: str,
    *,
    activation: str = "tanh",
    sigma_w2: float | None = None,
    sigma_b2: float | None = None,
) -> nn.Module:
    """Initialize ``model`` by ``scheme``, in place; returns ``model``.

    ``xavier``, ``kaiming``, ``orthogonal``, ``delta_orthogonal`` act on every
    Conv/Linear layer of any model (other layers, e.g. batch norm, keep their
    values); ``gaussian`` too. ``activation`` picks the critical (σ_w², σ_b²) for the orthogonal
    and Gaussian schemes (:func:`critical_point`); ``sigma_w2``/``sigma_b2`` override it.
    ``seed`` resets every submodule to PyTorch's defaults
    (``reset_parameters()``: seed 000's own init), then calls
    ``model.seed_init_weights()`` where the model defines one (seed 002's conv
    init). ``fixup``/``skipinit`` need a model built for them (it owns
    scalar parameters): they call its ``init_weights()``.
    """
    residual = bool(getattr(model, "is_residual", False))
    check_scheme(scheme, residual=residual, family=getattr(model, "family", type(model).__name__))
    check_variances(scheme, sigma_w2, sigma_b2)
    if scheme in VANILLA_SCHEMES:
        if getattr(model, "init", None) != scheme:
            raise DeeplabError(f"init {scheme!r} transforms the activations when the model is built; create the "
                               f"model with init={scheme!r} instead of applying it afterwards.")
        from deeplab.models.tat import tat_init_

        return tat_init_(model)
    if scheme in RESIDUAL_SCHEMES:
        if getattr(model, "init", None) != scheme:
            raise DeeplabError(
                f"init {scheme!r} adds scalar parameters when the model is built; "
                f"create the model with init={scheme!r} instead of applying it afterwards."
            )
        model.init_weights()
        return model
    if scheme == "seed":
        for module in model.modules():
            if module is not model and hasattr(module, "reset_parameters"):
                module.reset_parameters()
        if hasattr(model, "seed_init_weights"):
            model.seed_init_weights()
        return model
    if scheme in VARIANCE_SCHEMES:
        sigma_w2, sigma_b2 = resolve_variances(activation, sigma_w2, sigma_b2)
    for layer in _weight_layers(model):
        if scheme == "xavier":
            xavier_(layer)
        elif scheme == "kaiming":
            kaiming_(layer)
        elif scheme == "orthogonal":
            orthogonal_(layer, sigma_w2, sigma_b2)
        elif scheme == "gaussian":
            gaussian_(layer, sigma_w2, sigma_b2)
        else:
            delta_orthogonal_(layer, sigma_w2, sigma_b2)
    return model
