"""Seed 003 (EE449 HW1, CIFAR-10): XOR in NumPy, conv2d from scratch, five architectures, ReLU vs
sigmoid, and learning rates with a scheduled rate.

Protocols, from the seed's code:

* Part 3 (``part3.py``): 15 epochs, batch 50, Adam lr 0.001, a 90/10 split of
  the training set for validation, Gaussian noise 0.007·randn added to every
  training batch, He-uniform init; the weights of the first layer are shown.
* Part 4: the same models with sigmoid activations, ``SGD(momentum=0.0)``;
  it records ``loss_curve`` (mean loss of every 10 batches) and
  ``grad_curve`` (total gradient L2 at every 10th batch). Its learning rate
  and epochs lie in lines of ``part4.py`` the seed's text does not show; here
  lr 0.01 and Part 3's 15 epochs.
* Part 5: cnn_5 with ``SGD(momentum=0.0)`` at lr 0.1, 0.01, 0.001 for 20
  epochs each; then the "scheduled learning rate": 0.1 until validation
  accuracy reaches 65 %, 0.01 until it reaches 70 %, then 0.001 (up to 30
  epochs per phase, weights kept, validation accuracy measured every 10
  batches). Here one training of at most 3 × 30 epochs with the same phases,
  the same checks and caps (:class:`~deeplab.experiments.callbacks.LrDropOnValAccuracy`);
  after a drop the rest of that epoch trains at the new rate, where the seed
  starts the next phase on a fresh epoch.

The seed reports parameter counts (mlp_1 98,666, cnn_3 76,194, cnn_4 77,490,
cnn_5 40,682), XOR validation accuracies (tanh 0.99, sigmoid 0.94, ReLU 0.98)
and, for the rest, conclusions without numbers: the MLPs underfit, cnn_3 and
cnn_4 overfit, cnn_5 generalizes best with the fewest parameters; ReLU keeps
larger gradients and lowers the loss faster than sigmoid; the scheduled rate
can match Adam.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import numpy as np

from deeplab.experiments.callbacks import SEED003_LR_FACTOR, SEED003_LR_TARGETS, KeepModel, LrDropOnValAccuracy, SeedCurves
from deeplab.experiments.common import learning_curves_figure, minutes
from deeplab.experiments.plots import plot_series, plot_weight_grid
from deeplab.experiments.registry import register_recipe
from deeplab.experiments.runner import format_values

if TYPE_CHECKING:  # pragma: no cover
    from deeplab.experiments.runner import ExperimentContext

__all__ = ["SEED003", "MODELS"]

MODELS = ("mlp_1", "mlp_2", "cnn_3", "cnn_4", "cnn_5")

SEED003 = {
    # the report's counts; mlp_2's from its text ("Now our number of parameters is 101034")
    "parameters": {"mlp_1": 98666, "mlp_2": 101034, "cnn_3": 76194, "cnn_4": 77490, "cnn_5": 40682},
    "xor_accuracy": {"tanh": 0.99, "sigmoid": 0.94, "relu": 0.98},
    "conclusion_architectures": {"mlp_1": "underfits", "mlp_2": "underfits (no better than mlp_1)",
                                 "cnn_3": "overfits (train ≫ val)", "cnn_4": "overfits more than cnn_3",
                                 "cnn_5": "best validation, fewest parameters"},
}

#: Part 4's optimizer: SGD without momentum; its learning rate is not in the seed's surviving text
PART4 = dict(optimizer="sgd", momentum=0.0, lr=0.01)
#: Part 5: SGD without momentum, 20 epochs per fixed rate; the schedule: up to 30 epochs per phase
PART5 = dict(optimizer="sgd", momentum=0.0)
PART5_EPOCHS = 20
#: the scheduled rate: three phases (0.1, 0.01, 0.001) of at most 30 epochs, accuracy checked every 10 batches
PART5_PHASE_EPOCHS = 30
PART5_SCHEDULED_EPOCHS = 3 * PART5_PHASE_EPOCHS
PART5_CHECK_EVERY = 10


def _curve_every(ctx: "ExperimentContext") -> int:
    return 1 if ctx.quick else 10


def _first_layer_weights(model: Any, dataset_shape: tuple[int, int, int]) -> np.ndarray:
    """(N, C, H, W) first-layer weights; an MLP's rows become C×H×W images."""
    from deeplab.models.layers import parameterized_layers

    weight = parameterized_layers(model)[0][2].detach().cpu().numpy()
    if weight.ndim == 2:  # fc1: (hidden, C·H·W)
        return weight.reshape(weight.shape[0], *dataset_shape)
    return weight


