"""Faster stand-ins for stock CPU kernels that are slow at the shapes deeplab trains (``--fast-kernels``).

PyTorch 2.14's CPU ELU computes ``expm1`` one element at a time: 7.1 ms for
seed 002's first-stage activations (256 × 4 × 28 × 28) where ``exp`` takes
0.7 ms, and ELU's own backward 0.3 ms; in ``cnn_elu_bn`` at k = 30, batch 256
(one thread, channels-last) the ELU forward was 31 % of a training step
(torch.profiler). Its tanh takes 2.1 ms, and its channels-last batch norm
10.3 ms forward + backward at 4 channels (NCHW: 3.9).

:class:`FastELU` computes ELU from exp and multiply-adds as one Inductor loop
(1.25 ms) and keeps ELU's own backward (``aten.elu_backward`` on the saved
input, exactly what ``nn.ELU`` runs); :class:`FastTanh` is Inductor's
vectorized tanh (1.26 ms) with tanh's own backward; :class:`FastBatchNorm2d`
(2.0 ms) reads NHWC memory as rows of 64 floats. Each agrees with the stock
kernel to a few units in the last place (``tests/test_cpu_kernels.py``
measures it over 32 decades of inputs), the size of the differences a change
of memory layout already makes, so this is an engine choice (like
channels-last), not a change of model: the model's ``state_dict`` and its
seed-identical eager outputs are untouched unless the engine swaps the
modules in, which ``auto`` does for long eager CPU runs only (Inductor
generates its own kernels for ``--compile model|step``).
"""

from __future__ import annotations

import warnings
from typing import Any, Callable

import torch
import torch.nn as nn

__all__ = ["FastELU", "FastTanh", "FastBatchNorm2d", "fast_elu", "fast_tanh", "swap_in_fast_kernels", "has_slow_kernels"]

#: expm1(x) for x ≤ 0 is split at T = -ln 2 (float), where exp(T) ≈ 0.5: above T from its Taylor
#: series (degree 9; the remainder at |x| = ln 2 is ln2⁹/10! ≈ 1e-8 relative, below half a float
#: ulp), below T from exp(x) - exp(T) + series(T), where exp(x) - exp(T) is exact for exp(x) ≥ 0.25
#: (Sterbenz) and rounds at most half an ulp of 0.5 otherwise. No masks: torch.where and
#: masked_fill with an unpredictable mask take 3 ms here, as long as the slow expm1 itself.
_SPLIT = float(torch.tensor(-0.6931471805599453, dtype=torch.float32))
_EXP_SPLIT = float(torch.exp(torch.tensor(_SPLIT, dtype=torch.float32)))  # by the kernel used below
#: 1/n! for n = 9 … 2 (Horner), then the x · (1 + …) step
_COEFFICIENTS = [1.0 / 362880, 1.0 / 40320, 1.0 / 5040, 1.0 / 720, 1.0 / 120, 1.0 / 24, 1.0 / 6, 0.5]


def _elu_formula(x: torch.Tensor) -> torch.Tensor:
    """ELU (α = 1) of a float32 tensor from exp, multiply-adds and min/max only: ``max(x, expm1(min(x, 0)))``.

    expm1(x) ≥ x everywhere, so the max picks the right branch, and it keeps NaN (torch.maximum
    propagates it, as the divergence checks need). expm1 of the non-positive part: the series
    of max(x, T) plus exp(min(x, T)) - exp(T), which is 0 above T.
    """
    negative = x.clamp_max(0.0)
    near = negative.clamp_min(_SPLIT)
    series = near * _COEFFICIENTS[0]
    for coefficient in _COEFFICIENTS[1:]:
        series = (series + coefficient) * near
    series = (series + 1.0) * near  # x · (1 + x/2 + … + x⁸/9!)
    far = torch.exp(negative.clamp_max(_SPLIT)) - _EXP_SPLIT
    return torch.maximum(x, series + far)


def _tanh(x: torch.Tensor) -> torch.Tensor:
    return torch.tanh(x)


#: fused kernels by function name: torch.compile'd (one Inductor loop instead of ~25 passes
#: over memory), or the eager function where compiling failed (no C++ compiler)
_FUSED: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {}


