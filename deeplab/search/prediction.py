"""The mean-field prediction for a seed 002 family: :mod:`deeplab.theory.mean_field`'s numbers applied to the
family's layers and initialization (Schoenholz et al., ICLR 2017: trainable up to ~6 ξ_c).

It lives beside the search that prints it, so :mod:`deeplab.theory.mean_field` stays pure (numbers only,
no model imports) and nothing imports in a circle (``tests/test_architecture.py``).
"""

from __future__ import annotations

import math

import deeplab.models.inits as inits
from deeplab.errors import DeeplabError
from deeplab.theory.mean_field import analyze
from deeplab.models.depth_family import FAMILY_CONFIGS, STAGE_WIDTHS, validate_depth

__all__ = ["predict_for_model"]


def predict_for_model(family_name: str, init: str = "seed", depth: int | None = None,
                      sigma_w2: float | None = None, sigma_b2: float | None = None) -> dict:
    """Mean-field prediction for a seed 002 family under initialization ``init``.

    Returns a dict with ``q_star, chi1, depth_scale`` (ξ_c),
    ``predicted_max_depth`` (6 ξ_c), ``sigma_w2, sigma_b2``, and for context
    ``family, init, activation, seed_max_depth`` (the seed's reported maximum),
    ``sigma_w2_by_layer`` ({(C_in, C_out): σ_w²}) and ``reason`` (why the
    predictions are ``None``, else ``None``).

    Per-layer gain. seed 002's naive init N(0, 0.05²) has σ_w² = 0.05² · 9 ·
    C_in, which varies with the layer's input channels (0.0225 at C_in = 1,
    0.09, 0.18, 0.36 at C_in = 4, 8, 16); its fan-in init N(0, 1/(9 C_in)) has
    σ_w² = 1 in every layer. Where the gain varies, the reported ``sigma_w2``
    is the *geometric mean* over the conv layers: a gradient crossing L layers
    is scaled by the product of their χ₁'s, so the geometric mean of χ₁ is the
    exact per-layer rate, and where q* = 0 (tanh, σ_b = 0, σ_w² ≤ 1) χ₁ = σ_w²
    layer by layer, so the geometric mean of σ_w² gives it. ``depth=None``
    averages over the large-depth limit (each stage's repeated layers, C_in =
    4, 8, 16 in equal numbers); pass ``depth`` for the exact layer list
    (adding each stage's first layer, C_in = 1, 4, 8).

    ``sigma_w2``/``sigma_b2`` are the variances of the ``orthogonal``,
    ``delta_orthogonal`` and ``gaussian`` inits (``--sigma-w2``/``--sigma-b2``;
    default: the critical point, :func:`deeplab.models.inits.resolve_variances`).

    Batch-norm and residual families get ``None`` predictions and a
    ``reason``: the plain-network mean field does not describe them.
    """
    if family_name not in FAMILY_CONFIGS:
        raise DeeplabError(
            f"mean field: {family_name!r} is not a seed 002 family; choose one of {', '.join(FAMILY_CONFIGS)}."
        )
    config = FAMILY_CONFIGS[family_name]
    inits.check_scheme(init, residual=config.residual, family=family_name)
    inits.check_variances(init, sigma_w2, sigma_b2)
    activation = config.activation
    result: dict = dict(
        family=family_name,
        init=init,
        activation=activation,
        seed_max_depth=config.seed_max_depth,
        q_star=None,
        chi1=None,
        depth_scale=None,
        predicted_max_depth=None,
        sigma_w2=None,
        sigma_b2=None,
        sigma_w2_by_layer=None,
        reason=None,
    )
    result["reason"] = _declined(config, init)
    if result["reason"] is not None:
        return result
    if depth is None:
        layers = [(width, width) for width in STAGE_WIDTHS]  # large depth: each stage's repeated layers
    else:
        per_stage = validate_depth(depth) // 3
        layers, previous = [], 1
        for width in STAGE_WIDTHS:
            layers += [(previous, width)] + [(width, width)] * (per_stage - 1)
            previous = width
    gains: dict[tuple[int, int], float] = {}
    for c_in, c_out in layers:
        if init == "seed":
            gains[(c_in, c_out)] = config.seed_sigma_w2(c_in)
        elif init in inits.VARIANCE_SCHEMES:
            gains[(c_in, c_out)] = inits.resolve_variances(activation, sigma_w2, sigma_b2)[0]
        else:
            gains[(c_in, c_out)] = inits.sigma_w2_for(init, activation, in_channels=c_in, out_channels=c_out)
    log_mean = sum(math.log(gains[layer]) for layer in layers) / len(layers)
    sigma_w2 = math.exp(log_mean)
    if init in inits.VARIANCE_SCHEMES:
        sigma_b2 = inits.resolve_variances(activation, sigma_w2, sigma_b2)[1]
    else:
        sigma_b2 = inits.sigma_b2_for(init, activation)
    mean_field = analyze(activation, sigma_w2, sigma_b2)
    result.update(
        q_star=mean_field.q_star,
        chi1=mean_field.chi1,
        depth_scale=mean_field.depth_scale,
        predicted_max_depth=mean_field.predicted_max_depth,
        sigma_w2=sigma_w2,
        sigma_b2=sigma_b2,
        sigma_w2_by_layer=gains,
    )
    return result


def _declined(config, init: str) -> str | None:
    """Why the plain-network mean field does not describe this family under ``init`` (None: it does)."""
    if config.batch_norm:
        return ("batch norm re-normalizes every layer's pre-activations, so the plain-network "
                "mean-field recursion (and its σ_w²) does not describe this family")
    if init in inits.VANILLA_SCHEMES:
        return ("TAT transforms the activation for the network's depth so that the whole network's "
                "kernel stays near the identity; the plain mean field of the family's own activation "
                "does not describe it")
    if config.residual:
        return ("residual connections change the length and correlation maps (Yang & Schoenholz 2017); "
                "the plain-network depth scale does not apply")
    return None
