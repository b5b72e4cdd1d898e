"""The resume contract: what a checkpoint says about its run, and where a resumed command starts.

One rule (docs/running.md, "Stopping and resuming"): a run continues from exactly
where its checkpoint says it stopped — mid-epoch, at an epoch's end, or at the
end of training — and trains until the *new* command's ``--epochs``,
``--max-steps`` and ``--limit-train-batches`` say stop. The result equals the
run that was never stopped.

- The checkpoint's model, data, optimizer, batch size, seed and numerics
  (:data:`RUN_SETTINGS`) *are* the run: a resume command that contradicts one
  is refused, naming the options, before anything is written. ``--lr`` is
  among them (a changed rate would no longer be the run being resumed; start
  a new run to change it).
- :data:`CHANGEABLE_SETTINGS` (how long to train, hardware, logging) apply
  and are recorded in ``results.json`` under ``resumes``.
- An epoch closed after fewer batches than the new command's epoch length
  (``--limit-train-batches 5``, resumed with ``10``) is reopened: it trains
  its remaining batches and its history row is replaced.

Everything here is pure: :func:`plan_resume` is unit-tested without training, over every way a run
stops (``tests/test_resume_plan.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deeplab.config import CHANGEABLE_ON_RESUME, KEPT_ON_RESUME, legacy_values, settings_of
from deeplab.config import option_name as _option
from deeplab.errors import DeeplabError
from deeplab.training.resumable.state import RunState, load_run_state

__all__ = [
    "RUN_SETTINGS",
    "LEGACY_SETTINGS",
    "CHANGEABLE_SETTINGS",
    "SavedRun",
    "ResumePlan",
    "read_checkpoint",
    "compare_settings",
    "plan_resume",
]

#: settings that define the run (roles "run" and "engine" of deeplab.config.FitConfig): a resume must keep them
RUN_SETTINGS = settings_of(*KEPT_ON_RESUME)
#: settings added after runs were recorded without them, with the value those runs had (each field's ``legacy``)
LEGACY_SETTINGS = legacy_values()
#: settings a resume may change (roles "budget" and "hardware"); they are applied and recorded
CHANGEABLE_SETTINGS = settings_of(*CHANGEABLE_ON_RESUME)




#: what a checkpoint says about its run (deeplab.training.resumable.state)
SavedRun = RunState


@dataclass(frozen=True)
class ResumePlan:
    """Where the resumed command starts: epoch ``start_epoch`` (0-based) with
    ``skip_batches`` of it already trained; ``reopens`` when that epoch had been
    closed (its history row will be replaced)."""

    start_epoch: int
    skip_batches: int
    global_step: int
    reopens: bool
    changed: dict[str, list[Any]]

    def record(self, checkpoint: Path) -> dict[str, Any]:
        """The ``results.json`` ``resumes`` entry for this resume."""
        return {"from_step": self.global_step, "epoch": self.start_epoch + 1, "batches_done": self.skip_batches,
                "reopened_epoch": self.reopens, "changed": self.changed, "checkpoint": str(checkpoint)}


def read_checkpoint(path: str | Path) -> tuple[RunState, dict[str, Any]]:
    """Load ``path`` on the CPU and read its run state (:func:`~deeplab.training.resumable.state.load_run_state`)."""
    return load_run_state(path)


def compare_settings(saved: SavedRun, config: dict[str, Any]) -> dict[str, list[Any]]:
    """The changeable settings that differ ({field: [saved, new]}); a differing run setting raises."""
    if saved.config.get("model") != config.get("model"):
        raise DeeplabError(
            f"--ckpt-path {saved.path} holds model {saved.config.get('model')!r}, not {config.get('model')!r}; "
            f"resume it with --model {saved.config.get('model')} or start {config.get('model')} without --ckpt-path"
        )
    def saved_value(name: str) -> Any:
        value = saved.config.get(name, LEGACY_SETTINGS.get(name))
        return "seed" if name == "init" and value is None else value  # runs before init was always recorded

    conflicts = [name for name in RUN_SETTINGS if _comparable(saved_value(name)) != _comparable(config.get(name))]
    if conflicts:
        described = ", ".join(f"{_option(name)} {_text(config.get(name))} (the run has {_text(saved_value(name))})"
                              for name in conflicts)
        raise DeeplabError(
            f"cannot resume {saved.path} with different run settings: {described}; a resume continues the same run: "
            f"drop {' '.join(_option(name) for name in conflicts)}, or start a new run without --ckpt-path"
        )
    return {name: [saved.config.get(name), config.get(name)] for name in CHANGEABLE_SETTINGS
            if saved.config.get(name) != config.get(name)}


def _comparable(value: Any) -> Any:
    """Lists as tuples: a setting read back from JSON (a list) equals the same tuple of the command."""
    if isinstance(value, (list, tuple)):
        return tuple(_comparable(v) for v in value)
    return value


def _text(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value)
    return "none" if value is None else str(value)


def plan_resume(saved: SavedRun, config: dict[str, Any], epoch_batches: int, world_size: int,
                training_images: int) -> ResumePlan:
    """Where the command ``config`` (epoch length ``epoch_batches`` per process) continues ``saved``.

    Raises :class:`DeeplabError` (nothing written yet) when the command
    contradicts the run, when there is nothing left to train, or when the
    position cannot be continued under the new settings.
    """
    changed = compare_settings(saved, config)
    if saved.training_images is not None and saved.training_images != training_images:
        raise DeeplabError(
            f"cannot resume {saved.path}: its run trained on {saved.training_images} images, the data now has "
            f"{training_images}; point --data-dir at the run's data set"
        )
    if saved.diverged_at_step is not None:
        raise DeeplabError(
            f"cannot resume {saved.path}: that run diverged (NaN/inf loss at step {saved.diverged_at_step}), so its "
            f"parameters are not finite; start a new run with a smaller --lr"
        )
    epoch = int(saved.position["epoch"])
    done = int(saved.position["batches_done"])
    closed = bool(saved.position["epoch_closed"])
    step = saved.global_step
    if closed:
        reopens = 0 < done < epoch_batches
        start_epoch, skip = (epoch, done) if reopens else (epoch + 1, 0)
    else:
        if done >= epoch_batches:
            raise DeeplabError(
                f"{saved.path} stopped after batch {done} of epoch {epoch + 1}; --limit-train-batches "
                f"{_text(config.get('limit_train_batches'))} would end that epoch before this command trains anything: "
                f"give more than {done} batches per epoch (or drop --limit-train-batches)"
            )
        reopens = False
        start_epoch, skip = epoch, done
    if skip and world_size != saved.world_size:
        raise DeeplabError(
            f"{saved.path} stopped part-way through epoch {epoch + 1} on {saved.world_size} process(es); finish that "
            f"epoch on the same number (--devices/--num-nodes), or resume from a checkpoint written at an epoch's end"
        )
    max_steps = config.get("max_steps", -1)
    if max_steps is not None and max_steps >= 0 and step >= max_steps:
        raise DeeplabError(
            f"nothing to train: {saved.path} is at step {step}, already at --max-steps {max_steps}; "
            f"raise --max-steps (or drop it) to train further"
        )
    epochs = int(config["epochs"])
    if start_epoch >= epochs:
        finished = min(start_epoch, epochs)
        raise DeeplabError(
            f"nothing to train: {saved.path} already finished epoch {finished} of --epochs {epochs} (step {step}); "
            f"raise --epochs to train further"
        )
    return ResumePlan(start_epoch=start_epoch, skip_batches=skip, global_step=step, reopens=reopens, changed=changed)

