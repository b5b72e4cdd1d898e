"""Keep freed CPU memory for reuse instead of handing it back to the OS (glibc's malloc).

PyTorch's CPU allocator calls ``malloc`` for every tensor. glibc serves large
blocks with ``mmap`` (above a threshold that starts at 128 KiB and adapts up
to 32 MiB as blocks are freed) and gives the top of its heap back to the OS
above a trim threshold, so a training step's activations can be page-faulted
in afresh at every step, by an amount that depends on what the process freed
before. Seed 002's ``cnn_elu`` k = 30, batch 256, one thread, the same eager
loop in two fresh processes: 49,920 and 4,407 minor page faults per step,
546 and 669 images per CPU second; with both thresholds fixed (32 MiB and
1 GiB): 0-59 faults and 685-687, every time.

:func:`keep_freed_memory` fixes them; ``fit`` calls it (CPU training), and
``scripts/bench.py`` calls it before any case, for the seeds' loops too, so a
ratio compares training steps, not the allocator's history.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

__all__ = ["keep_freed_memory", "MMAP_THRESHOLD", "TRIM_THRESHOLD"]

#: blocks below this come from the heap (glibc's own cap for its adaptive threshold)
MMAP_THRESHOLD = 32 << 20
#: free memory at the heap's top kept up to this much (a step's activations at batch 256, k = 30:
#: a few hundred MiB)
TRIM_THRESHOLD = 1 << 30
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters (malloc.h)
_applied: bool | None = None


def keep_freed_memory() -> bool:
    """Fix glibc's mmap and trim thresholds for this process; True when applied (glibc on
    Linux), False elsewhere (other platforms and C libraries keep their own policy). Idempotent."""
    global _applied
    if _applied is not None:
        return _applied
    _applied = False
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (e.g. musl has no mallopt)
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    _applied = bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    return _applied
