"""Training throughput of deeplab against faithful re-creations of the seeds' own loops (issue 7).

Each benchmark *case* pits two *sides* against each other on the same model,
batch size and device, in one process, alternating them:

- the **deeplab** side runs :func:`deeplab.train.fit` exactly as a user does
  (default callbacks: epoch line, throughput, checkpoint, gradient norms
  every 10 steps, TensorBoard logging, the progress bar — written to
  ``os.devnull``), one epoch of ``steps`` training batches, no validation;
- the **seed** side is the seed notebook's own loop, re-created line by line
  below: a torchvision dataset with ``Compose([ToTensor(), Normalize(...)])``
  (per-sample PIL) behind ``DataLoader(shuffle=True)``, the seed's update rule
  (seed 000's Python ``SGD_Optimizer`` with its momentum dict keyed by
  ``id(param)``; ``torch.optim.SGD`` for seeds 001/002), and its per-step
  ``.item()`` calls for loss and accuracy.

What is timed (both sides alike): one *segment* = a fresh model and optimizer
(built untimed), then ``steps`` full training batches of a new epoch, timed
from the start of the epoch (data-loader iterator creation included) to the
end of the last step. deeplab's segment is its ``Throughput`` window
(``on_train_epoch_start`` → ``on_train_epoch_end``), measured by an extra
callback at full precision; everything ``fit`` does around it — parsing the
dataset into memory (once per run in real use), building the Trainer and
logger, the end-of-epoch metrics, checkpoint and plot — is outside it, as the
seed's dataset parsing and per-epoch printing are outside the seed's.

Protocol: one warm-up segment per side, then ``repeats`` (≥ 3) pairs, the order
inside a pair alternating (deeplab first, then seed first, ...) so slow drifts
in machine load hit both sides alike. Reported: each side's median images/s
and the median of the per-pair ratios deeplab / seed.

Measured on 2 shared CPU cores (see ``scripts/bench.py``'s header for the table).
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import math
import os
import pickle
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import lightning.pytorch as pl
import numpy as np
import torch
import torch.nn as nn

__all__ = [
    "SeedTwoLayerNet",
    "SeedFiveLayerCNN",
    "seed000_train_steps",
    "seed001_train_steps",
    "seed002_train_steps",
    "seed_mnist_loader",
    "seed_cifar10_loader",
    "write_synthetic_cifar10",
    "Segment",
    "SeedSide",
    "PlainLoopSide",
    "BareStepSide",
    "DeeplabFitSide",
    "SegmentTimer",
    "BenchCase",
    "BenchContext",
    "CASES",
    "DEFAULT_CASES",
    "run_case",
    "run_benchmark",
    "format_table",
    "RESULT_KEYS",
]

#: the keys every result row carries (``--json`` writes a list of such rows, plus extras)
RESULT_KEYS = ("case", "deeplab_images_per_s", "seed_loop_images_per_s", "ratio")

MNIST_SEED000_MEAN_STD = ((0.5,), (0.5,))  # seed 000's Normalize (Fashion-MNIST, [-1, 1])
MNIST_SEED002_MEAN_STD = ((0.1307,), (0.3081,))  # seed 002's Normalize
CIFAR_SEED001_MEAN_STD = ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010))


# =============================================================================
# Seed 000's models, verbatim: the update rule and the loss are methods of the net
# =============================================================================
class SeedTwoLayerNet(nn.Module):
    """Seed 000 Part 1's ``TwoLayerNet``, as the notebook writes it (784→256 sigmoid →10)."""

    def sigmoid(self, x):
        return 1 / (1 + torch.exp(-x))

    def softmax(self, x):
        exp_x = torch.exp(x - x.max(dim=1, keepdim=True)[0])  # Subtract max for stability
        return exp_x / exp_x.sum(dim=1, keepdim=True)

    def cross_entropy_loss(self, outputs, labels):
        one_hot_labels = torch.zeros_like(outputs)
        one_hot_labels.scatter_(1, labels.view(-1, 1), 1)
        log_probs = torch.log(self.softmax(outputs) + 1e-10)
        loss = -torch.sum(one_hot_labels * log_probs) / outputs.size(0)
        return loss

    def SGD_Optimizer(self, params, lr):  # noqa: N802  (the seed's name)
        with torch.no_grad():
            for param in params:
                if param.grad is not None:
                    param.data = param.data - lr * param.grad
                    param.grad = None  # Reset gradient

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(784, 256)
        self.fc2 = nn.Linear(256, 10)

    def forward(self, x):
        x = x.view(x.size(0), -1)
        x = self.sigmoid(self.fc1(x))
        x = self.fc2(x)
        return x


