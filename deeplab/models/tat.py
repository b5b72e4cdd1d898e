"""Tailored Activation Transformation (TAT) for seed 002's plain families, through DeepMind's ``dks`` package.

Zhang, Botev & Martens, "Deep Learning without Shortcuts: Shaping the Kernel with Tailored Rectifiers"
(ICLR 2022), after Martens et al., "Rapid training of deep neural networks without skip connections or
normalization layers using Deep Kernel Shaping" (2021): transform each activation φ into
``γ·(φ(α·x + β) + δ)`` and initialize every weight from the scaled-uniform-orthogonal distribution with
Delta (centre-tap) convolutions, so that the *whole network's* kernel stays close to the identity: for a
smooth activation its correlation map ``C_f`` has ``C_f(1) = 1``, ``C_f'(1) = 1`` and curvature
``C_f''(1) = τ`` (``dks``'s default τ = 0.3), however deep the network. Vanilla networks — no skips, no
normalization — then train nearly as deep as ResNets.

``dks`` computes the transformation (``dks.pytorch.get_transformed_activations``) and samples the weights
(``dks.pytorch.parameter_sampling_functions.scaled_uniform_orthogonal_``); deeplab supplies the network's
structure as its *subnetwork maximizing function* (TAT paper, appendix): seed 002's plain families are a
chain of ``k`` nonlinear layers, so the function applies the local map ``k`` times. The 2×2 average pools
between stages are taken as not changing the kernel (an approximation: they average neighbouring
positions, whose correlation is high) and the inputs are not normalized per location as ``dks``
recommends (MNIST normalized by its mean and std has q ≈ 1 on average over pixels, not at each one).

``dks`` is an optional dependency: ``pip install -e ".[frontier]"`` (CI installs it).
"""

from __future__ import annotations

import warnings
from functools import lru_cache
from typing import Callable

import torch
import torch.nn as nn

from deeplab.errors import DeeplabError

__all__ = ["TAT_ACTIVATIONS", "TransformedActivation", "transformed_activation", "tat_init_", "chain_subnet_max_func"]

#: the activations TAT transforms here (dks's names): seed 002's own, and the leaky ReLU, TAT's main case
#: (``model_kwargs={"activation": "leaky_relu"}`` with ``init="tat"``; TAT chooses its negative slope so that the
#: whole network maps orthogonal inputs to correlation η = 0.9, dks's ``c_val_0_target``)
TAT_ACTIVATIONS = ("tanh", "elu", "leaky_relu")


def _dks():
    try:
        import dks.pytorch.activation_transform as activation_transform
        import dks.pytorch.parameter_sampling_functions as sampling
    except ImportError:
        raise DeeplabError("--init tat transforms activations with DeepMind's dks package, which is not installed: "
                           "pip install -e \".[frontier]\" (or pip install dks)") from None
    return activation_transform, sampling


def chain_subnet_max_func(nonlinear_layers: int) -> Callable[[float, Callable[[float], float]], float]:
    """The subnetwork maximizing function ``M_{f,r}(x)`` of a chain of ``nonlinear_layers`` activations (no
    skips): the deepest path is the whole chain, so ``r`` is applied once per layer."""
    def subnet_max_func(x: float, r_fn: Callable[[float], float]) -> float:
        for _ in range(nonlinear_layers):
            x = r_fn(x)
        return x

    return subnet_max_func


@lru_cache(maxsize=None)
def transformed_activation(name: str, nonlinear_layers: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """``dks``'s TAT-transformed ``name`` for a chain of ``nonlinear_layers`` (cached: one solve per depth)."""
    if name not in TAT_ACTIVATIONS:
        raise DeeplabError(f"--init tat: no transform for activation {name!r} here; TAT covers {', '.join(TAT_ACTIVATIONS)}")
    activation_transform, _ = _dks()
    with warnings.catch_warnings():  # autograd's overflow notes while dks's solver brackets its root
        warnings.simplefilter("ignore", RuntimeWarning)
        try:
            functions = activation_transform.get_transformed_activations(
                [name], method="TAT", subnet_max_func=chain_subnet_max_func(nonlinear_layers))
        except ValueError as error:  # dks: the target is out of reach for this architecture
            raise DeeplabError(f"--init tat: dks cannot shape a {nonlinear_layers}-layer {name} chain to TAT's target "
                               f"({str(error).split('.')[0]}); a leaky ReLU needs about 24 layers or more for "
                               "C(0) = 0.9") from None
    return functions[name]


class TransformedActivation(nn.Module):
    """The TAT-transformed activation of a network of ``nonlinear_layers`` (no parameters: the transform is fixed
    by the depth). ``is_activation`` marks it for :func:`deeplab.diagnosis.signals.propagation_points`."""

    is_activation = True

    def __init__(self, name: str, nonlinear_layers: int):
        super().__init__()
        self.name = name
        self.nonlinear_layers = int(nonlinear_layers)
        self.function = transformed_activation(name, self.nonlinear_layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.function(x)

    def extra_repr(self) -> str:
        return f"{self.name}, TAT for {self.nonlinear_layers} nonlinear layers"


@torch.no_grad()
def tat_init_(model: nn.Module) -> nn.Module:
    """Every Conv2d a Delta scaled-uniform-orthogonal kernel, every Linear a scaled-uniform-orthogonal matrix
    (``dks``), every bias 0 — the weights DKS/TAT assume."""
    _, sampling = _dks()
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            with warnings.catch_warnings():  # dks indexes with a list (a torch deprecation notice, same result)
                warnings.simplefilter("ignore", UserWarning)
                sampling.scaled_uniform_orthogonal_(module.weight, delta=isinstance(module, nn.Conv2d))
            if module.bias is not None:
                module.bias.zero_()
    return model
