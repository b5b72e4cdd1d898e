"""deeplab as a library: the lazy public API, Classifier with a DataModule or one's own nn.Module in a
plain Lightning Trainer, TrainabilitySearch against scripts/search.py, and the README's example."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
import torch.nn as nn

from conftest import DATA_DIR_ENV, REPO_ROOT, SCRIPTS_DIR, fit_environment

pytestmark = pytest.mark.usefixtures("single_thread")


def plain_trainer(tmp_path: Path, **kwargs) -> pl.Trainer:
    values = dict(default_root_dir=tmp_path, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                  enable_model_summary=False)
    values.update(kwargs)
    return pl.Trainer(**values)


# ------------------------------------------------------------------------ the public names
def test_import_deeplab_is_light_and_every_public_name_resolves() -> None:
    code = ("import sys, deeplab; assert 'torch' not in sys.modules, 'import deeplab loaded torch'; "
            "names = deeplab.__all__; [getattr(deeplab, n) for n in names]; print(len(names))")
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO_ROOT,
                               env=fit_environment(), timeout=300)
    assert completed.returncode == 0, completed.stderr[-2000:]
    import deeplab

    assert {"Classifier", "TrainabilitySearch", "create_model", "MNISTDataModule", "fit", "MomentumSGD"} <= set(
        deeplab.__all__)
    assert deeplab.TrainabilitySearch is __import__("deeplab.search.callback", fromlist=["x"]).TrainabilitySearch
    assert "Classifier" in dir(deeplab)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        deeplab.nope  # noqa: B018


def test_callbacks_package_names_and_results_contributors() -> None:
    """deeplab.callbacks resolves every public name; fit asks a callback for its part of results.json
    through the ResultsContributor protocol (having a contribute_results method, not None)."""
    import deeplab
    import deeplab.callbacks as callbacks
    from deeplab.callbacks.base import ResultsContributor

    assert {"EpochObserver", "GradientObserver", "ResultsContributor", "EpochLine", "BatchProgressBar",
            "Throughput", "GradientNorms", "TrainabilityJudge"} <= set(callbacks.__all__)
    for name in callbacks.__all__:
        assert getattr(callbacks, name).__module__.startswith("deeplab.callbacks."), name
    assert deeplab.GradientNorms is callbacks.GradientNorms and deeplab.EpochObserver is callbacks.EpochObserver
    assert deeplab.TrainabilityJudge is callbacks.TrainabilityJudge
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        callbacks.nope  # noqa: B018

    class Unset(pl.Callback):
        contribute_results = None

    contributors = [c for c in (callbacks.GradientNorms(), callbacks.TrainabilityJudge(), callbacks.EpochLine(1),
                                callbacks.Throughput(), callbacks.BatchProgressBar(), Unset())
                    if isinstance(c, ResultsContributor)]
    assert [type(c).__name__ for c in contributors] == ["GradientNorms", "TrainabilityJudge"]


# ------------------------------------------------------------------------ Classifier
def test_classifier_takes_shape_and_classes_from_the_datamodule(synthetic_data_dir, tmp_path) -> None:
    import deeplab

    data = deeplab.CIFAR10DataModule(synthetic_data_dir, batch_size=16, download=False)
    module = deeplab.Classifier("cnn_tanh", model_kwargs={"depth": 6}, datamodule=data)
    assert module.hparams.model_kwargs == {"in_channels": 3, "image_size": 32, "num_classes": 10, "depth": 6}
    trainer = plain_trainer(tmp_path, max_epochs=1, limit_train_batches=2, limit_val_batches=1,
                            enable_checkpointing=True)
    trainer.fit(module, data)
    assert len(module.history) == 1
    # the checkpoint rebuilds the same network without the data module
    path = tmp_path / "m.ckpt"
    trainer.save_checkpoint(path)
    again = deeplab.Classifier.load_from_checkpoint(path)
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(again.model.eval()(x), module.model.eval()(x))


def test_classifier_trains_ones_own_module_in_a_plain_trainer(synthetic_data_dir, tmp_path) -> None:
    import deeplab

    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 32), nn.Tanh(), nn.Linear(32, 10))
    before = [p.detach().clone() for p in net.parameters()]
    data = deeplab.MNISTDataModule(synthetic_data_dir, batch_size=16, download=False)
    module = deeplab.Classifier(net, optimizer="sgd", lr=0.05)
    assert module.model is net and "model_name" not in module.hparams
    plain_trainer(tmp_path, max_epochs=2, limit_train_batches=4).fit(module, data)
    assert [e["epoch"] for e in module.history] == [1, 2]
    assert module.global_step == 8
    assert any(not torch.equal(a, b) for a, b in zip(before, net.parameters()))
    with pytest.raises(deeplab.DeeplabError, match="registered model name or an nn.Module"):
        deeplab.Classifier(42)


# ------------------------------------------------------------------------ TrainabilitySearch
#: on the synthetic MNIST, one epoch at lr 0.2: k = 3 trains (≈ 23 % test error), k = 6 does not
SEARCH = dict(lower=3, upper=9, step=3, epochs=1, threshold=0.85)
OPTIMIZER = dict(optimizer="sgd", lr=0.2, momentum=0.9)


def test_trainability_search_in_a_plain_trainer_matches_search_py(synthetic_data_dir, tmp_path) -> None:
    """The callback and the script share one implementation: same settings, same probes, same boundary."""
    import deeplab

    lines: list[str] = []
    data = deeplab.MNISTDataModule(synthetic_data_dir, batch_size=16, download=False)
    module = deeplab.Classifier("cnn_tanh", datamodule=data, **OPTIMIZER)
    search = deeplab.TrainabilitySearch(**SEARCH, out=tmp_path / "callback", echo=lines.append)
    trainer = plain_trainer(tmp_path, max_epochs=2, limit_train_batches=3, limit_val_batches=1, callbacks=[search])
    trainer.fit(module, data)

    script_out = tmp_path / "script"
    completed = subprocess.run(
        [sys.executable, str(SCRIPTS_DIR / "search.py"), "--model", "cnn_tanh", "--upper", "9", "--epochs", "1",
         "--threshold", "0.85", "--batch-size", "16", "--optimizer", "sgd",
         "--lr", "0.2", "--momentum", "0.9", "--data-dir", str(synthetic_data_dir), "--out", str(script_out)],
        capture_output=True, text=True, env=fit_environment(), timeout=600)
    assert completed.returncode == 0, completed.stderr[-3000:]
    script = json.loads((script_out / "search.json").read_text())
    assert search.max_trainable == script["max_trainable"]
    verdict = [line for line in lines if line.startswith("max trainable depth:")]
    assert verdict == [completed.stdout.strip().splitlines()[-1]]  # the script's last line
    assert search.max_trainable == 3  # so the real fit below trains a searched depth
    # the same probes with the same errors, under the same ledger keys
    ours = {(p["depth"], p["seed"]): (p["test_error"], p["train_error"]) for p in search.summary["probes"]}
    theirs = {(p["depth"], p["seed"]): (p["test_error"], p["train_error"]) for p in script["probes"]}
    assert ours == theirs and search.summary["training"] == script["training"]

    # the real fit then trained the chosen depth
    value = trainer.callback_metrics["trainability/max_trainable"]
    if search.max_trainable is None:
        assert torch.isnan(value) and module.history == []
    else:
        assert float(value) == search.max_trainable
        assert module.hparams.model_kwargs["depth"] == search.max_trainable
        fresh = deeplab.create_model("cnn_tanh", in_channels=1, image_size=28, num_classes=10,
                                     depth=search.max_trainable)
        assert sum(p.numel() for p in module.model.parameters()) == sum(p.numel() for p in fresh.parameters())
        assert len(module.history) == 2
        # the optimizer holds the new network's parameters
        optimized = {id(p) for group in trainer.optimizers[0].param_groups for p in group["params"]}
        assert optimized == {id(p) for p in module.model.parameters()}


def test_trainability_search_reads_its_ledger_and_can_stop_the_fit(synthetic_data_dir, tmp_path) -> None:
    import deeplab

    data = deeplab.MNISTDataModule(synthetic_data_dir, batch_size=16, download=False)
    first = deeplab.TrainabilitySearch(**SEARCH, out=tmp_path / "s", fit_after=False, echo=lambda line: None)
    module = deeplab.Classifier("cnn_tanh", datamodule=data, **OPTIMIZER)
    plain_trainer(tmp_path, max_epochs=2, callbacks=[first]).fit(module, data)
    assert module.history == [] and module.global_step == 0  # fit_after=False: only the search ran
    assert first.summary["probes_trained"] >= 2
    again = deeplab.TrainabilitySearch(**SEARCH, out=tmp_path / "s", fit_after=False, echo=lambda line: None)
    module = deeplab.Classifier("cnn_tanh", datamodule=data, **OPTIMIZER)
    plain_trainer(tmp_path, max_epochs=2, callbacks=[again]).fit(module, data)
    assert again.summary["probes_trained"] == 0 and again.max_trainable == first.max_trainable


def test_trainability_search_without_a_folder_writes_nothing(synthetic_data_dir, tmp_path, monkeypatch) -> None:
    """No ``out``, no logger, no checkpointing: the search's probes go to a temporary folder that is gone
    afterwards; nothing lands in the working directory."""
    import lightning as L

    import deeplab

    workdir = tmp_path / "work"
    workdir.mkdir()
    monkeypatch.chdir(workdir)
    data = deeplab.MNISTDataModule(synthetic_data_dir, batch_size=16, download=False)
    search = deeplab.TrainabilitySearch(**SEARCH, fit_after=False, echo=lambda line: None)
    module = deeplab.Classifier("cnn_tanh", datamodule=data, **OPTIMIZER)
    L.Trainer(max_epochs=1, callbacks=[search], logger=False, enable_checkpointing=False,
              enable_progress_bar=False, enable_model_summary=False).fit(module, data)
    assert search.max_trainable is not None or search.summary is not None
    assert list(workdir.iterdir()) == []
    assert not Path(search.summary["ledger"]).exists()  # the temporary folder is gone


def test_trainability_search_needs_a_depth_family_and_a_deeplab_datamodule(synthetic_data_dir, tmp_path) -> None:
    import deeplab

    data = deeplab.MNISTDataModule(synthetic_data_dir, batch_size=16, download=False)
    net = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
    with pytest.raises(deeplab.DeeplabError, match="registered depth family"):
        plain_trainer(tmp_path, max_epochs=1, callbacks=[deeplab.TrainabilitySearch(**SEARCH)]).fit(
            deeplab.Classifier(net), data)
    with pytest.raises(deeplab.DeeplabError, match="fixed depth"):
        plain_trainer(tmp_path, max_epochs=1, callbacks=[deeplab.TrainabilitySearch(**SEARCH)]).fit(
            deeplab.Classifier("cnn5", datamodule=data), data)


# ------------------------------------------------------------------------ the README
def readme_example() -> str:
    text = (REPO_ROOT / "README.md").read_text()
    section = text[text.index("## Python API"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_readme_example_runs_as_written(synthetic_data_dir, tmp_path) -> None:
    code = readme_example()
    assert len(code.strip().splitlines()) <= 15
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path,
                               env=fit_environment(**{DATA_DIR_ENV: str(synthetic_data_dir)}), timeout=900)
    assert completed.returncode == 0, completed.stderr[-3000:]
    out = completed.stdout
    assert re.search(r"^deepest trainable depth: (\d+|None)$", out, re.M), out[-2000:]
    assert "max trainable depth:" in out and "probe k=" in out