class SeedFiveLayerCNN(nn.Module):
    """Seed 000 Part 2's ``FiveLayerCNN`` with its momentum ``SGD_Optimizer`` (equation 8), verbatim."""

    def leaky_relu(self, x, negative_slope=0.1):
        return torch.maximum(x, negative_slope * x)

    def tanh(self, x):
        return torch.tanh(x)

    def softmax(self, x):
        exp_x = torch.exp(x - x.max(dim=1, keepdim=True)[0])
        return exp_x / exp_x.sum(dim=1, keepdim=True)

    def cross_entropy_loss(self, outputs, labels):
        one_hot_labels = torch.zeros_like(outputs)
        one_hot_labels.scatter_(1, labels.view(-1, 1), 1)
        log_probs = torch.log(self.softmax(outputs) + 1e-10)
        loss = -torch.sum(one_hot_labels * log_probs) / outputs.size(0)
        return loss

    def SGD_Optimizer(self, params, lr, momentum=0.0):  # noqa: N802  (the seed's name)
        """m_{i+1} = α·m_i + g_i; θ_{i+1} = θ_i − η·m_{i+1} (seed 000, equation 8)."""
        if not hasattr(self, "momentum_buffer"):
            self.momentum_buffer = {}
        with torch.no_grad():
            for param in params:
                if param.grad is not None:
                    param_id = id(param)
                    if param_id not in self.momentum_buffer:
                        self.momentum_buffer[param_id] = torch.zeros_like(param.data)
                    grad = param.grad
                    self.momentum_buffer[param_id] = momentum * self.momentum_buffer[param_id] + grad
                    param.data = param.data - lr * self.momentum_buffer[param_id]
                    param.grad = None

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, kernel_size=3, padding=1)
        self.pool = nn.MaxPool2d(kernel_size=2, stride=2)
        self.conv2 = nn.Conv2d(16, 32, kernel_size=3, padding=1)
        self.conv3 = nn.Conv2d(32, 64, kernel_size=3, padding=1)
        self.fc1 = nn.Linear(64 * 3 * 3, 256)
        self.fc2 = nn.Linear(256, 10)

    def forward(self, x):
        x = self.pool(self.leaky_relu(self.conv1(x)))  # [batch, 16, 14, 14]
        x = self.pool(self.leaky_relu(self.conv2(x)))  # [batch, 32, 7, 7]
        x = self.pool(self.leaky_relu(self.conv3(x)))  # [batch, 64, 3, 3]
        x = x.view(x.size(0), -1)  # [batch, 576]
        x = self.tanh(self.fc1(x))  # [batch, 256]
        x = self.fc2(x)  # [batch, 10] logits
        return x


# =============================================================================
# The seeds' training loops, verbatim per step, stopping after ``steps`` batches
# =============================================================================
def seed000_train_steps(model, train_loader, steps, device, learning_rate, momentum=None):
    """Seed 000's loop (Part 1 / Part 2 Step 6) for ``steps`` batches; returns the images seen.

    ``momentum=None`` calls ``SGD_Optimizer(params, lr)`` (Part 1's signature),
    otherwise ``SGD_Optimizer(params, lr, momentum=α)`` (Step 6).
    """
    model.train()
    total_loss = 0
    correct_train = 0
    total_train = 0
    for step, (images, labels) in enumerate(train_loader):
        if step == steps:
            break
        images, labels = images.to(device), labels.to(device)
        for param in model.parameters():
            param.grad = None
        outputs = model(images)
        loss = model.cross_entropy_loss(outputs, labels)
        total_loss += loss.item()
        _, predicted = torch.max(outputs.data, 1)
        total_train += labels.size(0)
        correct_train += (predicted == labels).sum().item()
        loss.backward()
        if momentum is None:
            model.SGD_Optimizer(model.parameters(), learning_rate)
        else:
            model.SGD_Optimizer(model.parameters(), learning_rate, momentum=momentum)
    return total_train


