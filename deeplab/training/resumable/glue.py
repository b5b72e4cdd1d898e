"""Every use of a Lightning private, in one place, pinned and tested.

Lightning changes its internals between minor versions; ``pyproject.toml``
pins ``lightning`` to the minor release these functions were written and
tested against (:data:`LIGHTNING_TESTED_MINOR`), and ``tests/test_compat.py``
exercises each one against the installed Lightning so a move fails there
first, in one obvious place.
"""

from __future__ import annotations

from typing import Any

import lightning

__all__ = ["LIGHTNING_TESTED_MINOR", "lightning_minor", "restart_at_epoch_start", "count_optimizer_steps"]

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
