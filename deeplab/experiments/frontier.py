"""Beyond seed 002's families (issue 19): how the step size must shrink with depth, and Schoenholz et
al.'s phase diagram of trainable depth over σ_w².

``lr_depth_scaling``
    For ``cnn_tanh`` + ``delta_orthogonal`` (Xiao et al., ICML 2018), ``resnet_elu_nobn`` +
    ``skipinit`` (De & Smith, NeurIPS 2020) and ``resnet_elu_nobn`` with depth-µP's branches × 1/√L
    (``--branch-scale sqrt_depth``; Yang, Yu, Zhu & Hayou 2023, whose η_max should not fall): the largest η of a descending grid that still trains at
    k = 30, 99, 300 (:func:`deeplab.search.lr_sweep.largest_trainable_lr`), and the power law
    η_max ∝ k^(−p) through them — the measurement behind ``--lr-depth-scaling``.
``phase_diagram``
    Schoenholz, Gilmer, Ganguli & Sohl-Dickstein, "Deep Information Propagation" (ICLR 2017), Fig. 5:
    for the tanh depth family with Gaussian weights N(0, σ_w²/fan_in) and biases N(0, σ_b² = 0.05), the
    deepest trainable k at each σ_w² (one bisection per column), beside the mean-field bound 6 ξ_c and
    the critical σ_w² ≈ 1.76 where ξ_c diverges.

Both run at a reduced budget, labelled in their reports: one epoch of 200 batches of 64 (12,800
images), SGD momentum 0.9, the full 10,000-image test set; trainable = test error below 20 % with a
finite loss. Their probe ledgers resume an interrupted run; ``--out reports/frontier/<recipe>`` reuses
the committed ones.
"""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING, Any

from deeplab.experiments.registry import register_recipe

if TYPE_CHECKING:  # pragma: no cover
    from deeplab.config import FitConfig
    from deeplab.experiments.runner import ExperimentContext

__all__ = ["SWEEP_DEPTHS", "SWEEP_NETWORKS", "PHASE_SIGMA_W2", "PHASE_SIGMA_B2", "PHASE_UPPER", "PHASE_LR",
           "PHASE_THRESHOLD",
           "reduced_budget"]

#: depths of the η sweep (multiples of 3 near 30, 100, 300)
SWEEP_DEPTHS = (30, 99, 300)
#: geometric bisections after the grid's first trainable η (1-2-5 grid: brackets of ×2-2.5 → ×1.25)
SWEEP_REFINEMENTS = 2
#: (family, init, other settings) whose η_max is measured: criticality by orthogonality, by zeroed branches,
#: and depth-µP's branches × 1/√L (Yang, Yu, Zhu & Hayou 2023: the best η should not depend on depth)
SWEEP_NETWORKS: tuple[tuple[str, str, dict[str, Any]], ...] = (
    ("cnn_tanh", "delta_orthogonal", {}),
    ("resnet_elu_nobn", "skipinit", {}),
    ("resnet_elu_nobn", "seed", {"branch_scale": "sqrt_depth"}),
)
#: η above the common grid for networks whose η_max may lie above its top (0.1): depth-µP's scaled branches
#: take larger steps (measured: 0.1 trains at k = 30 and 99)
HIGH_LRS = (2.0, 1.0, 0.5, 0.2)


def _network_label(model: str, init: str, settings: dict[str, Any]) -> tuple[str, str]:
    """(the report's label, the ledger folder's name) of a swept network."""
    if settings.get("branch_scale") == "sqrt_depth":
        return f"{model} + depth-µP (branches × 1/√L)", f"{model}-{init}-depth_mup"
    return f"{model} + {init}", f"{model}-{init}"