def seed002_train_steps(model, criterion, optimizer, loader, steps, device):
    """Seed 002's ``train_epoch`` for ``steps`` batches; returns the images seen."""
    model.train()
    total_correct = 0.0
    total_samples = 0.0
    for batch_idx, (data, target) in enumerate(loader):
        if batch_idx == steps:
            break
        data, target = data.to(device), target.to(device)
        output = model(data)
        loss = criterion(output, target)
        _, pred = torch.max(output.data, 1)
        total_correct += (pred == target).sum().item()
        total_samples += target.size(0)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return int(total_samples)


def seed001_train_steps(model, criterion, optimizer, train_loader, steps, device, progress_file=None):
    """Seed 001's ``train_model`` inner loop (tqdm bar with per-step ``set_postfix``) for ``steps`` batches."""
    from tqdm import tqdm

    model.train()
    running_loss = 0.0
    correct = 0
    total = 0
    pbar = tqdm(train_loader, desc="Epoch 1/20", file=progress_file)
    try:
        for step, (inputs, labels) in enumerate(pbar):
            if step == steps:
                break
            inputs, labels = inputs.to(device), labels.to(device)
            optimizer.zero_grad()
            outputs = model(inputs)
            loss = criterion(outputs, labels)
            loss.backward()
            optimizer.step()
            running_loss += loss.item()
            _, predicted = outputs.max(1)
            total += labels.size(0)
            correct += predicted.eq(labels).sum().item()
            pbar.set_postfix({"loss": running_loss / (pbar.n + 1), "acc": 100.0 * correct / total})
    finally:
        pbar.close()
    return total


# =============================================================================
# The seeds' data paths: torchvision dataset + per-sample transform + DataLoader
# =============================================================================
def seed_mnist_loader(data_dir, batch_size, mean_std=MNIST_SEED002_MEAN_STD, num_workers=0):
    """``datasets.MNIST(transform=Compose([ToTensor(), Normalize(...)]))`` in ``DataLoader(shuffle=True)``."""
    from torchvision import datasets, transforms

    transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize(*mean_std)])
    dataset = datasets.MNIST(str(data_dir), train=True, download=False, transform=transform)
    return torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=num_workers)


def _presence_checked_cifar10():
    """torchvision's ``CIFAR10`` with its md5 checks reduced to presence checks (synthetic files)."""
    from torchvision import datasets

    class PresenceCheckedCIFAR10(datasets.CIFAR10):
        meta = {**datasets.CIFAR10.meta, "md5": None}  # _load_meta: md5 None → presence check

        def _check_integrity(self) -> bool:
            folder = Path(self.root) / self.base_folder
            return all((folder / name).is_file() for name, _ in self.train_list + self.test_list)

    return PresenceCheckedCIFAR10


def seed_cifar10_loader(data_dir, batch_size=128, num_workers=2):
    """Seed 001's training loader: RandomCrop(32, 4) + flip + ToTensor + Normalize, ``num_workers=2``."""
    from torchvision import transforms

    transform_train = transforms.Compose([
        transforms.RandomCrop(32, padding=4),
        transforms.RandomHorizontalFlip(),
        transforms.ToTensor(),
        transforms.Normalize(*CIFAR_SEED001_MEAN_STD),
    ])
    dataset = _presence_checked_cifar10()(str(data_dir), train=True, download=False, transform=transform_train)
    return torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=num_workers)


def write_synthetic_cifar10(root: str | os.PathLike, train: int, test: int = 16, seed: int = 0) -> Path:
    """Random CIFAR-10 pickles in torchvision's on-disk format under ``root/cifar-10-batches-py``.

    ``data_batch_1..5`` and ``test_batch``: dicts with ``data`` (N, 3072) uint8
    (channel-major rows) and ``labels``; ``batches.meta`` with ``label_names``.
    (Protocol-2 pickles with str keys; torchvision reads them with
    ``encoding="latin1"`` like the official files.)
    """
    rng = np.random.default_rng(seed)
    folder = Path(root) / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)

    def batch(count: int, name: str) -> dict[str, Any]:
        return {
            "batch_label": name,
            "labels": [int(v) for v in rng.integers(0, 10, size=count)],
            "data": rng.integers(0, 256, size=(count, 3072), dtype=np.uint8),
            "filenames": [f"synthetic_{i:05d}.png" for i in range(count)],
        }

    per_file = math.ceil(train / 5)
    for number in range(1, 6):
        with open(folder / f"data_batch_{number}", "wb") as file:
            pickle.dump(batch(per_file, f"training batch {number} of 5"), file, protocol=2)
    with open(folder / "test_batch", "wb") as file:
        pickle.dump(batch(test, "testing batch 1 of 1"), file, protocol=2)
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    with open(folder / "batches.meta", "wb") as file:
        pickle.dump({"num_cases_per_batch": per_file, "label_names": names, "num_vis": 3072}, file, protocol=2)
    return Path(root)


