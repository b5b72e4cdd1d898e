"""The callbacks a training run is observed through, one module per concern.

* :mod:`~deeplab.callbacks.base` — :class:`EpochObserver` (told when an epoch
  closed) and :class:`GradientObserver` (gradient norms, also from a compiled
  step), the two hooks the :class:`~deeplab.training.module.Classifier` calls itself,
  and :class:`ResultsContributor` (adds to ``results.json``);
* :mod:`~deeplab.callbacks.progress` — :class:`EpochLine` (the seeds' per-epoch
  line), :class:`BatchProgressBar` (counts batches, not chunks) and the line
  formatting;
* :mod:`~deeplab.callbacks.throughput` — :class:`Throughput` (training images
  per second for ``results.json``);
* :mod:`~deeplab.callbacks.gradients` — :class:`GradientNorms` (per-layer and
  total gradient norms: TensorBoard, ``results.json``, ``grad_norms.png``) and
  its helpers;
* :mod:`~deeplab.callbacks.signal_propagation` — :class:`SignalPropagation` (the
  diagnosis at initialization, :mod:`deeplab.diagnosis`, repeated every N steps into
  TensorBoard);
* :mod:`~deeplab.callbacks.trainability` — :class:`TrainabilityJudge` (a
  probe's per-epoch errors, divergence and verdict, for the depth search) and
  the verdict rule ``judge_errors``.

Callbacks that belong to a mechanism stay with it: ``RunCheckpoint``
(:mod:`deeplab.training.resumable.lifecycle`, stopping and resuming), ``RunRecords``
(:mod:`deeplab.reporting.tensorboard`, with the HParams and layout it writes),
``WriteRunConfig`` (:mod:`deeplab.training.fit`), ``TrainabilitySearch``
(:mod:`deeplab.search.callback`, the search run from a Trainer); the recipes'
seed-specific ones are :mod:`deeplab.experiments.callbacks`.

Names load on first use (PEP 562), as in :mod:`deeplab` and :mod:`deeplab.search`:
importing :mod:`deeplab.callbacks.base` (as :mod:`deeplab.training.module` does) loads
no other callback. Inside ``deeplab``, import from the defining submodule, so
``tests/test_architecture.py`` sees the import.
"""

from deeplab._lazy import lazy_names

#: public name → the submodule that defines it
_PUBLIC = {
    "EpochObserver": ".base",
    "GradientObserver": ".base",
    "ResultsContributor": ".base",
    "EpochLine": ".progress",
    "BatchProgressBar": ".progress",
    "Throughput": ".throughput",
    "GradientNorms": ".gradients",
    "SignalPropagation": ".signal_propagation",
    "TrainabilityJudge": ".trainability",
}

__all__ = sorted(_PUBLIC)

__getattr__, __dir__ = lazy_names(__name__, _PUBLIC)
