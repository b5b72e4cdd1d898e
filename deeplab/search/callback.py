"""``TrainabilitySearch``: seed 002's maximum-depth search as a Lightning callback.

The shape of Lightning's own tuners (``BatchSizeFinder``, ``LearningRateFinder``):
at ``on_fit_start`` it runs trial fits, picks a value and lets the real fit go
on. Here the trial fits are the search's probes — fresh networks of the
module's depth family at depths k, trained with the module's optimizer
settings on the trainer's DataModule's data, judged by
:class:`~deeplab.callbacks.trainability.TrainabilityJudge` — run by the same
:func:`~deeplab.search.runner.run_search` that ``scripts/search.py`` runs (same
bisection, same ledger, same ``search.json``/``report.md``/``search.png``).
Then the module's network is replaced by a fresh one at the deepest trainable
depth and the real fit trains it (``fit_after=True``), or the fit stops.

Single device: the probes train one after another in this process (or in
``parallel`` worker processes); under DDP use ``scripts/search.py --parallel``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

import lightning.pytorch as pl
import torch

from deeplab.errors import DeeplabError

__all__ = ["TrainabilitySearch"]

#: model keywords that come from the data or the search, not from the family's own options
_SHAPE_KEYS = ("in_channels", "num_classes", "image_size", "depth", "init")


class TrainabilitySearch(pl.Callback):
    """Find the deepest trainable depth of the module's family before the fit, then train that depth.

    Args:
        lower, upper, step: the candidate depths ``lower, lower + step, …, upper``.
        threshold, metric: trainable when the metric (``test_error``, ``train_error``
            or ``either``) after ``epochs`` epochs is below ``threshold`` (seed 002: 0.2).
        epochs: epochs per probe (seed 002: 3).
        seeds: one search per seed; the boundary is their lower median.
        parallel: probes trained at once (worker processes; 1: in this process).
        out: the ledger, ``search.json``, report and probe runs; a second fit with the same ``out`` and
            settings reads its probes from the ledger. Default: a temporary folder, removed after the
            search — nothing is written into the working directory unless a folder is given.
        fit_after: train the chosen depth in the real fit (False: stop after the search).
        limit_train_batches, limit_val_batches: shorten each probe (smoke runs).
        backend, ray_address: ``"ray"`` sends the probes to a Ray cluster (as ``search.py --backend ray``).
        echo: where progress lines go (default: print).

    After the search: :attr:`max_trainable` (None when nothing trained),
    :attr:`summary` (``search.json``'s content), and
    ``trainer.callback_metrics["trainability/max_trainable"]`` (NaN for none).
    """

    def __init__(self, lower: int = 3, upper: int = 24, step: int = 3, threshold: float = 0.2,
                 metric: str = "test_error", epochs: int = 3, seeds: Sequence[int] = (0,), parallel: int = 1,
                 out: str | Path | None = None, fit_after: bool = True, limit_train_batches: int | float | None = None,
                 limit_val_batches: int | float | None = None, echo: Callable[[str], None] | None = None,
                 backend: str = "local", ray_address: str | None = None, runner: Any = None):
        from deeplab.callbacks.trainability import check_metric, check_threshold

        for name, value in (("lower", lower), ("upper", upper), ("step", step), ("parallel", parallel)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise DeeplabError(f"TrainabilitySearch({name}=…) must be a positive integer, got {value!r}")
        if isinstance(seeds, (str, bytes)) or not all(isinstance(seed, int) and not isinstance(seed, bool)
                                                      and seed >= 0 for seed in seeds):
            raise DeeplabError(f"TrainabilitySearch(seeds=…) takes a sequence of integers ≥ 0 (e.g. (0, 1, 2)), "
                               f"got {seeds!r}")
        self.lower, self.upper, self.step = int(lower), int(upper), int(step)
        self.threshold = check_threshold(threshold)
        self.metric = check_metric(metric)
        if not isinstance(epochs, int) or epochs < 1:
            raise DeeplabError(f"epochs must be a positive integer, got {epochs}")
        self.epochs = epochs
        self.seeds = tuple(int(seed) for seed in seeds)
        self.parallel = int(parallel)
        self.out = None if out is None else Path(out)
        self.fit_after = fit_after
        self.limit_train_batches = limit_train_batches
        self.limit_val_batches = limit_val_batches
        self.echo = echo
        self.backend, self.ray_address = backend, ray_address
        self.runner = runner  # tests: a fake probe runner (see deeplab.search.runner.run_search)
        self.max_trainable: int | None = None
        self.summary: dict[str, Any] | None = None
        self._scratch: str | None = None  # the temporary folder of a search given no `out`

    # ------------------------------------------------------------------ the plan
    def search_plan(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> Any:
        """The :class:`~deeplab.search.runner.SearchPlan` this trainer and module stand for."""
        from deeplab.config import FitConfig
        from deeplab.search.runner import SearchPlan

        hparams = pl_module.hparams
        family = hparams.get("model_name")
        if not isinstance(family, str):
            raise DeeplabError("TrainabilitySearch needs a Classifier of a registered depth family "
                               "(e.g. Classifier('cnn_tanh')), not an nn.Module instance")
        datamodule = trainer.datamodule
        if datamodule is None or not hasattr(datamodule, "dims"):
            raise DeeplabError("TrainabilitySearch trains its probes on the trainer's DataModule: pass a deeplab "
                               "DataModule to trainer.fit(module, datamodule)")
        kwargs = dict(hparams.get("model_kwargs") or {})
        cls = type(datamodule)
        training = FitConfig(
            model=family, dataset=datamodule.name, data_dir=str(datamodule.data_dir),
            init=kwargs.get("init"), epochs=self.epochs, batch_size=datamodule.batch_size,
            lr=hparams.lr, momentum=hparams.momentum, weight_decay=hparams.weight_decay,
            optimizer=hparams.optimizer, loss=hparams.loss, schedule=hparams.schedule,
            val_split="none" if datamodule.val_split is None else datamodule.val_split,
            augment=datamodule.augment, crop_padding=datamodule.crop_padding if datamodule.augment else None,
            augment_eval=datamodule.augment_eval, input_noise_std=datamodule.input_noise_std,
            # the data set's own statistics stay "None" so the probes share ledger keys with search.py's
            normalize_mean=None if tuple(datamodule.mean) == tuple(cls.mean) else tuple(datamodule.mean),
            normalize_std=None if tuple(datamodule.std) == tuple(cls.std) else tuple(datamodule.std),
            eval_mode_after_first_epoch=bool(hparams.get("eval_mode_after_first_epoch", False)),
            limit_train_batches=self.limit_train_batches, limit_val_batches=self.limit_val_batches,
            accelerator="gpu" if pl_module.device.type == "cuda" else "cpu",
            model_kwargs={k: v for k, v in kwargs.items() if k not in _SHAPE_KEYS},
        )
        out = self.out if self.out is not None else Path(self._scratch or ".")
        return SearchPlan(model=family, upper=self.upper, lower=self.lower, step=self.step,
                          threshold=self.threshold, metric=self.metric, seeds=self.seeds, parallel=self.parallel,
                          out=str(out), training=training, backend=self.backend, ray_address=self.ray_address)

    # ------------------------------------------------------------------ Lightning hooks
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.summary is not None:  # restored from a checkpoint: searched already
            return
        from deeplab.training.resumable.checkpointing import capture_rng_state, restore_rng_state
        from deeplab.search.runner import echo_line, max_depth_line, run_search

        import tempfile

        scratch = tempfile.TemporaryDirectory(prefix="deeplab-search-") if self.out is None else None
        self._scratch = None if scratch is None else scratch.name
        echo = self.echo or echo_line
        rng = capture_rng_state()  # the probes seed everything; the real fit keeps its own streams
        try:
            plan = self.search_plan(trainer, pl_module)
            summary = run_search(plan, runner=self.runner, echo=echo)
        finally:
            restore_rng_state(rng)
            if scratch is not None:
                scratch.cleanup()
                self._scratch = None
        self.summary = summary
        self.max_trainable = summary["max_trainable"]
        self._publish(trainer)
        echo(max_depth_line(summary))
        if self.max_trainable is None or not self.fit_after:
            if self.max_trainable is None and self.fit_after:
                echo(f"TrainabilitySearch: nothing trainable from depth {self.lower}; the fit stops")
            trainer.should_stop = True
            return
        self._use_depth(trainer, pl_module, self.max_trainable)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._publish(trainer)  # Lightning's sanity check cleared the callback metrics

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._publish(trainer)

    def _publish(self, trainer: pl.Trainer) -> None:
        if self.summary is None:
            return
        value = float("nan") if self.max_trainable is None else float(self.max_trainable)
        trainer.callback_metrics["trainability/max_trainable"] = torch.tensor(value)

    @staticmethod
    def _use_depth(trainer: pl.Trainer, pl_module: pl.LightningModule, depth: int) -> None:
        """A fresh network of the family at ``depth`` in place of the module's, with a new optimizer."""
        from deeplab.models import create_model

        kwargs = {**(pl_module.hparams.get("model_kwargs") or {}), "depth": depth}
        pl_module.model = create_model(pl_module.hparams.model_name, **kwargs).to(pl_module.device)
        pl_module.hparams["model_kwargs"] = kwargs  # the checkpoint rebuilds the chosen depth
        trainer.strategy.setup_optimizers(trainer)  # the old optimizer holds the old network's parameters

    def state_dict(self) -> dict[str, Any]:
        return {"max_trainable": self.max_trainable, "summary": self.summary}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.max_trainable = state.get("max_trainable")
        self.summary = state.get("summary")

