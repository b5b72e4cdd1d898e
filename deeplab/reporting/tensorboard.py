"""What a run writes for TensorBoard beyond its scalars: runs you can compare, and charts you can read.

* **HParams** — the settings that make runs differ (:data:`HPARAM_SETTINGS`; written when
  training starts) and its outcome as the HParams metrics (written when it
  ends): ``hparams/val_acc``, ``hparams/test_acc``, ``hparams/train_acc``,
  ``hparams/diverged`` and, for a search probe, ``hparams/trainable``. So the
  HParams tab lines up runs (or a search's probes) by depth, lr, init… and
  their result.
* **Custom Scalars** — one layout: loss and accuracy (train and evaluation in
  one chart each) first, then every layer's gradient L2 norm in one multi-line
  chart and the total L1/L2 in another (instead of one chart per layer).
* **Text** — the resolved config (``config``), as ``config.json`` holds it.

Scalars themselves reach the logger at the optimizer step (``deeplab.training.glue.log_at_step``), never
through ``self.log``, so Lightning's automatic ``epoch`` scalar (a flat staircase that sorted first in
the Scalars tab) is never written.
"""

from __future__ import annotations

import json
import math
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.loggers import TensorBoardLogger

__all__ = ["eval_tag", "RunRecords", "HPARAM_METRICS", "HPARAM_SETTINGS", "custom_scalars_layout", "log_run_start", "log_run_end"]

#: the settings that make runs differ, as the HParams tab's columns (the whole config is in the Text tab)
HPARAM_SETTINGS = ("model", "dataset", "depth", "init", "epochs", "batch_size", "lr", "momentum", "weight_decay",
                   "optimizer", "loss", "schedule", "val_split", "augment", "crop_padding", "normalize_std",
                   "input_noise_std", "eval_mode_after_first_epoch", "seed", "precision", "devices", "compile")
#: the HParams tab's metric columns, filled when the run ends
HPARAM_METRICS = ("hparams/val_acc", "hparams/test_acc", "hparams/train_acc", "hparams/diverged",
                  "hparams/trainable")


def eval_tag(eval_split: str) -> str:
    """The tag prefix of each epoch's evaluation, named for the split evaluated: ``test/`` (the seeds'
    protocol: the test split every epoch) or ``val/`` (a held-out validation split, ``--val-split``)."""
    return "test" if eval_split == "test" else "val"


def custom_scalars_layout(eval_split: str = "test") -> dict[str, Any]:
    """The Custom Scalars tab: loss and accuracy first, then the gradient norms overlaid."""
    tag = eval_tag(eval_split)
    return {
        "1 training": {
            f"loss (train, {eval_split})": ["Multiline", ["train/loss", f"{tag}/loss", "train/loss_step"]],
            f"accuracy (train, {eval_split})": ["Multiline", ["train/acc", f"{tag}/acc"]],
        },
        "2 gradients": {
            "per-layer L2 norm (all layers)": ["Multiline", [r"grad/l2/.*"]],
            "total norms (L2, L1, first layer)": ["Multiline", ["grad/l2_total", "grad/l1_total",
                                                                "grad/first_layer"]],
        },
    }


def _hparam_value(value: Any) -> Any:
    """The HParams plugin takes numbers, strings and booleans; the rest becomes text."""
    if isinstance(value, bool) or isinstance(value, (int, float)) and not isinstance(value, bool):
        return value
    if value is None:
        return "none"
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, default=str)


def log_run_start(logger: TensorBoardLogger, config: dict[str, Any], eval_split: str = "test") -> None:
    """Hyperparameters (with the metric columns), the custom-scalars layout and the config text."""
    from torch.utils.tensorboard.summary import hparams

    experiment = logger.experiment
    params = {name: _hparam_value(config[name]) for name in HPARAM_SETTINGS if name in config}
    exp, ssi, sei = hparams(params, {name: 0.0 for name in HPARAM_METRICS})
    writer = experiment.file_writer
    for summary in (exp, ssi, sei):
        writer.add_summary(summary)
    experiment.add_custom_scalars(custom_scalars_layout(eval_split))
    text = json.dumps({k: v for k, v in config.items()}, indent=2, sort_keys=True, default=str)
    # Markdown: a four-space indent renders the JSON as a code block
    experiment.add_text("config", "\n".join("    " + line for line in text.splitlines()), 0)


def final_metrics(results: dict[str, Any]) -> dict[str, float]:
    """The run's outcome for the HParams tab (missing values are left out, not written as 0)."""
    history = results.get("history") or []
    last = history[-1] if history else {}
    values = {
        "hparams/val_acc": last.get("val_acc"),
        "hparams/test_acc": results.get("test_acc"),
        "hparams/train_acc": last.get("train_acc"),
        "hparams/diverged": 1.0 if results.get("diverged") else 0.0,
    }
    verdict = results.get("trainability")
    if verdict is not None:
        values["hparams/trainable"] = 1.0 if verdict.get("trainable") else 0.0
    return {name: float(value) for name, value in values.items()
            if value is not None and math.isfinite(float(value))}


def log_run_end(logger: TensorBoardLogger, results: dict[str, Any]) -> None:
    """Write :func:`final_metrics` at the run's last step and flush."""
    experiment = logger.experiment
    step = int(results.get("global_step") or 0)
    for name, value in final_metrics(results).items():
        experiment.add_scalar(name, value, step)
    experiment.flush()


class RunRecords(pl.Callback):
    """Writes :func:`log_run_start` when a fresh run starts training (rank 0; a resumed run's
    first segment already wrote it into the same run directory)."""

    def __init__(self, config: dict[str, Any], eval_split: str = "test", resumed: bool = False):
        self.config, self.eval_split, self.resumed = config, eval_split, resumed

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.resumed or not trainer.is_global_zero or not isinstance(trainer.logger, TensorBoardLogger):
            return
        log_run_start(trainer.logger, self.config, self.eval_split)
