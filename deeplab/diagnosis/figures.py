"""The diagnosis's figures, each a function of the record :func:`~deeplab.diagnosis.diagnose.diagnose_model`
returns (so ``diagnose.py`` files and the :class:`~deeplab.callbacks.signal_propagation.SignalPropagation`
callback's TensorBoard images are the same drawings).

* ``signal_propagation.png`` — Brock, De & Smith (2021)'s signal propagation plot: average channel
  squared mean and variance against depth, and the residual branch's variance;
* ``correlation.png`` — the empirical correlation map ``c_l`` with its fitted fixed point and ξ_c;
* ``gradients.png`` — one backward pass's gradient norms per layer and their growth rate;
* ``jacobian.png`` — the singular values of the last stage's Jacobian (dynamical isometry: all ≈ 1).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from deeplab.reporting.figures import fit_text, integer_ticks, pyplot, run_title

__all__ = ["FIGURES", "draw_all", "signal_propagation_figure", "correlation_figure", "gradients_figure",
           "jacobian_figure"]


def _title(record: dict[str, Any], what: str) -> str:
    name = record.get("model", "network")
    depth = record.get("depth")
    init = record.get("init")
    step = record.get("step")
    parts = [what, f"{name}" + (f" k = {depth}" if depth else ""), f"init {init}" if init else None,
             f"step {step}" if step is not None else "at initialization"]
    return run_title(*[part for part in parts if part])


def _stage_lines(axis: Any, record: dict[str, Any]) -> None:
    """A faint vertical line where a stage ends (a pooling layer between: a step in any per-layer curve)."""
    layers = record["layers"]
    for before, after in zip(layers, layers[1:]):
        if before["stage"] != after["stage"]:
            axis.axvline(before["layer"] + 0.5, color="0.85", linewidth=0.8, zorder=0)


def _per_layer(record: dict[str, Any], what: str, xlabel: str, ylabel: str, log: bool,
               draw: Any, legend_at: str = "best") -> Any:
    """One per-layer figure: ``draw(axis)`` plots the curves; the axes, title, stage lines and legend are common."""
    plt = pyplot()
    figure, axis = plt.subplots(figsize=(7, 4.2))
    draw(axis)
    if log:
        axis.set_yscale("log")
    axis.set_xlabel(xlabel)
    axis.set_ylabel(ylabel)
    axis.set_title(_title(record, what))
    _stage_lines(axis, record)
    axis.legend(fontsize=8, loc=legend_at)
    integer_ticks(axis.xaxis)
    return fit_text(figure)


def _positive(values: list[Any]) -> list[float]:
    return [float(v) if isinstance(v, (int, float)) and v is not None and v > 0 and math.isfinite(v) else math.nan
            for v in values]


def signal_propagation_figure(record: dict[str, Any]) -> Any:
    layers = record["layers"]
    depth = [row["layer"] for row in layers]

    def draw(axis: Any) -> None:
        axis.plot(depth, _positive([row["variance"] for row in layers]), label="average channel variance")
        axis.plot(depth, _positive([row["squared_mean"] for row in layers]), label="average channel squared mean")
        if any(row["branch_variance"] is not None for row in layers):
            axis.plot(depth, _positive([row["branch_variance"] for row in layers]), label="residual branch variance")

    return _per_layer(record, "signal propagation", "layer (pre-activation of a plain layer; output of a residual block)",
                      "per channel, over batch and space", True, draw)


def correlation_figure(record: dict[str, Any]) -> Any:
    layers = record["layers"]
    fit = record["correlation"]

    def draw(axis: Any) -> None:
        axis.plot([row["layer"] for row in layers], [row["correlation"] for row in layers], marker=".",
                  label="c_l: mean cosine of two inputs' representations")
        if fit.get("fixed_point") is not None:
            xi = fit.get("depth_scale")
            xi_text = "∞" if xi == math.inf else (f"{xi:.3g}" if xi is not None else "—")
            fitted = [row["layer"] for row in layers if row["stage"] == fit.get("stage")] or [layers[0]["layer"],
                                                                                           layers[-1]["layer"]]
            axis.hlines(fit["fixed_point"], min(fitted), max(fitted), color="grey", linestyle="--",
                        label=f"fitted in {fit.get('stage') or 'the network'}: c* = {fit['fixed_point']:.3f}, "
                              f"ξ_c = {xi_text} (6 ξ_c: trainable depth)")
        axis.set_ylim(min(-0.05, min(row["correlation"] for row in layers) - 0.05), 1.05)

    return _per_layer(record, "correlation map", "layer", "correlation c_l", False, draw, legend_at="upper right")


def gradients_figure(record: dict[str, Any]) -> Any:
    layers = record["layers"]
    growth = record["gradient_growth"]
    weights = record["weight_gradients"]

    def draw(axis: Any) -> None:
        rate = growth.get("representation")
        axis.plot([row["layer"] for row in layers], _positive([row["grad_norm"] for row in layers]),
                  label="‖∂loss/∂h_l‖" + (f" (× {rate:.3g} per layer toward the input)" if rate else ""))
        rate = growth.get("weight")
        axis.plot(range(1, len(weights) + 1), _positive([w["grad_norm"] for w in weights]), linestyle="--",
                  label="‖∂loss/∂W_l‖, weight layers in order" + (f" (× {rate:.3g} per layer)" if rate else ""))

    return _per_layer(record, "gradients", "layer", "gradient norm, one backward pass", True, draw)


def jacobian_figure(record: dict[str, Any]) -> Any:
    plt = pyplot()
    spectrum = record.get("jacobian")
    figure, axis = plt.subplots(figsize=(7, 4.2))
    if not spectrum:
        axis.text(0.5, 0.5, "no stage of two or more layers to take a Jacobian of", ha="center", va="center")
        axis.set_axis_off()
        return fit_text(figure)
    values = [s for s in spectrum["singular_values"] if s > 0]
    low, high = min(values), max(values)
    if high / low < 1.01:
        low, high = low / 1.1, high * 1.1
    bins = [low * (high / low) ** (i / 40) for i in range(41)]
    axis.hist(values, bins=bins)
    axis.set_xscale("log")
    axis.axvline(1.0, color="grey", linestyle="--", label="1 (isometry)")
    axis.set_xlabel(f"singular value of ∂h_{spectrum['last_layer']}/∂h_{spectrum['first_layer']} "
                    f"({spectrum['stage']}, {spectrum['layers']} layers)")
    axis.set_ylabel("count")
    axis.set_title(_title(record, f"Jacobian spectrum: χ₁ = {spectrum['chi1']:.4g} per layer, "
                                  f"spread {spectrum['spread']:.3g}" if spectrum.get("spread") is not None else
                                  "Jacobian spectrum"))
    axis.legend(fontsize=8)
    return fit_text(figure)


#: file name → drawing
FIGURES = {
    "signal_propagation.png": signal_propagation_figure,
    "correlation.png": correlation_figure,
    "gradients.png": gradients_figure,
    "jacobian.png": jacobian_figure,
}


def draw_all(record: dict[str, Any], out: Path) -> list[Path]:
    plt = pyplot()
    paths = []
    for name, draw in FIGURES.items():
        figure = draw(record)
        path = Path(out) / name
        figure.savefig(path, dpi=110)
        plt.close(figure)
        paths.append(path)
    return paths
