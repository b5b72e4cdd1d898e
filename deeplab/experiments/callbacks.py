"""Callbacks the recipes add to a run: the seeds' own measurements and seed 003's scheduled rate.

* :class:`LrDropOnValAccuracy` — seed 003 Part 5's "scheduled learning rate":
  0.1 until validation accuracy reaches 65 %, 0.01 until 70 %, then 0.001, each
  phase at most 30 epochs, accuracy measured every 10 batches (the seed restarts
  ``CNN_train_and_evaluate`` with the next rate, keeping the weights).
* :class:`SeedCurves` — the seeds' step-level and epoch-end measurements that
  ``results.json`` does not already hold: seed 003's ``loss_curve`` (mean
  training loss of each 10 batches) and ``grad_curve`` (total gradient L2 norm
  at each 10th batch), and seed 004's gradient measures taken after the
  epoch's last batch (first layer's weight gradient L2; Σ over parameters of
  each gradient's L2).
* :class:`KeepModel` — hands the trained model back to the recipe (first-layer
  weights, activation statistics).

They stay with the recipes, not in :mod:`deeplab.callbacks`: each reproduces one
seed's own protocol for a recipe's report (its schedule, its measurement
windows), ``fit`` never adds them, and no other run needs them.
"""

from __future__ import annotations

from typing import Any, Sequence

import lightning.pytorch as pl
import torch

from deeplab.callbacks.base import EpochObserver

__all__ = ["LrDropOnValAccuracy", "validation_accuracy", "SeedCurves", "KeepModel", "SEED003_LR_TARGETS", "SEED003_LR_FACTOR"]

#: seed 003 Part 5: 0.1 until validation accuracy ≥ 65 %, 0.01 until ≥ 70 %, then 0.001
SEED003_LR_TARGETS = (0.65, 0.70)
SEED003_LR_FACTOR = 0.1


