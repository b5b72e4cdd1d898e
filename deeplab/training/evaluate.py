"""Evaluate a checkpoint without training: ``fit.py --evaluate CKPT`` and :func:`evaluate`.

Everything comes from the checkpoint: the network (rebuilt from its hyperparameters), its weights, and
the run's settings (its run state, :mod:`deeplab.training.resumable.state`): the data set, the data
folder, the normalization, the evaluation split and the step engine's layout and kernels, so the
numbers are the run's own — the test accuracy of a finished run is reproduced exactly. The test split
is evaluated, and the held-out validation split too where the run had one. ``evaluation.json`` goes
into the run's folder (or ``out``).
"""

from __future__ import annotations

import dataclasses
import datetime
from pathlib import Path
from typing import Any

from deeplab.config import FitConfig
from deeplab.errors import DeeplabError
from deeplab.io import atomic_write_json

__all__ = ["evaluate", "checkpoint_of", "EVALUATION_FILE"]

EVALUATION_FILE = "evaluation.json"


def checkpoint_of(path: str | Path, option: str = "--ckpt-path") -> Path:
    """``path`` itself, or a run folder's ``checkpoints/last.ckpt`` (one line when there is none)."""
    path = Path(path).expanduser()
    if path.is_dir():
        candidate = path / "checkpoints" / "last.ckpt"
        if candidate.is_file():
            return candidate
        if (path / "last.ckpt").is_file():
            return path / "last.ckpt"
        raise DeeplabError(f"{option} {path} is a folder without checkpoints/last.ckpt; give a run folder or its "
                           f"checkpoint file")
    return path


def saved_config(path: str | Path) -> FitConfig:
    """The resolved settings a checkpoint's run trained with (its run state's ``config``)."""
    from deeplab.training.resumable.state import load_run_state

    state, _ = load_run_state(checkpoint_of(path))
    names = {item.name for item in dataclasses.fields(FitConfig)}
    return FitConfig(**{name: value for name, value in state.config.items() if name in names})


def evaluate(path: str | Path, data_dir: str | None = None, out: str | Path | None = None,
             quiet: bool = False) -> dict[str, Any]:
    """Evaluate the checkpoint at ``path`` (a ``.ckpt`` or a run folder) on its run's test split (and
    validation split, if it held one out); returns and writes ``evaluation.json``.

    ``data_dir``: where the data set is now, if it moved (default: the run's own folder)."""
    import lightning.pytorch as pl

    from deeplab.training.fit import datamodule_for
    from deeplab.training.glue import quiet_lightning
    from deeplab.training.module import Classifier
    from deeplab.training.resolve import resolve_config

    checkpoint = checkpoint_of(path, "--evaluate")
    config = resolve_config(dataclasses.replace(saved_config(checkpoint), ckpt_path=None,
                                                **({"data_dir": data_dir} if data_dir else {})))
    quiet_lightning()
    datamodule = datamodule_for(config)
    datamodule.prepare_data()
    datamodule.setup("fit")
    module = Classifier.load_from_checkpoint(checkpoint, map_location="cpu", weights_only=True)
    # the run's evaluation layout and kernels (a compiled whole step trains only; it evaluates eagerly)
    module.configure_engine("model" if config.compile == "model" else "off", bool(config.channels_last), 1,
                            bool(config.fast_kernels))
    trainer = pl.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, devices=1, accelerator=config.accelerator,
                         precision=config.precision, use_distributed_sampler=False)
    splits: dict[str, dict[str, float]] = {}
    trainer.test(module, datamodule=datamodule, verbose=False)
    splits["test"] = dict(module.test_metrics)
    if config.val_split is not None:
        trainer.validate(module, datamodule=datamodule, verbose=False)
        splits["val"] = {"loss": module.last_validation["loss"], "acc": module.last_validation["acc"]}
    run_dir = checkpoint.resolve().parent.parent
    target = Path(out) if out is not None else run_dir
    results = {
        "checkpoint": str(checkpoint.resolve()),
        "model": config.model,
        "dataset": config.dataset,
        "depth": config.depth,
        "global_step": int(module.run_state_step) if module.run_state_step is not None else None,
        "test_acc": splits["test"]["acc"],
        "test_loss": splits["test"]["loss"],
        "val_acc": splits.get("val", {}).get("acc"),
        "val_loss": splits.get("val", {}).get("loss"),
        "data_dir": str(datamodule.data_dir),
        "evaluated_at": datetime.datetime.now().isoformat(timespec="seconds"),
    }
    try:
        target.mkdir(parents=True, exist_ok=True)
        results_path = target / EVALUATION_FILE
        atomic_write_json(results_path, results)
    except OSError as error:
        raise DeeplabError(f"cannot write {target / EVALUATION_FILE} ({error.strerror}); give --out a folder "
                           f"you can write to") from None
    results["results_path"] = str(results_path.resolve())
    return results