# ---------------------------------------------------------------------------------------------
@register_recipe(
    "cifar_architectures", seed="003", experiment="Part 3: five architectures (MLPs and CNNs)",
    title="Five architectures: mlp_1, mlp_2, cnn_3, cnn_4, cnn_5 — accuracy, generalization, first-layer weights",
    dataset="cifar10",
    trainings="5: each 15 epochs at batch 50, Adam 0.001, 10 % validation, input noise 0.007",
    full_cost="≈ 40 min on a 1-thread CPU; est. ≈ 10 min on one GPU",
    quick_cost="≈ 22 s",
)
def cifar_architectures(ctx: "ExperimentContext") -> None:
    from deeplab.models import DATASET_SHAPES

    channels, height, width, _ = DATASET_SHAPES[ctx.dataset]
    runs = [ctx.train(name, name, callbacks=lambda: [KeepModel()]) for name in MODELS]
    rows = []
    for t in runs:
        gap = [None if a is None or b is None else a - b for a, b in zip(t.last("train_acc"), t.last("val_acc"))]
        seed_params = SEED003["parameters"][t.model]
        rows.append([t.model, f"{t.results[0]['parameters']:,}", "—" if seed_params is None else f"{seed_params:,}",
                     t.cell(t.last("train_acc"), pct=True), t.cell(t.last("val_acc"), pct=True),
                     format_values(gap, scale=100, unit=" pt"), t.cell(t.test_acc, pct=True), minutes(t),
                     SEED003["conclusion_architectures"][t.model]])
    ctx.report.heading("Results")
    ctx.report.table("architectures", [
        "model", "parameters", f"{ctx.seed_header()} parameters (CIFAR-10)", "train acc (last epoch)",
        "validation acc (last epoch)", "train − validation", "test acc", "train time",
        f"{ctx.seed_header()} conclusion"], rows)
    ctx.report.text(
        "The seed reports no accuracies for this part, only its plots and conclusions (last column). "
        "Validation is the seed's 10 % hold-out of the training set; the test column is the test split, "
        "evaluated once after training (the seed calls its hold-out the test set). Its parameter counts are for "
        "3×32×32 inputs; on another data set only the first layer's inputs and the flattened size change.")
    best = max(runs, key=lambda t: t.mean(t.last("val_acc")) or -1)
    ctx.data["best_validation_model"] = None if ctx.quick else best.model
    ctx.report.conclusion(f"Best validation accuracy here: **{best.model}** (seed: cnn_5).")
    learning_curves_figure(ctx, runs, "learning_curves.png", "Training and validation curves")
    for t in runs:
        keeper = t.callbacks[0][0]
        if keeper.model is None:
            continue
        weights = _first_layer_weights(keeper.model, (channels, height, width))
        path = plot_weight_grid(weights, ctx.path(f"weights_{t.model}.png"),
                                f"{t.model}: first-layer weights ({weights.shape[0]} units)")
        ctx.report.figure(path, f"{t.model}: first-layer weights after training (each scaled to [0, 1])")


