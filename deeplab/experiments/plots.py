"""The figures of the reports (matplotlib, Agg backend: files only).

Where a training ran with several seeds, a curve is the mean over the seeds
with the min–max band shaded; bars are means with the s.d. as error bars.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from deeplab.reporting.figures import figure_legend, fit_text, integer_ticks, pyplot, run_title, series_style

if TYPE_CHECKING:  # pragma: no cover
    from deeplab.experiments.runner import Training

__all__ = [
    "plot_learning_curves",
    "plot_bars",
    "plot_layer_bars",
    "plot_series",
    "plot_weight_grid",
    "learning_curves_plot",
    "bars_figure",
    "layer_bars_figure",
    "series_figure",
    "weight_grid_figure",
    "phase_diagram_figure",
    "plot_phase_diagram",
]


def _pyplot() -> Any:
    return pyplot()


def _save(figure: Any, path: Path) -> Path:
    """Write a figure already laid out (:func:`deeplab.reporting.figures.fit_text`) and close it."""
    plt = _pyplot()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def _mean_band(runs: Sequence[Sequence[float]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean, min and max over runs of possibly different lengths (NaN-padded)."""
    length = max((len(r) for r in runs), default=0)
    table = np.full((len(runs), length), np.nan)
    for i, run in enumerate(runs):
        table[i, : len(run)] = [np.nan if v is None else v for v in run]
    with np.errstate(all="ignore"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return np.nanmean(table, axis=0), np.nanmin(table, axis=0), np.nanmax(table, axis=0)


def _plot_runs(axis: Any, x_runs: Sequence[Sequence[float]], y_runs: Sequence[Sequence[float]], label: str,
               scale: float = 1.0, index: int = 0, **style: Any) -> None:
    """The mean over runs as the ``index``-th series of the axis (own marker and line style, markers when
    short: a one-point curve is a dot), and the min–max band when there are several runs."""
    if not y_runs or not any(len(r) for r in y_runs):
        return
    mean, low, high = _mean_band(y_runs)
    x = np.asarray(max(x_runs, key=len), dtype=float)[: len(mean)]
    (line,) = axis.plot(x, mean * scale, label=label, **{**series_style(index, len(mean)), **style})
    if len(y_runs) > 1:
        axis.fill_between(x, low * scale, high * scale, color=line.get_color(), alpha=0.2)


def _one_run_name(trainings: Sequence["Training"]) -> str:
    """``model · dataset · <run folder>`` when the figure shows a single run (one training, one seed), else ""."""
    if len(trainings) != 1 or len(trainings[0].results) != 1:
        return ""
    training = trainings[0]
    config = training.configs[0] if training.configs else None
    return run_title(training.model, getattr(config, "dataset", None), training.results[0].get("run_dir"))


def learning_curves_plot(trainings: Sequence["Training"], title: str, labels: Sequence[str] | None = None) -> Any:
    """The figure of :func:`plot_learning_curves` (laid out, not saved)."""
    plt = _pyplot()
    figure, axes = plt.subplots(2, 2, figsize=(11, 7.5))
    eval_name = "test" if all(t.eval_split == "test" for t in trainings) else "validation"
    panels = [("train_loss", "training loss", 1.0), ("val_loss", f"{eval_name} loss", 1.0),
              ("train_acc", "training accuracy (%)", 100.0), ("val_acc", f"{eval_name} accuracy (%)", 100.0)]
    for axis, (key, ylabel, scale) in zip(axes.flat, panels):
        for index, training in enumerate(trainings):
            label = labels[index] if labels else training.label
            y = training.curves(key)
            x = [[e["epoch"] for e in r["history"]] for r in training.results]
            _plot_runs(axis, x, y, label, scale, index)
        axis.set_xlabel("epoch")
        axis.set_ylabel(ylabel)
        integer_ticks(axis.xaxis)
        axis.grid(True, alpha=0.3)
        if "loss" in key:
            values = [v for t in trainings for run in t.curves(key) for v in run if v is not None and math.isfinite(v)]
            if values and min(values) > 0 and max(values) / min(values) > 50:
                axis.set_yscale("log")
    handles, names = axes.flat[0].get_legend_handles_labels()
    legend = None
    if handles:
        legend = figure_legend(figure, handles, names, loc="lower center", fontsize=8, frameon=False)
    run = _one_run_name(trainings)
    figure.suptitle(f"{title}\n{run}" if run else title)
    return fit_text(figure, rect=(0, 0.0, 1, 1), bottom_legend=legend)


def plot_learning_curves(trainings: Sequence["Training"], path: Path, title: str,
                         labels: Sequence[str] | None = None) -> Path:
    """2×2: train loss, evaluation loss, train accuracy, evaluation accuracy against epoch; one line per training
    (a single run's figure names its model, dataset and run directory under the title)."""
    return _save(learning_curves_plot(trainings, title, labels), path)


def bars_figure(categories: Sequence[str], series: dict[str, Sequence[Any]], *, ylabel: str, title: str,
                log: bool = False, errors: dict[str, Sequence[float | None]] | None = None,
                value_format: str = "{:.2f}", missing: dict[str, Sequence[str | None]] | None = None) -> Any:
    """The figure of :func:`plot_bars` (laid out, not saved). ``missing``: per series, the text to write
    where a value is None (e.g. "< 3" for a search that found nothing), so an absent bar is explained."""
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(max(6.0, 1.3 * len(categories) * max(1, len(series)) * 0.6 + 3), 4.5))
    width = 0.8 / max(1, len(series))
    x = np.arange(len(categories))
    for index, (name, values) in enumerate(series.items()):
        heights = [np.nan if v is None else float(v) for v in values]
        err = None
        if errors and name in errors:
            err = [0.0 if e is None else float(e) for e in errors[name]]
        offset = (index - (len(series) - 1) / 2) * width
        bars = axis.bar(x + offset, [0 if np.isnan(h) else h for h in heights], width, label=name, yerr=err,
                        capsize=3 if err else 0, alpha=0.85)
        notes = list((missing or {}).get(name) or [None] * len(heights))
        for bar, h, note in zip(bars, heights, notes):
            if np.isnan(h):  # a zero-height bar (still visible, so the legend keeps its swatch) and why
                if note:
                    axis.annotate(note, (bar.get_x() + bar.get_width() / 2, 0), ha="center", va="bottom",
                                  fontsize=7, rotation=90, xytext=(0, 2), textcoords="offset points",
                                  color=bar.get_facecolor())
                continue
            axis.annotate(value_format.format(h), (bar.get_x() + bar.get_width() / 2, h), ha="center",
                          va="bottom", fontsize=7, xytext=(0, 2), textcoords="offset points")
    axis.set_xticks(x)
    axis.set_xticklabels(categories, rotation=20 if len(categories) > 3 else 0,
                         ha="right" if len(categories) > 3 else "center")
    axis.set_ylabel(ylabel)
    axis.set_title(title)
    if log:
        axis.set_yscale("log")
    axis.margins(y=0.12)  # room above the tallest bar for its value
    axis.grid(True, axis="y", alpha=0.3)
    if len(series) > 1:
        axis.legend(fontsize=8)
    return fit_text(figure)