# =============================================================================
# Sides: something that trains ``steps`` batches and says how long it took
# =============================================================================
@dataclass
class Segment:
    """One timed run of ``steps`` training batches."""

    images: int
    seconds: float
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def images_per_s(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else 0.0


class SeedSide:
    """The seed's loop. ``build()`` (untimed) returns a fresh per-segment ``train(steps) -> images``."""

    def __init__(self, label: str, build: Callable[[], Callable[[int], int]], batches_available: int):
        self.label = label
        self._build = build
        self.batches_available = batches_available

    def segment(self, steps: int) -> Segment:
        train = self._build()  # fresh model + optimizer, untimed
        started = time.perf_counter()
        images = train(steps)
        return Segment(images, time.perf_counter() - started)


class PlainLoopSide(SeedSide):
    """A hand-written loop over deeplab's own DataModule, model and optimizer (no Lightning)."""


class SegmentTimer(pl.Callback):
    """The ``Throughput`` callback's window (train epoch start → end), at full precision."""

    def __init__(self) -> None:
        self.started: float | None = None
        self.seconds = 0.0
        self.images = 0

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.started = time.perf_counter()

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        self.images += batch[1].numel() * trainer.world_size  # (a chunk's labels are (K, B))

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.started is not None:
            self.seconds += time.perf_counter() - self.started
            self.started = None


class DeeplabFitSide:
    """``deeplab.train.fit`` as a user runs it, for one epoch of ``steps`` batches, no validation.

    ``config`` is the :class:`~deeplab.config.FitConfig` template; each
    segment replaces ``epochs``, ``limit_train_batches``,
    ``limit_val_batches`` and ``log_dir``. The progress bar stays on (its
    output goes to ``os.devnull``) unless ``config.progress_bar`` is False.
    """

    label = "deeplab fit"

    def __init__(self, config: Any, log_root: Path, batches_available: int):
        self.config = config
        self.log_root = Path(log_root)
        self.batches_available = batches_available

    def segment(self, steps: int) -> Segment:
        import shutil

        from deeplab.train import fit

        timer = SegmentTimer()
        log_dir = Path(tempfile.mkdtemp(prefix="fit-", dir=self.log_root))
        config = dataclasses.replace(
            self.config, epochs=1, limit_train_batches=steps, limit_val_batches=0, log_dir=str(log_dir)
        )
        try:
            with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
                results = fit(config, callbacks=[timer])
        finally:
            shutil.rmtree(log_dir, ignore_errors=True)
        return Segment(timer.images, timer.seconds, {"reported_images_per_s": results.get("images_per_s")})


# =============================================================================
# Cases
# =============================================================================
@dataclass
class BenchContext:
    """What every case needs: where MNIST lives, the device, a scratch folder."""

    data_dir: Path
    device: str = "cpu"
    work_dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="deeplab-bench-")))
    quick: bool = False
    deeplab_overrides: dict[str, Any] = field(default_factory=dict)

    @property
    def accelerator(self) -> str:
        return "gpu" if self.device.startswith("cuda") else "cpu"

    def fit_config(self, **fields: Any) -> Any:
        from deeplab.config import FitConfig

        values = dict(data_dir=str(self.data_dir), accelerator=self.accelerator, devices="1", seed=0)
        values.update(fields)
        values.update(self.deeplab_overrides)
        return FitConfig(**values)


@dataclass
class BenchCase:
    """One comparison. ``build(context, steps)`` → (deeplab side, reference side), built untimed."""

    name: str
    description: str
    reference: str  # what the reference ("seed loop") column measures
    target: float | None  # the ratio deeplab / reference the issue asks for (None: report only)
    batch_size: int
    steps: int  # training batches per timed segment (full run)
    quick_steps: int  # the same under --quick
    build: Callable[["BenchContext", int], tuple[Any, Any]]  # (context, steps wanted)


def _mnist_train_count(data_dir: Path) -> int:
    from torchvision import datasets

    return len(datasets.MNIST(str(data_dir), train=True, download=False).targets)


