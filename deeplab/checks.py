"""Checks of user-given values that more than one entry point applies (the config, the DataModules),
written once so both refuse the same input with the same line. Pure Python: no torch."""

from __future__ import annotations

import math
from typing import Any

from deeplab.errors import DeeplabError

__all__ = ["check_channel_statistics", "optimizer_setting_problem"]


def check_channel_statistics(option: str, values: Any, channels: int | None, dataset: str,
                             positive: bool) -> tuple[float, ...]:
    """``--normalize-mean``/``--normalize-std``: one finite number per channel of ``dataset`` (a std
    also > 0), as a tuple; ``channels`` None (an unknown data set) checks the numbers only."""
    try:
        numbers = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        raise DeeplabError(f"{option} must be {channels or 'one per channel'} number(s), got {values!r}") from None
    if not all(math.isfinite(v) and (v > 0 or not positive) for v in numbers) or \
            (channels is not None and len(numbers) != channels):
        need = "positive " if positive else ""
        raise DeeplabError(f"{option} must be {channels or 'one per channel'} {need}finite number(s), one per "
                           f"{dataset} channel, comma-separated; got {','.join(f'{v:g}' for v in numbers)}")
    return numbers


def optimizer_setting_problem(lr: Any, momentum: Any, weight_decay: Any) -> tuple[str, str] | None:
    """The first bad optimizer setting as ``(field, "must be …, got …")``, or None when all are good.

    The one rule behind ``--lr``/``--momentum``/``--weight-decay`` (the config), ``Classifier(lr=…)``
    (the library) and ``MomentumSGD(lr=…)`` (a torch optimizer, which raises ``ValueError`` as torch's do):
    each caller names the field its own way."""
    def number(value: Any) -> float | None:
        if isinstance(value, bool):
            return None
        try:
            value = float(value)
        except (TypeError, ValueError):
            return None
        return value if math.isfinite(value) else None

    rate, alpha, decay = number(lr), number(momentum), number(weight_decay)
    if rate is None or rate <= 0:
        return "lr", f"must be a positive, finite number, got {lr}"
    if alpha is None or not 0.0 <= alpha < 1.0:
        return "momentum", f"must be in [0, 1), got {momentum}"
    if decay is None or decay < 0:
        return "weight_decay", f"must be a finite number ≥ 0, got {weight_decay}"
    return None