def plot_bars(path: Path, categories: Sequence[str], series: dict[str, Sequence[Any]], *, ylabel: str,
              title: str, log: bool = False, errors: dict[str, Sequence[float | None]] | None = None,
              value_format: str = "{:.2f}", missing: dict[str, Sequence[str | None]] | None = None) -> Path:
    """Grouped bars: one group per category, one bar per series (None: no bar, ``missing`` says why)."""
    return _save(bars_figure(categories, series, ylabel=ylabel, title=title, log=log, errors=errors,
                             value_format=value_format, missing=missing), path)


def layer_bars_figure(panels: Sequence[tuple[str, Sequence[str], Sequence[float]]], *, ylabel: str, title: str,
                      log: bool = False) -> Any:
    """The figure of :func:`plot_layer_bars` (laid out, not saved)."""
    plt = _pyplot()
    figure, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), 4.5), squeeze=False)
    for axis, (panel_title, names, values) in zip(axes[0], panels):
        axis.bar(range(len(values)), [max(v, 1e-30) if log else v for v in values], alpha=0.75)
        axis.set_xlabel("layer (input → output)")
        axis.set_ylabel(ylabel)
        axis.set_title(panel_title)
        if len(names) <= 40:
            axis.set_xticks(range(len(names)))
            axis.set_xticklabels(names, rotation=80, fontsize=6)
        else:
            integer_ticks(axis.xaxis)  # layer indices
        if log:
            axis.set_yscale("log")
        axis.grid(True, axis="y", alpha=0.3)
    figure.suptitle(title)
    return fit_text(figure)