def _check_mnist(data_dir: Path) -> None:
    from deeplab.errors import DeeplabError

    raw = Path(data_dir) / "MNIST" / "raw"
    needed = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]
    missing = [name for name in needed if not (raw / name).is_file()]
    if missing:
        raise DeeplabError(
            f"MNIST not found under {data_dir} (missing MNIST/raw/{missing[0]}); "
            f"point --data-dir at the folder that holds MNIST/raw/ (torchvision's layout)"
        )


def _build_two_layer_mlp(context: BenchContext, steps: int) -> tuple[Any, Any]:
    _check_mnist(context.data_dir)
    batch = 1
    loader = seed_mnist_loader(context.data_dir, batch, MNIST_SEED000_MEAN_STD)
    device = torch.device(context.device)

    def build():
        model = SeedTwoLayerNet().to(device)
        return lambda steps: seed000_train_steps(model, loader, steps, device, learning_rate=0.005)

    available = len(loader.dataset) // batch
    config = context.fit_config(model="two_layer_mlp", dataset="mnist", batch_size=batch)
    return (DeeplabFitSide(config, context.work_dir, available),
            SeedSide("seed 000 TwoLayerNet loop", build, available))


def _build_cnn5(context: BenchContext, steps: int) -> tuple[Any, Any]:
    _check_mnist(context.data_dir)
    batch = 32
    loader = seed_mnist_loader(context.data_dir, batch, MNIST_SEED000_MEAN_STD)
    device = torch.device(context.device)

    def build():
        model = SeedFiveLayerCNN().to(device)
        return lambda steps: seed000_train_steps(model, loader, steps, device, learning_rate=0.005, momentum=0.9)

    available = len(loader.dataset) // batch
    config = context.fit_config(
        model="cnn5", dataset="mnist", batch_size=batch, optimizer="momentum_sgd", lr=0.005, momentum=0.9, loss="manual"
    )
    return (DeeplabFitSide(config, context.work_dir, available),
            SeedSide("seed 000 FiveLayerCNN momentum loop", build, available))


def _build_cnn_elu_bn(context: BenchContext, steps: int, compile_model: bool = False) -> tuple[Any, Any]:
    from deeplab.models import create_model

    _check_mnist(context.data_dir)
    batch, depth = 256, 30
    loader = seed_mnist_loader(context.data_dir, batch, MNIST_SEED002_MEAN_STD)
    device = torch.device(context.device)

    def build():
        # deeplab's cnn_elu_bn is the seed's CNNeluBN (same modules, order and init).
        model = create_model("cnn_elu_bn", depth=depth, in_channels=1, num_classes=10, image_size=28).to(device)
        criterion = nn.CrossEntropyLoss()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        return lambda steps: seed002_train_steps(model, criterion, optimizer, loader, steps, device)

    available = len(loader.dataset) // batch
    config = context.fit_config(
        model="cnn_elu_bn", dataset="mnist", depth=depth, batch_size=batch, optimizer="sgd", lr=0.01,
        momentum=0.9, loss="torch", compile=compile_model,
    )
    return (DeeplabFitSide(config, context.work_dir, available),
            SeedSide("seed 002 train_epoch (torch.optim.SGD)", build, available))


def _build_resnet18(context: BenchContext, steps: int) -> tuple[Any, Any]:
    from deeplab.models import create_model

    batch = 128
    cifar_root = context.work_dir / f"cifar10-{steps}"
    if not (cifar_root / "cifar-10-batches-py" / "batches.meta").is_file():
        write_synthetic_cifar10(cifar_root, train=steps * batch)  # one epoch of full batches per segment
    loader = seed_cifar10_loader(cifar_root, batch, num_workers=2)
    device = torch.device(context.device)

    def build():
        model = create_model("resnet18", in_channels=3, num_classes=10).to(device)
        criterion = nn.CrossEntropyLoss()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
        sink = io.StringIO()
        return lambda steps: seed001_train_steps(model, criterion, optimizer, loader, steps, device, sink)

    available = len(loader.dataset) // batch
    config = context.fit_config(
        model="resnet18", dataset="cifar10", batch_size=batch, optimizer="sgd", lr=0.1, momentum=0.9,
        weight_decay=5e-4, schedule="cosine", loss="torch", data_dir=str(cifar_root),
    )
    return (DeeplabFitSide(config, context.work_dir, available),
            SeedSide("seed 001 train_model loop (synthetic CIFAR-10)", build, available))


