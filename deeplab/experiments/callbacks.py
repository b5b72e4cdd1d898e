"""Callbacks the recipes add to a run: the seeds' own measurements and seed 003's scheduled rate.

* :class:`LrDropOnValAccuracy` — seed 003 Part 5's "scheduled learning rate":
  start at 0.1, go to 0.01 once validation accuracy reaches 65 %, to 0.001 once
  it reaches 70 % (the seed restarts ``CNN_train_and_evaluate`` with the next
  rate, keeping the weights, when its early-stopping target is met).
* :class:`SeedCurves` — the seeds' step-level and epoch-end measurements that
  ``results.json`` does not already hold: seed 003's ``loss_curve`` (mean
  training loss of each 10 batches) and ``grad_curve`` (total gradient L2 norm
  at each 10th batch), and seed 004's gradient measures taken after the
  epoch's last batch (first layer's weight gradient L2; Σ over parameters of
  each gradient's L2).
* :class:`KeepModel` — hands the trained model back to the recipe (first-layer
  weights, activation statistics).
"""

from __future__ import annotations

from typing import Any, Sequence

import lightning.pytorch as pl
import torch

from deeplab.module import EpochObserver

__all__ = ["LrDropOnValAccuracy", "SeedCurves", "KeepModel", "SEED003_LR_TARGETS", "SEED003_LR_FACTOR"]

#: seed 003 Part 5: 0.1 until validation accuracy ≥ 65 %, 0.01 until ≥ 70 %, then 0.001
SEED003_LR_TARGETS = (0.65, 0.70)
SEED003_LR_FACTOR = 0.1


class LrDropOnValAccuracy(EpochObserver):
    """Multiply every parameter group's lr by ``factor`` when validation accuracy first reaches each target.

    Checked when an epoch closes (train and evaluation metrics known); the seed
    checks every 10 batches, so here a drop comes at most one epoch later.
    ``events``: one dict per drop (epoch, val_acc, target, lr_before, lr_after);
    ``lrs``: the rate each epoch trained at.
    """

    def __init__(self, targets: Sequence[float] = SEED003_LR_TARGETS, factor: float = SEED003_LR_FACTOR):
        if not 0 < factor < 1:
            raise ValueError("factor must be in (0, 1)")
        if list(targets) != sorted(targets):
            raise ValueError("targets must increase")
        self.targets = tuple(float(t) for t in targets)
        self.factor = float(factor)
        self.next_target = 0
        self.events: list[dict[str, float]] = []
        self.lrs: list[float] = []

    @staticmethod
    def _lr(trainer: pl.Trainer) -> float:
        return float(trainer.optimizers[0].param_groups[0]["lr"])

    def on_epoch_closed(self, trainer: pl.Trainer, module: Any, entry: dict[str, float]) -> None:
        self.lrs.append(self._lr(trainer))
        val_acc = entry.get("val_acc")
        while self.next_target < len(self.targets) and val_acc is not None and val_acc >= self.targets[self.next_target]:
            before = self._lr(trainer)
            for optimizer in trainer.optimizers:
                for group in optimizer.param_groups:
                    group["lr"] = group["lr"] * self.factor
            after = self._lr(trainer)
            self.events.append({"epoch": int(entry["epoch"]), "val_acc": float(val_acc),
                                "target": self.targets[self.next_target], "lr_before": before, "lr_after": after})
            module.print(f"val acc {100 * val_acc:.2f}% ≥ {100 * self.targets[self.next_target]:g}%: "
                         f"lr {before:g} → {after:g}")
            self.next_target += 1
        experiment = getattr(trainer.logger, "experiment", None) if trainer.is_global_zero else None
        if experiment is not None and hasattr(experiment, "add_scalar"):
            experiment.add_scalar("lr", self._lr(trainer), trainer.global_step)

    def state_dict(self) -> dict[str, Any]:
        return {"next_target": self.next_target, "events": self.events, "lrs": self.lrs}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.next_target = int(state.get("next_target", 0))
        self.events = list(state.get("events", []))
        self.lrs = list(state.get("lrs", []))


class SeedCurves(pl.Callback):
    """Seed 003's 10-batch loss and gradient curves and seed 004's epoch-end gradient norms.

    ``points``: {step, epoch, loss (mean of the window), grad_l2 (total, at the
    window's last batch)} every ``every`` batches of an epoch (seed 003:
    ``if (i + 1) % 10 == 0``). ``epoch_end``: per epoch, after its last batch,
    {epoch, first_layer_l2, sum_param_l2, total_l2} (seed 004: ``conv1.weight``'s
    gradient norm; Σ‖∇p‖ over all parameters).
    """

    #: it reads each batch's loss and ``.grad`` (deeplab.engine: no chunks, no compiled step)
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
        from deeplab.gradients import parameterized_layers

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