def plot_layer_bars(path: Path, panels: Sequence[tuple[str, Sequence[str], Sequence[float]]], *, ylabel: str,
                    title: str, log: bool = False) -> Path:
    """Side-by-side bar charts of a per-layer quantity (seed 001's gradient-flow figure)."""
    return _save(layer_bars_figure(panels, ylabel=ylabel, title=title, log=log), path)


def series_figure(panels: Sequence[dict[str, Any]], *, title: str) -> Any:
    """The figure of :func:`plot_series` (laid out, not saved)."""
    plt = _pyplot()
    figure, axes = plt.subplots(1, len(panels), figsize=(6.2 * len(panels), 4.4), squeeze=False)
    for axis, panel in zip(axes[0], panels):
        for index, (label, (x_runs, y_runs)) in enumerate(panel["series"].items()):
            _plot_runs(axis, x_runs, y_runs, label, panel.get("scale", 1.0), index)
        for x, mark in panel.get("marks", []):
            axis.axvline(x, color="gray", linestyle=":", linewidth=1)
            axis.annotate(mark, (x, 1), xycoords=("data", "axes fraction"), rotation=90, va="top", ha="right", fontsize=7)
        axis.set_xlabel(panel.get("xlabel", ""))
        axis.set_ylabel(panel.get("ylabel", ""))
        if panel.get("title"):
            axis.set_title(panel["title"], fontsize=10)
        if panel.get("log"):
            axis.set_yscale("log")
        if panel.get("log_x"):
            from matplotlib.ticker import NullFormatter, ScalarFormatter

            axis.set_xscale("log")
            axis.xaxis.set_major_formatter(ScalarFormatter())  # 30, 100, 300 rather than 3×10¹
            axis.xaxis.set_minor_formatter(NullFormatter())
            ticks = sorted({x for _, (x_runs, _) in panel["series"].items() for run in x_runs for x in run})
            if ticks:
                axis.set_xticks(ticks)
        elif panel.get("integer_x", True):
            integer_ticks(axis.xaxis)
        axis.grid(True, which="both", alpha=0.3)
        if axis.get_legend_handles_labels()[0]:
            axis.legend(fontsize=7)
    figure.suptitle(title)
    return fit_text(figure)


def plot_series(path: Path, panels: Sequence[dict[str, Any]], *, title: str) -> Path:
    """Line panels. Each panel: ``{"series": {label: (x_runs, y_runs)}, "xlabel", "ylabel", "log", "title",
    "marks": [(x, label)], "integer_x" (default True), "log_x"}`` — x_runs/y_runs are per-seed lists (mean line,
    min–max band); each series has its own marker and line style, markers only on short series."""
    return _save(series_figure(panels, title=title), path)


def weight_grid_figure(weights: np.ndarray, title: str, max_filters: int = 64) -> Any:
    """The figure of :func:`plot_weight_grid` (laid out, not saved)."""
    plt = _pyplot()
    w = np.asarray(weights, dtype=np.float64)[:max_filters]
    n = len(w)
    cols = int(math.ceil(math.sqrt(n)))
    rows = int(math.ceil(n / cols))
    figure, axes = plt.subplots(rows, cols, figsize=(1.3 * cols + 0.5, 1.3 * rows + 0.7), squeeze=False)
    for index, axis in enumerate(axes.flat):
        axis.set_xticks([])
        axis.set_yticks([])
        if index >= n:
            axis.axis("off")
            continue
        f = w[index]
        low, high = f.min(), f.max()
        f = (f - low) / (high - low) if high > low else np.zeros_like(f)
        if f.shape[0] == 3:
            axis.imshow(np.transpose(f, (1, 2, 0)), interpolation="nearest")
        else:
            axis.imshow(f.mean(axis=0), cmap="gray", interpolation="nearest")
        axis.set_title(str(index), fontsize=6)
    figure.suptitle(title, fontsize=10)
    return fit_text(figure)