def _build_lightning_overhead(
    context: BenchContext, steps: int, model_name: str = "cnn5", batch: int = 32, momentum: float = 0.9
) -> tuple[Any, Any]:
    from deeplab import functional as HF
    from deeplab.data import create_datamodule
    from deeplab.models import create_model
    from deeplab.optim import MomentumSGD

    _check_mnist(context.data_dir)
    datamodule = create_datamodule("mnist", data_dir=context.data_dir, batch_size=batch)
    datamodule.setup()  # parse once, untimed (as fit's setup is outside its timed window)
    device = torch.device(context.device)

    def build():
        model = create_model(model_name, in_channels=1, num_classes=10, image_size=28).to(device)
        optimizer = MomentumSGD(model.parameters(), lr=0.005, momentum=momentum)
        loader = datamodule.train_dataloader()

        def train(steps: int) -> int:
            # The minimal loop a careful user writes by hand: same batches, same on-device
            # transform, same loss and update, loss/accuracy summed on the device (no per-step sync).
            model.train()
            loss_sum = torch.zeros((), device=device)
            correct = torch.zeros((), dtype=torch.long, device=device)
            seen = 0
            for step, (images, labels) in enumerate(loader):
                if step == steps:
                    break
                images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
                x = datamodule.device_transform(images, training=True)
                logits = model(x)
                loss = HF.cross_entropy(logits, labels)
                loss.backward()
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                loss_sum += loss.detach() * labels.numel()
                correct += (logits.detach().argmax(1) == labels).sum()
                seen += labels.numel()
            float(loss_sum), int(correct)  # one sync at the end, as an epoch summary needs
            return seen

        return train

    available = len(datamodule.split("train")[1]) // batch
    config = context.fit_config(
        model=model_name, dataset="mnist", batch_size=batch, optimizer="momentum_sgd", lr=0.005, momentum=momentum,
        loss="manual",
    )
    return (DeeplabFitSide(config, context.work_dir, available),
            PlainLoopSide(f"plain loop, deeplab's DataModule/{model_name}/MomentumSGD", build, available))


class BareStepSide(SeedSide):
    """The compute ceiling: deeplab's model and update rule stepping on one batch held in memory.

    No data path, no metrics, no framework: forward, loss, backward, update,
    zero-grad, ``steps`` times. No training loop on this model, batch size
    and device can beat it, so ``ceiling / seed`` bounds any achievable ratio.
    """


def _bare_step_side(model_name: str, batch: int, momentum: float, device: str, available: int) -> BareStepSide:
    """Seed 000's update (momentum SGD) and its hand-written loss on deeplab's ``model_name``."""
    from deeplab import functional as HF
    from deeplab.models import create_model
    from deeplab.optim import MomentumSGD

    torch_device = torch.device(device)

    def build():
        model = create_model(model_name, in_channels=1, num_classes=10, image_size=28).to(torch_device)
        optimizer = MomentumSGD(model.parameters(), lr=0.005, momentum=momentum)
        generator = torch.Generator().manual_seed(0)
        images = torch.randn(batch, 1, 28, 28, generator=generator).to(torch_device)
        labels = torch.randint(0, 10, (batch,), generator=generator).to(torch_device)

        def train(steps: int) -> int:
            model.train()
            for _ in range(steps):
                HF.cross_entropy(model(images), labels).backward()
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
            if torch_device.type == "cuda":
                torch.cuda.synchronize(torch_device)
            return steps * batch

        return train

    return BareStepSide(f"bare {model_name} steps on one in-memory batch", build, available)


def _with_ceiling(build_case: Callable[[BenchContext, int], tuple[Any, Any]], model_name: str, batch: int,
                  momentum: float) -> Callable[[BenchContext, int], tuple[Any, Any]]:
    """The case's seed side, against the compute ceiling instead of ``fit``."""

    def build(context: BenchContext, steps: int) -> tuple[Any, Any]:
        _, seed_side = build_case(context, steps)
        return _bare_step_side(model_name, batch, momentum, context.device, seed_side.batches_available), seed_side

    return build