# ---------------------------------------------------------------------------------------------
@register_recipe(
    "cifar_activations", seed="003", experiment="Part 4: ReLU against sigmoid (loss and gradient curves)",
    title="ReLU against sigmoid in the five architectures: training loss and gradient norm",
    dataset="cifar10",
    trainings="10: the five models × {ReLU, sigmoid}, 15 epochs at batch 50, SGD 0.01 (no momentum)",
    full_cost="≈ 1.5 h on a 1-thread CPU; est. ≈ 15 min on one GPU",
    quick_cost="≈ 35 s",
)
def cifar_activations(ctx: "ExperimentContext") -> None:
    every = _curve_every(ctx)
    pairs = {}
    for name in MODELS:
        pairs[name] = {act: ctx.train(f"{name}-{act}", name, model_kwargs={"activation": act},
                                      callbacks=lambda: [SeedCurves(every)], **PART4)
                       for act in ("relu", "sigmoid")}
    rows = []
    for name, runs in pairs.items():
        row = [name]
        for act in ("relu", "sigmoid"):
            t = runs[act]
            grads = [np.mean([p["grad_l2"] for p in cb[0].points if p["grad_l2"] is not None] or [np.nan])
                     for cb in t.callbacks]
            row += [t.cell(t.last("train_loss"), digits=4), t.cell([None if np.isnan(g) else g for g in grads], digits=4),
                    t.cell(t.last("val_acc"), pct=True)]
        rows.append(row)
    ctx.report.heading("Results")
    ctx.report.table("activations", [
        "model", "ReLU train loss (last epoch)", "ReLU mean gradient L2", "ReLU validation acc",
        "sigmoid train loss (last epoch)", "sigmoid mean gradient L2", "sigmoid validation acc"], rows)
    ctx.report.text(
        f"Gradient L2 = total L2 norm of all parameter gradients at every {every}th batch (the seed's `grad_curve`), "
        "averaged over the run. The seed reports no numbers here; its conclusion: \"the ReLU function consistently "
        "exhibit[s] a larger gradient magnitude compared to the sigmoid\" and lowers the training loss faster, "
        "more so in deeper models. Part 4's learning rate is not in the seed's surviving text; this recipe uses "
        f"SGD lr {PART4['lr']:g} without momentum.")
    ctx.data["curves"] = {name: {act: [cb[0].summary() for cb in t.callbacks] for act, t in runs.items()}
                          for name, runs in pairs.items()}
    for name, runs in pairs.items():
        panels = []
        for key, ylabel, log in (("loss", "training loss (mean of the window)", False),
                                 ("grad_l2", "total gradient L2", True)):
            series = {}
            for act, t in runs.items():
                xs = [[p["step"] for p in cb[0].points if p[key] is not None] for cb in t.callbacks]
                ys = [[p[key] for p in cb[0].points if p[key] is not None] for cb in t.callbacks]
                series[act] = (xs, ys)
            panels.append({"series": series, "xlabel": "step", "ylabel": ylabel, "log": log})
        path = plot_series(ctx.path(f"curves_{name}.png"), panels, title=f"{name}: ReLU vs sigmoid")
        ctx.report.figure(path, f"{name}: training loss and gradient norm every {every} batches, ReLU vs sigmoid")


def _drop_text(event: dict[str, Any]) -> str:
    where = f"epoch {event['epoch']}" + (f" batch {event['batch']}" if event.get("batch") else "")
    why = (f"val {100 * event['val_acc']:.1f}%" if event.get("target") is not None
           else f"{PART5_PHASE_EPOCHS} epochs, target not reached")
    return f"{where}: {event['lr_before']:g}→{event['lr_after']:g} ({why})"