def plot_weight_grid(weights: np.ndarray, path: Path, title: str, max_filters: int = 64) -> Path:
    """First-layer weights as a grid of images (seed 003's ``visualizeWeights``).

    ``weights``: (N, C, H, W). Each filter is scaled to [0, 1] on its own;
    three channels are shown as RGB, anything else as the channel mean in grey.
    """
    return _save(weight_grid_figure(weights, title, max_filters), path)


def phase_diagram_figure(columns: Sequence[dict[str, Any]], theory: tuple[Sequence[float], Sequence[float]],
                         critical: float, *, upper: int, threshold: float, title: str) -> Any:
    """Schoenholz et al. (ICLR 2017), Fig. 5/6: depth up, σ_w² across. Each column (``{"sigma_w2",
    "max_trainable", "probes": [{"depth", "error", "trainable"}]}``) shades its trainable depths and marks
    every probed cell, coloured by its error; ``theory`` is the (σ_w², 6 ξ_c) curve, ``critical`` the
    edge-of-chaos σ_w² (a dotted line)."""
    plt = _pyplot()
    from matplotlib import colors

    figure, axis = plt.subplots(figsize=(8.0, 5.2))
    xs = [float(c["sigma_w2"]) for c in columns]
    gaps = np.diff(sorted(xs)) if len(xs) > 1 else np.array([0.5])
    width = 0.8 * float(np.min(gaps)) if len(gaps) else 0.4
    for column in columns:
        top = column["max_trainable"]
        if top is not None:
            axis.bar(float(column["sigma_w2"]), top, width=width, color="#2ca02c", alpha=0.18, zorder=1)
    norm = colors.Normalize(vmin=0.0, vmax=0.9)
    cells = [(float(c["sigma_w2"]), p["depth"], 0.9 if p["error"] is None else min(float(p["error"]), 0.9),
              p["trainable"]) for c in columns for p in c["probes"]]
    if cells:
        x, y, error, trainable = zip(*cells)
        scatter = axis.scatter(x, y, c=error, cmap="RdYlGn_r", norm=norm, s=70, marker="s", zorder=3,
                               edgecolors=["black" if t else "none" for t in trainable], linewidths=0.8)
        bar = figure.colorbar(scatter, ax=axis, pad=0.02)
        bar.set_label(f"error after the probe (trainable: < {threshold:.0%}, black edge)")
    found = [(float(c["sigma_w2"]), c["max_trainable"]) for c in columns if c["max_trainable"] is not None]
    if found:
        axis.plot(*zip(*found), color="#1a7a1a", marker="o", linewidth=1.5, zorder=4, label="deepest trainable k")
    theory_x, theory_y = np.asarray(theory[0], float), np.asarray(theory[1], float)
    axis.plot(theory_x, np.minimum(theory_y, upper * 1.15), color="black", linestyle="--", linewidth=1.3,
              zorder=2, label="6 ξ_c (mean field)")
    axis.axvline(critical, color="#555555", linestyle=":", linewidth=1.2, label=f"critical σ_w² ≈ {critical:.2f}")
    axis.axhline(upper, color="#999999", linewidth=0.8, zorder=0)
    axis.annotate(f"search upper bound k = {upper}", (theory_x.max(), upper), ha="right", va="bottom",
                  fontsize=7, color="#666666")
    axis.set_ylim(0, upper * 1.15)
    axis.set_xlim(min(theory_x.min(), min(xs) - width), max(theory_x.max(), max(xs) + width))
    axis.set_xlabel("σ_w² (weight variance × fan-in)")
    axis.set_ylabel("depth k (conv layers)")
    axis.set_title(title)
    axis.grid(True, alpha=0.25)
    axis.legend(fontsize=8, loc="upper left")  # the ordered phase's top corner stays empty
    return fit_text(figure)


def plot_phase_diagram(path: Path, columns: Sequence[dict[str, Any]], theory: tuple[Sequence[float], Sequence[float]],
                       critical: float, *, upper: int, threshold: float, title: str) -> Path:
    """:func:`phase_diagram_figure`, written to ``path``."""
    return _save(phase_diagram_figure(columns, theory, critical, upper=upper, threshold=threshold, title=title),
                 path)
