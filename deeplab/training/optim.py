"""The seeds' hand-written momentum SGD as a ``torch.optim.Optimizer``.

Seed 000, Part 2 Step 6, equation 8::

    m ← α·m + g        (m₁ = 0)
    θ ← θ − η·m

α = 0 is the seeds' plain SGD (``SGD_Optimizer(params, lr)``). This is
``torch.optim.SGD(momentum=α, dampening=0, nesterov=False)``, and tests hold
it bit-identical to that over 50 steps. The update runs as a handful of
``torch._foreach_*`` kernels over all parameters instead of the seed's Python
loop over parameters, and buffers live in ``self.state[p]["momentum_buffer"]``
so checkpoints carry them.
"""

from __future__ import annotations

from typing import Callable, Iterable

import torch

from deeplab.checks import optimizer_setting_problem

__all__ = ["MomentumSGD"]


class MomentumSGD(torch.optim.Optimizer):
    """m ← α·m + g (+ λ·θ in g when ``weight_decay`` λ > 0); θ ← θ − η·m.

    Args:
        params: parameters or parameter groups.
        lr: learning rate η (> 0).
        momentum: α in [0, 1); 0 gives plain SGD.
        weight_decay: L2 coefficient λ ≥ 0, added to the gradient as
            ``torch.optim.SGD`` does.
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict],
        lr: float = 0.005,
        momentum: float = 0.9,
        weight_decay: float = 0.0,
    ):
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
            grads = [p.grad for p in params]
            if group["weight_decay"] != 0:
                grads = torch._foreach_add(grads, params, alpha=group["weight_decay"])
            momentum = group["momentum"]
            if momentum == 0:
                # Seed's plain SGD: θ ← θ − η·g, no buffer to carry.
                torch._foreach_add_(params, grads, alpha=-group["lr"])
                continue
            buffers = []
            for p, g in zip(params, grads):
                state = self.state[p]
                if "momentum_buffer" not in state:
                    # m₁ = 0, so the first step's buffer is g itself (as torch.optim.SGD does).
                    state["momentum_buffer"] = torch.clone(g).detach()
                    buffers.append(None)
                else:
                    buffers.append(state["momentum_buffer"])
            existing = [(b, g) for b, g in zip(buffers, grads) if b is not None]
            if existing:
                old_buffers, new_grads = zip(*existing)
                torch._foreach_mul_(list(old_buffers), momentum)
                torch._foreach_add_(list(old_buffers), list(new_grads))
            torch._foreach_add_(params, [self.state[p]["momentum_buffer"] for p in params], alpha=-group["lr"])
        return loss
