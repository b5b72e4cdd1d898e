"""Seed 004 ("Day 9: ResNet — Solutions", CIFAR-10): degradation of deep plain nets, plain vs
residual at 56, ResNet-50/101/152, and what the residual branches learn.

Protocol (Exercises 1, 2, 4): SGD lr 0.01, momentum 0.9, StepLR ×0.1 every 5
epochs, 20 epochs, batch 128, horizontal flips, test set every epoch.

The seed's numbers are its "Expected Output" blocks: written into the
solution text, not printed by a run it shows (Exercise 2's plain network
cannot even run as written — ``PlainCNN`` never defines ``self.relu``; see
:mod:`deeplab.models.plain`). Exercise 4's parameter counts (23,520,000 /
44,549,000 / 60,192,000) are not what its code builds (23,555,082 /
42,573,322 / 58,240,010 on 3×32×32). Its gradient measures, reproduced here
exactly (:class:`~deeplab.experiments.callbacks.SeedCurves`): Exercise 1 —
the L2 norm of ``conv1.weight``'s gradient after each epoch's last batch;
Exercise 2 — Σ over parameters of each gradient's L2 norm, same moment.

Depth semantics (the seed's code, kept): ``plain_deep``/``plain_cnn_deep``
count *blocks of two convs*, ``resnet_deep`` counts *convs*. So Exercise 2's
"56-layer" plain net has 112 block convs against the ResNet's 56;
``plain_vs_resnet`` adds the equal-conv-count control ``plain_cnn_deep`` at
depth 28.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

import numpy as np

from deeplab.experiments.callbacks import KeepModel, SeedCurves
from deeplab.experiments.common import learning_curves_figure, minutes, seed_pct
from deeplab.experiments.plots import plot_bars, plot_series
from deeplab.experiments.registry import register_recipe

if TYPE_CHECKING:  # pragma: no cover
    from deeplab.experiments.runner import ExperimentContext, Training

__all__ = ["SEED004", "block_statistics"]

SEED004 = {
    # Exercise 1 "Expected Output": final test accuracy %, first-layer gradient norm
    "degradation": {20: (76.45, 4.523e-03), 56: (65.23, 2.134e-05)},
    # Exercise 2: final test accuracy %
    "plain_vs_resnet": {"plain_cnn_deep": 65.45, "resnet_deep": 85.23},
    # Exercise 4: (final test accuracy %, "Params" as printed in the Expected Output)
    "resnet_depths": {"bottleneck_resnet50": (85.12, 23_520_000), "bottleneck_resnet101": (86.45, 44_549_000),
                      "bottleneck_resnet152": (87.23, 60_192_000)},
}


def _epoch_end(t: "Training", key: str) -> list[list[float]]:
    """Per seed, the per-epoch SeedCurves epoch-end measure ``key``."""
    return [[e[key] for e in cb[0].epoch_end] for cb in t.callbacks]


def _last_epoch_end(t: "Training", key: str) -> list[float | None]:
    return [runs[-1] if runs else None for runs in _epoch_end(t, key)]


def _epoch_panels(runs: list["Training"], grad_key: str, grad_label: str) -> list[dict[str, Any]]:
    def x(t: "Training") -> list[list[int]]:
        return [[e["epoch"] for e in r["history"]] for r in t.results]

    return [
        {"series": {t.label: (x(t), t.curves("train_loss")) for t in runs}, "xlabel": "epoch", "ylabel": "training loss"},
        {"series": {t.label: (x(t), t.curves("val_acc")) for t in runs}, "xlabel": "epoch",
         "ylabel": "test accuracy (%)", "scale": 100.0},
        {"series": {t.label: ([[e["epoch"] for e in cb[0].epoch_end] for cb in t.callbacks], _epoch_end(t, grad_key))
                    for t in runs}, "xlabel": "epoch", "ylabel": grad_label, "log": True},
    ]


def _curves() -> list[Any]:
    return [SeedCurves(every=10)]


# ---------------------------------------------------------------------------------------------
@register_recipe(
    "degradation", seed="004", experiment="Exercise 1: the vanishing gradient / degradation problem",
    title="Degradation: plain networks of 20 and 56 blocks (42 and 114 weight layers)",
    dataset="cifar10",
    trainings="2: plain_deep at depth 20 and 56, 20 epochs at batch 128, SGD 0.01, step schedule",
    full_cost="≈ 4 h on a 1-thread CPU (56 blocks: ≈ 1 s per batch); est. ≈ 25 min on one GPU",
    quick_cost="≈ 7 s",
)
def degradation(ctx: "ExperimentContext") -> None:
    depths = (20, 56)
    quick_depths = {20: 2, 56: 5}
    runs = [ctx.train(f"plain_deep-{d}", "plain_deep", depth=d, quick={"depth": quick_depths[d]}, callbacks=_curves)
            for d in depths]
    rows = []
    for d, t in zip(depths, runs):
        k = t.configs[0].depth
        s = SEED004["degradation"][d]
        rows.append([t.label, k, 2 * k + 2, f"{t.results[0]['parameters']:,}", t.cell(t.test_acc, pct=True),
                     seed_pct(s[0]), t.cell(t.best("val_acc"), pct=True), t.cell(t.last("train_loss"), digits=4),
                     t.cell(_last_epoch_end(t, "first_layer_l2"), digits=3, sci=True), f"{s[1]:.3e}", minutes(t)])
    ctx.report.heading("Results")
    ctx.report.table("degradation", [
        "model", "depth (blocks)", "weight layers", "parameters", "final test acc", f"{ctx.seed_header()} expected",
        "best test acc", "train loss (last epoch)", "first-layer gradient L2 (last epoch)",
        f"{ctx.seed_header()} expected gradient", "train time"], rows)
    shallow, deep = (t.mean(_last_epoch_end(t, "first_layer_l2")) for t in runs)
    ratio = shallow / deep if shallow and deep else None
    acc = [t.mean(t.test_acc) for t in runs]
    ctx.data["first_layer_gradient_ratio_shallow_over_deep"] = ratio
    ctx.data["test_acc_difference_deep_minus_shallow"] = None if None in acc else acc[1] - acc[0]
    ctx.report.bullets([
        f"first-layer gradient ratio (shallow / deep): **{'—' if ratio is None else f'{ratio:.1f}×'}** "
        f"(seed's expected output: {4.523e-03 / 2.134e-05:.0f}×)",
        "test accuracy, deep − shallow: " + ("—" if None in acc else f"**{100 * (acc[1] - acc[0]):+.2f} pt**")
        + " (seed's expected output: −11.22 pt)",
        "the seed's numbers are its solution's \"Expected Output\", not a run it shows; the gradient norm is "
        "conv1.weight's after each epoch's last batch, as in the seed",
    ])
    if ctx.quick:
        ctx.report.text(f"**--quick** uses depths {quick_depths[20]} and {quick_depths[56]} instead of 20 and 56.")
    path = plot_series(ctx.path("degradation.png"), _epoch_panels(runs, "first_layer_l2", "first-layer gradient L2"),
                       title="Plain networks: deeper is worse")
    ctx.report.figure(path, "Training loss, test accuracy and first-layer gradient norm per epoch")


# ---------------------------------------------------------------------------------------------
@register_recipe(
    "plain_vs_resnet", seed="004", experiment="Exercise 2: a plain CNN against a ResNet, 56 layers each",
    title="Plain CNN against ResNet at \"56 layers\" (and an equal-conv-count plain control)",
    dataset="cifar10",
    trainings="3: plain_cnn_deep depth 56 (112 block convs), resnet_deep depth 56 (56 convs), plain_cnn_deep depth 28; "
              "20 epochs at batch 128",
    full_cost="est. ≈ 3 h on one GPU (112 full-resolution convs); days on a CPU",
    quick_cost="≈ 25 s",
)
def plain_vs_resnet(ctx: "ExperimentContext") -> None:
    plain = ctx.train("plain_cnn_deep-56", "plain_cnn_deep", depth=56, quick={"depth": 4}, callbacks=_curves)
    resnet = ctx.train("resnet_deep-56", "resnet_deep", depth=56, quick={"depth": 8}, callbacks=_curves)
    control = ctx.train("plain_cnn_deep-28", "plain_cnn_deep", depth=28, quick={"depth": 2}, callbacks=_curves)
    rows = []
    for t, convs, seed in ((plain, 2 * plain.configs[0].depth, SEED004["plain_vs_resnet"]["plain_cnn_deep"]),
                           (resnet, resnet.configs[0].depth, SEED004["plain_vs_resnet"]["resnet_deep"]),
                           (control, 2 * control.configs[0].depth, None)):
        rows.append([t.label, t.configs[0].depth, convs, "yes" if t.model == "resnet_deep" else "no",
                     f"{t.results[0]['parameters']:,}", t.cell(t.test_acc, pct=True),
                     seed_pct(seed, "" if seed is not None else "— (deeplab's control)"), t.cell(t.best("val_acc"), pct=True),
                     t.cell(t.last("train_loss"), digits=4), t.cell(_last_epoch_end(t, "sum_param_l2"), digits=4),
                     minutes(t)])
    ctx.report.heading("Results")
    ctx.report.table("plain_vs_resnet", [
        "model", "depth argument", "convs in blocks", "skips", "parameters", "final test acc",
        f"{ctx.seed_header()} expected", "best test acc", "train loss (last epoch)",
        "Σ‖∇p‖₂ after the last batch", "train time"], rows)
    accs = [t.mean(t.test_acc) for t in (plain, resnet)]
    ctx.report.bullets([
        "ResNet − plain (final test accuracy): " + ("—" if None in accs else f"**{100 * (accs[1] - accs[0]):+.2f} pt**")
        + " (seed's expected output: +19.78 pt)",
        "the seed's \"56L\" plain network has twice the ResNet's convs (its `depth` counts blocks there, convs in "
        "the ResNet); the depth-28 plain control has the ResNet's 56 block convs",
        "the seed's gradient measure: Σ over parameters of ‖∇p‖₂ after each epoch's last batch",
    ])
    ctx.data["resnet_minus_plain"] = None if None in accs else accs[1] - accs[0]
    learning_curves_figure(ctx, [plain, resnet, control], "learning_curves.png", "Plain CNN vs ResNet")
    path = plot_series(ctx.path("gradients.png"), [_epoch_panels([plain, resnet, control], "sum_param_l2",
                                                                 "Σ‖∇p‖₂ after the last batch")[2]],
                       title="Gradient flow per epoch")
    ctx.report.figure(path, "The seed's total gradient measure per epoch")


# ---------------------------------------------------------------------------------------------
@register_recipe(
    "resnet_depths", seed="004", experiment="Exercise 4: ResNet-50, -101 and -152 (bottleneck blocks)",
    title="Very deep residual networks: bottleneck ResNet-50, -101 and -152",
    dataset="cifar10",
    trainings="3: bottleneck_resnet50/101/152, 20 epochs at batch 128, SGD 0.01, step schedule",
    full_cost="est. ≈ 1.5 h on one GPU; days on a CPU",
    quick_cost="≈ 25 s",
)
def resnet_depths(ctx: "ExperimentContext") -> None:
    from deeplab.models import count_parameters, create_model

    names = ("bottleneck_resnet50", "bottleneck_resnet101", "bottleneck_resnet152")
    runs = [ctx.train(name, name, quick={"batch_size": 4, "limit_train_batches": 2}) for name in names]
    rows = []
    for t in runs:
        seed_acc, seed_params = SEED004["resnet_depths"][t.model]
        code_params = count_parameters(create_model(t.model, in_channels=3, image_size=32, num_classes=10))
        rows.append([t.model, f"{t.results[0]['parameters']:,}", f"{code_params:,}", f"{seed_params:,}",
                     t.cell(t.test_acc, pct=True), seed_pct(seed_acc), t.cell(t.best("val_acc"), pct=True),
                     t.cell(t.last("train_loss"), digits=4), minutes(t), t.cell(lambda r: r["images_per_s"], digits=0)])
    ctx.report.heading("Results")
    ctx.report.table("resnet_depths", [
        "model", "parameters", "seed's code on CIFAR-10", f"{ctx.seed_header()} expected \"Params\"",
        "final test acc", f"{ctx.seed_header()} expected", "best test acc", "train loss (last epoch)", "train time",
        "images/s"], rows)
    ctx.report.text(
        "The seed's expected output claims \"Deeper = Better\" (85.12 → 86.45 → 87.23 %) and that all three train "
        "well. Its parameter counts are not its code's (those are torchvision's ImageNet models with a 1000-class "
        "head, and one close to seed 001's bias-free ResNet-50); the middle column is what its code builds.")
    learning_curves_figure(ctx, runs, "learning_curves.png", "ResNet-50 / 101 / 152")
    path = plot_bars(ctx.path("accuracy_parameters.png"), [t.model.replace("bottleneck_", "") for t in runs], {
        "final test accuracy (%)": [None if t.mean(t.test_acc) is None else 100 * t.mean(t.test_acc) for t in runs],
        ctx.seed_header("expected, seed"): [SEED004["resnet_depths"][t.model][0] for t in runs]},
        ylabel="test accuracy (%)", title="Final test accuracy by depth")
    ctx.report.figure(path, "Final test accuracy by depth, beside the seed's expected output")


# ---------------------------------------------------------------------------------------------
@register_recipe(
    "residual_magnitudes", seed="004", experiment="Exercise 3: residual vs identity learning (forward hooks)",
    title="What residual blocks learn: ‖F(x)‖ / ‖x‖ and block-output statistics of resnet_deep (depth 28)",
    dataset="cifar10",
    trainings="1: resnet_deep depth 28 (14 blocks), 5 epochs at batch 128; statistics at init and after training",
    full_cost="≈ 2 h on a 1-thread CPU; est. ≈ 4 min on one GPU",
    quick_cost="≈ 13 s",
)
def residual_magnitudes(ctx: "ExperimentContext") -> None:
    import torch

    from deeplab.data.datamodules import create_datamodule
    from deeplab.models import DATASET_SHAPES, create_model

    depth, quick_depth = 28, 6
    trained = ctx.train("resnet_deep-28", "resnet_deep", depth=depth, epochs=5, quick={"depth": quick_depth},
                        callbacks=lambda: [KeepModel()])
    config = trained.configs[0]
    datamodule = create_datamodule(config.dataset, data_dir=config.data_dir, batch_size=config.batch_size)
    datamodule.prepare_data()
    datamodule.setup()
    images, _ = datamodule.split("test")
    batch = datamodule.device_transform(images[: 32 if ctx.quick else 256], training=False)  # the seed: one batch of 256

    channels, size, _, classes = DATASET_SHAPES[config.dataset]
    torch.manual_seed(ctx.seeds[0])
    fresh = create_model("resnet_deep", in_channels=channels, image_size=size, num_classes=classes, depth=config.depth)
    model = trained.callbacks[0][0].model
    states = {"at init (BN on batch statistics, as the seed's code)": block_statistics(fresh.train(), batch),
              "after training (eval mode)": block_statistics(copy.deepcopy(model).cpu().eval(), batch.cpu())}
    (init_name, init), (trained_name, after) = states.items()
    rows = []
    for i, (a, b) in enumerate(zip(init, after)):
        rows.append([f"block_{i}", f"{a['ratio']:.3f}", f"{b['ratio']:.3f}", f"{a['out_mean']:.4f}", f"{a['out_std']:.4f}",
                     f"{b['out_mean']:.4f}", f"{b['out_std']:.4f}"])
    ctx.report.heading("Results")
    ctx.report.table("residual_magnitudes", [
        "block", "‖F(x)‖/‖x‖ at init", "‖F(x)‖/‖x‖ trained", "output mean at init", "output std at init",
        "output mean trained", "output std trained"], rows)
    mean_init = float(np.mean([s["ratio"] for s in init]))
    mean_after = float(np.mean([s["ratio"] for s in after]))
    ctx.report.bullets([
        f"mean ‖F(x)‖/‖x‖ over blocks: **{mean_init:.3f}** at init, **{mean_after:.3f}** after "
        f"{config.epochs} epoch(s) of training",
        "F(x) is the residual branch conv → BN → ReLU → conv → BN before the addition, x the block's input; "
        "ratios are per image, averaged over the batch",
        "the seed's table prints each block output's mean and std; its code never trains the model (\"Load and "
        "train briefly\" has no training step), so its numbers are the init column's kind. Its \"Key Finding\": "
        "residuals are much smaller than the full outputs",
    ])
    ctx.data["blocks"] = {init_name: init, trained_name: after}
    ctx.data["mean_ratio"] = {"init": mean_init, "trained": mean_after}
    x = list(range(len(init)))
    path = plot_series(ctx.path("residual_ratio.png"), [{
        "series": {"at init": ([x], [[s["ratio"] for s in init]]), "trained": ([x], [[s["ratio"] for s in after]])},
        "xlabel": "residual block", "ylabel": "‖F(x)‖ / ‖x‖"}], title="Residual branch magnitude per block")
    ctx.report.figure(path, "‖F(x)‖ / ‖x‖ per residual block, at init and after training")
    path = _channel_bars(init, ctx.path("channel_magnitudes.png"), "at init")
    ctx.report.figure(path, "At init: mean |output| of the first 20 channels of each block (the seed's Exercise 3 "
                            "figure: its model is never trained)")
    path = _channel_bars(after, ctx.path("channel_magnitudes_trained.png"), "trained")
    ctx.report.figure(path, f"After {config.epochs} epoch(s) of training: the same figure (not in the seed)")


def block_statistics(model: Any, batch: Any) -> list[dict[str, Any]]:
    """Per residual block of ``model.layer1``: ‖F(x)‖/‖x‖ (per image, batch mean), output mean/std,
    per-channel mean |output| (first 20), from forward hooks."""
    import torch

    stats: list[dict[str, Any]] = []
    handles = []
    for index, block in enumerate(model.layer1):
        entry: dict[str, Any] = {"block": index}
        stats.append(entry)

        def pre_hook(module: Any, inputs: Any, entry: dict = entry) -> None:
            entry["_x_norm"] = inputs[0].detach().flatten(1).norm(dim=1)

        def branch_hook(module: Any, inputs: Any, output: Any, entry: dict = entry) -> None:
            entry["_f_norm"] = output.detach().flatten(1).norm(dim=1)

        def out_hook(module: Any, inputs: Any, output: Any, entry: dict = entry) -> None:
            out = output.detach()
            entry["out_mean"] = float(out.mean())
            entry["out_std"] = float(out.std())
            entry["channel_abs_mean"] = out.mean(dim=(0, 2, 3)).abs()[:20].tolist()

        handles += [block.register_forward_pre_hook(pre_hook), block.bn2.register_forward_hook(branch_hook),
                    block.register_forward_hook(out_hook)]
    try:
        with torch.no_grad():
            model(batch)
    finally:
        for handle in handles:
            handle.remove()
    for entry in stats:
        f_norm, x_norm = entry.pop("_f_norm"), entry.pop("_x_norm")
        entry["ratio"] = float((f_norm / x_norm.clamp_min(1e-12)).mean())
    return stats


def _channel_bars(stats: list[dict[str, Any]], path: Any, state: str, title: str | None = None) -> Any:
    """Per block (16 at most), the mean |output| of its first 20 channels; saved to ``path`` (returned), or
    with ``path`` None the laid-out figure itself is returned, unsaved. ``title``: the suptitle, e.g.
    "resnet_deep · cifar10 · s0" (default: what the figure shows)."""
    import math

    from deeplab.reporting.figures import fit_text, integer_ticks, pyplot

    plt = pyplot()

    shown = stats[:16]
    cols = 4
    rows = max(1, math.ceil(len(shown) / cols))
    figure, axes = plt.subplots(rows, cols, figsize=(15, 3 * rows + 0.4), squeeze=False)
    for axis, entry in zip(axes.flat, shown):
        values = entry["channel_abs_mean"]
        axis.bar(range(len(values)), values)
        axis.set_title(f"block_{entry['block']} ({state}): residual magnitudes", fontsize=9)
        axis.set_xlabel("channel", fontsize=8)
        axis.set_ylabel("mean magnitude", fontsize=8)
        integer_ticks(axis.xaxis)  # channel indices
    for axis in list(axes.flat)[len(shown):]:
        axis.axis("off")
    figure.suptitle(title or f"Per-channel |mean output| of each residual block (first 20 channels, {state})",
                    fontsize=11)
    fit_text(figure)
    if path is None:
        return figure
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
