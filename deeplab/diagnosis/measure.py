"""The diagnosis of one network on one batch: every measurement of :mod:`.signals`, the prediction rule,
one JSON-ready record (what :func:`deeplab.diagnose` writes and the
:class:`~deeplab.callbacks.signal_propagation.SignalPropagation` callback logs).

**The prediction rule** (stated before any family was scored against seed 002's measured table;
:func:`predict_depth`): Schoenholz et al. (2017) find a network trainable to about 6 depth scales,
``k ≤ 6 ξ``, for the smaller of two depth scales measured here:

* ``ξ_c``, the correlation map's (how many layers two inputs stay distinguishable: the forward
  signal), and
* ``ξ_∇ = 1 / |ln r²|``, the gradient's, where ``r`` is the growth of ``‖∂loss/∂h_l‖`` per layer
  toward the input in one backward pass at initialization (``r² ≈ χ₁``, mean-field's mean squared
  singular value of a layer's Jacobian: gradients vanish for r < 1 and explode for r > 1 — batch norm's
  explosion, Yang et al. 2019, included). Across ``6 ξ_∇`` layers a gradient's squared norm changes by
  e⁶ ≈ 400.

Both are measured at the depth diagnosed (the family's search upper bound by default) and extrapolate
at the measured per-layer rates; ``predicted_max_depth = 6 · min(ξ_c, ξ_∇)``.
"""

from __future__ import annotations

import math
import time
from typing import Any

import torch

from deeplab.diagnosis.signals import (fit_depth_scale, forward_signals, gradient_growth, jacobian_spectrum,
                                       measurement_copy, propagation_points)
from deeplab.errors import DeeplabError

__all__ = ["diagnose_model", "predict_depth", "TRAINABLE_DEPTH_FACTOR", "JACOBIAN_BATCH_NORM_EXAMPLES"]

#: Schoenholz et al.: trainable up to about this many depth scales
TRAINABLE_DEPTH_FACTOR = 6.0
#: examples sharing a batch-norm batch in the Jacobian (the Jacobian is one example's; its cost grows with
#: the batch: 2 keeps seed 002's deepest family, resnet_elu at k = 450, within a minute)
JACOBIAN_BATCH_NORM_EXAMPLES = 2


def predict_depth(depth_scale: float | None, representation_growth: float | None) -> dict[str, Any]:
    """The rule of the module docstring from ξ_c and the gradients' growth ``r`` per layer:
    ``correlation_depth`` (6 ξ_c), ``gradient_depth_scale`` (ξ_∇), ``gradient_depth`` (6 ξ_∇),
    ``predicted_max_depth`` (the smaller depth; ``inf`` when neither binds; None when neither was
    measured) and ``limited_by``."""
    correlation = None if depth_scale is None else TRAINABLE_DEPTH_FACTOR * depth_scale
    gradient_scale = None
    if representation_growth is not None and representation_growth > 0:
        rate = abs(2 * math.log(representation_growth))
        gradient_scale = math.inf if rate == 0 else 1 / rate
    gradient = None if gradient_scale is None else TRAINABLE_DEPTH_FACTOR * gradient_scale
    candidates = {name: value for name, value in (("correlation", correlation), ("gradient", gradient))
                  if value is not None}
    if not candidates:
        return dict(correlation_depth=None, gradient_depth_scale=None, gradient_depth=None,
                    predicted_max_depth=None, limited_by=None)
    limited_by = min(candidates, key=candidates.get)
    return dict(correlation_depth=correlation, gradient_depth_scale=gradient_scale, gradient_depth=gradient,
                predicted_max_depth=candidates[limited_by], limited_by=limited_by)


def diagnose_model(network: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, *,
                   jacobian: bool = True) -> dict[str, Any]:
    """Every measurement of :mod:`.signals` on ``network`` (left untouched: measured on a
    :func:`~.signals.measurement_copy`) for the batch ``x``/``y``; the JSON-ready record
    :func:`diagnose` writes, less the run's description."""
    started = time.perf_counter()
    measured = measurement_copy(network)
    points = propagation_points(measured)
    if len(points) < 2:
        raise DeeplabError(f"diagnose: {type(network).__name__} has {len(points)} measurable layer(s); the "
                           "diagnosis needs activations or residual blocks to follow the signal through")
    stages = [point.stage for point in points]
    signals = forward_signals(measured, x, points)
    correlation = fit_depth_scale(signals["correlation"], stages)
    gradients = gradient_growth(measured, x, y, points)
    spectrum = _last_stage_spectrum(measured, x, points) if jacobian else None
    rows = [dict(layer=index + 1, name=point.name, kind=point.kind, stage=point.stage,
                 **{key: signals[key][index] for key in signals},
                 grad_norm=gradients["representation_grad_norms"][index])
            for index, point in enumerate(points)]
    prediction = predict_depth(correlation["depth_scale"], gradients["representation_growth"])
    return dict(
        layers=rows,
        weight_gradients=[dict(name=name, grad_norm=norm) for name, norm in
                          zip(gradients["weight_names"], gradients["weight_grad_norms"])],
        correlation=correlation,
        gradient_growth=dict(loss=gradients["loss"], representation=gradients["representation_growth"],
                             weight=gradients["weight_growth"]),
        jacobian=spectrum,
        prediction=prediction,
        measure_seconds=round(time.perf_counter() - started, 3),
    )


def _last_stage_spectrum(network: torch.nn.Module, x: torch.Tensor, points: list) -> dict[str, Any] | None:
    """The Jacobian between the first and last point of the network's last stage of ≥ 2 points."""
    by_stage: dict[str, list[int]] = {}
    for index, point in enumerate(points):
        by_stage.setdefault(point.stage, []).append(index)
    spans = [members for members in by_stage.values() if len(members) >= 2]
    if not spans:
        return None
    first, last = spans[-1][0], spans[-1][-1]
    has_batch_norm = any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in network.modules())
    batch = x[:JACOBIAN_BATCH_NORM_EXAMPLES] if has_batch_norm else x[:1]
    try:
        spectrum = jacobian_spectrum(network, batch, first, last, points)
    except ValueError:
        return None  # the stage's points do not share one Sequential (a model deeplab did not build)
    return dict(stage=points[first].stage, first_layer=first + 1, last_layer=last + 1, examples=len(batch),
                **spectrum)