# ---------------------------------------------------------------------------------------------
@register_recipe(
    "learning_rates", seed="003", experiment="Part 5: learning rates 0.1 / 0.01 / 0.001 and a scheduled rate",
    title="Learning rate: cnn_5 at 0.1, 0.01 and 0.001, and the scheduled rate that drops at 65 % / 70 % validation",
    dataset="cifar10",
    trainings="4: cnn_5 with SGD (no momentum), 20 epochs at each fixed rate; the scheduled rate three phases of "
              "≤ 30 epochs, validation checked every 10 batches",
    full_cost="est. ≤ 3 h on a 1-thread CPU (≤ 150 epochs of cnn_5, the scheduled run evaluating every 10 batches); "
              "est. ≈ 20 min on one GPU",
    quick_cost="≈ 27 s",
)
def learning_rates(ctx: "ExperimentContext") -> None:
    every = _curve_every(ctx)
    fixed = [ctx.train(f"cnn_5-lr{lr:g}", "cnn_5", lr=lr, epochs=PART5_EPOCHS, callbacks=lambda: [SeedCurves(every)],
                       **PART5) for lr in (0.1, 0.01, 0.001)]
    scheduled = ctx.train("cnn_5-scheduled", "cnn_5", lr=0.1, epochs=PART5_SCHEDULED_EPOCHS,
                          callbacks=lambda: [SeedCurves(every), LrDropOnValAccuracy(
                              check_every=PART5_CHECK_EVERY, phase_epochs=PART5_PHASE_EPOCHS)], **PART5)
    rows = []
    for t in [*fixed, scheduled]:
        drops = "—"
        if t is scheduled:
            events = t.callbacks[0][1].events
            drops = "; ".join(_drop_text(e) for e in events) or "none (targets not reached)"
        epochs_to_target = []
        for result in t.results:
            hits = [e["epoch"] for e in result["history"] if e["val_acc"] >= SEED003_LR_TARGETS[0]]
            epochs_to_target.append(hits[0] if hits else None)
        rows.append([t.label, f"{t.configs[0].lr:g}" + (" → ×0.1 at 65 %, 70 %" if t is scheduled else ""),
                     t.cell(t.last("train_loss"), digits=4), t.cell(t.best("val_acc"), pct=True),
                     t.cell(t.last("val_acc"), pct=True), t.cell(t.test_acc, pct=True),
                     format_values(epochs_to_target, digits=0 if len(ctx.seeds) == 1 else 1), drops, minutes(t)])
    ctx.report.heading("Results")
    ctx.report.table("learning_rates", [
        "run", "learning rate", "train loss (last epoch)", "best validation acc", "final validation acc", "test acc",
        f"first epoch with validation ≥ {100 * SEED003_LR_TARGETS[0]:g}%", "rate drops", "train time"], rows)
    ctx.report.text(
        "The seed reports no numbers for this part. Its schedule restarts training with the next rate once "
        f"validation accuracy reaches {', '.join(f'{100 * t:g}%' for t in SEED003_LR_TARGETS)} (rate "
        f"×{SEED003_LR_FACTOR:g}), each phase at most {PART5_PHASE_EPOCHS} epochs; here too the accuracy is measured "
        f"every {PART5_CHECK_EVERY} batches and the rate drops at that batch, but the rest of that epoch trains at "
        "the new rate where the seed starts the next phase on a fresh epoch. "
        "Its conclusion: a high rate converges fast but unstably, a low one slowly; the scheduled rate combines "
        "both and can match Adam (compare cnn_5 in `cifar_architectures`).")
    ctx.data["scheduled_lr_events"] = [cb[1].events for cb in scheduled.callbacks]
    ctx.data["scheduled_lr_per_epoch"] = [cb[1].lrs for cb in scheduled.callbacks]
    ctx.data["curves"] = {t.label: [cb[0].summary() for cb in t.callbacks] for t in [*fixed, scheduled]}
    loss_series, acc_series = {}, {}
    for t in [*fixed, scheduled]:
        xs = [[p["step"] for p in cb[0].points] for cb in t.callbacks]
        ys = [[p["loss"] for p in cb[0].points] for cb in t.callbacks]
        loss_series[t.label] = (xs, ys)
        acc_series[t.label] = ([[e["epoch"] for e in r["history"]] for r in t.results], t.curves("val_acc"))
    marks = [(e["epoch"], f"lr→{e['lr_after']:g}") for e in scheduled.callbacks[0][1].events]
    path = plot_series(ctx.path("learning_rates.png"), [
        {"series": loss_series, "xlabel": "step", "ylabel": f"training loss (mean of {every} batches)", "log": True},
        {"series": acc_series, "xlabel": "epoch", "ylabel": "validation accuracy (%)", "scale": 100.0, "marks": marks},
    ], title="cnn_5: learning rates")
    ctx.report.figure(path, "Training loss and validation accuracy per learning rate (dotted: the scheduled run's drops)")


