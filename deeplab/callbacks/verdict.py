"""The verdict rule of a trainability probe, and the judge a search applies with it. No torch, no Lightning:
``search.py --help`` lists the metrics, and the search judges its ledger's records, without either.

Seed 002's criterion: "less than 20% error (either train or test) in 3 epochs"; its code tests the last
epoch's test error. :func:`judge_errors` is the rule (a diverged probe is never trainable);
:class:`ThresholdJudge` is a search's judge (the :class:`Judge` protocol: a ledger record → error and
verdict), which the probe's own :class:`~deeplab.callbacks.trainability.TrainabilityJudge` applies with the
same threshold and metric, so a probe's ``results.json`` and the search agree.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Protocol

from deeplab.errors import DeeplabError

__all__ = ["METRICS", "Judge", "ThresholdJudge", "check_metric", "check_threshold", "judge_errors"]

#: test_error (seed 002's code), train_error, either (seed 002's prose: "either train or test")
METRICS = ("test_error", "train_error", "either")


def check_metric(metric: str) -> str:
    if metric not in METRICS:
        raise DeeplabError(f"--metric {metric!r} is not one of {', '.join(METRICS)}")
    return metric


def check_threshold(threshold: float) -> float:
    if not (isinstance(threshold, (int, float)) and 0.0 < threshold < 1.0):
        raise DeeplabError(f"--threshold is an error rate and must lie strictly between 0 and 1, got {threshold}")
    return float(threshold)


def _finite(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def judge_errors(
    train_error: float | None,
    test_error: float | None,
    diverged: bool,
    threshold: float,
    metric: str = "test_error",
) -> tuple[float | None, bool]:
    """``(error, trainable)`` of a probe: the metric's error and whether it is under ``threshold``.

    ``error`` is None when the metric has no finite value (e.g. the loss
    diverged before any evaluation); such a probe is untrainable.
    """
    check_metric(metric)
    train_error, test_error = _finite(train_error), _finite(test_error)
    if metric == "test_error":
        error = test_error
    elif metric == "train_error":
        error = train_error
    else:
        finite = [e for e in (train_error, test_error) if e is not None]
        error = min(finite) if finite else None
    trainable = not diverged and error is not None and error < threshold
    return error, trainable


class Judge(Protocol):
    """What a search asks of a probe's record: its error and whether it trained."""

    threshold: float
    metric: str

    def __call__(self, record: dict[str, Any]) -> tuple[float | None, bool]: ...


@dataclass(frozen=True)
class ThresholdJudge:
    """Trainable: the ``metric``'s error after the probe's epochs is below ``threshold`` and the loss
    stayed finite (seed 002: test error < 0.2)."""

    threshold: float = 0.2
    metric: str = "test_error"

    def __post_init__(self) -> None:
        check_threshold(self.threshold)
        check_metric(self.metric)

    def __call__(self, record: dict[str, Any]) -> tuple[float | None, bool]:
        return judge_errors(record.get("train_error"), record.get("test_error"), bool(record.get("diverged")),
                            self.threshold, self.metric)
