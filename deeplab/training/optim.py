"""The optimizers: one table, one update rule each, and the one point between a gradient and its update.

:data:`OPTIMIZERS` is the table every part of deeplab reads (``--optimizer`` and its check,
:class:`~deeplab.training.module.Classifier`, the compiled step, the tests): for each name, the torch
optimizer an eager run trains with, the update rule written as a function over tensors, and the
optimizer-state keys the rule keeps (torch's names, so a checkpoint of either kind of step loads into
the other). The names themselves are the ``optimizer`` setting's choices (:mod:`deeplab.config`, which
``--help`` reads without importing torch); this module refuses to load if the two disagree.

The rules, term for term the optimizers the seeds train with:

- ``momentum_sgd`` — seed 000, Part 2 Step 6, equation 8 (its hand-written ``SGD_Optimizer`` with
  momentum): g ← g + λθ; m ← αm + g (m₁ = g); θ ← θ − ηm; α = 0 is the seeds' plain SGD, θ ← θ − ηg.
  :class:`MomentumSGD` runs it eagerly and is bit-identical to ``torch.optim.SGD(dampening=0,
  nesterov=False)`` (tested over 50 steps), whose arithmetic it repeats op for op.
- ``sgd`` — ``torch.optim.SGD`` (seeds 001, 002, 004): the same rule; eager runs use torch's class.
- ``adam`` — ``torch.optim.Adam`` (seed 003): m ← lerp(m, g, 1 − β₁); v ← β₂v + (1 − β₂)g²;
  θ ← θ − (η / (1 − β₁ᵗ)) · m / (√v / √(1 − β₂ᵗ) + ε); eager runs use torch's class, the compiled
  step this rule (tested to 1e-5 against it).

Each rule takes ``active``: None in an eager step (every step applies; η a float), or a 0/1 tensor in
the compiled step, where a partial group of unrolled steps masks its padding steps (their update
scaled by zero, their state kept; :mod:`deeplab.training.engine.compiled_step`).

Between the gradient and the update (:func:`gradient_stage`): the gradient norms are measured there
(seed 000's total L1, seed 003's total L2, seed 001's per-layer L2, seed 004's first layer) and the
gradients clipped there (``--clip-grad-norm``, ``--clip-grad-value``), by the same function in an
eager step (on ``.grad``) and inside the compiled graph, so both record the norms before the clip.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence

import torch

from deeplab.checks import optimizer_setting_problem
from deeplab.config import OPTIMIZER_CHOICES

__all__ = [
    "OPTIMIZERS", "OptimizerKind", "MomentumSGD", "sgd_update_", "adam_update_", "create_optimizer",
    "NORM_MODES", "gradient_norms", "gradient_stage", "norm_mode", "CLIP_EPSILON",
]


# ------------------------------------------------------------------------------------------ rules
def _decayed(grad: torch.Tensor, param: torch.Tensor, weight_decay: float, eager: bool) -> torch.Tensor:
    """g + λθ: eagerly as torch's optimizers compute it (``add(alpha=λ)``, one fused multiply-add, so
    :class:`MomentumSGD` stays bit-identical to ``torch.optim.SGD``); in a compiled graph as a product and
    a sum: inside the compiled step's graph (``torch.func.grad_and_value`` over the parameters it then updates
    in place) ``add(alpha=λ)`` gave wrong updates with torch 2.14 — 5 % from the eager loop after 3 steps,
    where ``g + λθ`` agrees to 1e-5 (``tests/test_engine.py``); a graph without ``torch.func`` did not show it."""
    return grad.add(param, alpha=weight_decay) if eager else grad + weight_decay * param


def sgd_update_(params: Sequence[torch.Tensor], grads: Sequence[torch.Tensor], state: list[list[Any]],
                group: dict[str, Any], lr: Any = None, active: torch.Tensor | None = None) -> None:
    """Momentum SGD in place: g ← g + λθ; m ← αm + g; θ ← θ − ηm (α = 0: θ ← θ − ηg).

    ``state``: ``[momentum_buffers]`` (one per parameter; a None buffer is the first step's, created as
    g itself, as torch.optim.SGD does) or ``[]`` when α = 0. ``lr``: η (default ``group["lr"]``).
    """
    lr = group["lr"] if lr is None else lr
    momentum, weight_decay = group["momentum"], group["weight_decay"]
    buffers = state[0] if momentum else None
    if weight_decay:
        grads = [_decayed(g, p, weight_decay, eager=active is None) for p, g in zip(params, grads)]
    for index, (p, g) in enumerate(zip(params, grads)):
        if buffers is not None:
            m = buffers[index]
            if m is None:  # m₁ = g
                m = buffers[index] = torch.clone(g).detach()
            elif active is None:
                m.mul_(momentum).add_(g)
            else:  # an inactive step keeps m: m·1 + g·0
                m.copy_(m * (momentum * active + (1.0 - active)) + g * active)
            g = m
        if active is None:
            p.add_(g, alpha=-lr)
        else:
            p.sub_((lr * active) * g)


def adam_update_(params: Sequence[torch.Tensor], grads: Sequence[torch.Tensor], state: list[list[Any]],
                 group: dict[str, Any], lr: Any = None, active: torch.Tensor | None = None) -> None:
    """Adam in place (``torch.optim.Adam``'s update, L2 weight decay added to g as it does).

    ``state``: ``[steps, exp_avgs, exp_avg_sqs]`` (torch's ``step`` a float32 scalar tensor each).
    """
    lr = group["lr"] if lr is None else lr
    beta1, beta2 = group["betas"]
    eps, weight_decay = group["eps"], group["weight_decay"]
    on = torch.ones(()) if active is None else active
    for p, g, t, m, v in zip(params, grads, *state):
        if weight_decay:
            g = _decayed(g, p, weight_decay, eager=active is None)
        t.add_(on)
        m.copy_(torch.where(on > 0, m.lerp(g, 1 - beta1), m))
        v.copy_(torch.where(on > 0, v * beta2 + (1 - beta2) * g * g, v))
        bias_correction1 = 1 - beta1 ** t
        bias_correction2_sqrt = torch.sqrt(1 - beta2 ** t)
        denom = v.sqrt() / bias_correction2_sqrt + eps
        p.sub_(torch.where(on > 0, ((lr * on) / bias_correction1) * m / denom, torch.zeros_like(p)))


# ------------------------------------------------------------------------------------------ table
@dataclass(frozen=True)
class OptimizerKind:
    """One optimizer: how an eager run builds it, its update rule, the state the rule keeps."""

    name: str
    description: str
    build: Callable[..., torch.optim.Optimizer]  # (params, lr, momentum, weight_decay) → optimizer
    update: Callable[..., None]  # the rule (sgd_update_ / adam_update_)
    state_keys: tuple[str, ...]  # per-parameter state, torch's names (empty for SGD without momentum)

    def keys_for(self, group: dict[str, Any]) -> tuple[str, ...]:
        """The state this group's parameters carry (SGD keeps no buffer at α = 0)."""
        return () if self.update is sgd_update_ and not group.get("momentum") else self.state_keys


def _momentum_sgd(params: Any, lr: float, momentum: float, weight_decay: float) -> torch.optim.Optimizer:
    return MomentumSGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)


def _torch_sgd(params: Any, lr: float, momentum: float, weight_decay: float) -> torch.optim.Optimizer:
    return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)


