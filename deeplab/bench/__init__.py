"""Training throughput of deeplab against the seeds' own loops, side by side, in one process.

- :mod:`deeplab.bench.seeds` — the seeds' loops, models and data paths, re-created line by line;
- :mod:`deeplab.bench.harness` — sides, segments (wall and CPU time), alternating pairs, the table;
- :mod:`deeplab.bench.cases` — the cases and their targets.

``scripts/bench.py`` is the command line; docs/engine.md has the measured table.
"""

from deeplab.bench.cases import CASES, DEFAULT_CASES, GROUP_TARGETS, SEED002_FAMILIES
from deeplab.bench.harness import (
    RESULT_KEYS,
    BenchCase,
    BenchContext,
    CeilingSide,
    DeeplabFitSide,
    PlainLoopSide,
    SeedSide,
    Segment,
    SegmentTimer,
    cpu_seconds,
    format_table,
    iter_case_names,
    quick_selection,
    run_case,
    summary_rows,
)
from deeplab.bench.seeds import (
    SeedFiveLayerCNN,
    SeedFiveLayerCNNSigmoid,
    SeedTwoLayerNet,
    seed000_train_steps,
    seed001_train_steps,
    seed002_train_steps,
    seed_cifar10_loader,
    seed_mnist_loader,
)

__all__ = [
    "CASES", "DEFAULT_CASES", "GROUP_TARGETS", "SEED002_FAMILIES", "RESULT_KEYS", "BenchCase", "BenchContext",
    "CeilingSide", "DeeplabFitSide", "PlainLoopSide", "SeedSide", "Segment", "SegmentTimer", "cpu_seconds",
    "format_table", "iter_case_names", "quick_selection", "run_case", "summary_rows", "SeedFiveLayerCNN", "SeedFiveLayerCNNSigmoid",
    "SeedTwoLayerNet", "seed000_train_steps", "seed001_train_steps", "seed002_train_steps", "seed_cifar10_loader",
    "seed_mnist_loader",
]
