"""What deeplab adds to Lightning's ``Callback``: a closed epoch, compiled-step gradient norms, results.

* :class:`EpochObserver` — told when an epoch *closed*: its train and
  evaluation metrics both known (``on_epoch_closed``);
* :class:`GradientObserver` — records the gradient norms a step measured
  between its gradient and its update (``on_gradient_norms``);
* :class:`ResultsContributor` — anything with ``contribute_results(results)``
  adds its part to ``results.json`` (``deeplab.training.fit.fit``).

The two observers are called by :class:`~deeplab.training.module.Classifier`, not by
Lightning: the module is where an epoch closes and where a step's norms are
measured (see each class). This module imports nothing of deeplab, so the module
imports it without a cycle.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import lightning.pytorch as pl
import torch

__all__ = ["EpochObserver", "GradientObserver", "ResultsContributor", "notify_epoch_closed"]


class EpochObserver(pl.Callback):
    """A callback told when an epoch's train and evaluation metrics are both known.

    Lightning runs callbacks' ``on_train_epoch_end`` before the module's, and
    validation before either, so no built-in hook sees a finished epoch's
    train *and* evaluation metrics; :class:`~deeplab.training.module.Classifier` calls
    this one, through :func:`notify_epoch_closed`.
    """

    def on_epoch_closed(self, trainer: pl.Trainer, module: pl.LightningModule, entry: dict[str, float]) -> None:
        """``entry``: epoch (1-based), train_loss, train_acc, val_loss, val_acc."""


def notify_epoch_closed(trainer: pl.Trainer, module: pl.LightningModule, entry: dict[str, float]) -> None:
    """Call ``on_epoch_closed`` of every :class:`EpochObserver` among the trainer's callbacks, in order.

    Called by ``Classifier._close_epoch`` and nowhere else, because only the
    module knows that an epoch closed: it closes right after the epoch's
    evaluation (``on_validation_epoch_end``) or, with no evaluation, in the
    module's ``on_train_epoch_end`` — and only when the epoch is complete
    (``Classifier.epoch_complete``: its real batches, counted inside
    ``training_step``, where a chunk of ``--steps-per-call`` batches is one
    call) or the loss diverged. An epoch stopped part-way (``--max-steps``, a
    signal) does not close: ``results.json`` reports it as ``partial_epoch``,
    although after ``--max-steps`` Lightning still runs its epoch-end hooks.
    """
    for callback in trainer.callbacks:
        if isinstance(callback, EpochObserver):
            callback.on_epoch_closed(trainer, module, entry)


class GradientObserver(pl.Callback):
    """A callback that records gradient norms (:class:`~deeplab.callbacks.gradients.GradientNorms`).

    A :class:`~deeplab.training.module.Classifier` measures them between each gradient and its update,
    in one place for eager and compiled steps (:func:`deeplab.training.optim.gradient_stage`: before a
    gradient clip), and hands them over in :meth:`on_gradient_norms`: once per eager step, once per
    ``training_step`` of compiled steps (whose gradients never reach ``.grad``). Under another
    LightningModule a GradientObserver reads ``.grad`` in ``on_before_optimizer_step``.
    """

    #: steps between full records (the compiled step rounds it up to a multiple of its unroll)
    every_n_steps: int = 10
    #: also the total L1 norm of every step of one epoch (seed 000's measure) ...
    first_epoch_l1: bool = True
    #: ... this one (0-based; seed 000 takes the first)
    l1_epoch: int = 0

    def on_gradient_norms(self, trainer: pl.Trainer, module: pl.LightningModule, steps: list[int], epoch: int,
                          norms: torch.Tensor, full: list[bool] | None = None) -> None:
        """``norms[i]`` = [total L2, total L1, layer L2s…] of global step ``steps[i]`` (steps before it), NaN
        where not computed; ``full[i]``: whether row i is a full record (None: read it off the NaNs)."""


@runtime_checkable
class ResultsContributor(Protocol):
    """A callback that adds its part to ``results.json``: ``fit`` calls ``contribute_results(results)``
    on each of its callbacks that has the method, after training and testing, before writing the file.

    Structural (``isinstance`` checks only that ``contribute_results`` is there
    and not None): a callback need not inherit from this class, e.g. ``GradientNorms`` adds
    ``results["grad"]`` and ``TrainabilityJudge`` ``results["trainability"]``.
    """

    def contribute_results(self, results: dict[str, Any]) -> None:
        """Add to (or amend) ``results`` in place."""
