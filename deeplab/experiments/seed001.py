"""Seed 001 ("Day 9: Advanced CNN Architectures", CIFAR-10): ResNet-18 against its plain twin, and
the architecture table (VGG, ResNet-18/34/50, PlainNet-18, Inception).

The seed's training cells were never executed: it reports no accuracies, times
or parameter counts. Its protocol (``train_model``): SGD lr 0.1, momentum 0.9,
weight decay 5e-4, cosine annealing over 20 epochs, batch 128, random crop
(pad 4) + horizontal flip, test set evaluated every epoch. Its gradient-flow
figure (Part 8.2) takes one fresh batch after training and bars the L2 norm of
each weight gradient whose name contains "conv" (shortcut projections
excluded); ``resnet_vs_plain`` draws exactly that
(:func:`~deeplab.experiments.common.one_batch_conv_gradients`) and, beside it,
each conv layer's mean gradient L2 over the last epoch (a steadier measure of
the same profile).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from deeplab.experiments.callbacks import KeepModel
from deeplab.experiments.common import conv_layer_norms, learning_curves_figure, minutes, one_batch_conv_gradients
from deeplab.experiments.plots import plot_bars, plot_layer_bars
from deeplab.experiments.registry import register_recipe

if TYPE_CHECKING:  # pragma: no cover
    from deeplab.experiments.runner import ExperimentContext

__all__ = ["ARCHITECTURES"]

#: seed 001 Part 9's table (depth, key feature, year); inception from Part 6
ARCHITECTURES = {
    "vgg": ("VGGNet", "13 conv + 3 FC (the seed says 16 conv)", "Stacked 3×3 convs", "2014"),
    "resnet18": ("ResNet-18", "18 layers", "Skip connections", "2015"),
    "resnet34": ("ResNet-34", "34 layers", "Skip connections", "2015"),
    "resnet50": ("ResNet-50", "50 layers", "Bottleneck blocks", "2015"),
    "plainnet18": ("PlainNet-18", "18 layers", "No skip connections", "—"),
    "inception": ("Inception (deeplab network of the seed's module)", "3×3 stem + 6 modules", "Multi-scale branches", "2014"),
}

#: --quick: these are big CIFAR models; a few images per step keep a CPU smoke run short
_QUICK_BIG = {"batch_size": 4, "limit_train_batches": 2}


def _not_reported() -> str:
    return "not reported (cells not executed)"


def _range_ratio(values: list[float]) -> float | None:
    positive = [v for v in values if v > 0]
    return max(positive) / min(positive) if positive else None


@register_recipe(
    "resnet_vs_plain", seed="001", experiment="Parts 7–8: ResNet-18 against PlainNet-18 (curves, gradient flow)",
    title="Skip connections at 18 layers: ResNet-18 against PlainNet-18",
    dataset="cifar10",
    trainings="2: resnet18 and plainnet18, 20 epochs at batch 128, SGD 0.1 + cosine, wd 5e-4, crop + flip",
    full_cost="est. ≈ 15 min on one GPU; ≈ 10 h on a CPU",
    quick_cost="≈ 25 s",
)
def resnet_vs_plain(ctx: "ExperimentContext") -> None:
    runs = [ctx.train(name, name, quick=_QUICK_BIG, callbacks=lambda: [KeepModel()]) for name in ("resnet18", "plainnet18")]
    rows = []
    seed_panels, epoch_panels = [], []
    for t in runs:
        names, values = one_batch_conv_gradients(t.callbacks[0][0].model, t.configs[0])  # the seed's measure
        epoch_names, epoch_values = conv_layer_norms(t.results[0])
        ratio, epoch_ratio = _range_ratio(values), _range_ratio(epoch_values)
        seed_panels.append((f"{t.model}: one batch after training", names, values))
        epoch_panels.append((f"{t.model}: last-epoch mean", epoch_names, epoch_values))
        rows.append([t.model, f"{t.results[0]['parameters']:,}", t.cell(t.best("val_acc"), pct=True),
                     t.cell(t.test_acc, pct=True), t.cell(t.last("train_acc"), pct=True),
                     t.cell(t.last("train_loss"), digits=4), minutes(t),
                     "—" if ratio is None else f"{ratio:.1f}", "—" if epoch_ratio is None else f"{epoch_ratio:.1f}",
                     _not_reported()])
        ctx.data.setdefault("conv_gradient_l2_one_batch", {})[t.model] = dict(zip(names, values))
        ctx.data.setdefault("conv_gradient_l2_last_epoch", {})[t.model] = dict(zip(epoch_names, epoch_values))
    ctx.report.heading("Results")
    ctx.report.table("resnet_vs_plain", [
        "model", "parameters", "best test acc", "final test acc", "train acc (last epoch)", "train loss (last epoch)",
        "train time", "conv gradient range max/min (one batch, the seed's)", "… (last-epoch mean)",
        ctx.seed_header()], rows)
    ctx.report.text(
        "The seed prints the same summary (parameters, best and final test accuracy, time) and the gradient "
        "range ratio max/min over the conv layers, but its cells have no output. The seed expects ResNet-18 "
        "ahead and a flatter gradient profile for it. Its ratio comes from one fresh batch after training "
        "(first column); the last-epoch mean of every step's norm is the steadier measure of the same profile.")
    learning_curves_figure(ctx, runs, "learning_curves.png", "ResNet-18 vs PlainNet-18")
    path = plot_layer_bars(ctx.path("gradient_flow.png"), seed_panels, ylabel="gradient L2 norm (log)",
                           title="Gradient norms by layer (seed 001 Part 8.2)", log=True)
    ctx.report.figure(path, "Per-layer conv weight gradient norms of one fresh training batch after training, as the "
                            "seed measures them (log scale)")
    path = plot_layer_bars(ctx.path("gradient_flow_last_epoch.png"), epoch_panels, ylabel="gradient L2 norm (log)",
                           title="Gradient norms by layer, mean over the last epoch", log=True)
    ctx.report.figure(path, "Per-layer conv weight gradient norms, mean over the last epoch's steps (log scale)")


@register_recipe(
    "architectures", seed="001", experiment="Part 9: architecture comparison (parameters) and their training",
    title="Architectures: parameters and training of VGG, ResNet-18/34/50, PlainNet-18 and Inception",
    dataset="cifar10",
    trainings="6: vgg, resnet18, resnet34, resnet50, plainnet18, inception, 20 epochs each at batch 128",
    full_cost="est. ≈ 1.5 h on one GPU; days on a CPU",
    quick_cost="≈ 2 min (one 1000-image evaluation per big model)",
)
def architectures(ctx: "ExperimentContext") -> None:
    from deeplab.models import DATASET_SHAPES, count_parameters, create_model

    channels, size, _, classes = DATASET_SHAPES[ctx.dataset]
    params_rows = []
    counts = {}
    for name, (title, depth, feature, year) in ARCHITECTURES.items():
        here = count_parameters(create_model(name, in_channels=channels, image_size=size, num_classes=classes))
        cifar = count_parameters(create_model(name, in_channels=3, image_size=32, num_classes=10))
        counts[name] = {"parameters": here, "parameters_cifar10": cifar}
        params_rows.append([title, f"`{name}`", f"{here:,}", f"{cifar:,}", depth, feature, year])
    ctx.data["parameters"] = counts
    ctx.report.heading("Parameters (seed 001 Part 9's table)")
    ctx.report.table("parameters", [
        "architecture", "model", f"parameters on {ctx.dataset_name()}", "parameters on CIFAR-10 (seed's input)",
        "depth", "key feature", "year"], params_rows)
    ctx.report.text("The seed prints this table from its models but its cells have no output, so there are no "
                    "seed counts to compare with; the CIFAR-10 column is what its code builds.")
    path = plot_bars(ctx.path("parameters.png"), list(ARCHITECTURES), {
        "parameters (M)": [counts[n]["parameters"] / 1e6 for n in ARCHITECTURES]},
        ylabel="parameters (millions)", title="Model complexity: parameter count")
    ctx.report.figure(path, f"Parameter counts on {ctx.dataset_name()}")

    runs = [ctx.train(name, name, quick=_QUICK_BIG) for name in ARCHITECTURES]
    rows = [[t.model, f"{t.results[0]['parameters']:,}", t.cell(t.best("val_acc"), pct=True), t.cell(t.test_acc, pct=True),
             t.cell(t.last("train_acc"), pct=True), minutes(t), t.cell(lambda r: r["images_per_s"], digits=0),
             _not_reported()] for t in runs]
    ctx.report.heading("Training")
    ctx.report.table("training", [
        "model", "parameters", "best test acc", "final test acc", "train acc (last epoch)", "train time", "images/s",
        ctx.seed_header()], rows)
    learning_curves_figure(ctx, runs, "learning_curves.png", "Architectures: learning curves")
