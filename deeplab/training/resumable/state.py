"""One run state: what a deeplab checkpoint says about its run, written and read here and nowhere else.

A checkpoint is Lightning's dictionary (weights, optimizer state, loop counters, the callbacks' and the
DataModule's own state); deeplab adds one entry, ``checkpoint["deeplab"]``, the :class:`RunState`:

- ``config`` — the run's resolved settings (config.json's content): what a resume must keep;
- ``position`` — where the run stands: the epoch in progress or last closed (0-based), its batches
  trained, whether it closed (evaluated and in the history), the optimizer steps so far;
- ``history`` — one row per closed epoch (train and evaluation metrics);
- ``diverged_at_step`` — the step its loss turned NaN/inf (such a run is not resumed);
- ``rng`` — every random stream a step may draw from (a resume continues them exactly);
- ``clipped_steps`` — steps of the epoch in progress a ``--clip-grad-norm`` scaled down;
- ``world_size``, ``training_images`` — how many processes trained it and on how many images (a resume
  part-way through an epoch needs the same);
- ``resumes`` — one entry per earlier resume (where it continued, what it changed).

The :class:`~deeplab.training.module.Classifier` writes it (``on_save_checkpoint``, with the run record
``fit`` gave it) and reads it back (``on_load_checkpoint``); :func:`load_run_state` reads it from a file
for the resume contract (:mod:`deeplab.training.resumable.resume`).
"""

from __future__ import annotations

import dataclasses
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deeplab.errors import DeeplabError

__all__ = ["RunState", "RECORD_KEY", "write_run_state", "read_run_state", "load_run_state"]

#: the checkpoint entry that holds the run state
RECORD_KEY = "deeplab"


@dataclass(frozen=True)
class RunState:
    """What a deeplab checkpoint says about the run that wrote it (module docstring)."""

    path: Path | None = None  # the file it was read from (None: not read from a file)
    config: dict[str, Any] = field(default_factory=dict)
    position: dict[str, Any] = field(default_factory=dict)  # epoch, batches_done, epoch_closed, global_step
    world_size: int = 1
    training_images: int | None = None
    diverged_at_step: int | None = None
    resumes: list[dict[str, Any]] = field(default_factory=list)
    history: list[dict[str, Any]] = field(default_factory=list)
    rng: dict[str, Any] | None = None
    clipped_steps: int = 0

    @property
    def global_step(self) -> int:
        return int(self.position["global_step"])

    def to_record(self) -> dict[str, Any]:
        """The checkpoint entry (every field but ``path``)."""
        return {item.name: getattr(self, item.name) for item in dataclasses.fields(self) if item.name != "path"}

    @classmethod
    def from_record(cls, record: dict[str, Any], path: Path | None = None) -> "RunState":
        """A record as written by any deeplab since run records began: a field it lacks (or holds as
        null, where the field is a list, a mapping or a count) takes its default."""
        values = {}
        for item in dataclasses.fields(cls):
            value = record.get(item.name)
            if item.name != "path" and (value is not None or item.default is None):
                values[item.name] = value
        return cls(path=path, **values)


def write_run_state(checkpoint: dict[str, Any], state: RunState) -> None:
    """Put ``state`` into a checkpoint being saved."""
    checkpoint[RECORD_KEY] = state.to_record()


def read_run_state(checkpoint: dict[str, Any], path: Path | None = None) -> RunState | None:
    """The run state of a loaded checkpoint; None when it has none (not written by a deeplab run)."""
    record = checkpoint.get(RECORD_KEY)
    return None if not isinstance(record, dict) else RunState.from_record(record, path)


def _damaged_entry(path: Path) -> str | None:
    """The first entry of a checkpoint (a zip archive: torch's format) whose CRC-32 does not match its
    data, else None. ``torch.load`` does not check them, so a flipped bit in a tensor would load as
    a silently different weight."""
    import zipfile

    if not zipfile.is_zipfile(path):
        return None  # not torch's zip format at all: torch.load says what it is
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, RuntimeError, ValueError) as error:  # a damaged header
        return f"directory ({type(error).__name__})"


def load_run_state(path: str | Path) -> tuple[RunState, dict[str, Any]]:
    """Load ``path`` on the CPU and read its run state; one clear line when it cannot be resumed."""
    import torch

    path = Path(path)
    if not path.exists():
        raise DeeplabError(f"--ckpt-path {path}: no such checkpoint file; give the path of a .ckpt to resume")
    if path.is_dir():
        raise DeeplabError(f"--ckpt-path {path} is a folder; give the checkpoint file (e.g. {path}/last.ckpt)")
    if not path.is_file():
        raise DeeplabError(f"--ckpt-path {path} is not a regular file (a pipe or a device); give a checkpoint file")
    damaged = _damaged_entry(path)
    if damaged is not None:
        raise DeeplabError(f"--ckpt-path {path} is damaged: its entry {damaged} fails its checksum (a flipped bit, "
                           f"a bad copy); resume from an intact copy, or start the run again")
    try:
        # weights_only: tensors, containers and plain values only (what deeplab's checkpoints hold), so a
        # checkpoint from elsewhere cannot run code while it is read (a pickle's reduce calls)
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        model_name = checkpoint["hyper_parameters"]["model_name"]
    except pickle.UnpicklingError:
        raise DeeplabError(f"--ckpt-path {path} holds objects no deeplab checkpoint holds (code, or classes "
                           "outside tensors and plain values); refusing to load it") from None
    except Exception as error:  # noqa: BLE001  (truncated, garbled or foreign files fail in many ways)
        raise DeeplabError(f"--ckpt-path {path} is not a readable deeplab checkpoint ({type(error).__name__})") from None
    state = read_run_state(checkpoint, path)
    if state is None or not state.config or not state.position:
        raise DeeplabError(
            f"--ckpt-path {path} (model {model_name}) was written by an older deeplab without a run record; "
            f"it can be loaded as weights (Classifier.load_from_checkpoint) but not resumed"
        )
    return state, checkpoint
