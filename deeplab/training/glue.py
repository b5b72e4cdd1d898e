"""Where deeplab departs from Lightning's defaults: every override, why, and the test that guards it.

Lightning 2.6 is pinned (``pyproject.toml``, :data:`LIGHTNING_TESTED_MINOR`). The overrides whose code is
here are marked *here*; the others live with the code they change, named below.

1. **Chunks of batches per ``training_step``** (``--steps-per-call``; the DataModule's ``TensorBatches``
   yields them, :meth:`Classifier.training_step <deeplab.training.module.Classifier.training_step>` runs
   one complete update per batch): Lightning's per-batch machinery (fetch, hooks, progress, logging) cost
   ~59 % of a batch-1 step. Guard: ``tests/test_engine.py::test_chunks_train_exactly_the_batch_by_batch_run``.
2. **Optimizer steps counted outside Lightning** (*here*, :func:`count_optimizer_steps`): a compiled step
   updates the parameters inside its graph, so its steps are added to Lightning's counter (a private).
   Guard: ``tests/test_compat.py``, ``tests/test_engine.py::test_compiled_fit_resumes_bit_exactly_mid_group``.
3. **Scalars written at the optimizer step** (*here*, :func:`log_at_step`; ``train/loss_step`` too, by
   ``Classifier._flush_step_losses``): ``self.log`` places a point at Lightning's count of
   ``training_step`` calls — chunks, not steps — and costs ~0.6 ms a call. Every scalar deeplab writes
   lands on one axis, optimizer steps; ``self.log(..., logger=False)`` still feeds callbacks and the
   progress bar. Guard: ``tests/test_tensorboard.py::test_every_scalar_is_on_the_optimizer_step_axis``.
4. **Loop counters rewritten on resume** (*here*, :func:`restart_at_epoch_start`, called by
   ``RunCheckpoint.on_load_checkpoint``): Lightning infers where to resume from private progress
   counters with rules that differ by where the checkpoint was written; deeplab restarts every resume at
   an epoch's start and skips the batches already trained. Guard: ``tests/test_compat.py``,
   ``tests/test_resume.py``, ``tests/test_resume_plan.py``.
5. **A closed epoch told to callbacks** (``callbacks/base.py``, ``EpochObserver``): Lightning runs
   callbacks' ``on_train_epoch_end`` before the module's and validation before both, so no hook sees an
   epoch's train and evaluation metrics together. Guard: ``tests/test_gradients.py``, ``tests/test_fit.py``.
6. **The checkpoint callback subclasses ``Checkpoint``** (``resumable/lifecycle.py``, ``RunCheckpoint``):
   Lightning orders checkpoint callbacks after the others, so its ``on_train_epoch_end`` runs once the
   epoch's row is recorded. Guard: ``tests/test_resume.py``.
7. **SIGTERM handled again when training starts** (``resumable/lifecycle.py``, ``StopSignals``):
   Lightning's own handler ends the process with status 0 at the epoch's end; deeplab's saves at the next
   step boundary and exits 143. Guard: ``tests/test_reliability.py``.
8. **The data shards itself** (``data/datamodules.py``, ``TensorBatches``; ``use_distributed_sampler=False``,
   Lightning's batch limits left at "all"): batches live in memory as uint8 tensors; the DataModule
   splits them by rank and applies ``--limit-train/val-batches`` in real batches, the same images on one
   process or many, and resumes mid-epoch from its own state. Guard: ``tests/test_data.py``.
9. **Schedulers stepped at an epoch's start** (``Classifier._sync_schedulers``), not its end: a closed
   epoch's state stays as it was, so a run stopped by ``--limit-train-batches`` can reopen its last epoch.
   Guard: ``tests/test_resume.py``.
10. **Atomic checkpoint writes** (``resumable/checkpointing.py``, ``AtomicCheckpointIO``): Lightning's
    ``TorchCheckpointIO`` writes into the destination, so a kill mid-write truncated ``last.ckpt``.
    Guard: ``tests/test_reliability.py``.
11. **Lightning's console quieted** (*here*, :func:`quiet_lightning`): its banners and the warnings that
    do not apply to deeplab's loop (each filter says why) drown the seeds' epoch lines. Guard: the
    console tests of ``tests/test_fit.py``.
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

import lightning

__all__ = ["LIGHTNING_TESTED_MINOR", "lightning_minor", "restart_at_epoch_start", "count_optimizer_steps",
           "log_at_step", "quiet_lightning"]

#: the Lightning minor release whose private loop state ``restart_at_epoch_start`` writes
LIGHTNING_TESTED_MINOR = (2, 6)

_PROGRESS_KEYS = ("ready", "started", "processed", "completed")


def lightning_minor() -> tuple[int, int]:
    major, minor = lightning.__version__.split(".")[:2]
    return int(major), int(minor)


def restart_at_epoch_start(loops: dict[str, Any], epoch: int, global_step: int) -> None:
    """Rewrite a checkpoint's ``loops`` entry (in place) to "epoch ``epoch`` is about to start".

    Why: Lightning infers where to resume from its progress counters, with
    rules that differ by where the checkpoint was written (batch end, epoch
    end, after ``max_steps``) and that treat any run with ``max_steps`` set as
    mid-epoch (``FitLoop._iteration_based_training``). deeplab records its own
    position (``Classifier.position``) and resumes every run the same way:
    Lightning starts a fresh epoch ``epoch`` (all epoch-start hooks run, the
    train loader is requested again) with ``global_step`` optimizer steps
    done; the DataModule skips the batches the epoch had already trained
    (``ImageDataModule.resume_at``) and the module keeps that epoch's running
    sums (``Classifier.continue_epoch_at``).

    The structure written is ``FitLoop.state_dict()`` of Lightning 2.6:
    ``epoch_progress`` ({total, current} × {ready, started, processed,
    completed}), ``epoch_loop.batch_progress`` (the same plus
    ``is_last_batch``), and for manual optimization
    ``epoch_loop.manual_optimization.optim_step_progress`` ({total, current} ×
    {ready, completed}), whose ``total.completed`` is ``Trainer.global_step``.
    """
    fit_loop = loops["fit_loop"]
    epochs = fit_loop["epoch_progress"]
    for scope in ("total", "current"):
        for key in _PROGRESS_KEYS:
            epochs[scope][key] = epoch
    batches = fit_loop["epoch_loop.batch_progress"]
    finished_batches = batches["total"]["completed"]
    for key in _PROGRESS_KEYS:
        batches["total"][key] = finished_batches  # nothing in flight
        batches["current"][key] = 0  # a new epoch: no batch of it seen yet
    batches["is_last_batch"] = False
    steps = fit_loop["epoch_loop.manual_optimization.optim_step_progress"]
    for scope in ("total", "current"):
        for key in ("ready", "completed"):
            steps[scope][key] = global_step
    validation = fit_loop.get("epoch_loop.val_loop.batch_progress")
    if validation is not None:
        for scope in ("total", "current"):
            for key in _PROGRESS_KEYS:
                validation[scope][key] = 0
        validation["is_last_batch"] = False


def count_optimizer_steps(trainer: Any, count: int) -> None:
    """Advance ``trainer.global_step`` by ``count`` optimizer steps taken outside Lightning.

    Why: under manual optimization Lightning counts a step each time
    ``LightningOptimizer.step`` runs; deeplab's compiled step
    (``deeplab.training.engine.compiled_step``) updates the parameters inside its graph
    instead, so it reports its steps here. The counter is
    ``fit_loop.epoch_loop.manual_optimization.optim_step_progress``, a
    ``_Progress`` whose ``total.completed`` is ``Trainer.global_step``.
    """
    progress = trainer.fit_loop.epoch_loop.manual_optimization.optim_step_progress
    for scope in (progress.total, progress.current):
        scope.ready += count
        scope.completed += count


def log_at_step(module: Any, metrics: dict[str, float]) -> None:
    """Write ``metrics`` to the module's logger at its optimizer step (rank 0; nothing without a logger).

    The one way deeplab's scalars reach TensorBoard (override 3): the epoch's train and evaluation metrics
    at the step that closed it, on the axis of ``train/loss_step`` and ``grad/*``."""
    trainer = getattr(module, "_trainer", None)
    if trainer is None or module.logger is None or not trainer.is_global_zero:
        return
    module.logger.log_metrics({name: float(value) for name, value in metrics.items()}, step=int(module.global_step))


def quiet_lightning() -> None:
    """Lightning's banners and the warnings that do not apply to deeplab's loop, silenced (override 11)."""
    # Lightning's banners ("GPU available: False...") and advice drown the seeds' epoch lines.
    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")  # the data is in memory
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")  # Lightning's own use of a deprecated torch name
    warnings.filterwarnings("ignore", message=".*predefined.*`log_every_n_steps`.*")  # deeplab logs by step itself
    warnings.filterwarnings("ignore", message=".*smaller than the logging interval.*")
    # A diverged epoch's NaN losses: the run already says it diverged, in one line.
    warnings.filterwarnings("ignore", message=".*Encountered `nan` values in tensor.*")
    # A resumed run steps its per-epoch schedule up to the current epoch before its first step (override 9).
    warnings.filterwarnings("ignore", message=".*lr_scheduler.step\\(\\)` before `optimizer.step\\(\\)`.*")
    # ImageDataModule resumes mid-epoch through its own checkpoint state (override 8), which Lightning's
    # check for a stateful dataloader cannot see.
    warnings.filterwarnings("ignore", message=".*your dataloader is not resumable.*")
    warnings.filterwarnings("ignore", message=".*callbacks used to create the checkpoint need to be provided.*")
    # Epoch metrics come from torchmetrics, which already reduce across processes.
    warnings.filterwarnings("ignore", message=".*when logging on epoch level in distributed setting.*")