class LrDropOnValAccuracy(EpochObserver):
    """Seed 003 Part 5's scheduled rate: phases at lr, lr·factor, lr·factor², ... each ending when
    validation accuracy reaches its target (the last phase has none) or after ``phase_epochs`` epochs.

    The seed runs ``CNN_train_and_evaluate`` three times on the same model
    (``part5.py`` lines 122-159: lr 0.1 to 65 %, 0.01 to 70 %, 0.001 to "100"),
    30 epochs at most each; inside, it measures validation accuracy every 10
    batches (``if (i + 1) % 10 == 0``) and stops the phase at the first
    measurement at or above the target. Here, with ``check_every=10``, the same
    measurement on the same validation split drops the rate at the same batch;
    what differs is the rest of that epoch: the seed abandons it and starts the
    next phase on a fresh shuffle, this trains it at the new rate (the next
    phase's ``phase_epochs`` count from the next epoch). When the last phase
    has run its epochs the run stops (``trainer.should_stop``), so give the run
    at least ``phases × phase_epochs`` epochs. ``check_every=None`` checks only
    when an epoch closes (cheaper: no extra evaluation passes).

    ``events``: one dict per phase change (epoch, batch, step, val_acc, target
    or None when the epoch cap ended the phase, lr_before, lr_after);
    ``lrs``: the rate at the end of each epoch; ``checks``: the number of
    mid-epoch validation measurements.
    """

    def __init__(self, targets: Sequence[float] = SEED003_LR_TARGETS, factor: float = SEED003_LR_FACTOR,
                 check_every: int | None = None, phase_epochs: int | None = None):
        if not 0 < factor < 1:
            raise ValueError("factor must be in (0, 1)")
        if list(targets) != sorted(targets):
            raise ValueError("targets must increase")
        if check_every is not None and check_every < 1:
            raise ValueError("check_every must be ≥ 1 (or None: at epoch ends)")
        if phase_epochs is not None and phase_epochs < 1:
            raise ValueError("phase_epochs must be ≥ 1 (or None: no cap)")
        self.targets = tuple(float(t) for t in targets)
        self.factor = float(factor)
        self.check_every = check_every
        self.phase_epochs = phase_epochs
        # mid-epoch checks read the loss of every batch boundary: no chunks, no compiled step
        self.needs_every_batch = check_every is not None
        self.phase = 0  # index of the phase in progress; its target is targets[phase] (none for the last)
        self.phase_first_epoch = 1  # the first whole epoch (1-based) of the phase in progress
        self.events: list[dict[str, Any]] = []
        self.lrs: list[float] = []
        self.checks = 0

    @property
    def phases(self) -> int:
        return len(self.targets) + 1

    @staticmethod
    def _lr(trainer: pl.Trainer) -> float:
        return float(trainer.optimizers[0].param_groups[0]["lr"])

    def _next_phase(self, trainer: pl.Trainer, module: Any, epoch: int, batch: int | None, val_acc: float | None,
                    reached: bool) -> None:
        before = self._lr(trainer)
        for optimizer in trainer.optimizers:
            for group in optimizer.param_groups:
                group["lr"] = group["lr"] * self.factor
        after = self._lr(trainer)
        target = self.targets[self.phase]
        self.events.append({"epoch": epoch, "batch": batch, "step": int(getattr(trainer, "global_step", 0)),
                            "val_acc": val_acc, "target": target if reached else None,
                            "lr_before": before, "lr_after": after})
        why = (f"val acc {100 * val_acc:.2f}% ≥ {100 * target:g}%" if reached
               else f"{self.phase_epochs} epoch{'s' if self.phase_epochs != 1 else ''} without reaching {100 * target:g}%")
        module.print(f"{why}: lr {before:g} → {after:g}")
        self.phase += 1
        self.phase_first_epoch = epoch + 1

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self.check_every is None or self.phase >= len(self.targets) or (batch_idx + 1) % self.check_every:
            return
        val_acc = validation_accuracy(trainer, pl_module)
        self.checks += 1
        if val_acc >= self.targets[self.phase]:
            self._next_phase(trainer, pl_module, trainer.current_epoch + 1, batch_idx + 1, val_acc, reached=True)

    def on_epoch_closed(self, trainer: pl.Trainer, module: Any, entry: dict[str, float]) -> None:
        epoch = int(entry["epoch"])
        val_acc = entry.get("val_acc")
        if self.check_every is None and self.phase < len(self.targets) and val_acc is not None \
                and val_acc >= self.targets[self.phase]:
            self._next_phase(trainer, module, epoch, None, float(val_acc), reached=True)
        elif self.phase_epochs is not None and epoch - self.phase_first_epoch + 1 >= self.phase_epochs:
            if self.phase < len(self.targets):
                self._next_phase(trainer, module, epoch, None, None if val_acc is None else float(val_acc),
                                 reached=False)
            else:
                trainer.should_stop = True  # the last phase has run its epochs: the seed's schedule is over
        self.lrs.append(self._lr(trainer))
        experiment = getattr(trainer.logger, "experiment", None) if trainer.is_global_zero else None
        if experiment is not None and hasattr(experiment, "add_scalar"):
            experiment.add_scalar("lr", self._lr(trainer), trainer.global_step)

    def state_dict(self) -> dict[str, Any]:
        return {"phase": self.phase, "phase_first_epoch": self.phase_first_epoch, "events": self.events,
                "lrs": self.lrs, "checks": self.checks}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.phase = int(state.get("phase", state.get("next_target", 0)))
        self.phase_first_epoch = int(state.get("phase_first_epoch", 1))
        self.events = list(state.get("events", []))
        self.lrs = list(state.get("lrs", []))
        self.checks = int(state.get("checks", 0))


