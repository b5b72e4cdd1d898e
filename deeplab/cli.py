"""What every script shares: turn a :class:`~deeplab.errors.DeeplabError` into one line and exit 2."""

from __future__ import annotations

import sys
from typing import Callable

from deeplab.errors import USAGE_EXIT_CODE, DeeplabError

__all__ = ["run_main"]


def run_main(main: Callable[[], int]) -> int:
    """Run a script's ``main``; a user's mistake prints ``error: <what to do>`` and returns 2."""
    try:
        return main()
    except DeeplabError as error:
        print(f"error: {error}", file=sys.stderr)
        return USAGE_EXIT_CODE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
