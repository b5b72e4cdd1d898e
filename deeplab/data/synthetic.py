"""Tiny synthetic data sets in torchvision's real on-disk formats — the tests' data and the bench's CIFAR-10.

:func:`write_synthetic_datasets` writes into ``root``:

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
CNN gets far above chance in a few dozen steps. NumPy only (no torch): the
tests' conftest imports it.
"""

from __future__ import annotations

import pickle
import struct
from pathlib import Path
from typing import Sequence

import numpy as np

__all__ = ["write_synthetic_datasets", "write_idx_images", "write_idx_labels", "write_cifar_pickle",
           "make_gray_images", "make_colour_images", "balanced_labels", "SYNTHETIC_DATASETS", "NUM_CLASSES",
           "CIFAR_LABEL_NAMES"]

NUM_CLASSES = 10
CIFAR_LABEL_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
#: what write_synthetic_datasets can write
SYNTHETIC_DATASETS = ("mnist", "fashion_mnist", "cifar10")
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


def write_synthetic_datasets(root: Path, train: int = 256, test: int = 128,
                             datasets: Sequence[str] = SYNTHETIC_DATASETS, seed: int = 20240601) -> Path:
    """Write ``train``/``test`` images of each of ``datasets`` under ``root`` (see the module docstring)."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    folders = {"mnist": "MNIST", "fashion_mnist": "FashionMNIST"}
    for folder in (folders[name] for name in datasets if name in folders):
        raw = root / folder / "raw"
        raw.mkdir(parents=True, exist_ok=True)
        for prefix, count in (("train", train), ("t10k", test)):
            labels = balanced_labels(count, rng)
            write_idx_images(raw / f"{prefix}-images-idx3-ubyte", make_gray_images(labels, rng))
            write_idx_labels(raw / f"{prefix}-labels-idx1-ubyte", labels)

    if "cifar10" not in datasets:
        return root
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


