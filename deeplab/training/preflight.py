"""Checks that run before any data is read or file written: hardware options, and whether a network fits.

Each failure is one :class:`~deeplab.errors.DeeplabError` line that says what
to do (``deeplab.cli.run_main`` prints it, exit 2); ``fit`` and the search call these first, so a
mistake costs seconds, not a trained probe.
"""

from __future__ import annotations

import os
from typing import Any

import torch

from deeplab.config import PRECISION_ALIASES  # noqa: F401  (re-exported: the names Lightning accepts)
from deeplab.errors import DeeplabError

__all__ = [
    "ACCELERATORS",
    "PRECISIONS",
    "PRECISION_ALIASES",
    "check_hardware",
    "cluster_launcher",
    "estimate_training_bytes",
    "check_memory",
    "machine_memory_bytes",
]

ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps")
PRECISIONS = ("32-true", "bf16-mixed", "16-mixed", "bf16-true", "16-true", "64-true")
#: Lightning's short spellings, recorded under the full name so a resume compares like with like
#: strategies that need packages deeplab does not install, or hardware it does not target
_UNSUPPORTED_STRATEGY_PREFIXES = ("xla", "single_xla", "single_tpu", "deepspeed")


def _uses_gpu(accelerator: str) -> bool:
    return accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())


def _strategies() -> list[str]:
    from lightning.pytorch.strategies import StrategyRegistry

    return ["auto"] + [name for name in StrategyRegistry.available_strategies()
                       if not name.startswith(_UNSUPPORTED_STRATEGY_PREFIXES)]


def cluster_launcher() -> str | None:
    """The multi-node launcher this process runs under (SLURM, torchrun, or hand-set variables), if any."""
    if os.environ.get("SLURM_NTASKS") or os.environ.get("SLURM_JOB_ID"):
        return "SLURM"
    if os.environ.get("TORCHELASTIC_RUN_ID"):
        return "torchrun"
    if os.environ.get("MASTER_ADDR") and os.environ.get("NODE_RANK") is not None:
        return "MASTER_ADDR/NODE_RANK"
    return None


def check_hardware(config: Any) -> None:
    """--accelerator, --devices, --strategy, --precision and --num-nodes, against this machine."""
    accelerator = config.accelerator
    if accelerator not in ACCELERATORS:
        raise DeeplabError(f"--accelerator {accelerator!r} is not one of {', '.join(ACCELERATORS)}")
    if accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        raise DeeplabError(f"--accelerator {accelerator}, but this machine has no CUDA GPU; use --accelerator cpu")
    if accelerator == "mps" and not torch.backends.mps.is_available():
        raise DeeplabError("--accelerator mps, but this machine has no Apple GPU; use --accelerator cpu")
    gpu = _uses_gpu(accelerator)
    _check_devices(config.devices, gpu)
    if config.strategy not in _strategies():
        raise DeeplabError(f"--strategy {config.strategy!r} is not a strategy deeplab can run; use auto, ddp, "
                           f"ddp_spawn, ddp_fork, fsdp or single_device (or another of Lightning's DDP variants)")
    if config.precision not in PRECISIONS:
        raise DeeplabError(f"--precision {config.precision!r} is not one of {', '.join(PRECISIONS)} "
                           f"(or {', '.join(PRECISION_ALIASES)})")
    if config.precision.startswith("16") and not gpu:
        raise DeeplabError(f"--precision {config.precision} needs a CUDA GPU (float16 autocast); "
                           f"on the CPU use bf16-mixed or 32-true")
    if config.num_nodes > 1 and cluster_launcher() is None:
        raise DeeplabError(
            f"--num-nodes {config.num_nodes} needs a launcher on every node: run under SLURM (srun python "
            f"scripts/fit.py ...) or torchrun --nnodes {config.num_nodes} (see docs/running.md, Multi-GPU and multi-node)"
        )


def _check_devices(requested: str, gpu: bool) -> None:
    """The parsed --devices (deeplab.config.parse_devices) against this machine's GPUs or cores."""
    from deeplab.config import device_count, parse_devices

    devices = parse_devices(requested)
    if devices == "auto":
        return
    if isinstance(devices, list):
        if not gpu:
            raise DeeplabError(f"--devices {requested}: a list of indices selects GPUs; on the CPU give a count")
        if max(devices) >= torch.cuda.device_count():
            raise DeeplabError(f"--devices {requested}: this machine has GPUs 0..{torch.cuda.device_count() - 1}")
    count = device_count(devices)
    if gpu:
        available = torch.cuda.device_count()
        if count > available:
            raise DeeplabError(f"--devices {requested} asks for more GPUs than the {available} this machine has")
    elif count > (os.cpu_count() or 1):
        raise DeeplabError(
            f"--devices {requested} asks for more CPU processes than the {os.cpu_count()} cores this machine has"
        )


