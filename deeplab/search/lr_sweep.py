"""The largest learning rate that still trains, per depth: how the stable step shrinks with depth.

Issue 19 ("the frontier, raised"): at criticality (``delta_orthogonal`` on
``cnn_tanh``) and for ``skipinit`` residual networks the signal survives any
depth at initialization, yet a fixed step size does not: ``cnn_tanh`` +
``delta_orthogonal`` at k = 300 trained with η = 0.001 and collapsed with η =
0.01. :func:`largest_trainable_lr` walks a descending grid of η at one depth
and stops at the first η whose probe trains (error below the threshold after
the budget, loss finite); :func:`fit_power_law` fits η_max ∝ k^(−p) to those
maxima across depths. Probes go through the search's machinery
(:func:`deeplab.search.runner.run_probe` and a :class:`ProbeLedger` keyed by
the probe's settings, ``lr`` among them), so an interrupted sweep resumes and
a finished one is read back without training.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any, Callable, Sequence

from deeplab.callbacks.trainability import judge_errors
from deeplab.config import FitConfig
from deeplab.errors import DeeplabError
from deeplab.search.ledger import LEDGER_FILE, ProbeLedger, probe_settings

__all__ = ["LR_GRID", "largest_trainable_lr", "fit_power_law"]

#: descending step sizes tried at each depth (≈ ×2.5 apart: 1-2-5 per decade)
LR_GRID: tuple[float, ...] = (0.1, 0.05, 0.02, 0.01, 0.005, 0.002, 0.001, 0.0005, 0.0002, 0.0001)


def largest_trainable_lr(
    training: FitConfig,
    *,
    model: str,
    init: str,
    depth: int,
    out: str | Path,
    lrs: Sequence[float] = LR_GRID,
    threshold: float = 0.2,
    refinements: int = 0,
    echo: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Probe ``lrs`` from the largest down at one depth; stop at the first that trains.

    ``refinements``: then bisect (geometrically, η rounded to 2 significant digits) between that η and the
    grid's next larger one, which failed, this many times — each halves the bracket's log-width (a 1-2-5
    grid's ×2-2.5 becomes ×1.25-1.26 after two). Returns ``{"depth", "largest_lr", "smallest_failing_lr",
    "probes": [{"lr", "test_error", "train_error", "diverged", "trainable", "wall_time_s"}, ...]}``;
    ``largest_lr`` is None when no η of the grid trained.
    """
    from deeplab.search.runner import ProbeRequest, SearchPlan, prepare_search, run_probe

    if not lrs or any(not (math.isfinite(lr) and lr > 0) for lr in lrs):
        raise DeeplabError(f"learning rates must be positive numbers, got {list(lrs)}")
    out = Path(out)
    # A probe's config is a one-depth search's (the same checks, run folder and ledger settings), at each η.
    base = prepare_search(SearchPlan(model=model, upper=depth, lower=depth, out=str(out),
                                     training=dataclasses.replace(training, init=init)))
    ledger = ProbeLedger(out / LEDGER_FILE)
    probes: list[dict[str, Any]] = []

    def probe(lr: float) -> bool:
        config = dataclasses.replace(base, lr=lr)
        settings = probe_settings(config)
        record = ledger.get(settings, depth, config.seed)
        reused = record is not None
        if record is None:
            record = run_probe(ProbeRequest(config.to_dict(), settings))
            ledger.add(record)
        error, trainable = judge_errors(record["train_error"], record["test_error"], record["diverged"], threshold)
        probes.append({"lr": lr, "test_error": record["test_error"], "train_error": record["train_error"],
                       "diverged": record["diverged"], "trainable": trainable,
                       "wall_time_s": record["wall_time_s"]})
        shown = "diverged" if record["diverged"] else ("—" if error is None else f"{100 * error:.2f} %")
        source = "ledger" if reused else f"{record['wall_time_s']:.0f} s"
        echo(f"{model} {init} k={depth} lr={lr:g}: {shown}{' trainable' if trainable else ''} ({source})")
        return trainable

    good = bad = None
    for lr in sorted(lrs, reverse=True):
        if probe(lr):
            good = lr
            break
        bad = lr
    for _ in range(refinements if good is not None and bad is not None else 0):
        middle = float(f"{math.sqrt(good * bad):.2g}")
        if not good < middle < bad:
            break  # the bracket is as narrow as two significant digits go
        if probe(middle):
            good = middle
        else:
            bad = middle
    return {"depth": depth, "largest_lr": good, "smallest_failing_lr": bad, "probes": probes}


def fit_power_law(depths: Sequence[int], lrs: Sequence[float]) -> tuple[float, float]:
    """Least-squares fit of ``lr = c · k^(−p)`` in log-log space: returns ``(c, p)``.

    Needs two or more distinct depths with a measured η."""
    pairs = [(math.log(k), math.log(lr)) for k, lr in zip(depths, lrs) if lr is not None]
    if len({x for x, _ in pairs}) < 2:
        raise DeeplabError("fitting η_max ∝ k^(−p) needs a trainable η at two or more depths")
    mean_x = sum(x for x, _ in pairs) / len(pairs)
    mean_y = sum(y for _, y in pairs) / len(pairs)
    slope = sum((x - mean_x) * (y - mean_y) for x, y in pairs) / sum((x - mean_x) ** 2 for x, _ in pairs)
    return math.exp(mean_y - slope * mean_x), -slope
