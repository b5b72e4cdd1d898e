"""The seeds' hand-written activation and loss functions (seed 000, Parts 1-2).

Seed 000 implements sigmoid, a max-shifted softmax and a one-hot
cross-entropy by hand (``TwoLayerNet``, ``FiveLayerCNN``); deeplab keeps them
so the models that used them stay exact and ``--loss manual`` trains with the
seed's own loss. Autograd differentiates them; they are checked against
``torch.sigmoid``, ``torch.softmax`` and ``F.cross_entropy`` in the tests.
"""

from __future__ import annotations

import torch

__all__ = ["sigmoid", "softmax", "cross_entropy", "leaky_relu", "LOG_EPSILON"]

#: seed 000 adds this before the log so log(0) never happens
LOG_EPSILON = 1e-10


def sigmoid(x: torch.Tensor) -> torch.Tensor:
    """σ(x) = 1 / (1 + e^(−x)), exactly as seed 000 writes it."""
    return 1 / (1 + torch.exp(-x))


def softmax(x: torch.Tensor) -> torch.Tensor:
    """Row-wise softmax of (B, K) logits, shifted by the row max for stability."""
    exp_x = torch.exp(x - x.max(dim=1, keepdim=True)[0])
    return exp_x / exp_x.sum(dim=1, keepdim=True)


def cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of (B, K) logits against (B,) labels via a one-hot mask.

    Seed 000: ``-sum(one_hot * log(softmax(x) + 1e-10)) / B``. The epsilon
    makes it differ from ``F.cross_entropy`` by at most ~1e-10 per sample.
    """
    one_hot = torch.zeros_like(logits)
    one_hot.scatter_(1, labels.view(-1, 1), 1)
    log_probs = torch.log(softmax(logits) + LOG_EPSILON)
    return -torch.sum(one_hot * log_probs) / logits.size(0)


def leaky_relu(x: torch.Tensor, negative_slope: float) -> torch.Tensor:
    """max(x, slope·x) — seed 000's leaky ReLU (``torch.maximum`` form)."""
    return torch.maximum(x, negative_slope * x)
