"""What a run prints while it trains: the seeds' per-epoch line, a progress bar that counts batches,
and the closing line ``scripts/fit.py`` prints from ``results.json``."""

from __future__ import annotations

import math
import sys
import time
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import ProgressBar

from deeplab.callbacks.base import EpochObserver

__all__ = ["EpochLine", "BatchProgressBar", "format_epoch_line", "format_closing_line"]


def format_epoch_line(entry: dict[str, Any], total_epochs: int, eval_split: str) -> str:
    """Seed 002's line: ``Epoch 001/010, Train Error 12.34% || Test Error 11.02%``; an error that was
    not measured (no evaluation: ``--limit-val-batches 0``) shows as ``—``, and an epoch stopped
    part-way (``partial_epoch`` of results.json) says how far it got."""
    label = "Test" if eval_split == "test" else "Val"
    partial = ""
    if entry.get("batches_done") is not None:  # a partial epoch's record
        total = entry.get("batches_in_epoch")
        partial = f" (partial: {entry['batches_done']}{f' of {total}' if total else ''} batches)"
    return "Epoch {:03d}/{:03d}{}, Train Error {} || {} Error {}".format(
        int(entry["epoch"]), total_epochs, partial, _error_text(entry.get("train_acc")), label,
        _error_text(entry.get("val_acc")))


def _error_text(accuracy: float | None) -> str:
    if accuracy is None or not math.isfinite(accuracy):
        return "—"
    return f"{(1 - accuracy) * 100:.2f}%"


def format_closing_line(results: dict[str, Any]) -> str:
    """``trained 2 epochs, 32 steps in 3.1 s (212 images/s); wall 5.4 s``: what the run cost."""
    epochs = results.get("epochs_run", 0)
    partial = " + a partial one" if results.get("partial_epoch") else ""
    return (f"trained {epochs} epoch{'s' if epochs != 1 else ''}{partial}, {results.get('global_step', 0):,} step{'s' if results.get('global_step') != 1 else ''} "
            f"in {_seconds_text(results.get('train_time_s'))} ({results.get('images_per_s') or 0:,.0f} images/s); "
            f"wall {_seconds_text(results.get('wall_time_s'))}")


def _seconds_text(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds >= 3600:
        return f"{seconds / 3600:.2f} h"
    return f"{seconds / 60:.1f} min" if seconds >= 120 else f"{seconds:.1f} s"


class EpochLine(EpochObserver):
    """Prints one line per epoch in the seeds' style (rank 0 only, above the progress bar)."""

    def __init__(self, total_epochs: int, eval_split: str = "test"):
        self.total_epochs = total_epochs
        self.eval_split = eval_split

    def on_epoch_closed(self, trainer: pl.Trainer, module: pl.LightningModule, entry: dict[str, float]) -> None:
        module.print(format_epoch_line(entry, self.total_epochs, self.eval_split))


class BatchProgressBar(ProgressBar):
    """One tqdm bar per training epoch that counts real batches, however many a ``training_step`` takes.

    Lightning's bar counts ``training_step`` calls, which with chunks
    (``--steps-per-call``) are K batches each, and redraws after each one. This
    bar reads the module's position (``Classifier.epoch_batches_done``: a
    resumed epoch starts where it stopped), lets tqdm pace the redraws
    (``mininterval``, so a batch-1 step costs ~1 µs for it), and shows the last
    logged step loss (``Classifier.last_step_loss``). When stderr is not a
    terminal (a log file, nohup) it writes a plain line every
    ``plain_every_s`` seconds instead — ``Epoch 1/10: 1,234/1,875 batches
    (66%), loss 0.4321, 2.1 min left`` — not 40 KB of carriage returns.
    """

    def __init__(self, min_interval_s: float = 0.25, plain_every_s: float = 30.0):
        super().__init__()
        self.min_interval_s = min_interval_s
        self.plain_every_s = plain_every_s
        self._enabled = True
        self._bar: Any = None
        self._postfix_at = 0.0
        self._plain_started = 0.0
        self._plain_last = 0.0
        self._plain_first_done = 0

    @property
    def plain(self) -> bool:
        """Plain lines (stderr is not a terminal) instead of a redrawn bar."""
        return not sys.stderr.isatty()

    @property
    def is_enabled(self) -> bool:
        return self._enabled

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    def print(self, *args: Any, **kwargs: Any) -> None:
        if self._bar is not None:
            self._bar.write(" ".join(map(str, args)), file=sys.stdout)
        else:
            print(*args, **kwargs)

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self._enabled:
            return
        length = getattr(pl_module, "epoch_length", lambda: None)()
        done = getattr(pl_module, "epoch_batches_done", 0)
        if self.plain:
            self._plain_started = self._plain_last = time.monotonic()
            self._plain_first_done = done
            return
        from tqdm import tqdm

        self._bar = tqdm(total=length, initial=done, desc=f"Epoch {trainer.current_epoch + 1}/{trainer.max_epochs}",
                         unit="batch", leave=False, dynamic_ncols=True, mininterval=self.min_interval_s,
                         file=sys.stderr)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if self._bar is None:
            if self._enabled and self.plain:
                now = time.monotonic()
                if now - self._plain_last >= self.plain_every_s:
                    self._plain_last = now
                    print(self._plain_line(trainer, pl_module, now), file=sys.stderr, flush=True)
            return
        done = getattr(pl_module, "epoch_batches_done", self._bar.n + 1)
        now = time.monotonic()
        if now - self._postfix_at >= 1.0:  # formatting the postfix costs more than a small step
            loss = getattr(pl_module, "last_step_loss", None)
            if loss is not None:
                self._bar.set_postfix(loss=f"{float(loss):.4f}", refresh=False)
            self._postfix_at = now
        self._bar.update(done - self._bar.n)

    def _plain_line(self, trainer: pl.Trainer, pl_module: pl.LightningModule, now: float) -> str:
        done = getattr(pl_module, "epoch_batches_done", 0)
        length = getattr(pl_module, "epoch_length", lambda: None)()
        line = f"Epoch {trainer.current_epoch + 1}/{trainer.max_epochs}: {done:,}"
        if length:
            line += f"/{length:,} batches ({100 * done / length:.0f}%)"
        else:
            line += " batches"
        loss = getattr(pl_module, "last_step_loss", None)
        if loss is not None:
            line += f", loss {float(loss):.4f}"
        rate = (done - self._plain_first_done) / max(now - self._plain_started, 1e-9)
        if length and rate > 0:
            line += f", {_seconds_text((length - done) / rate)} left in the epoch"
        return line

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._close()

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        self._close()

    def _close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