def _build_grad_norms_overhead(context: BenchContext, steps: int) -> tuple[Any, Any]:
    """Issue 4: ``fit`` with gradient norms recorded at every step against ``fit`` with them off."""
    _check_mnist(context.data_dir)
    batch = 32
    common = dict(model="cnn15_plain", dataset="mnist", batch_size=batch, optimizer="momentum_sgd", lr=0.005,
                  momentum=0.9, loss="manual")
    available = _mnist_train_count(context.data_dir) // batch
    logging_on = DeeplabFitSide(context.fit_config(**common, grad_norms=True, grad_every=1), context.work_dir, available)
    logging_off = DeeplabFitSide(context.fit_config(**common, grad_norms=False), context.work_dir, available)
    logging_off.label = "deeplab fit, --no-grad-norms"
    return logging_on, logging_off


CASES: dict[str, BenchCase] = {
    case.name: case
    for case in [
        BenchCase(
            "cnn5_bs32", "seed 000 FiveLayerCNN, batch 32, hand-written momentum SGD α=0.9, manual loss (MNIST)",
            "seed 000 loop", 5.0, 32, 200, 40, _build_cnn5,
        ),
        BenchCase(
            "two_layer_mlp_bs1", "seed 000 TwoLayerNet, batch 1, hand-written SGD, manual loss (MNIST)",
            "seed 000 loop", 8.0, 1, 3000, 300, _build_two_layer_mlp,
        ),
        BenchCase(
            "cnn5_bs32_ceiling", "the compute ceiling for cnn5_bs32: bare model steps on one in-memory batch",
            "seed 000 loop", None, 32, 200, 40, _with_ceiling(_build_cnn5, "cnn5", 32, 0.9),
        ),
        BenchCase(
            "two_layer_mlp_bs1_ceiling", "the compute ceiling for two_layer_mlp_bs1: bare steps on one in-memory image",
            "seed 000 loop", None, 1, 3000, 300, _with_ceiling(_build_two_layer_mlp, "two_layer_mlp", 1, 0.0),
        ),
        BenchCase(
            "cnn_elu_bn_k30_bs256", "seed 002 CNNeluBN k=30, batch 256, torch.optim.SGD(0.01, 0.9) (MNIST)",
            "seed 002 loop", 1.0, 256, 20, 4, _build_cnn_elu_bn,
        ),
        BenchCase(
            "cnn_elu_bn_k30_bs256_compile", "as cnn_elu_bn_k30_bs256, deeplab side with --compile",
            "seed 002 loop", 1.0, 256, 20, 4, lambda context, steps: _build_cnn_elu_bn(context, steps, compile_model=True),
        ),
        BenchCase(
            "resnet18_bs128", "seed 001 ResNet-18, batch 128, SGD+wd, crop/flip (synthetic CIFAR-10 pickles)",
            "seed 001 loop", 1.0, 128, 3, 1, _build_resnet18,
        ),
        BenchCase(
            "lightning_overhead", "cnn5 batch 32 (MNIST): deeplab fit vs a plain loop over deeplab's own parts",
            "plain loop", 0.9, 32, 200, 40, _build_lightning_overhead,
        ),
        BenchCase(
            "grad_norms_overhead", "cnn15_plain batch 32 (MNIST): fit with --grad-every 1 vs fit with --no-grad-norms",
            "grad norms off", 0.87, 32, 100, 20, _build_grad_norms_overhead,
        ),
        BenchCase(
            "lightning_overhead_bs1", "two_layer_mlp batch 1 (MNIST): deeplab fit vs a plain loop over deeplab's parts",
            "plain loop", None, 1, 3000, 300,
            lambda context, steps: _build_lightning_overhead(context, steps, "two_layer_mlp", 1, 0.0),
        ),
    ]
}

#: what ``scripts/bench.py`` runs without ``--cases``
DEFAULT_CASES = ("cnn5_bs32", "cnn5_bs32_ceiling", "two_layer_mlp_bs1", "two_layer_mlp_bs1_ceiling",
                 "cnn_elu_bn_k30_bs256", "cnn_elu_bn_k30_bs256_compile",
                 "resnet18_bs128", "lightning_overhead", "lightning_overhead_bs1", "grad_norms_overhead")


