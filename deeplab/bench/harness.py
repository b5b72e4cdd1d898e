"""Timing two sides of a benchmark case against each other, in one process, honestly.

A *side* trains ``steps`` batches and says how long it took: a
:class:`Segment` of images, wall seconds and CPU seconds. What is timed (both
sides alike): a fresh model and optimizer (built untimed), then ``steps``
training batches of a new epoch, from the start of the epoch (data-loader
iterator creation included) to the end of the last step. deeplab's ``fit``
segment is its ``Throughput`` window (``on_train_epoch_start`` →
``on_train_epoch_end``) minus the time its compiled step spent compiling
(reported apart: a real run pays it once, a segment of 200 steps would be
dominated by it).

Protocol: one warm-up segment per side, then ``repeats`` pairs with the order
inside a pair alternating, so a drift in machine load hits both sides. Each
side's median images/s, and the median of the per-pair ratios in wall time
and in CPU time (``os.times``: this process and its finished children, i.e.
DataLoader workers, for the loops that have them). On a shared 2-core machine wall time swings with other
tenants (the same command measured 727 then 269 img/s); CPU time does not
count time a thread waited to be scheduled, so its ratio is the steadier one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import shutil
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import lightning.pytorch as pl
import torch

from deeplab.reporting.tables import text_table

__all__ = [
    "Segment",
    "SeedSide",
    "PlainLoopSide",
    "CeilingSide",
    "DeeplabFitSide",
    "SegmentTimer",
    "BenchContext",
    "BenchCase",
    "run_case",
    "summary_rows",
    "format_table",
    "cpu_seconds",
    "iter_case_names",
    "RESULT_KEYS",
]

#: the keys every result row carries (``--json`` writes a list of such rows)
RESULT_KEYS = ("case", "deeplab_images_per_s", "seed_loop_images_per_s", "ratio", "cpu_ratio")


def cpu_seconds(children: bool = False) -> float:
    """User + system CPU time of this process, and with ``children`` of its finished child processes
    (a seed loop's DataLoader workers). Off by default: Inductor's compile workers are children too,
    and their time would land in whichever segment reaps them."""
    own = time.process_time()  # (os.times() ticks in 10 ms steps: too coarse for a short segment)
    if not children:
        return own
    times = os.times()
    return own + times.children_user + times.children_system


@dataclass
class Segment:
    """One timed run of ``steps`` training batches."""

    images: int
    seconds: float  # wall time
    cpu: float  # CPU time
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def images_per_s(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else 0.0

    @property
    def images_per_cpu_s(self) -> float:
        return self.images / self.cpu if self.cpu > 0 else 0.0


class SeedSide:
    """A hand-written loop. ``build()`` (untimed) returns a fresh per-segment ``train(steps) -> images``."""

    def __init__(self, label: str, build: Callable[[], Callable[[int], int]], batches_available: int,
                 worker_processes: bool = False):
        self.label = label
        self._build = build
        self.batches_available = batches_available
        self.worker_processes = worker_processes  # its DataLoader has workers: count their CPU time

    def segment(self, steps: int) -> Segment:
        train = self._build()  # fresh model + optimizer, untimed
        wall, cpu = time.perf_counter(), cpu_seconds(self.worker_processes)
        images = train(steps)
        return Segment(images, time.perf_counter() - wall, cpu_seconds(self.worker_processes) - cpu)


class PlainLoopSide(SeedSide):
    """A plain loop over deeplab's own DataModule, model and step, no Lightning (the overhead cases)."""


class CeilingSide(SeedSide):
    """The best loop one can write for a case: deeplab's compiled whole step on batches already in memory.

    No data path, no metrics, no framework: :class:`deeplab.training.engine.compiled_step.CompiledStep`
    (the same graph ``fit`` runs) called on pre-normalized in-memory chunks.
    No training loop on this model, batch size and device beats it by much,
    so ``ceiling / seed loop`` is what any loop can reach.
    """


class SegmentTimer(pl.Callback):
    """The ``Throughput`` callback's window (train epoch start → end), wall and CPU, minus compiling.

    ``epoch``: the (1-based) epoch timed; earlier ones run untimed (a later epoch shows the steady
    state: no first-epoch gradient statistics, graphs already compiled).
    """

    def __init__(self, epoch: int = 1) -> None:
        self.epoch = epoch
        self.started: tuple[float, float] | None = None
        self.seconds = 0.0
        self.cpu = 0.0
        self.images = 0
        self.compile_seconds = 0.0

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.current_epoch + 1 != self.epoch:
            return
        compiled = getattr(pl_module, "compiled_step", None)
        self._compiled_before = (compiled.compile_seconds, compiled.compile_cpu_seconds) if compiled else (0.0, 0.0)
        self.started = (time.perf_counter(), cpu_seconds())

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if self.started is not None:
            self.images += batch[1].numel() * trainer.world_size  # (a chunk's labels are (K, B))

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.started is None:
            return
        compiled = getattr(pl_module, "compiled_step", None)
        total = (compiled.compile_seconds, compiled.compile_cpu_seconds) if compiled else (0.0, 0.0)
        self.compile_seconds = total[0]
        # What compiling cost inside this window, in wall time and in this process's CPU time
        # (Inductor runs the C++ compiler in child processes, which cpu_seconds() leaves out).
        compiling_wall, compiling_cpu = total[0] - self._compiled_before[0], total[1] - self._compiled_before[1]
        self.seconds += time.perf_counter() - self.started[0] - compiling_wall
        self.cpu += cpu_seconds() - self.started[1] - compiling_cpu
        self.started = None


class DeeplabFitSide:
    """``deeplab.training.fit.fit`` as a user runs it, for one epoch of ``steps`` batches, no validation.

    ``config`` is the :class:`~deeplab.config.FitConfig` template; each
    segment replaces ``epochs``, ``limit_train_batches``,
    ``limit_val_batches`` and ``log_dir``.
    """

    label = "deeplab fit"

    def __init__(self, config: Any, log_root: Path, batches_available: int, epoch: int = 1):
        self.config = config
        self.log_root = Path(log_root)
        self.batches_available = batches_available
        self.epoch = epoch  # the epoch timed (see SegmentTimer)

    def segment(self, steps: int) -> Segment:
        from deeplab.training.fit import fit

        timer = SegmentTimer(self.epoch)
        log_dir = Path(tempfile.mkdtemp(prefix="fit-", dir=self.log_root))
        config = dataclasses.replace(
            self.config, epochs=self.epoch, limit_train_batches=steps, limit_val_batches=0, log_dir=str(log_dir)
        )
        try:
            with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
                results = fit(config, callbacks=[timer])
        finally:
            shutil.rmtree(log_dir, ignore_errors=True)
        return Segment(timer.images, timer.seconds, timer.cpu,
                       {"reported_images_per_s": results.get("images_per_s"), "engine": results.get("engine"),
                        "compile_time_s": timer.compile_seconds})


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
    reference: str  # what the reference column measures
    target: float | None  # the ratio deeplab / reference the issue asks for (None: report only)
    batch_size: int
    steps: int  # training batches per timed segment (full run)
    quick_steps: int  # the same under --quick
    build: Callable[["BenchContext", int], tuple[Any, Any]]
    group: str | None = None  # cases whose ratios a summary row takes the geometric mean of
    #: under --quick (without --cases), a case whose code path another quick case already runs
    #: is left out when it names that case here (its compile would only lengthen the smoke run)
    quick_covered_by: str | None = None


def quick_selection(names: Sequence[str], cases: dict[str, BenchCase]) -> tuple[list[str], list[str]]:
    """(cases ``--quick`` runs, cases it leaves out because a kept case runs their code path)."""
    skipped = [name for name in names if cases[name].quick_covered_by in names]
    return [name for name in names if name not in skipped], skipped


def _median(values: Sequence[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def run_case(
    case: BenchCase,
    context: BenchContext,
    repeats: int = 3,
    steps: int | None = None,
    log: Callable[[str], None] = lambda line: None,
) -> dict[str, Any]:
    """A warm-up segment per side (not under ``--quick``), then ``repeats`` alternating pairs."""
    if repeats < 1:
        raise ValueError("repeats must be ≥ 1")
    wanted = steps if steps is not None else (case.quick_steps if context.quick else case.steps)
    deeplab_side, reference_side = case.build(context, wanted)
    steps = max(1, min(wanted, deeplab_side.batches_available, reference_side.batches_available))
    load_before = os.getloadavg()[0]
    case_started = time.perf_counter()

    if not context.quick:
        log(f"[{case.name}] warm-up ({steps} steps per segment)")
        deeplab_side.segment(steps)
        reference_side.segment(steps)
    deeplab_runs: list[Segment] = []
    reference_runs: list[Segment] = []
    for repeat in range(repeats):
        order = [(deeplab_side, deeplab_runs), (reference_side, reference_runs)]
        for side, runs in order if repeat % 2 == 0 else reversed(order):
            runs.append(side.segment(steps))
        deeplab, reference = deeplab_runs[-1], reference_runs[-1]
        log(f"[{case.name}] pair {repeat + 1}/{repeats} ({time.perf_counter() - case_started:.0f} s): "
            f"deeplab {deeplab.images_per_s:,.1f} img/s ({deeplab.images_per_cpu_s:,.1f} per CPU s), "
            f"{case.reference} {reference.images_per_s:,.1f} img/s ({reference.images_per_cpu_s:,.1f} per CPU s)")

    pairs = list(zip(deeplab_runs, reference_runs))
    ratios = [d.images_per_s / r.images_per_s for d, r in pairs if r.images_per_s > 0]
    cpu_ratios = [d.images_per_cpu_s / r.images_per_cpu_s for d, r in pairs if r.images_per_cpu_s > 0]
    ratio, cpu_ratio = _median(ratios), _median(cpu_ratios)
    compile_times = [s.extra.get("compile_time_s") for s in deeplab_runs if s.extra.get("compile_time_s")]
    return {
        "case": case.name,
        "deeplab_images_per_s": round(_median([s.images_per_s for s in deeplab_runs]), 2),
        "seed_loop_images_per_s": round(_median([s.images_per_s for s in reference_runs]), 2),
        "deeplab_images_per_cpu_s": round(_median([s.images_per_cpu_s for s in deeplab_runs]), 2),
        "seed_loop_images_per_cpu_s": round(_median([s.images_per_cpu_s for s in reference_runs]), 2),
        "ratio": round(ratio, 3),
        "cpu_ratio": round(cpu_ratio, 3),
        "target": case.target,
        "met": None if case.target is None else bool(ratio >= case.target and cpu_ratio >= case.target),
        "reference": case.reference,
        "description": case.description,
        "group": case.group,
        "batch_size": case.batch_size,
        "steps_per_segment": steps,
        "repeats": repeats,
        "pair_ratios": [round(r, 3) for r in ratios],
        "pair_cpu_ratios": [round(r, 3) for r in cpu_ratios],
        "deeplab_engine": next((s.extra.get("engine") for s in deeplab_runs if s.extra.get("engine")), None),
        "compile_time_s": round(_median(compile_times), 2) if compile_times else None,
        "device": context.device,
        "deeplab_overrides": dict(context.deeplab_overrides),
        "torch_threads": torch.get_num_threads(),
        "load_average_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)],
    }


def summary_rows(rows: Sequence[dict[str, Any]], group_targets: dict[str, float]) -> list[dict[str, Any]]:
    """One row per case group: the geometric mean of its cases' wall and CPU ratios."""
    summaries = []
    for group, target in group_targets.items():
        members = [row for row in rows if row.get("group") == group]
        if not members:
            continue
        ratio = math.exp(statistics.fmean(math.log(row["ratio"]) for row in members))
        cpu_ratio = math.exp(statistics.fmean(math.log(row["cpu_ratio"]) for row in members))
        summaries.append({
            "case": f"{group} (geometric mean of {len(members)})", "deeplab_images_per_s": None,
            "seed_loop_images_per_s": None, "ratio": round(ratio, 3), "cpu_ratio": round(cpu_ratio, 3),
            "target": target, "met": bool(ratio >= target and cpu_ratio >= target), "group": group,
            "members": [row["case"] for row in members],
        })
    return summaries


def format_table(rows: Sequence[dict[str, Any]], judged: bool = True) -> str:
    """A plain-text table: case, both throughputs, the wall and CPU ratios, target (met or missed
    when ``judged``; a ``--quick`` smoke run's segments are too short to judge)."""
    header = ("case", "deeplab img/s", "reference img/s", "ratio", "CPU ratio", "target", "steps×pairs")
    lines = []
    for row in rows:
        target = "—" if row.get("target") is None else f"≥ {row['target']:g}×"
        if row.get("met") is not None and row.get("target") is not None:
            target += (" ok" if row["met"] else " MISSED") if judged else " (not judged)"
        deeplab, reference = row.get("deeplab_images_per_s"), row.get("seed_loop_images_per_s")
        lines.append((
            row["case"],
            "" if deeplab is None else f"{deeplab:,.1f}",
            "" if reference is None else f"{reference:,.1f}",
            f"{row['ratio']:.2f}×",
            f"{row['cpu_ratio']:.2f}×",
            target,
            "" if "steps_per_segment" not in row else f"{row['steps_per_segment']}×{row['repeats']}",
        ))
    return text_table(header, lines)


def iter_case_names(spec: str | None, default: Sequence[str]) -> Iterator[str]:
    """``"a,b"`` → a, b; ``None`` or ``"all"`` → the default cases."""
    if not spec or spec == "all":
        yield from default
        return
    for name in spec.split(","):
        if name.strip():
            yield name.strip()
