"""Seed 002 ("From Shallow to Deep Neural Networks", MNIST): the maximum trainable depth of seven
CNN families, through :mod:`deeplab.search`.

Full budget: :func:`deeplab.search.table.run_table` — every family bisected
over k = 3, 6, …, the seed's upper bound, each probe 3 epochs (SGD lr 0.01,
momentum 0.9, batch 256), trainable when its test error is below 20 %. The
probe ledgers make an interrupted table resume. ``--quick``: each family
bisected over k ∈ {3, 6} only, probes of 1 epoch of a few batches.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from deeplab.experiments.plots import plot_bars
from deeplab.experiments.registry import register_recipe

if TYPE_CHECKING:  # pragma: no cover
    from deeplab.experiments.runner import ExperimentContext

__all__ = ["QUICK_UPPER", "parallel_probes"]

#: --quick: every family searched over k ∈ {3, 6}
QUICK_UPPER = 6


def parallel_probes(devices: str) -> int:
    """Probes at once: one per device --devices names (auto: one)."""
    from deeplab.config import device_count, parse_devices

    return device_count(parse_devices(devices)) or 1


@register_recipe(
    "trainability", seed="002", experiment="the maximum trainable depth of its seven CNN families",
    title="Trainability: the deepest network of each seed 002 family that trains in 3 epochs",
    dataset="mnist",
    trainings="about 40 probes (bisection per family up to the seed's bounds 24…450), 3 epochs each at batch 256",
    full_cost="est. 3–6 h on one GPU (probes up to k = 450 dominate); `--devices N` probes N depths at once",
    quick_cost="≈ 11 s",
)
def trainability(ctx: "ExperimentContext") -> None:
    from deeplab.config import FitConfig
    from deeplab.training.resolve import resolve_config
    from deeplab.search import SearchPlan, run_search
    from deeplab.search.report import table_rows
    from deeplab.search.runner import mean_field_prediction, seed002_reference
    from deeplab.search.table import run_table

    reference = seed002_reference()
    training = FitConfig(model="cnn_tanh", dataset=ctx.dataset, data_dir=ctx.options.data_dir,
                         accelerator=ctx.options.accelerator, epochs=ctx.options.epochs,
                         limit_train_batches=ctx.options.limit_train_batches,
                         limit_val_batches=ctx.options.limit_val_batches)
    if ctx.quick:
        training = dataclasses.replace(
            training, epochs=ctx.options.epochs or 1, batch_size=32,
            limit_train_batches=ctx.options.limit_train_batches or 3,
            limit_val_batches=ctx.options.limit_val_batches or 1)
    parallel = parallel_probes(ctx.options.devices)
    out = ctx.out / "search"
    if ctx.quick:
        rows: list[dict[str, Any]] = []
        for family, (_, reported) in reference.items():
            plan = SearchPlan(model=family, upper=QUICK_UPPER, lower=3, step=3, seeds=ctx.seeds, parallel=parallel,
                              out=str(out / family / "seed"), training=dataclasses.replace(training, model=family))
            summary = run_search(plan, echo=lambda line, f=family: ctx.echo(f"[trainability / {f}] {line}"))
            ctx.count_probes(summary["probes"])
            rows.append({"family": family, "upper": QUICK_UPPER, "seed_reported_max": reported,
                         "searches": {"seed": {k: v for k, v in summary.items() if k != "probes"}},
                         "mean_field": {"seed": mean_field_prediction(family, "seed")}})
    else:
        data = run_table(out, seeds=ctx.seeds, parallel=parallel, training=training,
                         echo=lambda line: ctx.echo(f"[trainability] {line}"))
        rows = data["rows"]

    probe = resolve_config(dataclasses.replace(training, model="cnn_tanh", depth=3,
                                               epochs=training.epochs or 3))
    ctx.report.heading("Results")
    ctx.report.text(
        f"Each probe trains a family at depth k for {probe.epochs} epoch(s) (batch {probe.batch_size}, "
        f"{probe.optimizer} lr {probe.lr:g}, momentum {probe.momentum:g}"
        + ("" if probe.limit_train_batches is None else f", {probe.limit_train_batches:g} batches per epoch")
        + ") and calls it trainable when its test error is below 20 % and its loss never turned NaN/inf. "
        + (f"**--quick** searches only k ∈ {{3, {QUICK_UPPER}}} (the `upper` column), so its maxima are capped there."
           if ctx.quick else "Upper bounds are the seed's."))
    headers, body = table_rows(rows, ["seed"])  # the cells of search.py --table's table.md
    ctx.report.table("trainability", headers, body)
    ctx.report.text(
        "'seed 002 max k' is what the seed's notebook printed; 'mean-field k' is deeplab's mean-field depth scale "
        "where one applies. The seed's search has a bug (its boundary retraining trains the wrong depth); "
        "`deeplab.search` evaluates both boundary depths by construction. Each family's probes, plot and report: "
        + ", ".join(f"[{row['family']}](search/{row['family']}/seed/report.md)" for row in rows) + ".")
    measured, why_missing = [], []
    for row in rows:
        search = row["searches"].get("seed")
        if isinstance(search, dict):
            measured.append(search.get("max_trainable"))
            why_missing.append(f"< {search.get('lower', 3)}" if search.get("max_trainable") is None else None)
        else:  # n/a, or not yet measured
            measured.append(None)
            why_missing.append(search if isinstance(search, str) else "n/a")
    path = plot_bars(ctx.path("max_depth.png"), [row["family"] for row in rows], {
        "deeplab": measured, ctx.seed_header(): [row["seed_reported_max"] for row in rows]},
        ylabel="maximum trainable depth k", title="Maximum trainable depth per family", value_format="{:.0f}",
        missing={"deeplab": why_missing})
    ctx.report.figure(path, "Maximum trainable depth per family, beside the seed's")
    ctx.data["rows"] = [{k: v for k, v in row.items()} for row in rows]
    ctx.data["probe_settings"] = {"epochs": probe.epochs, "batch_size": probe.batch_size, "optimizer": probe.optimizer,
                                  "lr": probe.lr, "momentum": probe.momentum,
                                  "limit_train_batches": probe.limit_train_batches}
