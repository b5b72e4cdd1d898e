"""Training throughput: images per second over the time spent training, for ``results.json``."""

from __future__ import annotations

import time
from typing import Any

import lightning.pytorch as pl

__all__ = ["Throughput"]


class Throughput(pl.Callback):
    """Training images per second, counting only time spent in training batches' loop
    (the epoch's wall time minus its evaluation). Images come from the module's running
    count (``Classifier.train_seen``), which a chunk cut short by ``--max-steps`` counts right."""

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