def _torch_adam(params: Any, lr: float, momentum: float, weight_decay: float) -> torch.optim.Optimizer:
    return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)  # (momentum: the SGD variants' α)


#: every optimizer by name, in ``--optimizer``'s order
OPTIMIZERS: dict[str, OptimizerKind] = {kind.name: kind for kind in (
    OptimizerKind("momentum_sgd", "seed 000's hand-written momentum SGD (MomentumSGD)", _momentum_sgd,
                  sgd_update_, ("momentum_buffer",)),
    OptimizerKind("sgd", "torch.optim.SGD (seeds 001, 002, 004)", _torch_sgd, sgd_update_, ("momentum_buffer",)),
    OptimizerKind("adam", "torch.optim.Adam (seed 003)", _torch_adam, adam_update_, ("step", "exp_avg", "exp_avg_sq")),
)}
if tuple(OPTIMIZERS) != OPTIMIZER_CHOICES:  # pragma: no cover - a new optimizer must be a choice of the setting too
    raise ImportError(f"deeplab.config's optimizer choices {OPTIMIZER_CHOICES} and the table {tuple(OPTIMIZERS)} "
                      f"differ; add the name to both")


def create_optimizer(name: str, params: Iterable[torch.Tensor], lr: float, momentum: float,
                     weight_decay: float) -> torch.optim.Optimizer:
    """The eager optimizer ``name`` over ``params``."""
    return OPTIMIZERS[name].build(params, lr, momentum, weight_decay)


