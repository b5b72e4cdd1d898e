"""What a run writes for TensorBoard beyond its scalars: runs you can compare, and charts you can read.

* **HParams** — the settings people compare (:data:`HPARAM_SETTINGS`) plus whatever else the run
  changed from its seed protocol (written when training starts; strings, booleans and numbers as
  TensorBoard types them, integers as text so the table shows ``256``, not ``256.00``), and its
  outcome as the HParams metrics (written when it ends): ``hparams/test_acc``,
  ``hparams/train_acc``, ``hparams/diverged``, ``hparams/val_acc`` with a held-out split, and for a
  search probe ``hparams/trainable`` — only the metrics the run writes are declared, so the
  parallel-coordinates view has no empty axis. So the HParams tab lines up runs (or a search's
  probes) by depth, lr, init… and their result.
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

__all__ = ["eval_tag", "RunRecords", "HPARAM_METRICS", "HPARAM_SETTINGS", "custom_scalars_layout", "hparams_summaries",
           "log_run_start", "log_run_end"]

#: the settings people compare, the HParams tab's first columns (the whole config is in the Text tab);
#: the settings a run changed from its protocol follow them
HPARAM_SETTINGS = ("model", "depth", "init", "lr", "batch_size", "optimizer", "seed")
#: the columns the HParams tab shows before any is ticked. TensorBoard shows five, sorted by
#: "differs" then name, from the experiment summary of whichever run it reads first — it cannot know
#: what differs across runs written one at a time — so these are marked as the ones that differ
#: (the depth, init, lr, batch size and seed: what runs are compared by; model and optimizer follow,
#: then what each run changed from its protocol, a tick away)
HPARAM_SHOWN = ("depth", "init", "lr", "batch_size", "seed")
#: the HParams tab's metric columns, filled when the run ends (declared only where the run writes them)
HPARAM_METRICS = ("hparams/test_acc", "hparams/train_acc", "hparams/diverged", "hparams/val_acc",
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
    """The HParams plugin types a value as a float, a string or a boolean: floats stay numbers, booleans
    booleans, and integers (a batch size, a depth, a seed) become text — as numbers the table would
    print ``256.00`` — as does the rest."""
    if isinstance(value, bool) or isinstance(value, float):
        return value
    if value is None:
        return "none"
    if isinstance(value, (str, int)):
        return str(value)
    return json.dumps(value, sort_keys=True, default=str)


def hparams_summaries(params: dict[str, Any], metrics: tuple[str, ...]) -> tuple[Any, Any, Any]:
    """The HParams plugin's three summaries (experiment, session start, session end) for ``params``
    (already :func:`_hparam_value`-typed) and ``metrics``. torch's ``hparams`` types a ``bool`` as a
    float (it is an ``int``); booleans are added here as the plugin's BOOL."""
    from tensorboard.plugins.hparams import api_pb2, plugin_data_pb2
    from torch.utils.tensorboard.summary import hparams

    booleans = {name: value for name, value in params.items() if isinstance(value, bool)}
    exp, ssi, sei = hparams({name: value for name, value in params.items() if name not in booleans},
                            {name: 0.0 for name in metrics})
    for summary in (exp, ssi):
        plugin_data = summary.value[0].metadata.plugin_data
        content = plugin_data_pb2.HParamsPluginData.FromString(plugin_data.content)
        for name, value in booleans.items():
            if summary is exp:
                content.experiment.hparam_infos.add(name=name, type=api_pb2.DATA_TYPE_BOOL)
            else:
                content.session_start_info.hparams[name].bool_value = value
        if summary is exp:
            for info in content.experiment.hparam_infos:
                info.differs = info.name in HPARAM_SHOWN
        plugin_data.content = content.SerializeToString()
    return exp, ssi, sei


def log_run_start(logger: TensorBoardLogger, config: dict[str, Any], eval_split: str = "test",
                  columns: tuple[str, ...] = HPARAM_SETTINGS, metrics: tuple[str, ...] = HPARAM_METRICS) -> None:
    """Hyperparameters (``columns`` of ``config``, with the ``metrics`` columns), the custom-scalars
    layout and the config text."""
    experiment = logger.experiment
    params = {name: _hparam_value(config[name]) for name in columns if config.get(name) is not None}  # (no depth column for a fixed network)
    exp, ssi, sei = hparams_summaries(params, metrics)
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
        # (with the seeds' protocol the epochs evaluate the test split: that is test_acc, not a val_acc)
        "hparams/val_acc": last.get("val_acc") if results.get("eval_split", "test") != "test" else None,
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


def run_metrics(eval_split: str, callbacks: list[Any]) -> tuple[str, ...]:
    """The HParams metrics a run writes: test and train accuracy and divergence always, ``val_acc`` with
    a held-out split, and what its callbacks declare they add (``hparam_metrics``: a probe's verdict)."""
    metrics = ["hparams/test_acc", "hparams/train_acc", "hparams/diverged"]
    if eval_split != "test":
        metrics.append("hparams/val_acc")
    for callback in callbacks:
        metrics.extend(name for name in getattr(callback, "hparam_metrics", ()) if name not in metrics)
    return tuple(metrics)


class RunRecords(pl.Callback):
    """Writes :func:`log_run_start` when a fresh run starts training (rank 0; a resumed run's
    first segment already wrote it into the same run directory): the ``columns`` of ``config``
    (:data:`HPARAM_SETTINGS` and what the run changed from its protocol) and :func:`run_metrics`."""

    def __init__(self, config: dict[str, Any], eval_split: str = "test", resumed: bool = False,
                 columns: tuple[str, ...] = HPARAM_SETTINGS):
        self.config, self.eval_split, self.resumed, self.columns = config, eval_split, resumed, columns

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.resumed or not trainer.is_global_zero or not isinstance(trainer.logger, TensorBoardLogger):
            return
        log_run_start(trainer.logger, self.config, self.eval_split, self.columns,
                      run_metrics(self.eval_split, trainer.callbacks))
