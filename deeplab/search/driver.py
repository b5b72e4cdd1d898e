"""The search driver: any strategy, any judge, any backend, one probe loop.

A :class:`Strategy` is a pure state machine over points (depths for the trainability search,
learning rates for the η sweep): it says which points to probe next (:meth:`~Strategy.next_round`)
and takes each verdict (:meth:`~Strategy.record`) until it is :attr:`~Strategy.done`; it trains
nothing. :func:`drive` runs one to its end: each round's points are looked up in the ledger, the rest
become :class:`~deeplab.search.runner.ProbeRequest`\\ s for the runner — this process, a spawn pool of
``--parallel N`` workers or Ray tasks (:func:`open_runner`) — and every finished probe is ledgered the
moment it comes back, then judged by the search's :class:`~deeplab.callbacks.verdict.Judge`.

Strategies: :class:`~deeplab.search.bisection.BoundarySearch` (seed 002's bisection),
:class:`~deeplab.search.bisection.PriorStartSearch` (outward from a prior depth),
:class:`~deeplab.search.lr_sweep.LearningRateSweep` (the largest trainable η at one depth). A new one
implements the four members and hands :func:`drive` a function from its points to probe requests.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Callable, Hashable, Iterator, Protocol, Sequence

from deeplab.callbacks.verdict import Judge
from deeplab.errors import DeeplabError, OutputUnwritable, RunInterrupted
from deeplab.search.ledger import ProbeLedger
from deeplab.training.resumable.lifecycle import interrupt_at_once

__all__ = ["Strategy", "Probed", "drive", "open_runner", "ProbeRunner"]

#: trains a batch of probes, yielding each finished probe's ledger record as it finishes
ProbeRunner = Callable[[Sequence[Any]], Iterator[dict[str, Any]]]


class Strategy(Protocol):
    """A search as a state machine over points; see the module docstring."""

    @property
    def done(self) -> bool: ...

    def next_round(self) -> list[Any]:
        """The points to probe now (empty when finished); call again once each has a verdict."""

    def record(self, point: Any, trainable: bool) -> None:
        """The verdict for one point of the current round."""

    def result(self) -> Any:
        """What the finished search found."""


@dataclass
class Probed:
    """One point's probe as the driver saw it: the ledger record, its judged error and verdict, the
    round that asked for it, whether it came from the ledger."""

    record: dict[str, Any]
    error: float | None
    trainable: bool
    round: int
    reused: bool


def drive(strategy: Strategy, request_for: Callable[[Any], Any], ledger: ProbeLedger, judge: Judge,
          runner: ProbeRunner, point_of: Callable[[dict[str, Any]], Hashable],
          echo: Callable[[Probed], None] = lambda probed: None,
          started: Callable[[Sequence[Any]], None] = lambda requests: None) -> dict[Any, Probed]:
    """Run ``strategy`` to its end and return every point it probed (ledger or training), by point.

    ``request_for(point)``: the probe request (its ``settings``, ``depth`` and ``seed`` are the ledger
    key); ``point_of(record)``: which point a finished record answers (records come back in any order);
    ``echo``: called once per probe as its verdict is known; ``started``: with each round's requests to train,
    before they start."""
    probed: dict[Any, Probed] = {}
    while points := strategy.next_round():
        round_number = len(getattr(strategy, "rounds", [])) or 1
        todo = []
        for point in points:
            request = request_for(point)
            record = ledger.get(request.settings, request.depth, request.seed)
            if record is None:
                todo.append(request)
            else:
                probed[point] = _judged(record, judge, round_number, reused=True)
                echo(probed[point])
        if todo:
            started(todo)
        for record in runner(todo):
            record.setdefault("settings", request_for(point_of(record)).settings)
            ledger.add(record)
            point = point_of(record)
            probed[point] = _judged(record, judge, round_number, reused=False)
            echo(probed[point])
        for point in points:
            strategy.record(point, probed[point].trainable)
    return probed


def _judged(record: dict[str, Any], judge: Judge, round_number: int, reused: bool) -> Probed:
    error, trainable = judge(record)
    return Probed(record=record, error=error, trainable=trainable, round=round_number, reused=reused)


@contextlib.contextmanager
def open_runner(parallel: int, backend: str, ray_address: str | None, use_gpus: bool,
                runner: ProbeRunner | None = None, echo: Callable[[str], None] = print,
                stopped_advice: Callable[[], str] = lambda: "run the same command again to resume",
                ) -> Iterator[ProbeRunner]:
    """The runner the search trains its probes with — ``runner`` if given (tests), Ray tasks
    (``backend="ray"``), a pool of ``parallel`` spawned workers, or this process — with signals
    handled: between probes SIGINT/SIGTERM stop at once (a probe stops at its next step), the pool's
    workers are stopped on any failure, and :class:`RunInterrupted` says how to resume
    (``stopped_advice()``, asked when the signal came)."""
    from deeplab.search.probes import ProcessPoolRunner, run_probe

    pool: Any = None  # a runner opened here, closed here
    if runner is None:
        if backend == "ray":
            from deeplab.search.ray_backend import RayRunner

            pool = runner = RayRunner(run_probe, ray_address, use_gpus=use_gpus)
            echo(f"backend: {pool.describe()}; {parallel} probe(s) per round")
        elif parallel > 1:
            import torch

            pool = runner = ProcessPoolRunner(parallel, use_gpus and torch.cuda.is_available())
            echo(f"parallel: {pool.describe()}")
        else:
            runner = _run_in_process
    failed = True
    try:
        with interrupt_at_once():  # between probes a signal stops at once; a probe stops at its next step
            yield runner
        failed = False
    except RunInterrupted as stopped:
        raise RunInterrupted(stopped.signum, advice=f"interrupted ({stopped.signal_name}): {stopped_advice()}") from None
    except OutputUnwritable as full:  # a probe's file: the search, not the probe, is what to run again
        raise DeeplabError(f"{full.problem}; free space (or give another --out): {stopped_advice()}") from None
    finally:
        if pool is not None:
            pool.close(cancel=failed)


def _run_in_process(requests: Sequence[Any]) -> Iterator[dict[str, Any]]:
    from deeplab.search.probes import run_probe

    for request in requests:
        yield run_probe(request)
