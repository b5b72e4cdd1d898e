"""Checks of user-given values that more than one entry point applies (the config, the DataModules),
written once so both refuse the same input with the same line. Pure Python: no torch."""

from __future__ import annotations

import math
from typing import Any

from deeplab.errors import DeeplabError

__all__ = ["check_channel_statistics"]


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