#: σ_w² across the phase diagram (the critical σ_w² ≈ 1.76 lies between 1.75 and 2.0)
PHASE_SIGMA_W2 = (1.0, 1.25, 1.5, 1.75, 2.0, 2.25, 2.5, 3.0, 3.5, 4.0)
#: σ_b² of the phase diagram (Schoenholz et al.'s Fig. 5)
PHASE_SIGMA_B2 = 0.05
#: the deepest k a phase-diagram column considers (6 ξ_c crosses it near σ_w² = 1.5 and 2.2)
PHASE_UPPER = 120
#: the phase diagram's "trains at all": test error below 50 % after the budget (chance: 90 %). At this
#: budget the shallowest nets of the ordered phase stay near 28 % (σ_w² = 1, k = 3), so seed 002's 20 %
#: would mark whole columns untrainable for the budget's sake, not the depth's; Schoenholz et al. colour
#: accuracy and draw the boundary where it falls to chance
PHASE_THRESHOLD = 0.5
#: the phase diagram's fixed step size (η_max of cnn_tanh + delta_orthogonal at k = 99 was 0.01)
PHASE_LR = 0.005
#: the reduced budget: 1 epoch of this many batches of REDUCED_BATCH images, the full test set
REDUCED_BATCHES = 200
REDUCED_BATCH = 64
REDUCED_TEXT = (f"reduced (the frontier's probe: 1 epoch of {REDUCED_BATCHES} batches of {REDUCED_BATCH}, "
                "not the seed's 3 epochs of batch 256)")


def reduced_budget(ctx: "ExperimentContext", model: str, **fields: Any) -> "FitConfig":
    """The frontier's probe budget (or --quick's), with the command line's --epochs/--limit-* applied."""
    from deeplab.config import FitConfig

    options = ctx.options
    training = FitConfig(model=model, dataset=ctx.dataset, data_dir=options.data_dir, accelerator=options.accelerator,
                         epochs=1, batch_size=REDUCED_BATCH, limit_train_batches=REDUCED_BATCHES, val_split="none",
                         compile="off", **fields)
    if ctx.quick:
        from deeplab.experiments.runner import QUICK_MAX_BATCH, QUICK_TRAIN_BATCHES, QUICK_VAL_BATCHES

        training = dataclasses.replace(training, batch_size=QUICK_MAX_BATCH, limit_train_batches=QUICK_TRAIN_BATCHES,
                                       limit_val_batches=QUICK_VAL_BATCHES)  # every recipe's smoke budget
    overrides = {name: getattr(options, name) for name in ("epochs", "limit_train_batches", "limit_val_batches")
                 if getattr(options, name) is not None}
    return dataclasses.replace(training, **overrides)


def _budget_text(training: "FitConfig", threshold: float = 0.2) -> str:
    from deeplab.training.resolve import resolve_config

    probe = resolve_config(dataclasses.replace(training, depth=training.depth or 3))
    batches = "all" if probe.limit_train_batches is None else f"{probe.limit_train_batches:g}"
    evaluation = "the full test set" if probe.limit_val_batches is None else f"{probe.limit_val_batches:g} test batches"
    return (f"{probe.epochs} epoch(s) of {batches} batches of {probe.batch_size} ({probe.optimizer}, momentum "
            f"{probe.momentum:g}), evaluated on {evaluation}; trainable = test error below {threshold:.0%} with a finite loss")


