"""Checkpoints written atomically, and the RNG state they must carry for an exact resume.

Lightning's ``TorchCheckpointIO`` opens the destination and writes into it, so
a SIGKILL mid-write leaves a truncated ``last.ckpt``; here the bytes go to a
temporary file that replaces the old checkpoint only once complete.
"""

from __future__ import annotations

import io
import random
from typing import Any

import numpy as np
import torch
from lightning.fabric.utilities.cloud_io import get_filesystem
from lightning.pytorch.plugins.io import TorchCheckpointIO

from deeplab.io import atomic_write

__all__ = ["AtomicCheckpointIO", "capture_rng_state", "restore_rng_state"]


class AtomicCheckpointIO(TorchCheckpointIO):
    """``TorchCheckpointIO`` whose ``save_checkpoint`` is temp-file-then-rename."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        if get_filesystem(path).protocol not in ("file", ("file", "local")):
            return super().save_checkpoint(checkpoint, path, storage_options)
        # Serialized in memory first, then written: torch's own writer reports a full disk as
        # RuntimeError("unexpected pos …"), a plain file write as the OSError (ENOSPC) it is.
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        atomic_write(path, lambda file: file.write(buffer.getbuffer()))


def capture_rng_state() -> dict[str, Any]:
    """Every random stream a training step may draw from (dropout, init, Python, NumPy)."""
    name, keys, position, has_gauss, cached_gaussian = np.random.get_state()
    # NumPy's key array becomes a tensor so the checkpoint loads with torch.load(weights_only=True).
    numpy_state = [name, torch.from_numpy(keys.astype(np.int64)), int(position), int(has_gauss), float(cached_gaussian)]
    state = {"torch": torch.get_rng_state(), "numpy": numpy_state, "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    name, keys, position, has_gauss, cached_gaussian = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), position, has_gauss, cached_gaussian))
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
