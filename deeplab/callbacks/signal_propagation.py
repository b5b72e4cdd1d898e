"""``SignalPropagation``: the diagnosis of :mod:`deeplab.diagnosis` written to TensorBoard while a run trains
(``fit.py --signal-every N``), so a run shows its signal propagation changing as it learns.

At the start of training and every ``every_n_steps`` optimizer steps it measures the network as it is
then, on a fixed batch (the first ``examples`` training images, normalized as for evaluation), and
writes at that step:

* scalars ``signal/correlation_depth_scale`` (ξ_c), ``signal/gradient_growth`` (``‖∂loss/∂h_l‖``'s
  growth per layer toward the input), ``signal/predicted_max_depth`` (6 · min(ξ_c, ξ_∇),
  :func:`deeplab.diagnosis.diagnose.predict_depth`), ``signal/last_layer_variance`` and
  ``signal/last_layer_correlation``; with ``jacobian=True`` also ``signal/jacobian_chi1``;
* images ``signal/propagation``, ``signal/correlation`` and ``signal/gradients``
  (:mod:`deeplab.diagnosis.figures`).

The measurements run on a copy of the network (batch norms use batch statistics and keep none) and
draw no random numbers, so they change nothing the run learns; it holds no state a resume would need.
To record at exactly every N-th step it needs every batch (``needs_every_batch``): the engine then hands
``training_step`` one batch at a time (the same updates) and trains eagerly where it would otherwise have
compiled the whole step (equal to a few float ulps; :mod:`deeplab.training.engine`).
"""

from __future__ import annotations

import math
from typing import Any

import lightning.pytorch as pl
import torch

__all__ = ["SignalPropagation"]

#: examples in the callback's fixed batch (the correlation uses their 32·31/2 pairs)
SIGNAL_EXAMPLES = 32


class SignalPropagation(pl.Callback):
    """Measure signal propagation at the start of training and every ``every_n_steps`` steps (see the module
    docstring). ``examples``: the fixed batch's size; ``jacobian``: also the last stage's Jacobian spectrum
    (exact, costlier: seconds per record for seed 002's deepest families)."""

    needs_every_batch = True  # a record at exactly every N-th optimizer step

    def __init__(self, every_n_steps: int, examples: int = SIGNAL_EXAMPLES, jacobian: bool = False):
        from deeplab.errors import DeeplabError

        for name, value, least in (("every_n_steps", every_n_steps, 1), ("examples", examples, 2)):
            if not isinstance(value, int) or isinstance(value, bool) or value < least:
                raise DeeplabError(f"SignalPropagation: {name} must be an integer ≥ {least}, got {value!r}")
        self.every_n_steps = every_n_steps
        self.examples = examples
        self.jacobian = jacobian
        self._batch: tuple[torch.Tensor, torch.Tensor] | None = None
        self._last_step: int | None = None
        self.records: list[dict[str, Any]] = []  # (step, scalars) of this process's records, for callers

    def _fixed_batch(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> tuple[torch.Tensor, torch.Tensor]:
        if self._batch is None:
            datamodule = trainer.datamodule
            images, labels = datamodule.split("train")
            count = min(self.examples, len(images))
            x = datamodule.device_transform(images[:count].clone(), training=False)
            self._batch = (x.to(pl_module.device), labels[:count].to(pl_module.device))
        return self._batch

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._record(trainer, pl_module)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        # a training_step may hold several optimizer steps (chunks): record once per multiple crossed
        step = int(trainer.global_step)
        if self._last_step is None or step // self.every_n_steps > self._last_step // self.every_n_steps:
            self._record(trainer, pl_module)

    def _record(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        from deeplab.callbacks.gradients import _experiment
        from deeplab.diagnosis.measure import diagnose_model

        step = int(trainer.global_step)
        self._last_step = step
        if not trainer.is_global_zero:
            return
        x, y = self._fixed_batch(trainer, pl_module)
        network = getattr(pl_module, "model", pl_module)
        with torch.random.fork_rng(devices=[]):
            record = diagnose_model(network, x, y, jacobian=self.jacobian)
        record.update(model=getattr(pl_module, "hparams", {}).get("model_name"), depth=getattr(network, "depth", None),
                      step=step)
        scalars = _scalars(record)
        self.records.append(dict(step=step, **scalars))
        experiment = _experiment(trainer)
        if experiment is None:
            return
        for tag, value in scalars.items():
            experiment.add_scalar(tag, value, step)
        from deeplab.diagnosis.figures import correlation_figure, gradients_figure, signal_propagation_figure
        from deeplab.reporting.figures import pyplot

        plt = pyplot()
        for tag, draw in (("signal/propagation", signal_propagation_figure), ("signal/correlation", correlation_figure),
                          ("signal/gradients", gradients_figure)):
            figure = draw(record)
            experiment.add_figure(tag, figure, step, close=True)
            plt.close(figure)


def _scalars(record: dict[str, Any]) -> dict[str, float]:
    last = record["layers"][-1]
    values = {
        "signal/correlation_depth_scale": record["correlation"].get("depth_scale"),
        "signal/gradient_growth": record["gradient_growth"].get("representation"),
        "signal/predicted_max_depth": record["prediction"].get("predicted_max_depth"),
        "signal/last_layer_variance": last["variance"],
        "signal/last_layer_correlation": last["correlation"],
    }
    if record.get("jacobian"):
        values["signal/jacobian_chi1"] = record["jacobian"]["chi1"]
    # TensorBoard draws no infinity: an unbounded depth scale is left out of that step, not drawn as a spike
    return {tag: float(value) for tag, value in values.items() if value is not None and math.isfinite(value)}

