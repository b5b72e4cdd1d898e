"""The benchmark cases: deeplab against the seeds' own loops, against the best loop, and against itself.

Every deeplab side runs ``fit`` with the engine its seed protocol's full run
would get (``--compile auto`` picks the compiled step for seed 000's 10-epoch
runs at batch 1 and 32; seed 002's 3-epoch probes at batch 256 stay eager,
with the fast CPU kernels), so the ratios are what a user's run sees. Targets: the ratios each case's ``target`` names.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn as nn

from deeplab.data.synthetic import write_synthetic_datasets
from deeplab.bench.harness import (
    BenchCase,
    BenchContext,
    CeilingSide,
    DeeplabFitSide,
    PlainLoopSide,
    SeedSide,
)
from deeplab.bench.seeds import (
    MNIST_SEED000_MEAN_STD,
    MNIST_SEED002_MEAN_STD,
    SeedFiveLayerCNN,
    SeedFiveLayerCNNSigmoid,
    SeedTwoLayerNet,
    seed000_train_steps,
    seed001_train_steps,
    seed002_train_steps,
    seed_cifar10_loader,
    seed_mnist_loader,
)

__all__ = ["CASES", "DEFAULT_CASES", "GROUP_TARGETS", "SEED002_FAMILIES"]

#: seed 002's seven families, benchmarked at k = 30, batch 256
SEED002_FAMILIES = ("cnn_tanh", "cnn_tanh_newinit", "cnn_elu", "cnn_elu_bn", "resnet_elu", "cnn_tanh_bn_oldinit",
                    "resnet_elu_nobn")
#: the geometric-mean target of each case group
GROUP_TARGETS = {"seed002_families_k30_bs256": 1.5}
#: batches per chunk the ceiling loop feeds its compiled step (fit's chunk at batch 1)
CHUNK = 256


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


# ------------------------------------------------------------------- seed 000
#: model → (the seed's class, momentum α of its loop (None: the α-less SGD_Optimizer), unroll of fit's step)
_SEED000 = {
    "two_layer_mlp": (SeedTwoLayerNet, None),
    "cnn5_sigmoid": (SeedFiveLayerCNNSigmoid, None),
    "cnn5": (SeedFiveLayerCNN, 0.9),
}


def _seed000_config(context: BenchContext, model: str, batch: int, **fields: Any) -> Any:
    momentum = _SEED000[model][1] or 0.0
    values = dict(model=model, dataset="mnist", batch_size=batch, optimizer="momentum_sgd", lr=0.005,
                  momentum=momentum, loss="manual", compile="step")
    values.update(fields)
    return context.fit_config(**values)


def _seed000_case(model: str, batch: int) -> Callable[[BenchContext, int], tuple[Any, Any]]:
    seed_class, momentum = _SEED000[model]

    def build(context: BenchContext, steps: int) -> tuple[Any, Any]:
        _check_mnist(context.data_dir)
        loader = seed_mnist_loader(context.data_dir, batch, MNIST_SEED000_MEAN_STD)
        device = torch.device(context.device)

        def build_seed() -> Callable[[int], int]:
            net = seed_class().to(device)
            return lambda n: seed000_train_steps(net, loader, n, device, learning_rate=0.005, momentum=momentum)

        available = len(loader.dataset) // batch
        return (DeeplabFitSide(_seed000_config(context, model, batch), context.work_dir, available),
                SeedSide(f"seed 000 {seed_class.__name__} loop", build_seed, available))

    return build


def _compiled_step_for(context: BenchContext, model: str, batch: int, grad_norms: bool = False) -> Any:
    """deeplab's model, optimizer and compiled step as ``fit`` would build them for this case."""
    import deeplab.models.functional as HF
    from deeplab.training.engine.compiled_step import CompiledStep
    from deeplab.training.engine import resolve_engine
    from deeplab.models.layers import parameterized_layers
    from deeplab.models import create_model
    from deeplab.training.optim import MomentumSGD

    device = torch.device(context.device)
    net = create_model(model, in_channels=1, num_classes=10, image_size=28).to(device)
    config = _seed000_config(context, model, batch, channels_last=None, steps_per_call=None, precision="32-true",
                             fast_dev_run=False)
    engine = resolve_engine(config, net, 10**6, 1, device.type == "cuda")
    if engine.channels_last:
        net = net.to(memory_format=torch.channels_last)
    optimizer = MomentumSGD(net.parameters(), lr=0.005, momentum=_SEED000[model][1] or 0.0)
    layers = [w for _, _, w in parameterized_layers(net)] if grad_norms else None
    return CompiledStep(net, optimizer, "momentum_sgd", HF.cross_entropy, layers, unroll=engine.unroll,
                        channels_last=engine.channels_last), engine