@register_recipe(
    "lr_depth_scaling", seed="002", experiment="beyond the seed: the largest stable step size against depth",
    title="How the largest trainable step size shrinks with depth (delta-orthogonal tanh, SkipInit and depth-µP ResNets)",
    dataset="mnist",
    trainings="≈ 45 probes: η from 0.1 down until one trains, then 2 bisections, at k = 30, 99, 300, for 3 networks",
    full_cost="≈ 80 min of one CPU core (measured: 44 probes, 82 min of training; k = 300 probes 2-8 min each)",
    quick_cost="≈ 2 s",
    budget=REDUCED_TEXT,
)
def lr_depth_scaling(ctx: "ExperimentContext") -> None:
    from deeplab.experiments.plots import plot_series
    from deeplab.search.lr_sweep import LR_GRID, fit_power_law, largest_trainable_lr

    depths = (3, 6) if ctx.quick else SWEEP_DEPTHS
    rows, fits, panels = [], {}, []
    for model, init, settings in SWEEP_NETWORKS:
        name, folder = _network_label(model, init, settings)
        for seed in ctx.seeds:
            training = reduced_budget(ctx, model, seed=seed, **settings)
            grid: list[float] = list(LR_GRID[:4:3] if ctx.quick else LR_GRID)
            if settings.get("branch_scale") == "sqrt_depth" and not ctx.quick:
                grid = [*HIGH_LRS, *grid]
            maxima: list[float | None] = []
            for depth in depths:
                result = largest_trainable_lr(training, model=model, init=init, depth=depth,
                                              out=ctx.out / folder, lrs=grid,
                                              refinements=0 if ctx.quick else SWEEP_REFINEMENTS,
                                              echo=lambda line: ctx.echo(f"[lr_depth_scaling] {line}"))
                maxima.append(result["largest_lr"])
                ctx.count_probes(result["probes"])
                tried = ", ".join(f"{p['lr']:g} → " + ("diverged" if p["diverged"] else
                                                        "—" if p["test_error"] is None else f"{100 * p['test_error']:.1f} %")
                                  for p in result["probes"])
                rows.append([name.split(" + ")[0], name.split(" + ")[1], depth, seed, "none" if result["largest_lr"] is None else
                             f"{result['largest_lr']:g}", "—" if result["smallest_failing_lr"] is None else
                             f"{result['smallest_failing_lr']:g}", tried])
                ctx.data.setdefault("sweeps", []).append({"model": model, "init": init, "seed": seed, **settings,
                                                          **result})
                if result["largest_lr"] is not None:
                    # η_max falls with depth (measured): a deeper network starts at the shallower one's
                    # smallest failing η (expected to fail again, so the deeper bracket is closed too)
                    ceiling = result["smallest_failing_lr"] or result["largest_lr"]
                    grid = sorted({ceiling, *(lr for lr in grid if lr < ceiling)}, reverse=True)
            label = name + (f" (seed {seed})" if len(ctx.seeds) > 1 else "")
            measured = [(k, lr) for k, lr in zip(depths, maxima) if lr is not None]
            if len(measured) >= 2:
                c, p = fit_power_law(*zip(*measured))
                fits[label] = {"c": c, "p": p}
            panels.append((label, measured))
    ctx.report.heading("Results")
    ctx.report.text(f"Each probe: {_budget_text(reduced_budget(ctx, 'cnn_tanh'))}. At each depth the grid "
                    f"{', '.join(f'{lr:g}' for lr in LR_GRID)} is walked from the largest η down to the first η "
                    f"that trains, then the bracket between it and the next larger η (which failed) is bisected "
                    f"geometrically {0 if ctx.quick else SWEEP_REFINEMENTS} times; a deeper depth starts at the "
                    "shallower one's smallest failing η (η_max is measured to fall with depth, so larger η are "
                    "not re-tried). The depth-µP network's grid starts higher, at "
                    f"{', '.join(f'{lr:g}' for lr in HIGH_LRS)} (its η_max lies above 0.1).")
    ctx.report.table("largest_lr", ["network", "init", "k", "seed", "η_max", "fails at", "η tried → test error"],
                     rows)
    if fits:
        ctx.report.table("fit", ["network", "η_max ≈ c · k^(−p): c", "p"],
                         [[label, f"{fit['c']:.3g}", f"{fit['p']:.2f}"] for label, fit in fits.items()])
    ctx.data["fits"] = fits
    series = [{"title": "largest trainable η against depth", "xlabel": "depth k", "ylabel": "η_max", "log": True,
               "log_x": True, "series": {label: ([[k for k, _ in points]], [[lr for _, lr in points]])
                                         for label, points in panels if points}}]
    path = plot_series(ctx.path("largest_lr.png"), series, title="η_max(k), reduced budget")
    ctx.report.figure(path, "Largest trainable η against depth (log scales)")


