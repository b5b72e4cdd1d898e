"""A network's parameterized layers in order: what gradient norms are measured over.

Its own small module because the training module (the compiled step's norms), the gradient
callback (:mod:`deeplab.callbacks.gradients`) and the recipes' own measurements all need it, and
none of them should have to import another for it.
"""

from __future__ import annotations

import torch
import torch.nn as nn

__all__ = ["parameterized_layers"]


def parameterized_layers(model: nn.Module) -> list[tuple[str, nn.Module, torch.Tensor]]:
    """(readable name, module, weight) for each module owning parameters, in network order.

    The weight is ``module.weight`` when there is one, else its first own
    parameter (e.g. a Fixup scalar). Names are ``NN_<qualified name>`` so
    TensorBoard sorts them by depth.
    """
    layers = []
    for qualified_name, module in model.named_modules():
        own = list(module.parameters(recurse=False))
        if not own:
            continue
        weight = getattr(module, "weight", None)
        if not isinstance(weight, torch.Tensor) or not weight.requires_grad:
            weight = own[0]
        layers.append((qualified_name or type(module).__name__, module, weight))
    return [(f"{index:02d}_{name}", module, weight) for index, (name, module, weight) in enumerate(layers, start=1)]
