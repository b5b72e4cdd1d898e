"""The figures of one run, drawn from its own TensorBoard events when it ends (so a resumed run's curves
hold every segment): ``learning_curves.png`` and ``grad_heatmap.png`` beside ``grad_norms.png``.

- **Learning curves** — loss and accuracy against optimizer steps: the training loss every
  ``--log-every-n-steps`` steps (thin), each epoch's training loss and accuracy (the running mean over
  the epoch) and its evaluation (the split the run evaluates: test under the seeds' protocol, else the
  held-out validation split), at the step that closed the epoch.
- **Gradient heatmap** — layer (input at the top) × step, the log10 of each layer's weight-gradient L2
  norm at every record (``--grad-every``): vanishing toward the input shows as a dark top, an explosion
  as a bright band, and how it changes as the run learns.
"""

from __future__ import annotations

import math
from pathlib import Path

__all__ = ["write_run_figures", "LEARNING_CURVES", "GRAD_HEATMAP"]

LEARNING_CURVES = "learning_curves.png"
GRAD_HEATMAP = "grad_heatmap.png"


def _scalars(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    accumulator.Reload()
    return {tag: [(event.step, event.value) for event in accumulator.Scalars(tag)]
            for tag in accumulator.Tags()["scalars"]}


def write_run_figures(run_dir: str | Path, title: str) -> dict[str, str]:
    """Draw the run's figures into ``run_dir``; returns ``{name: path}`` of those it had data for."""
    run_dir = Path(run_dir)
    scalars = _scalars(run_dir)
    written: dict[str, str] = {}
    if "train/loss" in scalars or "train/loss_step" in scalars:
        written["learning_curves"] = str(_learning_curves(scalars, run_dir / LEARNING_CURVES, title))
    layers = sorted(tag for tag in scalars if tag.startswith("grad/l2/"))
    if layers and any(len(scalars[tag]) > 1 for tag in layers):
        written["grad_heatmap"] = str(_heatmap(scalars, layers, run_dir / GRAD_HEATMAP, title))
    return written


def _learning_curves(scalars: dict[str, list[tuple[int, float]]], path: Path, title: str) -> Path:
    from deeplab.reporting.figures import fit_text, integer_ticks, pyplot

    plt = pyplot()
    evaluated = "test" if "test/acc" in scalars and "val/acc" not in scalars else "val"
    figure, (loss_axis, acc_axis) = plt.subplots(1, 2, figsize=(10, 4))
    if "train/loss_step" in scalars:
        steps, values = zip(*scalars["train/loss_step"])
        loss_axis.plot(steps, values, color="tab:blue", linewidth=0.7, alpha=0.5, label="train (every few steps)")
    for axis, kind in ((loss_axis, "loss"), (acc_axis, "acc")):
        for tag, color, label in ((f"train/{kind}", "tab:blue", "train (epoch mean)"),
                                  (f"{evaluated}/{kind}", "tab:orange", f"{evaluated} (epoch end)")):
            points = [(step, value) for step, value in scalars.get(tag, []) if math.isfinite(value)]
            if points:
                axis.plot(*zip(*points), color=color, marker="o", markersize=4, linewidth=1.4, label=label)
        axis.set_xlabel("optimizer step")
        integer_ticks(axis.xaxis)
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    loss_axis.set_ylabel("loss")
    acc_axis.set_ylabel("accuracy")
    acc_axis.set_ylim(0, 1.02)
    figure.suptitle(f"{title}: learning curves", fontsize=10)
    fit_text(figure)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def _heatmap(scalars: dict[str, list[tuple[int, float]]], layers: list[str], path: Path, title: str) -> Path:
    import numpy as np

    from deeplab.reporting.figures import fit_text, pyplot

    plt = pyplot()
    steps = sorted({step for tag in layers for step, _ in scalars[tag]})
    column = {step: index for index, step in enumerate(steps)}
    grid = np.full((len(layers), len(steps)), np.nan)
    for row, tag in enumerate(layers):
        for step, value in scalars[tag]:
            if value > 0 and math.isfinite(value):
                grid[row, column[step]] = math.log10(value)
    figure, axis = plt.subplots(figsize=(10, max(2.5, 0.22 * len(layers) + 1.5)))
    image = axis.imshow(grid, aspect="auto", interpolation="nearest", cmap="magma",
                        extent=(steps[0] - 0.5, steps[-1] + 0.5, len(layers) - 0.5, -0.5))
    names = [tag.split("/", 2)[2] for tag in layers]
    if len(names) <= 40:
        axis.set_yticks(range(len(names)))
        axis.set_yticklabels(names, fontsize=6)
    axis.set_ylabel("layer (input at the top)")
    axis.set_xlabel("optimizer step")
    figure.colorbar(image, ax=axis, label="log10 ‖∇W‖₂")
    axis.set_title(f"{title}: gradient L2 norm per layer and step", fontsize=10)
    fit_text(figure)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