class MomentumSGD(torch.optim.Optimizer):
    """The seeds' hand-written momentum SGD (:func:`sgd_update_`) as a ``torch.optim.Optimizer``.

    Args:
        params: parameters or parameter groups.
        lr: learning rate η (> 0).
        momentum: α in [0, 1); 0 gives plain SGD.
        weight_decay: L2 coefficient λ ≥ 0, added to the gradient as ``torch.optim.SGD`` does.

    Buffers live in ``self.state[p]["momentum_buffer"]``, so checkpoints carry them.
    """

    def __init__(self, params: Iterable[torch.Tensor] | Iterable[dict], lr: float = 0.005, momentum: float = 0.9,
                 weight_decay: float = 0.0):
        problem = optimizer_setting_problem(lr, momentum, weight_decay)
        if problem is not None:  # ValueError, as torch's own optimizers raise
            raise ValueError(f"{problem[0]} {problem[1]}")
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure: Callable[[], torch.Tensor] | None = None) -> torch.Tensor | None:
        loss = None
        if closure is not None:
            # Lightning passes a closure that runs forward and backward.
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            state: list[list[Any]] = []
            if group["momentum"]:
                state = [[self.state[p].get("momentum_buffer") for p in params]]
            sgd_update_(params, [p.grad for p in params], state, group)
            for p, buffer in zip(params, state[0] if state else ()):
                self.state[p]["momentum_buffer"] = buffer
        return loss


# ------------------------------------------------------------------- between gradient and update
#: which gradient norms a step computes: none; its total L1 only (seed 000's per-step L1 of one epoch);
#: the full vector (total L2, total L1, each layer's L2)
NORM_MODES = ("none", "l1", "full")
#: torch.nn.utils.clip_grad_norm_'s guard against a zero norm
CLIP_EPSILON = 1e-6


def norm_mode(full: bool, l1: bool) -> str:
    """A step's :data:`NORM_MODES` entry: the full vector when it is a record, else its total L1 when the
    epoch's every-step L1 is being averaged, else nothing."""
    return "full" if full else ("l1" if l1 else "none")


def gradient_norms(grads: Sequence[torch.Tensor], layer_index: Sequence[int], mode: str) -> torch.Tensor | None:
    """[total L2, total L1, each layer's weight-gradient L2] of one step (NaN where ``mode`` skips it), on
    the device; ``layer_index[j]``: the position in ``grads`` of layer j's weight (−1: none, norm 0).

    Inside a compiled graph the sums run row by row, then in total: Inductor's CPU code for one flat
    reduction over a (256, 784) gradient takes ~65 µs (cascade summation), this ~15 µs, fused into the
    update; eagerly, two ``torch._foreach_norm`` calls."""
    if mode == "none":
        return None
    compiling = torch.compiler.is_compiling()
    if compiling:
        rows = [g.float().reshape(g.shape[0] if g.dim() > 1 else 1, -1) for g in grads]
        total_l1 = torch.stack([r.abs().sum(dim=1).sum() for r in rows]).sum()
    else:
        total_l1 = torch.stack(torch._foreach_norm(list(grads), 1)).float().sum()
    if mode == "l1":
        nan = torch.full((1 + len(layer_index),), float("nan"), device=total_l1.device)
        return torch.cat([nan[:1], total_l1.view(1), nan[1:]])
    if compiling:
        squares = torch.stack([r.pow(2).sum(dim=1).sum() for r in rows])
        each = squares.sqrt()
    else:
        each = torch.stack(torch._foreach_norm(list(grads), 2)).float()
        squares = each * each
    total_l2 = squares.sum().sqrt() if compiling else torch.linalg.vector_norm(each)
    layers = [each[i] if i >= 0 else each.new_zeros(()) for i in layer_index]
    return torch.cat([total_l2.view(1), total_l1.view(1), torch.stack(layers) if layers else each[:0]])


def gradient_stage(grads: list[torch.Tensor], layer_index: Sequence[int], mode: str, clip_norm: float | None = None,
                   clip_value: float | None = None) -> tuple[list[torch.Tensor], torch.Tensor | None, torch.Tensor | None]:
    """What happens to a step's gradients before the update: their norms are measured (``mode``), then
    they are clipped. Returns ``(grads to update with, norms or None, clip factor or None)``.

    ``clip_norm``: scale all gradients by min(1, c / (‖g‖₂ + 1e-6)), ``torch.nn.utils.clip_grad_norm_``'s
    rule (the factor is returned: < 1 when the step was clipped); ``clip_value``: clamp each entry to
    [−v, v] (``clip_grad_value_``), after the norm clip when both are given. The same function runs in an
    eager step, on ``.grad`` (updated in place), and in the compiled graph (new tensors).
    """
    norms = gradient_norms(grads, layer_index, mode)
    factor = None
    if clip_norm is not None:
        total = norms[0] if mode == "full" else gradient_norms(grads, (), "full")[0]
        factor = torch.clamp(clip_norm / (total + CLIP_EPSILON), max=1.0)
        grads = [g * factor.to(g.dtype) for g in grads]
    if clip_value is not None:
        grads = [g.clamp(-clip_value, clip_value) for g in grads]
    return grads, norms, factor