def _ceiling_case(model: str, batch: int) -> Callable[[BenchContext, int], tuple[Any, Any]]:
    """The compiled whole step on chunks already in memory, against the seed's loop."""

    def build(context: BenchContext, steps: int) -> tuple[Any, Any]:
        _, seed_side = _seed000_case(model, batch)(context, steps)
        device = torch.device(context.device)
        generator = torch.Generator().manual_seed(0)
        images = torch.randn(CHUNK, batch, 1, 28, 28, generator=generator).to(device)
        labels = torch.randint(0, 10, (CHUNK, batch), generator=generator).to(device)
        holder: dict[str, Any] = {}

        def build_ceiling() -> Callable[[int], int]:
            if "step" not in holder:  # compiled once (untimed), then trained on across segments
                holder["step"], _ = _compiled_step_for(context, model, batch)
                holder["step"](images, labels)
            step = holder["step"]

            def train(n: int) -> int:
                done = 0
                while done < n:
                    count = min(CHUNK, n - done)
                    step(images[:count], labels[:count], first_position=done)
                    done += count
                _synchronize(device)
                return n * batch

            return train

        return CeilingSide(f"compiled {model} step on in-memory batches", build_ceiling,
                           seed_side.batches_available), seed_side

    return build


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ------------------------------------------------------------ Lightning overhead
def _overhead_case(model: str, batch: int) -> Callable[[BenchContext, int], tuple[Any, Any]]:
    """``fit`` against a plain loop over deeplab's own DataModule (same chunks) and the same compiled step."""

    def build(context: BenchContext, steps: int) -> tuple[Any, Any]:
        from deeplab.data.datamodules import create_datamodule

        _check_mnist(context.data_dir)
        device = torch.device(context.device)
        config = _seed000_config(context, model, batch, grad_norms=False)
        holder: dict[str, Any] = {}

        def build_plain() -> Callable[[int], int]:
            if "step" not in holder:  # compiled once (untimed), as fit's compile time is outside its window
                step, engine = _compiled_step_for(context, model, batch)
                datamodule = create_datamodule("mnist", data_dir=context.data_dir, batch_size=batch,
                                               steps_per_call=engine.steps_per_call)
                datamodule.setup()
                chunk_images, chunk_labels = next(iter(datamodule.train_dataloader()))
                step(datamodule.chunk_transform(chunk_images.to(device), True), chunk_labels.to(device))
                holder.update(step=step, datamodule=datamodule)
            step, datamodule = holder["step"], holder["datamodule"]

            def train(n: int) -> int:
                # The loop a careful user writes: the same chunks, on-device transform and step,
                # loss and accuracy summed on the device (one sync at the end).
                loss_sum = torch.zeros((), dtype=torch.float64, device=device)
                correct = torch.zeros((), dtype=torch.long, device=device)
                done = 0
                for images, labels in datamodule.train_dataloader():
                    if done >= n:
                        break
                    images, labels = images[: n - done].to(device), labels[: n - done].to(device)
                    out = step(datamodule.chunk_transform(images, True), labels, first_position=done)
                    loss_sum += out.losses.double().sum() * batch
                    correct += out.correct.sum()
                    done += len(labels)
                float(loss_sum), int(correct)
                return done * batch

            return train

        available = 60_000 // batch
        return (DeeplabFitSide(config, context.work_dir, available),
                PlainLoopSide(f"plain loop, deeplab's DataModule + compiled {model} step", build_plain, available))

    return build


