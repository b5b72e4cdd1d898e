"""``fit.py --evaluate CKPT`` / ``deeplab.evaluate(path)``: a checkpoint's test (and validation) metrics,
from the checkpoint alone, equal to what its run measured."""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import SCRIPTS_DIR, fit_environment
from deeplab.config import FitConfig
from deeplab.errors import DeeplabError
from deeplab.training.evaluate import evaluate
from deeplab.training.fit import fit


def fit_quietly(config: FitConfig) -> dict:
    with contextlib.redirect_stdout(io.StringIO()):
        return fit(config)


@pytest.mark.parametrize("val_split", [None, 0.25], ids=["test split each epoch", "held-out split"])
def test_evaluate_reproduces_the_runs_accuracy_exactly(synthetic_data_dir: Path, tmp_path: Path, val_split,
                                                       single_thread) -> None:
    run = fit_quietly(FitConfig(model="cnn_elu_bn", depth=6, dataset="mnist", data_dir=str(synthetic_data_dir),
                                epochs=2, batch_size=16, limit_train_batches=6, val_split=val_split or "none",
                                progress_bar=False, log_dir=str(tmp_path)))
    measured = evaluate(run["run_dir"], quiet=True)
    assert measured["test_acc"] == run["test_acc"] and measured["test_loss"] == run["test_loss"]
    if val_split is None:
        assert measured["val_acc"] is None
    else:
        assert measured["val_acc"] == run["history"][-1]["val_acc"]
    written = json.loads(Path(measured["results_path"]).read_text())
    assert written["test_acc"] == run["test_acc"] and written["global_step"] == run["global_step"]


def test_the_command_prints_and_names_its_results(synthetic_data_dir: Path, tmp_path: Path, single_thread) -> None:
    run = fit_quietly(FitConfig(model="cnn5", dataset="mnist", data_dir=str(synthetic_data_dir), epochs=1,
                                batch_size=16, limit_train_batches=4, progress_bar=False, log_dir=str(tmp_path)))
    completed = subprocess.run([sys.executable, str(SCRIPTS_DIR / "fit.py"), "--evaluate", run["checkpoint"]],
                               cwd=tmp_path, env=fit_environment(), capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-3000:]
    lines = completed.stdout.strip().splitlines()
    assert lines[-1] == f"results: {Path(run['run_dir']) / 'evaluation.json'}"
    assert f"test accuracy {100 * run['test_acc']:.2f} %" in lines[-2]
    with pytest.raises(DeeplabError, match="--evaluate .* is a folder without checkpoints"):
        evaluate(tmp_path)


def test_a_held_out_split_keeps_the_best_epoch_by_validation_accuracy(synthetic_data_dir: Path, tmp_path: Path,
                                                                       single_thread) -> None:
    import torch

    run = fit_quietly(FitConfig(model="cnn5", dataset="mnist", data_dir=str(synthetic_data_dir), epochs=3,
                                batch_size=16, limit_train_batches=4, val_split=0.25, lr=0.05,
                                progress_bar=False, log_dir=str(tmp_path / "held_out")))
    best = run["best"]
    history = [entry["val_acc"] for entry in run["history"]]
    assert best["monitor"] == "val/acc" and best["val_acc"] == pytest.approx(max(history))
    state = torch.load(best["checkpoint"], map_location="cpu", weights_only=True)
    assert state["deeplab"]["position"]["epoch"] == history.index(max(history))  # 0-based: that epoch's end
    assert Path(best["checkpoint"]).name == "best.ckpt"
    plain = fit_quietly(FitConfig(model="cnn5", dataset="mnist", data_dir=str(synthetic_data_dir), epochs=1,
                                  batch_size=16, limit_train_batches=4, progress_bar=False,
                                  log_dir=str(tmp_path / "test_each_epoch")))
    assert plain["best"] is None  # no selection on the test split
    assert not (Path(plain["run_dir"]) / "checkpoints" / "best.ckpt").exists()


def test_an_unevaluated_last_epoch_still_measures_the_test_split(synthetic_data_dir: Path, tmp_path: Path,
                                                                  single_thread) -> None:
    run = fit_quietly(FitConfig(model="cnn5", dataset="mnist", data_dir=str(synthetic_data_dir), epochs=3,
                                batch_size=16, limit_train_batches=3, check_val_every_n_epoch=2,
                                progress_bar=False, log_dir=str(tmp_path)))
    evaluated = [entry["val_acc"] is not None and entry["val_acc"] == entry["val_acc"] for entry in run["history"]]
    assert evaluated == [False, True, False] and run["test_acc"] is not None
    assert evaluate(run["run_dir"], quiet=True)["test_acc"] == run["test_acc"]
