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

from deeplab.callbacks.verdict import ThresholdJudge
from deeplab.config import FitConfig
from deeplab.errors import DeeplabError
from deeplab.search.bisection import RoundSearch
from deeplab.search.driver import Probed, ProbeRunner, drive, open_runner
from deeplab.search.ledger import LEDGER_FILE, ProbeLedger, probe_settings

__all__ = ["LR_GRID", "LearningRateSweep", "largest_trainable_lr", "fit_power_law"]

#: descending step sizes tried at each depth (≈ ×2.5 apart: 1-2-5 per decade)
LR_GRID: tuple[float, ...] = (0.1, 0.05, 0.02, 0.01, 0.005, 0.002, 0.001, 0.0005, 0.0002, 0.0001)


class LearningRateSweep(RoundSearch):
    """The largest trainable η as a search strategy (:class:`deeplab.search.driver.Strategy`): walk the
    grid from the largest η down, ``parallel`` at a time, to the first that trains; then bisect
    geometrically (η to 2 significant digits) between it and the smallest larger η that failed,
    ``refinements`` times — each halves the bracket's log-width (a 1-2-5 grid's ×2-2.5 becomes ×1.25-1.26
    after two)."""

    noun = "η"

    def __init__(self, lrs: Sequence[float], refinements: int = 0, parallel: int = 1):
        if not lrs or any(not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0) for lr in lrs):
            raise DeeplabError(f"learning rates must be positive numbers, got {list(lrs)}")
        super().__init__()
        self.grid = sorted({float(lr) for lr in lrs}, reverse=True)
        self.refinements_left = int(refinements)
        self.parallel = max(1, int(parallel))

    def _bracket(self) -> tuple[float | None, float | None]:
        """(largest trainable η, smallest failing η above it) of the verdicts so far."""
        good = max((lr for lr, ok in self.outcomes.items() if ok), default=None)
        failing = [lr for lr, ok in self.outcomes.items() if not ok and (good is None or lr > good)]
        return good, min(failing, default=None)

    def _plan(self) -> list[float]:
        good, bad = self._bracket()
        if good is None:
            return [lr for lr in self.grid if lr not in self.outcomes][: self.parallel]
        if bad is None or self.refinements_left <= 0:
            return []
        middle = float(f"{math.sqrt(good * bad):.2g}")
        return [middle] if good < middle < bad else []  # (as narrow as two significant digits go)

    def next_round(self) -> list[float]:
        points = super().next_round()
        if points and self._bracket()[0] is not None:  # a refinement
            self.refinements_left -= 1
        return points

    def result(self) -> dict[str, float | None]:
        good, bad = self._bracket()
        return {"largest_lr": good, "smallest_failing_lr": bad}


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
    parallel: int = 1,
    backend: str = "local",
    ray_address: str | None = None,
    runner: ProbeRunner | None = None,
) -> dict[str, Any]:
    """The :class:`LearningRateSweep` at one depth, through the search's driver (ledger, ``parallel``
    workers or Ray, clean stops). Returns ``{"depth", "largest_lr", "smallest_failing_lr", "probes":
    [{"lr", "test_error", "train_error", "diverged", "trainable", "wall_time_s"}, ...]}``; ``largest_lr``
    is None when no η of the grid trained."""
    from deeplab.search.probes import ProbeRequest
    from deeplab.search.runner import SearchPlan, prepare_search

    strategy = LearningRateSweep(lrs, refinements, parallel)
    out = Path(out)
    # A probe's config is a one-depth search's (the same checks, run folder and ledger settings), at each η.
    base = prepare_search(SearchPlan(model=model, upper=depth, lower=depth, out=str(out), parallel=parallel,
                                     backend=backend, ray_address=ray_address,
                                     training=dataclasses.replace(training, init=init)))
    ledger = ProbeLedger(out / LEDGER_FILE)
    judge = ThresholdJudge(threshold)

    def request(lr: float) -> ProbeRequest:
        config = dataclasses.replace(base, lr=lr)
        return ProbeRequest(config.to_dict(), probe_settings(config), threshold=threshold)

    def line(probed: Probed) -> None:
        record, lr = probed.record, float(probed.record["settings"]["lr"])
        shown = "diverged" if record["diverged"] else ("—" if probed.error is None else f"{100 * probed.error:.2f} %")
        source = "ledger" if probed.reused else f"{record['wall_time_s']:.0f} s"
        echo(f"{model} {init} k={depth} lr={lr:g}: {shown}{' trainable' if probed.trainable else ''} ({source})")

    with open_runner(parallel, backend, ray_address, base.accelerator in ("auto", "gpu", "cuda"), runner,
                     echo, stopped_advice=lambda: f"{len(ledger)} finished probe(s) are kept in {ledger.path}; "
                                                  f"run the same command again to resume") as run_probes:
        probed = drive(strategy, request, ledger, judge, run_probes,
                       point_of=lambda record: float(record["settings"]["lr"]), echo=line)
    probes = [{"lr": lr, "test_error": probed[lr].record["test_error"], "train_error": probed[lr].record["train_error"],
               "diverged": probed[lr].record["diverged"], "trainable": probed[lr].trainable,
               "wall_time_s": probed[lr].record["wall_time_s"]} for lr in strategy.outcomes]
    return {"depth": depth, **strategy.result(), "probes": probes}


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