def _fused(function: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """``function(x)`` through its Inductor kernel (compiled once per process, for any shape:
    ``dynamic=True``), falling back to eager ``function`` with one warning if Inductor cannot
    compile here."""
    name = function.__name__
    kernel = _FUSED.get(name)
    if kernel is None:
        kernel = _FUSED[name] = torch.compile(function, dynamic=True, fullgraph=True)
    if kernel is function:
        return function(x)
    try:
        return kernel(x)
    except Exception as error:  # Inductor needs a working C++ toolchain; the eager formula does not
        warnings.warn(f"deeplab.training.engine.cpu_kernels: compiling {name} failed ({type(error).__name__}: {error}); "
                      f"using its eager form", RuntimeWarning, stacklevel=2)
        _FUSED[name] = function
        return function(x)


class _FastELUFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, x: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x)
        return _fused(_elu_formula, x)

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        # nn.ELU's own backward kernel (alpha = scale = input_scale = 1, from the input)
        return torch.ops.aten.elu_backward(grad, 1.0, 1.0, 1.0, False, x)


def fast_elu(x: torch.Tensor) -> torch.Tensor:
    """ELU with α = 1 (``nn.ELU()``), vectorized; see the module docstring. float32 only (its
    split constants are float32's); other types get the stock kernel."""
    if x.dtype != torch.float32:
        return nn.functional.elu(x)
    return _FastELUFunction.apply(x)


class FastELU(nn.Module):
    """Drop-in for ``nn.ELU()`` (α = 1, not in place) on the CPU."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fast_elu(x)


class _FastTanhFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, x: torch.Tensor) -> torch.Tensor:
        y = _fused(_tanh, x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor) -> torch.Tensor:
        (y,) = ctx.saved_tensors
        return torch.ops.aten.tanh_backward(grad, y)  # nn.Tanh's own backward, from the output


def fast_tanh(x: torch.Tensor) -> torch.Tensor:
    """tanh through Inductor's vectorized kernel (1.26 ms where ATen's takes 2.1 for seed 002's
    first-stage activations), with tanh's own backward; float32 only."""
    if x.dtype != torch.float32:
        return torch.tanh(x)
    return _FastTanhFunction.apply(x)


class FastTanh(nn.Module):
    """Drop-in for ``nn.Tanh()`` on the CPU."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fast_tanh(x)


def _fast_replacement(module: nn.Module) -> nn.Module | None:
    """The fast stand-in for ``module``, or None."""
    if type(module) is nn.ELU and module.alpha == 1.0 and not module.inplace:
        return FastELU()
    if type(module) is nn.Tanh:
        return FastTanh()
    if (type(module) is nn.BatchNorm2d and module.num_features <= FAST_BATCH_NORM_MAX_CHANNELS
            and _batch_norm_settings_fit(module)):
        return FastBatchNorm2d.from_module(module)
    return None


def has_slow_kernels(model: nn.Module) -> bool:
    """Whether ``model`` has a module :func:`swap_in_fast_kernels` would replace."""
    return any(_fast_replacement(m) is not None for m in model.modules())


def swap_in_fast_kernels(model: nn.Module) -> int:
    """Replace every ``nn.ELU()`` by :class:`FastELU` and every small ``nn.BatchNorm2d`` by
    :class:`FastBatchNorm2d` in ``model``, in place; returns how many.

    The batch norms keep their parameter and buffer tensors, so ``state_dict`` keys and values,
    and an optimizer built on ``model.parameters()`` before the swap, are unchanged.
    """
    replaced = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            replacement = _fast_replacement(child)
            if replacement is not None:
                setattr(parent, name, replacement)
                replaced += 1
    return replaced


# --------------------------------------------------------------------------- batch norm
#: channels-last batch norm is replaced up to this many channels. PyTorch's NHWC kernel loops
#: over the channels innermost; forward + backward at batch 256, one thread: 4 channels (28 × 28)
#: 10.3 ms stock → 2.0-2.5 ms here; 8 channels (14 × 14) 1.3-1.5 → 1.0 ms; 16 channels (7 × 7)
#: 0.41-0.45 → 0.64 ms (slower: stock kept)
FAST_BATCH_NORM_MAX_CHANNELS = 8
#: the per-channel sums read the NHWC tensor as rows of this many floats (16 pixels × 4 channels),
#: so the column reduction is vectorized
_ROW = 64


def _rows(x: torch.Tensor) -> torch.Tensor:
    """A channels-last (N, C, H, W) tensor's memory as rows of ``_ROW`` floats (a view)."""
    return x.permute(0, 2, 3, 1).reshape(-1, _ROW)