def _median(values: Sequence[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def run_case(
    case: BenchCase,
    context: BenchContext,
    repeats: int = 3,
    steps: int | None = None,
    log: Callable[[str], None] = lambda line: None,
) -> dict[str, Any]:
    """Warm up each side once, then ``repeats`` alternating pairs; medians and the median pair ratio."""
    if repeats < 1:
        raise ValueError("repeats must be ≥ 1")
    wanted = steps if steps is not None else (case.quick_steps if context.quick else case.steps)
    deeplab_side, reference_side = case.build(context, wanted)
    steps = max(1, min(wanted, deeplab_side.batches_available, reference_side.batches_available))
    load_before = os.getloadavg()[0]

    log(f"[{case.name}] warm-up ({steps} steps per segment)")
    deeplab_side.segment(steps)
    reference_side.segment(steps)
    deeplab_runs: list[Segment] = []
    reference_runs: list[Segment] = []
    for repeat in range(repeats):
        order = [(deeplab_side, deeplab_runs), (reference_side, reference_runs)]
        for side, runs in order if repeat % 2 == 0 else reversed(order):
            runs.append(side.segment(steps))
        log(f"[{case.name}] repeat {repeat + 1}/{repeats}: deeplab {deeplab_runs[-1].images_per_s:,.1f} img/s, "
            f"{case.reference} {reference_runs[-1].images_per_s:,.1f} img/s")

    pair_ratios = [d.images_per_s / r.images_per_s for d, r in zip(deeplab_runs, reference_runs) if r.images_per_s > 0]
    ratio = _median(pair_ratios)
    return {
        "case": case.name,
        "deeplab_images_per_s": round(_median([s.images_per_s for s in deeplab_runs]), 2),
        "seed_loop_images_per_s": round(_median([s.images_per_s for s in reference_runs]), 2),
        "ratio": round(ratio, 3),
        "target": case.target,
        "met": None if case.target is None else bool(ratio >= case.target),
        "reference": case.reference,
        "description": case.description,
        "batch_size": case.batch_size,
        "steps_per_segment": steps,
        "repeats": repeats,
        "pair_ratios": [round(r, 3) for r in pair_ratios],
        "deeplab_runs_images_per_s": [round(s.images_per_s, 2) for s in deeplab_runs],
        "seed_loop_runs_images_per_s": [round(s.images_per_s, 2) for s in reference_runs],
        "deeplab_reported_images_per_s": [s.extra.get("reported_images_per_s") for s in deeplab_runs],
        "device": context.device,
        "deeplab_overrides": dict(context.deeplab_overrides),
        "torch_threads": torch.get_num_threads(),
        "load_average_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)],
    }


def run_benchmark(
    case_names: Sequence[str],
    context: BenchContext,
    repeats: int = 3,
    steps: int | None = None,
    log: Callable[[str], None] = lambda line: None,
) -> list[dict[str, Any]]:
    """:func:`run_case` for each named case, in order."""
    from deeplab.errors import DeeplabError

    unknown = [name for name in case_names if name not in CASES]
    if unknown:
        raise DeeplabError(f"unknown case {unknown[0]!r}; choose from {', '.join(CASES)}")
    return [run_case(CASES[name], context, repeats=repeats, steps=steps, log=log) for name in case_names]


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    """A plain-text table: case, both throughputs, ratio, target."""
    header = ("case", "deeplab img/s", "seed loop img/s", "ratio", "target", "steps×repeats")
    lines = [header]
    for row in rows:
        target = "—" if row.get("target") is None else f"≥ {row['target']:g}×"
        if row.get("met") is not None:
            target += " ok" if row["met"] else " MISSED"
        lines.append((
            row["case"],
            f"{row['deeplab_images_per_s']:,.1f}",
            f"{row['seed_loop_images_per_s']:,.1f}",
            f"{row['ratio']:.2f}×",
            target,
            f"{row.get('steps_per_segment', '?')}×{row.get('repeats', '?')}",
        ))
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(header))]
    rendered = []
    for index, line in enumerate(lines):
        cells = [str(cell).ljust(width) if i == 0 else str(cell).rjust(width) for i, (cell, width) in enumerate(zip(line, widths))]
        rendered.append("  ".join(cells))
        if index == 0:
            rendered.append("  ".join("-" * width for width in widths))
    return "\n".join(rendered)


def iter_case_names(spec: str | None) -> Iterator[str]:
    """``"a,b"`` → a, b; ``None`` or ``"all"`` → the default cases."""
    if not spec or spec == "all":
        yield from DEFAULT_CASES
        return
    for name in spec.split(","):
        if name.strip():
            yield name.strip()