# --------------------------------------------------------------------------- memory
#: pairs of small depths tried, in order, to measure how a family grows with depth
_PROBE_DEPTHS = ((3, 6), (1, 2), (8, 14), (20, 32))
#: bytes per parameter: weight, gradient, optimizer state (momentum or Adam's two moments), spare
_BYTES_PER_PARAMETER = 4 * 4
#: bytes per activation element per sample: the output kept for backward, its gradient
_BYTES_PER_ACTIVATION = 4 * 2
#: refuse only estimates above this multiple of the device's memory (the estimate's error is below 2×)
MEMORY_SAFETY_FACTOR = 2.0


def _footprint(model_name: str, kwargs: dict[str, Any]) -> tuple[int, int]:
    """(parameters, activation elements per sample) of one small network, measured."""
    from deeplab.models import create_model

    model = create_model(model_name, **kwargs)
    parameters = sum(p.numel() for p in model.parameters())
    elements = 0

    def count(module: torch.nn.Module, inputs: Any, output: Any) -> None:
        nonlocal elements
        if isinstance(output, torch.Tensor):
            elements += output.numel()

    leaves = [m for m in model.modules() if not list(m.children())]
    handles = [m.register_forward_hook(count) for m in leaves]
    shape = (1, kwargs.get("in_channels", 1), kwargs.get("image_size", 28), kwargs.get("image_size", 28))
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(shape))
    finally:
        for handle in handles:
            handle.remove()
    return parameters, elements


def estimate_training_bytes(model_name: str, kwargs: dict[str, Any], batch_size: int) -> int | None:
    """Bytes to train a depth family at ``kwargs["depth"]`` and ``batch_size`` (None: no depth).

    Measured on two small depths of the family (parameters, and activation
    elements per sample through forward hooks) and extrapolated linearly in
    depth — every depth family here grows linearly — so a depth of three
    million is priced without building it.
    """
    depth = kwargs.get("depth")
    if depth is None:
        return None
    for shallow, deeper in _PROBE_DEPTHS:
        try:
            p1, a1 = _footprint(model_name, {**kwargs, "depth": shallow})
            p2, a2 = _footprint(model_name, {**kwargs, "depth": deeper})
        except DeeplabError:
            continue  # not a valid depth of this family: try the next pair
        slope = (deeper - shallow)
        parameters = p1 + (p2 - p1) * (depth - shallow) / slope
        activations = a1 + (a2 - a1) * (depth - shallow) / slope
        return int(parameters * _BYTES_PER_PARAMETER + activations * batch_size * _BYTES_PER_ACTIVATION)
    return None


def machine_memory_bytes(gpu: bool) -> int:
    """Memory of the device training runs on: the first GPU's, else the machine's RAM."""
    if gpu:
        return int(torch.cuda.get_device_properties(0).total_memory)
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def _size(count: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB", "PB"):
        if count < 1000 or unit == "PB":
            return f"{count:,.0f} {unit}" if unit == "B" else f"{count:,.1f} {unit}"
        count /= 1000
    return f"{count:,.1f} PB"


def check_memory(model_name: str, kwargs: dict[str, Any], batch_size: int, accelerator: str,
                 option: str = "--depth") -> None:
    """Refuse a depth whose estimated training memory exceeds the device's (one line, before building it)."""
    needed = estimate_training_bytes(model_name, kwargs, batch_size)
    if needed is None:
        return
    gpu = _uses_gpu(accelerator)
    available = machine_memory_bytes(gpu)
    # The estimate is within 2× of the measured peak (resnet_deep k=56 at batch 32: 3.4 GB
    # estimated, 1.7 GB peak RSS; cnn_elu_bn k=30 at 256: 0.34 vs 0.45 GB), so only a run
    # estimated at more than twice the memory is refused: it cannot fit.
    if needed > MEMORY_SAFETY_FACTOR * available:
        where = "this GPU" if gpu else "this machine"
        raise DeeplabError(
            f"{option} {kwargs['depth']} needs about {_size(needed)} to train {model_name} at batch {batch_size} "
            f"(parameters, gradients, optimizer state and activations, estimated), more than twice the "
            f"{_size(available)} {where} has; lower {option} or --batch-size"
        )
