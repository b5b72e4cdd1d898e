"""deeplab: what decides whether a deep network trains at all, one command per experiment.

The library in one import (names load on first use, so ``import deeplab`` stays
instant and the scripts' ``--help`` never waits for torch)::

    import lightning as L
    import deeplab

    data = deeplab.MNISTDataModule("data", batch_size=256)
    search = deeplab.TrainabilitySearch(lower=3, upper=12, step=3, epochs=1)
    module = deeplab.Classifier("cnn_tanh", datamodule=data, optimizer="sgd", lr=0.01)
    L.Trainer(max_epochs=1, callbacks=[search]).fit(module, data)
    print(search.max_trainable)

Models: :func:`create_model`, :func:`list_models`, :func:`model_spec`. Data:
:class:`MNISTDataModule`, :class:`FashionMNISTDataModule`,
:class:`CIFAR10DataModule`. Training: :class:`Classifier` (manual
optimization), :class:`MomentumSGD` (the seeds' hand-written optimizer),
:func:`fit` / :class:`FitConfig` (what ``scripts/fit.py`` runs), :func:`evaluate` (a checkpoint's test
metrics, from the checkpoint alone), :func:`diagnose` (trainability at initialization: signal
propagation, correlation depth scale, gradient growth, Jacobian spectrum, a predicted depth). Callbacks:
:class:`GradientNorms`, :class:`SignalPropagation`, :class:`TrainabilityJudge`, :class:`TrainabilitySearch`.
"""

import logging

__version__ = "0.1.0"

# Inductor (the compiled step, the fused CPU kernels) logs "No CUDA runtime is found, using
# CUDA_HOME=…" at its first compile on a CPU-only machine: noise in a training console
logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)

from deeplab._lazy import lazy_names

#: public name → the module that defines it
_PUBLIC = {
    "create_model": "deeplab.models",
    "list_models": "deeplab.models",
    "model_spec": "deeplab.models",
    "MNISTDataModule": "deeplab.data.datamodules",
    "FashionMNISTDataModule": "deeplab.data.datamodules",
    "CIFAR10DataModule": "deeplab.data.datamodules",
    "create_datamodule": "deeplab.data.datamodules",
    "Classifier": "deeplab.training.module",
    "EpochObserver": "deeplab.callbacks.base",
    "MomentumSGD": "deeplab.training.optim",
    "GradientNorms": "deeplab.callbacks.gradients",
    "TrainabilityJudge": "deeplab.callbacks.trainability",
    "TrainabilitySearch": "deeplab.search.callback",
    "FitConfig": "deeplab.config",
    "fit": "deeplab.training.fit",
    "evaluate": "deeplab.training.evaluate",
    "diagnose": "deeplab.diagnosis.diagnose",
    "SignalPropagation": "deeplab.callbacks.signal_propagation",
    "DeeplabError": "deeplab.errors",
}

__all__ = sorted(_PUBLIC)

__getattr__, __dir__ = lazy_names(__name__, _PUBLIC)