def _from_rows(rows: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """The inverse of :func:`_rows`: a channels-last tensor shaped like ``like`` (a view)."""
    n, c, h, w = like.shape
    return rows.view(n, h, w, c).permute(0, 3, 1, 2)


def _channel_sums(rows: torch.Tensor, channels: int) -> torch.Tensor:
    """Per-channel sums of :func:`_rows`."""
    return rows.sum(0).view(-1, channels).sum(0)


def _tiled(per_channel: torch.Tensor) -> torch.Tensor:
    """A per-channel vector repeated along a row of ``_ROW`` (channels vary fastest, as in NHWC)."""
    return per_channel.repeat(_ROW // per_channel.numel())


class _ChannelsLastBatchNormFunction(torch.autograd.Function):
    """Training-mode batch norm of a channels-last float32 tensor, from vectorized kernels.

    Forward: mean, biased variance (two passes), ``y = (x - μ) · γ/σ + β``; backward:
    the standard closed form ``dx = γ/σ · (dy - mean(dy) - x̂ · mean(dy · x̂))``. Every
    elementwise operation runs on rows of 64 floats with the per-channel vectors tiled along
    them: broadcasting a (1, C, 1, 1) vector over NHWC memory loops over C = 4 elements at a time.
    """

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, x: torch.Tensor, weight: torch.Tensor,
                bias: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        channels = x.shape[1]
        count = x.numel() // channels
        rows = _rows(x)
        mean = _channel_sums(rows, channels) / count
        centered = rows - _tiled(mean)
        var = _channel_sums(centered * centered, channels) / count
        invstd = torch.rsqrt(var + eps)
        ctx.save_for_backward(x, weight, mean, invstd)
        out = centered.mul_(_tiled(invstd * weight)).add_(_tiled(bias))
        return _from_rows(out, x), mean, var

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor, *_: Any) -> tuple[Any, ...]:
        x, weight, mean, invstd = ctx.saved_tensors
        channels = x.shape[1]
        count = x.numel() // channels
        grad_rows = _rows(grad.contiguous(memory_format=torch.channels_last))
        normalized = (_rows(x) - _tiled(mean)).mul_(_tiled(invstd))
        grad_bias = _channel_sums(grad_rows, channels)
        grad_weight = _channel_sums(grad_rows * normalized, channels)
        grad_input = normalized.mul_(_tiled(-grad_weight / count)).add_(grad_rows)
        grad_input.sub_(_tiled(grad_bias / count)).mul_(_tiled(weight * invstd))
        return _from_rows(grad_input, x), grad_weight, grad_bias, None


def _batch_norm_settings_fit(module: nn.BatchNorm2d) -> bool:
    """The batch-norm settings :class:`_ChannelsLastBatchNormFunction` implements: affine, running
    statistics with a momentum (not the cumulative average)."""
    return module.affine and module.track_running_stats and module.momentum is not None


class FastBatchNorm2d(nn.BatchNorm2d):
    """``nn.BatchNorm2d`` whose training forward on a channels-last float32 CPU tensor with at most
    :data:`FAST_BATCH_NORM_MAX_CHANNELS` channels uses :class:`_ChannelsLastBatchNormFunction`;
    every other case (evaluation, NCHW, GPU, more channels) is the stock module. Same parameters,
    buffers and running-statistics update (momentum, unbiased running variance)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self._fast_path_applies(x):
            return super().forward(x)
        out, mean, var = _ChannelsLastBatchNormFunction.apply(x, self.weight, self.bias, self.eps)
        with torch.no_grad():
            count = x.numel() // x.shape[1]
            self.num_batches_tracked.add_(1)
            self.running_mean.lerp_(mean, self.momentum)
            self.running_var.lerp_(var * (count / max(count - 1, 1)), self.momentum)
        return out

    def _fast_path_applies(self, x: torch.Tensor) -> bool:
        return (self.training and _batch_norm_settings_fit(self)
                and x.device.type == "cpu" and x.dtype == torch.float32 and x.dim() == 4
                and x.shape[1] <= FAST_BATCH_NORM_MAX_CHANNELS and _ROW % x.shape[1] == 0
                and (x.numel() // _ROW) * _ROW == x.numel()
                and x.is_contiguous(memory_format=torch.channels_last) and torch.is_grad_enabled())

    @classmethod
    def from_module(cls, module: nn.BatchNorm2d) -> "FastBatchNorm2d":
        """The same batch norm (parameters and buffers shared, not copied)."""
        fast = cls.__new__(cls)
        fast.__dict__.update(module.__dict__)
        return fast