def _grad_norms_case(model: str, batch: int, epoch: int) -> Callable[[BenchContext, int], tuple[Any, Any]]:
    """``fit`` with gradient norms (a full record every 10 steps; in the first epoch also every step's
    L1) against ``fit`` without them, both with the compiled step, timed in epoch ``epoch``."""

    def build(context: BenchContext, steps: int) -> tuple[Any, Any]:
        _check_mnist(context.data_dir)
        on = DeeplabFitSide(_seed000_config(context, model, batch, grad_norms=True), context.work_dir,
                            60_000 // batch, epoch=epoch)
        off = DeeplabFitSide(_seed000_config(context, model, batch, grad_norms=False), context.work_dir,
                             60_000 // batch, epoch=epoch)
        off.label = "fit --no-grad-norms"
        return on, off

    return build


# ------------------------------------------------------------------- seed 002
def _family_case(family: str) -> Callable[[BenchContext, int], tuple[Any, Any]]:
    """Seed 002's ``train_epoch`` (torch.optim.SGD 0.01/0.9, PIL DataLoader) at k = 30, batch 256."""

    def build(context: BenchContext, steps: int) -> tuple[Any, Any]:
        from deeplab.models import create_model

        _check_mnist(context.data_dir)
        batch, depth = 256, 30
        loader = seed_mnist_loader(context.data_dir, batch, MNIST_SEED002_MEAN_STD)
        device = torch.device(context.device)

        def build_seed() -> Callable[[int], int]:
            # deeplab's families are the seed's classes (same modules, order and init), NCHW as the seed runs them
            net = create_model(family, depth=depth, in_channels=1, num_classes=10, image_size=28).to(device)
            optimizer = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
            return lambda n: seed002_train_steps(net, nn.CrossEntropyLoss(), optimizer, loader, n, device)

        available = len(loader.dataset) // batch
        # fast kernels as a whole probe (3 epochs, 180,000 images) gets them: the bench's short
        # segments alone would stay under --fast-kernels auto's 100,000 images
        config = context.fit_config(model=family, dataset="mnist", depth=depth, batch_size=batch, optimizer="sgd",
                                    lr=0.01, momentum=0.9, loss="torch", fast_kernels=True)
        return (DeeplabFitSide(config, context.work_dir, available),
                SeedSide("seed 002 train_epoch (torch.optim.SGD)", build_seed, available))

    return build


# ------------------------------------------------------------------- seed 001
def _build_resnet18(context: BenchContext, steps: int) -> tuple[Any, Any]:
    from deeplab.models import create_model

    batch = 128
    cifar_root = context.work_dir / f"cifar10-{steps}"
    if not (cifar_root / "cifar-10-batches-py" / "batches.meta").is_file():
        # one epoch of full batches per segment, in the format the tests use (deeplab.data.synthetic)
        write_synthetic_datasets(cifar_root, train=steps * batch, test=16, datasets=("cifar10",))
    loader = seed_cifar10_loader(cifar_root, batch, num_workers=2)
    device = torch.device(context.device)

    def build_seed() -> Callable[[int], int]:
        net = create_model("resnet18", in_channels=3, num_classes=10).to(device)
        optimizer = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
        sink = io.StringIO()
        return lambda n: seed001_train_steps(net, nn.CrossEntropyLoss(), optimizer, loader, n, device, sink)

    available = len(loader.dataset) // batch
    config = context.fit_config(model="resnet18", dataset="cifar10", batch_size=batch, optimizer="sgd", lr=0.1,
                                momentum=0.9, weight_decay=5e-4, schedule="cosine", loss="torch",
                                data_dir=str(cifar_root))
    return (DeeplabFitSide(config, context.work_dir, available),
            SeedSide("seed 001 train_model loop (synthetic CIFAR-10)", build_seed, available, worker_processes=True))


CASES: dict[str, BenchCase] = {
    case.name: case
    for case in [
        BenchCase("two_layer_mlp_bs1", "seed 000 TwoLayerNet, batch 1, hand-written SGD and loss (MNIST)",
                  "seed 000 loop", 5.0, 1, 3000, 300, _seed000_case("two_layer_mlp", 1)),
        BenchCase("two_layer_mlp_bs1_ceiling", "the best loop for two_layer_mlp_bs1: compiled step, in-memory batches",
                  "seed 000 loop", None, 1, 3000, 300, _ceiling_case("two_layer_mlp", 1)),
        BenchCase("cnn5_sigmoid_bs1", "seed 000 FiveLayerCNN_Sigmoid, batch 1, hand-written SGD and loss (MNIST)",
                  "seed 000 loop", 2.5, 1, 1000, 100, _seed000_case("cnn5_sigmoid", 1)),
        BenchCase("cnn5_sigmoid_bs1_ceiling", "the best loop for cnn5_sigmoid_bs1",
                  "seed 000 loop", None, 1, 1000, 100, _ceiling_case("cnn5_sigmoid", 1),
                  quick_covered_by="two_layer_mlp_bs1_ceiling"),
        BenchCase("cnn5_bs32", "seed 000 FiveLayerCNN, batch 32, hand-written momentum SGD α=0.9 (MNIST)",
                  "seed 000 loop", 2.0, 32, 200, 30, _seed000_case("cnn5", 32)),
        BenchCase("cnn5_bs32_ceiling", "the best loop for cnn5_bs32",
                  "seed 000 loop", None, 32, 200, 30, _ceiling_case("cnn5", 32)),
        *[BenchCase(f"{family}_k30_bs256", f"seed 002 {family}, k=30, batch 256, SGD 0.01/0.9 (MNIST)",
                    "seed 002 loop", None, 256, 12, 2, _family_case(family), group="seed002_families_k30_bs256")
          for family in SEED002_FAMILIES],
        BenchCase("resnet18_bs128", "seed 001 ResNet-18, batch 128, SGD+wd, crop/flip (synthetic CIFAR-10 pickles)",
                  "seed 001 loop", 1.0, 128, 3, 1, _build_resnet18),
        BenchCase("lightning_overhead", "cnn5 batch 32: fit against a plain loop with the same compiled step",
                  "plain loop", 0.9, 32, 200, 30, _overhead_case("cnn5", 32)),
        BenchCase("lightning_overhead_bs1", "two_layer_mlp batch 1: fit against a plain loop with the same step",
                  "plain loop", 0.8, 1, 3000, 300, _overhead_case("two_layer_mlp", 1)),
        BenchCase("grad_norms_overhead_bs1", "two_layer_mlp batch 1, epoch 2: fit with gradient norms against "
                  "without", "grad norms off", 0.9, 1, 3000, 300, _grad_norms_case("two_layer_mlp", 1, epoch=2)),
        BenchCase("grad_norms_overhead_bs1_epoch1", "the same in epoch 1, where every step's L1 is also taken "
                  "(seed 000's first-epoch measure)", "grad norms off", None, 1, 3000, 300,
                  _grad_norms_case("two_layer_mlp", 1, epoch=1), quick_covered_by="grad_norms_overhead_bs1"),
    ]
}

#: what ``scripts/bench.py`` runs without ``--cases`` (all of them)
DEFAULT_CASES = tuple(CASES)