@torch.no_grad()
def validation_accuracy(trainer: pl.Trainer, module: Any) -> float:
    """Accuracy of ``module`` on the DataModule's whole evaluation split, in eval mode (seed 003's
    every-10-batches check: ``model.eval()``, argmax over the preloaded validation images), then
    back to the mode it was in."""
    datamodule = trainer.datamodule
    model = getattr(module, "model", module)
    was_training = model.training
    model.eval()
    correct = seen = 0
    try:
        for images, labels in datamodule.val_dataloader():
            images, labels = images.to(module.device), labels.to(module.device)
            x = datamodule.device_transform(images, training=False)
            as_input = getattr(module, "_as_input", None)
            logits = model(as_input(x) if as_input is not None else x)
            correct += int((logits.argmax(1) == labels).sum())
            seen += len(labels)
    finally:
        model.train(was_training)
    return correct / seen if seen else float("nan")


class SeedCurves(pl.Callback):
    """Seed 003's 10-batch loss and gradient curves and seed 004's epoch-end gradient norms.

    ``points``: {step, epoch, loss (mean of the window), grad_l2 (total, at the
    window's last batch)} every ``every`` batches of an epoch (seed 003:
    ``if (i + 1) % 10 == 0``). ``epoch_end``: per epoch, after its last batch,
    {epoch, first_layer_l2, sum_param_l2, total_l2} (seed 004: ``conv1.weight``'s
    gradient norm; Σ‖∇p‖ over all parameters).
    """

    #: it reads each batch's loss and ``.grad`` (deeplab.training.engine: no chunks, no compiled step)
    needs_every_batch = True

    def __init__(self, every: int = 10):
        if every < 1:
            raise ValueError("every must be ≥ 1")
        self.every = every
        self.points: list[dict[str, float]] = []
        self.epoch_end: list[dict[str, float]] = []
        self._params: list[torch.Tensor] = []
        self._first: torch.Tensor | None = None
        self._batch_idx = 0
        self._window_loss: torch.Tensor | None = None
        self._window_count = 0
        self._grad_l2: float | None = None

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        from deeplab.models.layers import parameterized_layers

        model = getattr(pl_module, "model", pl_module)
        self._params = [p for p in model.parameters() if p.requires_grad]
        layers = parameterized_layers(model)
        self._first = layers[0][2] if layers else None

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._window_loss, self._window_count = None, 0

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int) -> None:
        self._batch_idx = batch_idx

    def _is_last_batch(self, trainer: pl.Trainer) -> bool:
        total = trainer.num_training_batches
        return isinstance(total, int) and self._batch_idx == total - 1

    def on_before_optimizer_step(self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: Any) -> None:
        window_end = (self._batch_idx + 1) % self.every == 0
        last = self._is_last_batch(trainer)
        if not (window_end or last):
            return
        grads = [p.grad for p in self._params if p.grad is not None]
        if not grads:
            return
        norms = torch.stack(torch._foreach_norm(grads, 2)).float()
        total = float(torch.linalg.vector_norm(norms))
        self._grad_l2 = total
        if last:
            first = float(self._first.grad.norm()) if self._first is not None and self._first.grad is not None else None
            self.epoch_end.append({"epoch": trainer.current_epoch + 1, "first_layer_l2": first,
                                   "sum_param_l2": float(norms.sum()), "total_l2": total})

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if isinstance(loss, torch.Tensor):
            loss = loss.detach().float()
            self._window_loss = loss if self._window_loss is None else self._window_loss + loss
            self._window_count += 1
        if (batch_idx + 1) % self.every == 0 and self._window_count:
            self.points.append({"step": int(trainer.global_step), "epoch": trainer.current_epoch + 1,
                                "loss": float(self._window_loss) / self._window_count, "grad_l2": self._grad_l2})
            self._window_loss, self._window_count = None, 0

    def summary(self) -> dict[str, Any]:
        return {"every": self.every, "points": self.points, "epoch_end": self.epoch_end}


class KeepModel(pl.Callback):
    """Keeps a reference to the trained ``nn.Module`` (``pl_module.model``) when fitting ends."""

    def __init__(self) -> None:
        self.model: torch.nn.Module | None = None

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.model = getattr(pl_module, "model", pl_module)