@register_recipe(
    "phase_diagram", seed="002", experiment="beyond the seed: Schoenholz et al. (ICLR 2017), Fig. 5",
    title="Phase diagram: deepest trainable tanh CNN over σ_w² (Gaussian init, σ_b² = 0.05) against 6 ξ_c",
    dataset="mnist",
    trainings=f"{len(PHASE_SIGMA_W2)} bisections over k = 3…{PHASE_UPPER} (≈ 5 probes each), 200 batches of 64",
    full_cost="≈ 40 min of one CPU core (measured: 55 probes, 41 min); --devices 2 probes two depths at once",
    quick_cost="≈ 2 s",
    budget=REDUCED_TEXT,
)
def phase_diagram(ctx: "ExperimentContext") -> None:
    import deeplab.theory.mean_field as mean_field
    from deeplab.experiments.plots import plot_phase_diagram
    from deeplab.experiments.seed002 import parallel_probes
    from deeplab.search import SearchPlan, run_search

    grid = (1.0, 2.0, 4.0) if ctx.quick else PHASE_SIGMA_W2
    upper = 6 if ctx.quick else PHASE_UPPER
    critical = mean_field.critical_sigma_w2("tanh", PHASE_SIGMA_B2)
    training = reduced_budget(ctx, "cnn_tanh", init="gaussian", sigma_b2=PHASE_SIGMA_B2, lr=PHASE_LR)
    columns, rows = [], []
    for sigma_w2 in grid:
        plan = SearchPlan(model="cnn_tanh", upper=upper, lower=3, step=3, seeds=ctx.seeds, threshold=PHASE_THRESHOLD,
                          parallel=parallel_probes(ctx.options.devices),
                          out=str(ctx.out / "search" / f"sigma_w2_{sigma_w2:g}"),
                          training=dataclasses.replace(training, sigma_w2=sigma_w2))
        summary = run_search(plan, echo=lambda line, w=sigma_w2: ctx.echo(f"[phase_diagram σ_w²={w:g}] {line}"))
        theory = mean_field.analyze("tanh", sigma_w2, PHASE_SIGMA_B2)
        probes = sorted(summary["probes"], key=lambda p: (p["depth"], p["seed"]))
        ctx.count_probes(probes)
        columns.append({"sigma_w2": sigma_w2, "max_trainable": summary["max_trainable"], "probes": probes})
        rows.append([f"{sigma_w2:g}", f"{theory.depth_scale:.1f}", _depth(theory.predicted_max_depth),
                     _found(summary["max_trainable"], upper, summary.get("lower", 3)),
                     ", ".join(f"{p['depth']}: " + ("div." if p["diverged"] else "—" if p["error"] is None
                                                   else f"{100 * p['error']:.0f} %") for p in probes)])
        ctx.data.setdefault("columns", []).append({
            "sigma_w2": sigma_w2, "sigma_b2": PHASE_SIGMA_B2, "xi_c": theory.depth_scale,
            "six_xi_c": theory.predicted_max_depth, "max_trainable": summary["max_trainable"],
            "min_untrainable": summary["min_untrainable"], "probes": [
                {k: p[k] for k in ("depth", "seed", "error", "trainable", "diverged", "wall_time_s")} for p in probes]})
    dense = [1.0 + 0.01 * i for i in range(301)] if not ctx.quick else list(grid)
    curve = [min(mean_field.analyze("tanh", w, PHASE_SIGMA_B2).predicted_max_depth, 1e6) for w in dense]
    path = plot_phase_diagram(ctx.path("phase_diagram.png"), columns, (dense, curve), critical, upper=upper,
                              threshold=PHASE_THRESHOLD,
                              title=f"tanh depth family, Gaussian init, σ_b² = {PHASE_SIGMA_B2:g}")
    ctx.report.heading("Results")
    ctx.report.text(f"Each probe: `cnn_tanh` at depth k, weights N(0, σ_w²/fan_in), biases N(0, {PHASE_SIGMA_B2:g}), "
                    f"η = {PHASE_LR:g}; {_budget_text(training, PHASE_THRESHOLD)}"
                    f" (chance: 90 %; see `PHASE_THRESHOLD`). One bisection per σ_w² over k = 3, 6, …, {upper}. "
                    f"Mean field (Schoenholz et al. 2017): ξ_c = −1/ln χ_c, trainable up to ≈ 6 ξ_c, "
                    f"critical σ_w² = {critical:.3f} at σ_b² = {PHASE_SIGMA_B2:g}.")
    ctx.report.figure(path, "Deepest trainable depth over σ_w² (green: trainable depths; squares: probes coloured "
                            "by test error) against the mean-field 6 ξ_c")
    ctx.report.table("phase_diagram", ["σ_w²", "ξ_c", "6 ξ_c", "deepest trainable k", "probes k: test error"], rows)
    ctx.data["critical_sigma_w2"] = critical
    ctx.data["upper"] = upper


def _depth(value: float) -> str:
    return "∞" if math.isinf(value) else f"{value:.0f}"


def _found(depth: int | None, upper: int, lower: int) -> str:
    if depth is None:
        return f"none (< {lower})"
    return f"≥ {depth} (upper bound)" if depth >= upper else str(depth)
