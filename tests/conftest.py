"""Shared fixtures: tiny synthetic datasets in torchvision's real on-disk formats.

``synthetic_data_dir`` writes them once per session into a temporary folder, with
:func:`deeplab.data.synthetic.write_synthetic_datasets` (MNIST and Fashion-MNIST as IDX files, CIFAR-10 as
Python-2 pickles, learnable class patterns: its docstring has the formats).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SCRIPTS_DIR = REPO_ROOT / "scripts"
#: the real MNIST, when the machine has it (../shared/datasets relative to the repository)
REAL_DATA_DIR = Path(__file__).resolve().parents[2] / "shared" / "datasets"
SEEDS_DIR = Path(__file__).resolve().parents[2] / "shared" / "seeds"  # the course documents (beside the repo)

DATA_DIR_ENV = "DEEPLAB_DATA_DIR"  # deeplab.data.datamodules.DATA_DIR_ENV (not imported: conftest stays light)

SYNTHETIC_TRAIN = 256
SYNTHETIC_TEST = 128
# the writers live in the package (the bench writes its CIFAR-10 with them too)
from deeplab.data.synthetic import (  # noqa: E402
    CIFAR_LABEL_NAMES, NUM_CLASSES, balanced_labels, make_colour_images, make_gray_images, write_cifar_pickle,
    write_idx_images, write_idx_labels,
)
from deeplab.data.synthetic import write_synthetic_datasets as _write_synthetic_datasets  # noqa: E402


def write_synthetic_datasets(root: Path, train: int = SYNTHETIC_TRAIN, test: int = SYNTHETIC_TEST) -> Path:
    return _write_synthetic_datasets(root, train=train, test=test)


# -------------------------------------------------------------------- fixtures
@pytest.fixture(scope="session")
def synthetic_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding synthetic MNIST, Fashion-MNIST and CIFAR-10 in torchvision's layout."""
    return write_synthetic_datasets(tmp_path_factory.mktemp("synthetic_data"))


# ------------------------------------------------------------- fit.py runs
@dataclass
class FitRun:
    """One finished ``scripts/fit.py`` subprocess: its exit status, output and run folder."""

    args: list[str]
    returncode: int
    stdout: str
    stderr: str
    cwd: Path

    @property
    def stdout_lines(self) -> list[str]:
        return [line for line in self.stdout.splitlines() if line.strip()]

    @property
    def results_path(self) -> Path:
        last = self.stdout_lines[-1]
        assert last.startswith("results: "), f"last stdout line is {last!r}\nstderr:\n{self.stderr[-3000:]}"
        return Path(last[len("results: "):])

    @property
    def results(self) -> dict:
        return json.loads(self.results_path.read_text())

    @property
    def run_dir(self) -> Path:
        return self.results_path.parent

    def scalars(self) -> dict[str, list[tuple[int, float]]]:
        """Every TensorBoard scalar in the run folder: tag → [(step, value)]."""
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

        accumulator = EventAccumulator(str(self.run_dir), size_guidance={"scalars": 0})
        accumulator.Reload()
        return {
            tag: [(event.step, event.value) for event in accumulator.Scalars(tag)]
            for tag in accumulator.Tags()["scalars"]
        }


def fit_environment(**extra: str) -> dict[str, str]:
    """The subprocess environment: one intra-op thread (these models are tiny, and on a
    shared 2-core machine torch's default thread pool makes each step 10-30× slower)."""
    env = dict(os.environ)
    env.pop(DATA_DIR_ENV, None)
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    env.update(extra)
    return env


def run_fit_script(args: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = 600) -> FitRun:
    """``python scripts/fit.py ARGS`` in ``cwd`` (no progress bar); logs go under ``cwd``."""
    full = [*args, "--no-progress-bar"]
    if "--list-models" not in args and "--log-dir" not in args and "--out" not in args:
        full += ["--log-dir", str(cwd / "lightning_logs")]
    completed = subprocess.run(
        [sys.executable, str(SCRIPTS_DIR / "fit.py"), *full],
        cwd=cwd, env=env or fit_environment(), capture_output=True, text=True, timeout=timeout,
    )
    return FitRun(full, completed.returncode, completed.stdout, completed.stderr, cwd)


#: the shared end-to-end runs (2 epochs of a few batches of 16 on the synthetic data),
#: one per dataset, covering every optimizer and schedule between them
SHARED_RUNS: dict[str, list[str]] = {
    # momentum_sgd + none, seed 000's hand-written loss, a norm record at every step
    "mnist": ["--model", "cnn5", "--dataset", "mnist", "--optimizer", "momentum_sgd", "--schedule", "none",
              "--loss", "manual", "--epochs", "2", "--batch-size", "16", "--limit-train-batches", "16",
              "--grad-every", "1"],
    # sgd + cosine, torch loss, 25 % held out for validation (data dir from $DEEPLAB_DATA_DIR)
    "fashion_mnist": ["--model", "cnn5", "--dataset", "fashion_mnist", "--optimizer", "sgd", "--schedule", "cosine",
                      "--lr", "0.05", "--loss", "torch", "--val-split", "0.25", "--epochs", "2",
                      "--batch-size", "16", "--limit-train-batches", "12", "--grad-every", "1"],
    # adam + step on the 15-layer CNN with long skips, CIFAR-10 crop + flip on; norms every 3 steps
    "cifar10": ["--model", "cnn15_skip2", "--dataset", "cifar10", "--optimizer", "adam", "--lr", "0.001",
                "--schedule", "step", "--epochs", "2", "--batch-size", "16", "--limit-train-batches", "16",
                "--grad-every", "3"],
    # gradient norms off
    "no_grad_norms": ["--model", "cnn5", "--dataset", "mnist", "--epochs", "1", "--batch-size", "16",
                      "--limit-train-batches", "2", "--no-grad-norms"],
}


@pytest.fixture(scope="session")
def fit_runs(synthetic_data_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """``fit_runs(name)``: the :data:`SHARED_RUNS` run ``name``, run once per session on first use."""
    cache: dict[str, FitRun] = {}

    def get(name: str) -> FitRun:
        if name not in cache:
            cwd = tmp_path_factory.mktemp(f"fit_{name}")
            args = list(SHARED_RUNS[name])
            if name == "fashion_mnist":
                env = fit_environment(**{DATA_DIR_ENV: str(synthetic_data_dir)})
            else:
                args += ["--data-dir", str(synthetic_data_dir)]
                env = fit_environment()
            run = run_fit_script(args, cwd, env)
            assert run.returncode == 0, f"fit.py {' '.join(args)} failed:\n{run.stderr[-4000:]}"
            cache[name] = run
        return cache[name]

    return get


@pytest.fixture(scope="module")
def single_thread():
    """One intra-op thread for the module's in-process tests (tiny tensors: threads only add
    contention, 3-10× on a shared 2-core machine); the previous setting comes back after."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
