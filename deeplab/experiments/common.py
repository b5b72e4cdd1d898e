"""Pieces several recipes share: the seeds' number formatting and standard figures."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

from deeplab.experiments.plots import plot_learning_curves, plot_series

if TYPE_CHECKING:  # pragma: no cover
    from deeplab.experiments.runner import ExperimentContext, Training

__all__ = ["seed_pct", "seed_value", "minutes", "learning_curves_figure", "first_epoch_layer_profile_figure",
           "conv_layer_norms", "last_epoch_layer_l2", "one_batch_conv_gradients"]


def seed_pct(value: float | None, note: str = "") -> str:
    """A seed's reported accuracy (already in %), or '—'."""
    if value is None:
        return "—" if not note else note
    return f"{value:.2f}%" + (f" {note}" if note else "")


def seed_value(value: float | None, digits: int = 2, unit: str = "") -> str:
    return "—" if value is None else f"{value:.{digits}f}{unit}"


def minutes(training: "Training", key: str = "train_time_s") -> str:
    """Mean training time per run, in minutes when ≥ 1 min else seconds."""
    values = training.values(lambda r: r[key])
    mean = training.mean(values)
    if mean is None:
        return "—"
    return f"{mean / 60:.1f} min" if mean >= 60 else f"{mean:.1f} s"


def learning_curves_figure(ctx: "ExperimentContext", trainings: Sequence["Training"], name: str, title: str,
                           caption: str | None = None) -> None:
    path = plot_learning_curves(trainings, ctx.path(name), title)
    ctx.report.figure(path, caption or title)


def last_epoch_layer_l2(result: dict[str, Any], epoch: int = -1) -> tuple[list[str], list[float]]:
    """(layer names without the NN_ prefix, that epoch's mean per-layer gradient L2) from results['grad']."""
    grad = result.get("grad") or {}
    per_epoch = grad.get("per_epoch_layer_l2") or []
    names = [n.split("_", 1)[1] if "_" in n else n for n in grad.get("layers") or []]
    if not per_epoch:
        return names, []
    return names, list(per_epoch[epoch])


def conv_layer_norms(result: dict[str, Any], epoch: int = -1) -> tuple[list[str], list[float]]:
    """Seed 001's filter: the layers whose name contains 'conv' (weights only; shortcuts excluded)."""
    names, values = last_epoch_layer_l2(result, epoch)
    pairs = [(n, v) for n, v in zip(names, values) if "conv" in n]
    return [n for n, _ in pairs], [v for _, v in pairs]


def one_batch_conv_gradients(model: Any, config: Any) -> tuple[list[str], list[float]]:
    """Seed 001 Part 8.2's ``get_gradient_norms`` on a trained model: one fresh training batch
    (augmented, ``model.train()``), ``CrossEntropyLoss``, one backward, then the L2 norm of every
    parameter gradient whose name contains "conv" and "weight" (its filter; shortcut convs excluded).

    ``config``: the run's resolved :class:`~deeplab.config.FitConfig` (data set, batch size,
    augmentation, normalization). The model's gradients are zeroed before and after; its batch-norm
    running statistics see one more batch, as in the seed.
    """
    import copy

    import torch
    import torch.nn.functional as F

    from deeplab.training.fit import datamodule_for

    datamodule = datamodule_for(config)  # the run's own data path: its batches, augmentation, statistics
    datamodule.prepare_data()
    datamodule.setup()
    images, labels = next(iter(datamodule.train_dataloader()))  # the seed: next(iter(train_loader))
    device = next(model.parameters()).device
    inputs = datamodule.device_transform(images.to(device), training=True)
    model = copy.deepcopy(model).train()  # the recipe's trained model stays as it was
    model.zero_grad(set_to_none=True)
    loss = F.cross_entropy(model(inputs), labels.to(device))
    loss.backward()
    pairs = [(name, float(param.grad.norm())) for name, param in model.named_parameters()
             if param.grad is not None and "conv" in name and "weight" in name]
    return [name for name, _ in pairs], [value for _, value in pairs]


def first_epoch_layer_profile_figure(ctx: "ExperimentContext", trainings: Sequence["Training"], name: str,
                                     title: str, caption: str) -> None:
    """Per-layer mean gradient L2 over the first epoch against depth (log), one line per training."""
    series = {}
    for t in trainings:
        runs_x, runs_y = [], []
        for result in t.results:
            _, values = last_epoch_layer_l2(result, 0)
            if values:
                runs_x.append(list(range(1, len(values) + 1)))
                runs_y.append(values)
        if runs_y:
            series[t.label] = (runs_x, runs_y)
    path = plot_series(ctx.path(name), [{"series": series, "xlabel": "parameterized layer (input → output)",
                                         "ylabel": "mean ‖∇W‖₂ over the first epoch", "log": True}], title=title)
    ctx.report.figure(path, caption)
