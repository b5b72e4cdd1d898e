"""The trainability judge: one probe's per-epoch errors, its divergence, and the verdict.

Seed 002's criterion: a depth is trainable when the network "achieves less
than 20% error (either train or test) in 3 epochs"; its ``search()`` tests the
last epoch's *test* error (``test_err >= max_err`` → too deep). Three metrics:

* ``test_error`` (default, the seed's code): last epoch's test error < threshold;
* ``train_error``: last epoch's training error (the running error over the
  epoch, as the seed's ``train_epoch`` computes it) < threshold;
* ``either``: the assignment's words — either of the two < threshold.

A probe whose loss turned NaN/inf is untrainable whatever its error (deeplab
stops it at the first non-finite loss, or within ``divergence_check_every``
steps of it on a GPU; seed 002's probes ran all three epochs on NaN: the same
verdict, a shorter per-epoch record). The judge never stops a
run on slow progress: seed 000's plain 15-layer net sat at chance for 17
epochs and began learning in the 18th (cells [14] and [18], one object trained
twice), so a probe runs all its epochs unless its loss diverges (the
:class:`~deeplab.training.module.Classifier` stops those itself,
``module.diverged_at_step``; the judge records it).

The depth search (:mod:`deeplab.search`) puts a judge on every probe and
applies :func:`judge_errors` to the ledger's records; ``TrainabilitySearch``
and ``scripts/search.py`` check their ``--metric``/``--threshold`` here.
"""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl

from deeplab.callbacks.base import EpochObserver
from deeplab.callbacks.verdict import METRICS, _finite, check_metric, check_threshold, judge_errors

__all__ = ["METRICS", "TrainabilityJudge", "check_threshold", "check_metric", "judge_errors"]


class TrainabilityJudge(EpochObserver):
    """Records each epoch's train and test (evaluation) error and whether the loss diverged.

    It only observes: it never sets ``trainer.should_stop``. ``fit`` calls
    :meth:`contribute_results`, which adds ``results["trainability"]``.
    """

    #: the HParams metric this callback adds to a run (``deeplab.reporting.tensorboard.run_metrics``)
    hparam_metrics = ("hparams/trainable",)

    def __init__(self, threshold: float = 0.2, metric: str = "test_error"):
        self.threshold = check_threshold(threshold)
        self.metric = check_metric(metric)
        #: one dict per finished epoch: epoch, train_error, test_error, train_loss, test_loss
        self.epochs: list[dict[str, float | None]] = []
        self.diverged_at_step: int | None = None

    @property
    def diverged(self) -> bool:
        return self.diverged_at_step is not None

    def on_epoch_closed(self, trainer: pl.Trainer, module: pl.LightningModule, entry: dict[str, float]) -> None:
        self._record(entry)
        self._note_divergence(module)

    def on_train_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        # A probe continued from a checkpoint: its epochs closed before the stop are in the module's
        # history (restored with it), whether or not the checkpoint carried this judge's state.
        for entry in getattr(module, "history", []):
            if not any(e["epoch"] == int(entry["epoch"]) for e in self.epochs):
                self._record(entry)

    def _record(self, entry: dict[str, float]) -> None:
        # a resumed run may close an epoch again (reopened by a longer --limit-train-batches): replace it
        epoch = int(entry["epoch"])
        self.epochs = [e for e in self.epochs if e["epoch"] != epoch]
        self.epochs.append({
            "epoch": epoch,
            "train_error": _finite(1.0 - entry["train_acc"]),
            "test_error": _finite(1.0 - entry["val_acc"]),
            "train_loss": _finite(entry["train_loss"]),
            "test_loss": _finite(entry["val_loss"]),
        })
        self.epochs.sort(key=lambda e: e["epoch"])

    def on_train_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self._note_divergence(module)  # a loss may turn NaN mid-epoch, after the last closed epoch

    def _note_divergence(self, module: pl.LightningModule) -> None:
        step = getattr(module, "diverged_at_step", None)
        if step is not None and self.diverged_at_step is None:
            self.diverged_at_step = int(step)

    def final_errors(self, results: dict[str, Any] | None = None) -> tuple[float | None, float | None]:
        """Last epoch's train error, and the test error (``results["test_acc"]`` when fit measured it)."""
        last = self.epochs[-1] if self.epochs else {}
        train_error = last.get("train_error")
        test_error = last.get("test_error")
        if results is not None and results.get("test_acc") is not None:
            test_error = _finite(1.0 - float(results["test_acc"]))
        return train_error, test_error

    def verdict(self, results: dict[str, Any] | None = None) -> dict[str, Any]:
        train_error, test_error = self.final_errors(results)
        error, trainable = judge_errors(train_error, test_error, self.diverged, self.threshold, self.metric)
        return {
            "metric": self.metric,
            "threshold": self.threshold,
            "error": error,
            "trainable": trainable,
            "train_error": train_error,
            "test_error": test_error,
            "diverged": self.diverged,
            "diverged_at_step": self.diverged_at_step,
            "epochs": list(self.epochs),
        }

    def state_dict(self) -> dict[str, Any]:
        """Saved in the probe's checkpoints, so a probe continued after a stop keeps its earlier epochs."""
        return {"epochs": list(self.epochs), "diverged_at_step": self.diverged_at_step}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.epochs = list(state.get("epochs", []))
        self.diverged_at_step = state.get("diverged_at_step")

    def contribute_results(self, results: dict[str, Any]) -> None:
        results["trainability"] = self.verdict(results)
