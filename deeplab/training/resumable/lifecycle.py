"""How a run stops: checkpoints a user never has to think about, and SIGINT/SIGTERM handled cleanly.

:class:`RunCheckpoint` writes ``checkpoints/last.ckpt`` (atomically, through
:class:`~deeplab.training.resumable.checkpointing.AtomicCheckpointIO`)

- when an epoch closes (after its evaluation and history row),
- every ``every_minutes`` of wall time (default 5) and every
  ``every_n_steps`` optimizer steps, at the next step boundary,
- when ``--max-steps`` stops the run part-way through an epoch,
- when a stop was requested by SIGINT or SIGTERM (:class:`StopSignals`):
  then it raises :class:`RunInterrupted`, which ``fit`` turns into
  ``results.json`` with ``"interrupted": true``, the line ``interrupted at
  step N; resume with: python scripts/fit.py --ckpt-path PATH`` and exit status 130 / 143.

So a SIGKILL loses at most the minutes since the last checkpoint. Each
checkpoint carries the run state (:mod:`deeplab.training.resumable.state`: position, settings, history);
``deeplab.training.resumable.resume`` turns them into where a resumed command starts, and
:meth:`RunCheckpoint.on_load_checkpoint` puts Lightning's loops there.

Why a signal does not stop the run inside an evaluation: the checkpoint must
describe a position a resume can continue from; after an epoch's last batch
that position is "epoch closed", which exists only once the evaluation is
done. A second signal stops at once (the last checkpoint stays valid).
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Checkpoint

import deeplab.training.glue as glue
from deeplab.errors import OutputUnwritable, RunInterrupted, fit_command
from deeplab.io import remove_stale_temporaries

__all__ = ["RunInterrupted", "StopSignals", "interrupt_at_once", "RunCheckpoint", "CHECKPOINT_FILE", "DEFAULT_CHECKPOINT_MINUTES"]

CHECKPOINT_FILE = "last.ckpt"
#: wall-time interval between checkpoints unless --checkpoint-every-minutes says otherwise
DEFAULT_CHECKPOINT_MINUTES = 5.0
_HANDLED_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopSignals:
    """Turns SIGINT and SIGTERM into a request to stop at the next safe point.

    The first signal only sets :attr:`requested` (the run saves and stops at
    the next step boundary, or once the epoch's evaluation closes); a second
    one raises :class:`RunInterrupted` at once. Installed by ``fit`` for the
    whole run (handlers are restored afterwards) and again by
    :class:`RunCheckpoint` when training starts, over Lightning's own SIGTERM
    handler (which would end the process with status 0 at the epoch's end).
    Signals can only be handled on the main thread; elsewhere this is inert.
    """

    def __init__(self) -> None:
        self.requested: int | None = None
        self._previous: dict[int, Any] = {}

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for signum in _HANDLED_SIGNALS:
            previous = signal.signal(signum, self._handle)
            self._previous.setdefault(signum, previous)

    def restore(self) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        self._previous.clear()

    def __enter__(self) -> "StopSignals":
        self.install()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.restore()

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested is None:
            self.requested = signum
            return
        raise RunInterrupted(signum, immediate=True)


@contextlib.contextmanager
def interrupt_at_once() -> Iterator[None]:
    """SIGINT/SIGTERM raise :class:`RunInterrupted` immediately (for loops of whole runs, e.g. a
    search between probes; a run inside installs its own step-boundary handling)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handle(signum: int, frame: Any) -> None:
        raise RunInterrupted(signum, immediate=True)

    previous = {signum: signal.signal(signum, handle) for signum in _HANDLED_SIGNALS}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


class RunCheckpoint(Checkpoint):
    """``last.ckpt`` at every epoch close, every few minutes and on a stop request; see the module docstring.

    A subclass of Lightning's ``Checkpoint`` so its ``on_train_epoch_end`` runs
    after the module's, when the epoch's row is recorded.

    Args:
        dirpath: the run's ``checkpoints/`` folder.
        every_n_steps: also save at the first step boundary past each multiple of N.
        every_minutes: also save when this much wall time passed since the last save (0: never).
        stop: the run's :class:`StopSignals` (None: signals are not handled).
        restart_at: (epoch, global_step) when resuming: Lightning's loop state is
            rewritten to start that epoch (``glue.restart_at_epoch_start``).
    """

    def __init__(self, dirpath: str | Path, every_n_steps: int | None = None,
                 every_minutes: float = DEFAULT_CHECKPOINT_MINUTES, stop: StopSignals | None = None,
                 restart_at: tuple[int, int] | None = None):
        self.dirpath = Path(dirpath).absolute()
        self.every_n_steps = every_n_steps
        self.every_seconds = every_minutes * 60.0 if every_minutes else None
        self.stop = stop
        self.restart_at = restart_at
        self.last_saved_step: int | None = None
        self._step_anchor = 0  # every_n_steps counts from here (the step a resume starts at)
        self._last_saved_time = time.monotonic()

    @property
    def path(self) -> Path:
        return self.dirpath / CHECKPOINT_FILE

    # ------------------------------------------------------------------ saving
    def save(self, trainer: pl.Trainer) -> None:
        """Write ``last.ckpt`` now; a full disk is one clear line and the previous file survives."""
        try:
            trainer.save_checkpoint(self.path)
        except OSError as error:
            if self.last_saved_step is not None:
                kept, advice = (f"the previous checkpoint (step {self.last_saved_step}) is intact",
                                f"free space (or give another --out) and resume with: {fit_command()} "
                                f"--ckpt-path {self.path}")
            else:
                kept, advice = ("no earlier checkpoint of this run exists",
                                "free space (or give another --out) and start the run again")
            raise OutputUnwritable(f"could not write the checkpoint {self.path} ({error.strerror or error}); {kept}",
                                   advice) from None
        self.last_saved_step = self._step_anchor = int(trainer.global_step)
        self._last_saved_time = time.monotonic()

    def on_load_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]) -> None:
        if self.restart_at is not None and "loops" in checkpoint:
            epoch, global_step = self.restart_at
            glue.restart_at_epoch_start(checkpoint["loops"], epoch, global_step)

    # --------------------------------------------------------------- triggers
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.is_global_zero:  # a kill -9 mid-write left its temporary; this run alone writes here
            remove_stale_temporaries(self.path)
        self._last_saved_time = time.monotonic()
        self._step_anchor = int(trainer.global_step)
        if self.stop is not None:
            self.stop.install()  # over the SIGTERM handler Lightning registered when fit began

    def on_test_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.stop is not None:
            self.stop.install()  # the final test registers Lightning's handler again (a SIGTERM: exit 0, no results)

    def _agreed(self, trainer: pl.Trainer, *flags: bool) -> list[bool]:
        """Under DDP every process must save (and stop) at the same step: any rank's flag counts."""
        if trainer.world_size == 1:
            return list(flags)
        values = torch.tensor([float(flag) for flag in flags], device=trainer.strategy.root_device)
        summed = trainer.strategy.reduce(values, reduce_op="sum")
        return [bool(value > 0) for value in summed.tolist()]

    def _stop_requested(self) -> bool:
        return self.stop is not None and self.stop.requested is not None

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if pl_module.epoch_complete():
            return  # the epoch-close checkpoint follows, after the evaluation
        step = int(trainer.global_step)
        max_steps = trainer.max_steps
        steps_due = self.every_n_steps is not None and step // self.every_n_steps > self._step_anchor // self.every_n_steps
        max_steps_reached = max_steps is not None and 0 <= max_steps <= step
        time_due = self.every_seconds is not None and time.monotonic() - self._last_saved_time >= self.every_seconds
        stop, time_due = self._agreed(trainer, self._stop_requested(), time_due)
        if stop or time_due or steps_due or max_steps_reached:
            self.save(trainer)
        if stop:
            self._raise_interrupted()

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not pl_module.epoch_closed:
            return  # stopped part-way: already saved at the batch where it stopped
        self.save(trainer)
        (stop,) = self._agreed(trainer, self._stop_requested())
        last_epoch = trainer.current_epoch + 1 >= (trainer.max_epochs or 0)
        max_steps = trainer.max_steps
        finished = last_epoch or (max_steps is not None and 0 <= max_steps <= trainer.global_step)
        if stop and not finished and not trainer.should_stop:
            self._raise_interrupted()  # (a run that is finishing anyway goes on to its final test)

    def _raise_interrupted(self) -> None:
        assert self.stop is not None and self.stop.requested is not None
        raise RunInterrupted(self.stop.requested, self.last_saved_step, self.path)