# ---------------------------------------------------------------------------------------------
@register_recipe(
    "xor_boundary", seed="003", experiment="Parts I–II: a hand-written two-layer net on noisy XOR",
    title="XOR in NumPy: decision boundaries of the two-layer net with tanh, sigmoid and ReLU",
    dataset=None,
    trainings="3 NumPy trainings (tanh, sigmoid, ReLU), 50,000 full-batch epochs on 1,000 points",
    full_cost="≈ 15 s per seed on a CPU",
    quick_cost="≈ 7 s",
)
def xor_boundary(ctx: "ExperimentContext") -> None:
    from deeplab.experiments.numpy_nets import accuracy, make_xor_data, plot_decision_boundary, train_xor

    epochs = ctx.options.epochs or (2000 if ctx.quick else 50000)
    activations = ("tanh", "sigmoid", "relu")
    results: dict[str, list[dict[str, Any]]] = {a: [] for a in activations}
    losses: dict[str, list[list[float]]] = {a: [] for a in activations}
    for act in activations:
        for seed in ctx.seeds:
            started = time.perf_counter()
            data = make_xor_data(np.random.default_rng(seed))
            net, history = train_xor(act, seed=seed, epochs=epochs)
            val = accuracy(net, data.x_val, data.y_val)
            train = accuracy(net, data.x_train, data.y_train)
            seconds = time.perf_counter() - started
            results[act].append({"seed": seed, "val_acc": val, "train_acc": train, "final_loss": float(history[-1]),
                                 "seconds": round(seconds, 3)})
            losses[act].append(history[:: max(1, epochs // 500)].tolist())
            ctx.echo(f"[xor_boundary] {act} (seed {seed}): validation acc {100 * val:.1f}%, train acc "
                     f"{100 * train:.1f}%, {epochs} epochs, {seconds:.1f} s")
            if seed in ctx.seeds[:3]:
                path = plot_decision_boundary(
                    net, data.x_val, data.y_val, ctx.path(f"boundary_{act}_seed{seed}.png"),
                    title=f"Activation: {act}, epochs: {epochs}, accuracy: {val:.2f} (seed {seed})")
                results[act][-1]["figure"] = ctx.relative(path)
    rows = []
    for act in activations:
        vals = [r["val_acc"] for r in results[act]]
        rows.append([act, format_values(vals, digits=2), f"{SEED003['xor_accuracy'][act]:.2f}",
                     format_values([r["train_acc"] for r in results[act]], digits=3),
                     format_values([r["final_loss"] for r in results[act]], digits=4)])
    ctx.report.heading("Results")
    ctx.report.table("xor", ["activation", f"validation accuracy ({epochs} epochs)", "seed 003 (50,000 epochs)",
                             "training accuracy", "final training loss (MSE)"], rows)
    ctx.report.text(
        "The seed's network and update rule (`deeplab.experiments.numpy_nets.train_xor`, `rule=\"seed\"`): 2 → 4 → 1 with the "
        "biases folded into the weights, loss mean((o − y)²), full-batch steps of lr 0.001 on 1,000 noisy XOR points "
        "(4 Gaussian blobs, std 0.4), 100 validation points. The seed's figures are one run each; they change from "
        "run to run (its Fig. 6) — use `--seeds 0,1,2`."
        + (f" **--quick** trains {epochs} epochs instead of 50,000." if ctx.quick else ""))
    for act in activations:
        for entry in results[act]:
            if "figure" in entry:
                ctx.report.figure(ctx.path(entry["figure"]), f"Decision boundary, {act} (seed {entry['seed']})")
    step = max(1, epochs // 500)
    path = plot_series(ctx.path("xor_loss.png"), [{
        "series": {a: ([list(range(0, step * len(run), step)) for run in losses[a]], losses[a]) for a in activations},
        "xlabel": "epoch", "ylabel": "training loss (MSE)", "log": True}], title="XOR: training loss")
    ctx.report.figure(path, "Training loss against epoch")
    ctx.data["xor"] = results
    ctx.data["epochs"] = epochs


# ---------------------------------------------------------------------------------------------
@register_recipe(
    "conv2d_from_scratch", seed="003", experiment="Part III: a convolutional layer in NumPy",
    title="conv2d from scratch: the NumPy convolution against torch.nn.functional.conv2d",
    dataset=None,
    trainings="none: NumPy conv2d on MNIST digits (or a synthetic digit) and random tensors, checked against torch",
    full_cost="≈ 6 s on a CPU",
    quick_cost="≈ 5 s",
)
def conv2d_from_scratch(ctx: "ExperimentContext") -> None:
    import torch
    import torch.nn.functional as F

    from deeplab.experiments.numpy_nets import conv2d, conv2d_reference, edge_kernels, plot_conv2d_outputs, synthetic_image

    images, source = _mnist_digits(ctx, 4)
    if images is None:
        images, source = synthetic_image(28)[None, None], "a synthetic '7' (no MNIST files found)"
    kernel = edge_kernels(images.shape[1])
    out = plot_conv2d_outputs(images, ctx.path("conv2d_outputs.png"), kernel=kernel)

    rng = np.random.default_rng(ctx.seeds[0])
    cases = [("seed's setting: digits × 8 edge filters", images, kernel, 1, 0)]
    cases += [(f"random, stride {s}, padding {p}", rng.standard_normal((2, 3, 17, 15)),
               rng.standard_normal((5, 3, k, k)), s, p) for k, s, p in ((3, 1, 0), (5, 2, 1), (3, 3, 2))]
    rows = []
    diffs = []
    for name, x, w, stride, padding in cases:
        started = time.perf_counter()
        ours = conv2d(x, w, stride, padding)
        ours_s = time.perf_counter() - started
        started = time.perf_counter()
        theirs = F.conv2d(torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(np.ascontiguousarray(w)),
                          stride=stride, padding=padding).numpy()
        torch_s = time.perf_counter() - started
        small = x.shape[0] * w.shape[0] * ours.shape[2] * ours.shape[3] <= (5_000 if ctx.quick else 50_000)
        loops_s = loops_diff = None
        if small:
            started = time.perf_counter()
            loops = conv2d_reference(x, w, stride, padding)
            loops_s = time.perf_counter() - started
            loops_diff = float(np.max(np.abs(loops - ours)))
        diff = float(np.max(np.abs(ours - theirs)))
        diffs.append(diff)
        rows.append([name, str(tuple(x.shape)), str(tuple(w.shape)), str(tuple(ours.shape)), f"{diff:.2e}",
                     "—" if loops_diff is None else f"{loops_diff:.2e}", f"{1e3 * ours_s:.2f}",
                     "—" if loops_s is None else f"{1e3 * loops_s:.1f}", f"{1e3 * torch_s:.2f}"])
    ctx.report.heading("Results")
    ctx.report.table("conv2d", [
        "case", "input (B, C, H, W)", "kernel (O, C, kh, kw)", "output", "max |numpy − torch|",
        "max |vectorised − seed's loops|", "numpy (ms)", "seed's loops (ms)", "torch (ms)"], rows)
    worst = max(diffs)
    ctx.echo(f"[conv2d_from_scratch] {len(cases)} cases against torch.nn.functional.conv2d: max |difference| {worst:.2e}")
    ctx.report.bullets([
        f"largest difference from `torch.nn.functional.conv2d`: **{worst:.2e}** (float64) — "
        + ("agreement to rounding error" if worst < 1e-9 else "**disagreement**"),
        f"input images: {source}",
        "the seed reports no numbers for this part, only its Fig. 7 (one row per image, one column per filter)",
        "the seed's kernels (`kernel.npy`) are not in its text; 8 fixed 3×3 filters stand in (Sobel x/y, two "
        "diagonals, Laplacian, line detectors, box blur)",
    ])
    ctx.report.figure(ctx.path("conv2d_outputs.png"),
                      "Output maps: one row per image, one column per filter (cf. the seed's Fig. 7)")
    ctx.data["max_abs_diff"] = worst
    ctx.data["output_shape"] = list(out.shape)
    ctx.data["source"] = source


def _mnist_digits(ctx: "ExperimentContext", count: int) -> tuple[np.ndarray | None, str]:
    """The first ``count`` MNIST test digits as (count, 1, 28, 28) floats in [0, 1]; ``(None, "")`` when the
    files are absent (the recipe then says it used a synthetic digit). A corrupt file is an error, not absent."""
    from deeplab.data.datamodules import MNISTDataModule, resolve_data_dir

    root = resolve_data_dir(ctx.options.data_dir)
    datamodule = MNISTDataModule(root, download=False)
    if not datamodule.files_present():  # absent: no MNIST on this machine (corrupt files raise here, clearly)
        return None, ""
    images_u8, labels = datamodule.split("test")
    images = images_u8[:count].numpy().astype(np.float64) / 255.0
    return images, (f"the first {count} MNIST test digits ({', '.join(map(str, labels[:count].tolist()))}) "
                    f"from {root}")

