"""What one run reports: :class:`RunResult`, written as ``results.json`` and returned by ``fit``.

The fields are ``results.json``'s keys, in its order; callbacks add theirs (``grad`` from
:class:`~deeplab.callbacks.gradients.GradientNorms`, ``trainability`` from
:class:`~deeplab.callbacks.trainability.TrainabilityJudge`: the ``ResultsContributor`` protocol) as
``results[key] = …``. A RunResult reads like the dictionary ``results.json`` holds (``results["test_acc"]``,
``results.get("grad")``) and :meth:`RunResult.to_json` is that dictionary.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import MutableMapping
from dataclasses import dataclass, field
from typing import Any, Iterator

__all__ = ["RunResult", "peak_memory", "device_description"]


@dataclass(eq=False)
class RunResult(MutableMapping):
    """One run's outcome (``results.json``); see the module docstring."""

    model: str
    dataset: str
    depth: int | None
    parameters: int
    hparams: dict[str, Any]  # the resolved settings (but ckpt_path)
    eval_split: str  # the split evaluated every epoch: "test" (the seeds' protocol) or "val"
    data: dict[str, Any]  # what the data path did (normalization, augmentation), defaults filled in
    history: list[dict[str, Any]]  # one row per closed epoch
    partial_epoch: dict[str, Any] | None  # an epoch stopped part-way: its running metrics
    test_acc: float | None
    test_loss: float | None
    global_step: int
    epochs_run: int
    diverged: bool
    diverged_at_step: int | None
    interrupted: bool
    interrupted_by: str | None
    resumes: list[dict[str, Any]]
    engine: dict[str, Any]
    compile_time_s: float | None
    wall_time_s: float
    train_time_s: float
    images_per_s: float
    device: str
    lr_effective: float
    memory: dict[str, float | None]
    run_dir: str
    checkpoint: str | None
    #: with a held-out split: checkpoints/best.ckpt, the epoch of the best validation accuracy (never the test's)
    best: dict[str, Any] | None = None
    #: the run's figures drawn from its TensorBoard events: learning_curves.png, grad_heatmap.png
    figures: dict[str, str] = field(default_factory=dict)
    #: what callbacks contributed (grad, trainability, …), after the fields above in results.json
    contributed: dict[str, Any] = field(default_factory=dict)
    #: where results.json was written (None: a --fast-dev-run keeps no files); not in the file
    results_path: str | None = None
    #: whether this process is rank 0 (under DDP only rank 0 writes and prints); not in the file
    is_global_zero: bool = True

    _NOT_IN_FILE = ("contributed", "results_path", "is_global_zero")

    def to_json(self) -> dict[str, Any]:
        """``results.json``'s content."""
        values = {item.name: getattr(self, item.name) for item in dataclasses.fields(self)
                  if item.name not in self._NOT_IN_FILE}
        values.update(self.contributed)
        return values

    # ------------------------------------------------------------- the dictionary view
    def _names(self) -> list[str]:
        return [item.name for item in dataclasses.fields(self) if item.name != "contributed"]

    def __getitem__(self, key: str) -> Any:
        if key in self.contributed:
            return self.contributed[key]
        if key in self._names():
            return getattr(self, key)
        raise KeyError(key)

    def __setitem__(self, key: str, value: Any) -> None:
        if key in self._names():
            setattr(self, key, value)
        else:
            self.contributed[key] = value

    def __delitem__(self, key: str) -> None:
        del self.contributed[key]

    def __iter__(self) -> Iterator[str]:
        return iter([*self._names(), *self.contributed])

    def __len__(self) -> int:
        return len(self._names()) + len(self.contributed)


def peak_memory(trainer: Any) -> dict[str, float | None]:
    """The process's peak resident memory (``getrusage``; the whole process, data set included) and, on a
    GPU, the peak memory torch allocated there, in MiB (issue 19: the frontier runs report both)."""
    import resource

    import torch

    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    peak_rss_mib = peak_rss / (1024 * 1024) if sys.platform == "darwin" else peak_rss / 1024
    root = trainer.strategy.root_device
    gpu = torch.cuda.max_memory_allocated(root) / 2**20 if root.type == "cuda" else None
    return {"peak_rss_mib": round(peak_rss_mib, 1), "peak_gpu_allocated_mib": None if gpu is None else round(gpu, 1)}


def device_description(trainer: Any) -> str:
    """``cpu (2 cores, 1 threads)`` or the GPU's name, ``×N`` for N processes."""
    import torch

    root = trainer.strategy.root_device
    if root.type == "cuda":
        name = torch.cuda.get_device_name(root)
    else:
        name = f"cpu ({os.cpu_count()} cores, {torch.get_num_threads()} threads)"
    return f"{name} ×{trainer.world_size}" if trainer.world_size > 1 else name
