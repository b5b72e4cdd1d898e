"""Shared fixtures: tiny synthetic datasets in torchvision's real on-disk formats.

``synthetic_data_dir`` writes, once per session, into a temporary folder:

- ``MNIST/raw/`` and ``FashionMNIST/raw/``: uncompressed IDX files
  (``{train,t10k}-{images-idx3,labels-idx1}-ubyte``), big-endian header with
  magic 0x00000803 (uint8, 3 dims) for images and 0x00000801 (uint8, 1 dim)
  for labels, exactly what ``torchvision.datasets.mnist.read_sn3_pascalvincent_tensor``
  parses;
- ``cifar-10-batches-py/``: ``data_batch_1..5``, ``test_batch`` (dicts with
  ``data`` (N, 3072) uint8, channel-major rows, and ``labels``) and
  ``batches.meta`` (``label_names``), pickled the way the official Python 2
  files are (keys as Python 2 strings), so both ``pickle.load(f,
  encoding="latin1")`` (torchvision: ``entry["data"]``) and
  ``encoding="bytes"`` (the CIFAR site's recipe: ``entry[b"data"]``) read them.

The images are learnable: each class owns a bright patch (MNIST: its own
position on a 2×5 grid; CIFAR-10: its own colour, in a large central square
that survives pad-4 crops and flips) on a dim noisy background, so a small
CNN gets far above chance in a few dozen steps.
"""

from __future__ import annotations

import json
import os
import pickle
import struct
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SCRIPTS_DIR = REPO_ROOT / "scripts"
#: the real MNIST, when the machine has it (../shared/datasets relative to the repository)
REAL_DATA_DIR = Path(__file__).resolve().parents[2] / "shared" / "datasets"
SEEDS_DIR = Path(__file__).resolve().parents[2] / "shared" / "seeds"  # the course documents (beside the repo)

DATA_DIR_ENV = "DEEPLAB_DATA_DIR"  # deeplab.data.DATA_DIR_ENV (not imported: conftest stays light)

SYNTHETIC_TRAIN = 256
SYNTHETIC_TEST = 128
NUM_CLASSES = 10
CIFAR_LABEL_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]

IDX_IMAGES_MAGIC = 0x00000803  # type 0x08 (unsigned byte), 3 dimensions
IDX_LABELS_MAGIC = 0x00000801  # type 0x08 (unsigned byte), 1 dimension


# ---------------------------------------------------------------------- writers
def write_idx_images(path: Path, images: np.ndarray) -> None:
    """(N, H, W) uint8 → IDX3: magic, N, H, W as big-endian uint32, then the pixels."""
    assert images.dtype == np.uint8 and images.ndim == 3
    header = struct.pack(">IIII", IDX_IMAGES_MAGIC, *images.shape)
    path.write_bytes(header + images.tobytes(order="C"))


def write_idx_labels(path: Path, labels: np.ndarray) -> None:
    """(N,) uint8 → IDX1: magic, N as big-endian uint32, then the labels."""
    assert labels.dtype == np.uint8 and labels.ndim == 1
    path.write_bytes(struct.pack(">II", IDX_LABELS_MAGIC, len(labels)) + labels.tobytes())


class _Python2Pickler(pickle._Pickler):
    """Protocol 2, with ``str`` and ``bytes`` written as Python 2 strings (BINSTRING),
    as the official CIFAR-10 files were (cPickle under Python 2)."""

    dispatch = pickle._Pickler.dispatch.copy()

    def _save_py2_string(self, obj: str | bytes) -> None:
        data = obj.encode("latin1") if isinstance(obj, str) else obj
        if len(data) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(data)]) + data)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(data)) + data)
        self.memoize(obj)

    dispatch[str] = _save_py2_string
    dispatch[bytes] = _save_py2_string


def write_cifar_pickle(path: Path, obj: dict) -> None:
    with open(path, "wb") as file:
        _Python2Pickler(file, protocol=2).dump(obj)


# --------------------------------------------------------------------- images
def make_gray_images(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(N, 28, 28) uint8: dim noise, plus a 6×6 bright patch at the class's cell of a 2×5 grid."""
    images = rng.integers(0, 40, size=(len(labels), 28, 28), dtype=np.uint8)
    for index, label in enumerate(labels):
        row, col = 3 + 12 * (label // 5), 1 + 5 * (label % 5)
        images[index, row : row + 6, col : col + 6] = rng.integers(200, 256, size=(6, 6), dtype=np.uint8)
    return images


#: a distinct RGB colour per CIFAR class (levels 0 / 128 / 255)
CIFAR_COLOURS = np.array(
    [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (255, 0, 255),
     (0, 255, 255), (255, 255, 255), (128, 0, 0), (0, 128, 0), (0, 0, 128)],
    dtype=np.uint8,
)


def make_colour_images(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(N, 32, 32, 3) uint8 HWC: dim noise plus a central 16×16 square in the class's colour."""
    images = rng.integers(0, 40, size=(len(labels), 32, 32, 3), dtype=np.uint8)
    for index, label in enumerate(labels):
        images[index, 8:24, 8:24, :] = CIFAR_COLOURS[label]
    return images


def balanced_labels(count: int, rng: np.random.Generator) -> np.ndarray:
    return rng.permutation(np.arange(count) % NUM_CLASSES).astype(np.uint8)


def write_synthetic_datasets(root: Path, train: int = SYNTHETIC_TRAIN, test: int = SYNTHETIC_TEST) -> Path:
    rng = np.random.default_rng(20240601)
    for folder in ("MNIST", "FashionMNIST"):
        raw = root / folder / "raw"
        raw.mkdir(parents=True, exist_ok=True)
        for prefix, count in (("train", train), ("t10k", test)):
            labels = balanced_labels(count, rng)
            write_idx_images(raw / f"{prefix}-images-idx3-ubyte", make_gray_images(labels, rng))
            write_idx_labels(raw / f"{prefix}-labels-idx1-ubyte", labels)

    cifar = root / "cifar-10-batches-py"
    cifar.mkdir(parents=True, exist_ok=True)

    def cifar_batch(labels: np.ndarray, name: str) -> dict:
        hwc = make_colour_images(labels, rng)
        rows = hwc.transpose(0, 3, 1, 2).reshape(len(labels), 3072)  # channel-major rows, as CIFAR stores them
        return {
            "batch_label": name,
            "labels": [int(label) for label in labels],
            "data": np.ascontiguousarray(rows),
            "filenames": [f"synthetic_{i:05d}.png" for i in range(len(labels))],
        }

    train_labels = balanced_labels(train, rng)
    for number, part in enumerate(np.array_split(train_labels, 5), start=1):
        write_cifar_pickle(cifar / f"data_batch_{number}", cifar_batch(part, f"training batch {number} of 5"))
    write_cifar_pickle(cifar / "test_batch", cifar_batch(balanced_labels(test, rng), "testing batch 1 of 1"))
    write_cifar_pickle(
        cifar / "batches.meta",
        {"num_cases_per_batch": int(np.ceil(train / 5)), "label_names": CIFAR_LABEL_NAMES, "num_vis": 3072},
    )
    return root


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
