"""Training throughput: images per second over the time spent training, for ``results.json``
(and why not Lightning's ``ThroughputMonitor``: see :class:`Throughput`)."""

from __future__ import annotations

import time
from typing import Any

import lightning.pytorch as pl

__all__ = ["Throughput"]


class Throughput(pl.Callback):
    """Training images per second, counting only time spent in training batches' loop
    (the epoch's wall time minus its evaluation). Images come from the module's running
    count (``Classifier.train_seen``), which a chunk cut short by ``--max-steps`` counts right.

    ``results.json``'s ``train_time_s`` and ``images_per_s`` are :attr:`train_seconds` and
    :attr:`images_per_second`. Lightning's ``ThroughputMonitor`` (read in Lightning 2.6) does
    not give those numbers, so this callback stays:

    * it logs its totals (``train|time``, ``train|samples``) and rolling rates (over the
      last ``window_size`` = 100 calls, once that many have run) to the logger at logging
      steps; after ``fit`` the totals are only in its private state;
    * it counts images with ``batch_size_fn(batch)`` once per ``training_step``, which sees
      a whole chunk of ``--steps-per-call`` batches even when ``--max-steps`` ends it early;
    * it has no ``state_dict``, and restarts at every ``on_train_start``: a resumed run
      would report its last segment, where this one sums every segment;
    * its clock runs from ``on_train_start`` and pauses only for validation, so the work
      between epochs (the module's and ``RunCheckpoint``'s ``on_train_epoch_end``, i.e. the
      epoch-close checkpoint; the next epoch's data-loader reload) counts as training; this
      one times each epoch from ``on_train_epoch_start`` to its own ``on_train_epoch_end``,
      which Lightning runs before the module's and the checkpoint's;
    * on a GPU it calls ``torch.cuda.synchronize()`` after every ``training_step``, a host
      sync per step that the chunked and compiled steps are built to avoid; this one reads
      the clock and the image count at epoch boundaries only.
    """

    def __init__(self) -> None:
        self.train_seconds = 0.0
        self.train_images = 0
        self._epoch_start: float | None = None
        self._seen_at_start = 0
        self._eval_seconds = 0.0
        self._eval_start: float | None = None

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._epoch_start = time.perf_counter()
        self._eval_seconds = 0.0
        self._seen_at_start = self._seen(pl_module)

    @staticmethod
    def _seen(pl_module: pl.LightningModule) -> int:
        seen = getattr(pl_module, "train_seen", None)
        return int(seen) if seen is not None else 0

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._eval_start = time.perf_counter()

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._eval_start is not None:
            self._eval_seconds += time.perf_counter() - self._eval_start
            self._eval_start = None

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._epoch_start is not None:
            self.train_seconds += time.perf_counter() - self._epoch_start - self._eval_seconds
            self.train_images += (self._seen(pl_module) - self._seen_at_start) * trainer.world_size
            self._epoch_start = None

    @property
    def images_per_second(self) -> float:
        return self.train_images / self.train_seconds if self.train_seconds > 0 else 0.0

    def state_dict(self) -> dict[str, Any]:
        # A resumed run reports its throughput over every segment it trained.
        return {"train_seconds": self.train_seconds, "train_images": self.train_images}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.train_seconds = float(state.get("train_seconds", 0.0))
        self.train_images = int(state.get("train_images", 0))
