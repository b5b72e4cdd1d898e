"""Gradient-flow instrumentation: per-layer and total gradient norms, cheaply.

Each seed measures vanishing/exploding gradients its own way; this callback
records all of them from the complete gradients of a step, as the module measured them between the
gradient and the update (before a clip; ``on_gradient_norms``, for eager and compiled steps alike;
under another LightningModule, from ``.grad`` in ``on_before_optimizer_step``):

- per layer (each parameterized module, in network order): L2 norm of the
  weight gradient — seed 001's gradient-flow bars;
- the total L2 norm over all parameters — seed 003's ``grad_curve``;
- the total L1 norm Σ|g| — seed 000's "gradient L1-norm", and its mean over
  every step of the first epoch (seed 000, fresh networks on Fashion-MNIST:
  18.19 / 18.59 / 696.42 for cnn15 plain (cell [14]) / skip1 / skip2; its
  Part 3 table's 10.62 for the plain net is epoch 11 of that same object
  trained again, ``--grad-l1-epoch 11`` on a continued run);
- the first layer's gradient norm — seed 004's ``conv1.weight`` measure.

Cost: norms come from two ``torch._foreach_norm`` calls over all gradients
and stay on the device; values are copied to the host in one transfer per
flush (every 50 records and at each epoch's end), never once per parameter.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch

from deeplab.callbacks.base import EpochObserver, GradientObserver
from deeplab.models.layers import parameterized_layers
from deeplab.training.optim import gradient_norms

__all__ = ["GradientNorms", "gradient_norm_vector", "total_l1_norm", "write_scalars", "plot_layer_profile"]

FLUSH_EVERY_RECORDS = 50


def total_l1_norm(grads: list[torch.Tensor]) -> torch.Tensor:
    """Σ|g| over all gradients, on the device (seed 000's "gradient L1-norm")."""
    return gradient_norms(grads, (), "l1")[1]


def gradient_norm_vector(parameters: list[torch.Tensor], layer_weights: list[torch.Tensor]) -> torch.Tensor:
    """On the device: [total L2, total L1, L2 of each layer's weight gradient] (missing gradients count 0);
    :func:`deeplab.training.optim.gradient_norms`, the function every step measures with, over ``.grad``."""
    present = [p for p in parameters if p.grad is not None]
    if not present:
        return torch.zeros(2 + len(layer_weights))
    positions = {id(p): i for i, p in enumerate(present)}
    return gradient_norms([p.grad for p in present], [positions.get(id(w), -1) for w in layer_weights], "full")


class GradientNorms(EpochObserver, GradientObserver):
    """Logs gradient norms every ``every_n_steps`` steps; see the module docstring.

    TensorBoard tags: ``grad/l2/<NN_layer>``, ``grad/l2_total``,
    ``grad/l1_total``, ``grad/first_layer`` (+ ``grad_hist/<layer>`` when
    ``histograms_every_n_steps`` > 0). ``results.json`` gets ``grad``:
    ``layers``, ``first_epoch_mean_l1`` (over every step of the first epoch;
    with ``l1_epoch`` = N > 1 it is None and ``epoch_mean_l1`` holds epoch N's),
    ``per_epoch_layer_l2`` (per epoch, each layer's mean L2 in network order),
    and a PNG ``grad_norms.png`` shows the per-layer profile against depth.
    """

    def __init__(self, every_n_steps: int = 10, histograms_every_n_steps: int = 0, run_dir: str | Path | None = None,
                 l1_epoch: int = 1):
        if every_n_steps < 1:
            raise ValueError("every_n_steps must be ≥ 1")
        if l1_epoch < 1:
            raise ValueError("l1_epoch must be ≥ 1")
        #: the epoch (0-based) whose every step's total L1 is averaged: seed 000 takes epoch 1 of a
        #: fresh network; its Part 3 plain net's 10.62 is epoch 11 of a continued one (--grad-l1-epoch 11)
        self.l1_epoch = l1_epoch - 1
        self.every_n_steps = every_n_steps
        self.histograms_every_n_steps = histograms_every_n_steps
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.layer_names: list[str] = []
        self._parameters: list[torch.Tensor] = []
        self._layer_weights: list[torch.Tensor] = []
        self._pending: list[tuple[int, torch.Tensor]] = []  # (step, norm vector) not yet on the host
        self._epoch_sum: torch.Tensor | None = None  # per-layer L2 sums of this epoch (device)
        self._epoch_count = 0
        self._first_epoch_l1_sum: torch.Tensor | None = None
        self._first_epoch_steps = 0
        #: host copies, for results.json and tests
        self.records: list[dict[str, Any]] = []
        self.per_epoch_layer_l2: list[list[float]] = []
        self.first_epoch_mean_l1: float | None = None
        self.figure_path: Path | None = None
        self._current_epoch = 0  # the epoch in progress when fit ended (for the partial profile)

    # ------------------------------------------------------------ setup
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        model = getattr(pl_module, "model", pl_module)
        layers = parameterized_layers(model)
        self.layer_names = [name for name, _, _ in layers]
        self._layer_weights = [weight for _, _, weight in layers]
        self._parameters = [p for p in model.parameters() if p.requires_grad]

    # ------------------------------------------------------------ record
    def on_before_optimizer_step(self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: Any) -> None:
        step = trainer.global_step
        if self.histograms_every_n_steps and step % self.histograms_every_n_steps == 0:
            self._log_histograms(trainer, step)
        if getattr(pl_module, "reports_gradient_norms", False):
            return  # a deeplab Classifier measured them before any clip and calls on_gradient_norms
        first_epoch = trainer.current_epoch == self.l1_epoch  # (the L1 epoch: the first by default)
        record = step % self.every_n_steps == 0
        if not (record or first_epoch):
            return
        if record:
            vector = gradient_norm_vector(self._parameters, self._layer_weights).detach()
            self._record(trainer, step, vector)
            l1 = vector[1]
        else:
            grads = [p.grad for p in self._parameters if p.grad is not None]
            l1 = total_l1_norm(grads) if grads else torch.zeros(())
        if first_epoch:
            self._add_first_epoch_l1(l1, 1)

    def _record(self, trainer: pl.Trainer, step: int, vector: torch.Tensor) -> None:
        """One full record (total L2, total L1, per-layer L2) at ``step``: TensorBoard and the epoch profile."""
        self._pending.append((step, vector))
        per_layer = vector[2:]
        # (.to: a sum restored from a checkpoint lives on the CPU)
        self._epoch_sum = per_layer.clone() if self._epoch_sum is None else self._epoch_sum.to(per_layer.device) + per_layer
        self._epoch_count += 1
        if len(self._pending) >= FLUSH_EVERY_RECORDS:
            self._flush(trainer)

    def _add_first_epoch_l1(self, l1_sum: torch.Tensor, steps: int) -> None:
        self._first_epoch_l1_sum = (l1_sum if self._first_epoch_l1_sum is None
                                    else self._first_epoch_l1_sum.to(l1_sum.device) + l1_sum)
        self._first_epoch_steps += steps

    def on_gradient_norms(self, trainer: pl.Trainer, module: Any, steps: list[int], epoch: int,
                          norms: torch.Tensor, full: list[bool] | None = None) -> None:
        """A step's norms, measured by the module before any clip (``deeplab.training.optim.gradient_stage``):
        full rows are records, and in the L1 epoch every row carries its step's total L1. Without ``full``
        (a compiled training_step's rows) one host read tells the full rows."""
        if full is None:
            full = torch.isfinite(norms[:, 0]).tolist()
        for row, (step, is_full) in enumerate(zip(steps, full)):
            if is_full:
                self._record(trainer, step, norms[row])
        if epoch == self.l1_epoch:
            l1 = norms[:, 1]
            self._add_first_epoch_l1(l1.double().sum().float(), len(steps))

    def _log_histograms(self, trainer: pl.Trainer, step: int) -> None:
        experiment = _experiment(trainer)
        if experiment is None:
            return
        for name, weight in zip(self.layer_names, self._layer_weights):
            if weight.grad is not None:
                experiment.add_histogram(f"grad_hist/{name}", weight.grad.detach().float().cpu(), step)

    def _flush(self, trainer: pl.Trainer) -> None:
        if not self._pending:
            return
        steps = [step for step, _ in self._pending]
        values = torch.stack([vector for _, vector in self._pending]).cpu().tolist()  # one transfer
        self._pending.clear()
        experiment = _experiment(trainer)
        for step, row in zip(steps, values):
            entry = {"step": step, "l2_total": row[0], "l1_total": row[1], "layers_l2": row[2:]}
            self.records.append(entry)
            if experiment is not None:
                scalars = {"grad/l2_total": row[0], "grad/l1_total": row[1]}
                if len(row) > 2:
                    scalars["grad/first_layer"] = row[2]
                scalars.update((f"grad/l2/{name}", value) for name, value in zip(self.layer_names, row[2:]))
                write_scalars(experiment, scalars, step)

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Sums are reset when an epoch starts, not when one closes, so a checkpoint written at
        # the close still holds them (a resume may reopen that epoch); an epoch a resume picks
        # up part-way keeps the sums its checkpoint restored.
        self._current_epoch = trainer.current_epoch
        if getattr(pl_module, "continuing_epoch", False):
            return
        self._epoch_sum, self._epoch_count = None, 0
        if trainer.current_epoch == self.l1_epoch:
            self._first_epoch_l1_sum, self._first_epoch_steps = None, 0

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._flush(trainer)

    def on_epoch_closed(self, trainer: pl.Trainer, module: pl.LightningModule, entry: dict[str, float]) -> None:
        """The epoch's per-layer means join ``per_epoch_layer_l2`` (a reopened epoch replaces its entry)."""
        self._flush(trainer)
        index = int(entry["epoch"]) - 1
        del self.per_epoch_layer_l2[index:]
        if self._epoch_sum is not None and self._epoch_count:
            self.per_epoch_layer_l2.append((self._epoch_sum / self._epoch_count).cpu().tolist())
        if index == self.l1_epoch and self._first_epoch_l1_sum is not None:
            self.first_epoch_mean_l1 = float(self._first_epoch_l1_sum) / self._first_epoch_steps

    def _profiles(self) -> list[list[float]]:
        """Each closed epoch's per-layer means, then the running means of an epoch stopped part-way."""
        profiles = list(self.per_epoch_layer_l2)
        partial = self._epoch_sum is not None and self._epoch_count and len(profiles) <= self._current_epoch
        if partial:
            profiles.append((self._epoch_sum / self._epoch_count).cpu().tolist())
        return profiles

    def _first_epoch_mean(self) -> float | None:
        if self.first_epoch_mean_l1 is not None:
            return self.first_epoch_mean_l1
        if self._first_epoch_l1_sum is not None and self._first_epoch_steps:
            return float(self._first_epoch_l1_sum) / self._first_epoch_steps  # first epoch stopped part-way
        return None

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._flush(trainer)
        self._current_epoch = int(getattr(pl_module, "epoch_in_progress", trainer.current_epoch))
        profiles = self._profiles()
        if trainer.is_global_zero and self.run_dir is not None and profiles:
            self.figure_path = self.run_dir / "grad_norms.png"
            from deeplab.reporting.figures import run_title

            model = pl_module.hparams.get("model_name") if hasattr(pl_module, "hparams") else None
            dataset = getattr(getattr(trainer, "datamodule", None), "name", None)
            figure = plot_layer_profile(self.layer_names, profiles, self.figure_path,
                                        title_prefix=run_title(model if isinstance(model, str) else None, dataset,
                                                               self.run_dir.name))
            experiment = _experiment(trainer)
            if experiment is not None:
                experiment.add_figure("grad/layer_profile", figure, trainer.global_step)

    # ----------------------------------------------------------- results
    def state_dict(self) -> dict[str, Any]:
        # The running sums of the epoch in progress go too, so a mid-epoch resume reports the
        # uninterrupted run's epoch means and first-epoch L1 (checkpoints are rare: the sync is cheap).
        return {
            "first_epoch_mean_l1": self.first_epoch_mean_l1,
            "per_epoch_layer_l2": self.per_epoch_layer_l2,
            "epoch_sum": self._epoch_sum.cpu() if self._epoch_sum is not None else None,
            "epoch_count": self._epoch_count,
            "first_epoch_l1_sum": self._first_epoch_l1_sum.cpu() if self._first_epoch_l1_sum is not None else None,
            "first_epoch_steps": self._first_epoch_steps,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.first_epoch_mean_l1 = state.get("first_epoch_mean_l1")
        self.per_epoch_layer_l2 = list(state.get("per_epoch_layer_l2", []))
        self._epoch_sum, self._epoch_count = state.get("epoch_sum"), state.get("epoch_count", 0)
        self._first_epoch_l1_sum = state.get("first_epoch_l1_sum")
        self._first_epoch_steps = state.get("first_epoch_steps", 0)

    def contribute_results(self, results: dict[str, Any]) -> None:
        profiles = self._profiles()
        results["grad"] = {
            "every_n_steps": self.every_n_steps,
            "layers": self.layer_names,
            "first_layer": self.layer_names[0] if self.layer_names else None,
            "first_epoch_mean_l1": self._first_epoch_mean() if self.l1_epoch == 0 else None,
            "l1_epoch": self.l1_epoch + 1,
            "epoch_mean_l1": self._first_epoch_mean(),
            "per_epoch_layer_l2": profiles,
            "last_epoch_partial": len(profiles) > len(self.per_epoch_layer_l2),
            "figure": str(self.figure_path) if self.figure_path else None,
        }


def write_scalars(experiment: Any, scalars: dict[str, float], step: int) -> None:
    """Several TensorBoard scalars of one step as one event.

    ``SummaryWriter.add_scalar`` costs ~42 µs a scalar (a protobuf and a queued
    event each); a record of ``3 + layers`` of them was 15 % of a batch-1 step.
    One ``Summary`` holding all values costs ~38 µs in all and reads back as the
    same scalars.
    """
    file_writer = getattr(experiment, "file_writer", None)
    if not hasattr(file_writer, "add_summary"):  # not torch's SummaryWriter (e.g. --fast-dev-run's dummy)
        for tag, value in scalars.items():
            experiment.add_scalar(tag, value, step)
        return
    from tensorboard.compat.proto.summary_pb2 import Summary

    file_writer.add_summary(Summary(value=[Summary.Value(tag=tag, simple_value=float(value))
                                           for tag, value in scalars.items()]), step)


def _experiment(trainer: pl.Trainer) -> Any:
    logger = trainer.logger
    if logger is None or not trainer.is_global_zero:
        return None
    experiment = getattr(logger, "experiment", None)
    return experiment if hasattr(experiment, "add_scalar") else None


def plot_layer_profile(layer_names: list[str], per_epoch: list[list[float]], path: Path,
                       title_prefix: str | None = None) -> Any:
    """Per-layer mean gradient L2 norm against depth (log scale), one line per epoch (own marker and line
    style each); ``title_prefix`` (e.g. "model · dataset · run") heads the title."""
    from deeplab.reporting.figures import fit_text, integer_ticks, pyplot, series_style

    plt = pyplot()

    figure, axis = plt.subplots(figsize=(max(6.0, 0.35 * len(layer_names)), 4.2))
    colors = plt.cm.viridis([i / max(1, len(per_epoch) - 1) for i in range(len(per_epoch))])
    depth = list(range(1, len(layer_names) + 1))
    for epoch, (values, color) in enumerate(zip(per_epoch, colors), start=1):
        positive = [max(v, 1e-30) for v in values]
        style = series_style(epoch - 1, len(positive))
        if "marker" not in style and len(per_epoch) <= 12:
            style.update(marker="o", markersize=2)
        axis.plot(depth[: len(positive)], positive, color=color, label=f"epoch {epoch}", **style)
    axis.set_yscale("log")
    axis.set_xlabel("layer (input → output)")
    axis.set_ylabel("mean ‖∇W‖₂ over the epoch")
    title = "Gradient L2 per layer (vanishing toward the input: a curve rising with depth)"
    axis.set_title(f"{title_prefix}\n{title}" if title_prefix else title, fontsize=10)
    if len(layer_names) <= 40:
        axis.set_xticks(depth)
        axis.set_xticklabels([n.split("_", 1)[1] if "_" in n else n for n in layer_names], rotation=70, fontsize=7)
    else:
        integer_ticks(axis.xaxis)  # layer indices
    axis.grid(True, which="both", alpha=0.3)
    if len(per_epoch) <= 12:
        axis.legend(fontsize=7)
    fit_text(figure)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return figure
