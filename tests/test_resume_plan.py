"""The resume contract as the pure function it is: :func:`plan_resume` over every way a run stops.

Each row is a checkpoint a stop leaves (its position) and the command that resumes it; the expected
plan is where the resumed run starts. No training: the end-to-end checks (straight run = stopped and
resumed run, bit for bit) are tests/test_resume.py and tests/test_reliability.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from deeplab.config import FitConfig

from deeplab.training.resolve import resolve_config
from deeplab.errors import DeeplabError
from deeplab.training.resumable.resume import plan_resume
from deeplab.training.resumable.state import RunState, read_run_state, write_run_state

EPOCH = 10  # batches per epoch
IMAGES = 320


def config(**changes) -> dict:
    return resolve_config(FitConfig(**{"model": "cnn5", "epochs": 3, **changes})).to_dict()


def saved(epoch: int, done: int, closed: bool, step: int, **fields) -> RunState:
    return RunState(path=Path("last.ckpt"), config=config(), training_images=IMAGES,
                    position={"epoch": epoch, "batches_done": done, "epoch_closed": closed, "global_step": step},
                    **fields)


# (how the run stopped, its checkpoint's position, the resume's changes) → (start epoch, batches skipped, reopens)
STOPS = [
    ("--max-steps 15: mid-epoch", (1, 5, False, 15), {}, (1, 5, False)),
    ("end of --epochs 2, resumed with --epochs 3", (1, EPOCH, True, 20), {}, (2, 0, False)),
    ("--limit-train-batches 4 closed epoch 1; resumed with all batches", (0, 4, True, 4), {}, (0, 4, True)),
    ("--limit-train-batches 4, resumed with 4 again: next epoch", (0, 4, True, 4), {"epoch_batches": 4}, (1, 0, False)),
    ("SIGKILL after the periodic checkpoint at step 7", (0, 7, False, 7), {}, (0, 7, False)),
    ("SIGTERM at a step boundary", (2, 3, False, 23), {}, (2, 3, False)),
    ("SIGINT during an epoch's evaluation: saved once it closed", (0, EPOCH, True, 10), {}, (1, 0, False)),
    ("an epoch-end checkpoint on 1 process, resumed on 2", (0, EPOCH, True, 10), {"world_size": 2}, (1, 0, False)),
]


@pytest.mark.parametrize("how, position, command, expected", STOPS, ids=[row[0] for row in STOPS])
def test_every_stop_resumes_where_it_stopped(how, position, command, expected) -> None:
    plan = plan_resume(saved(*position), config(), command.get("epoch_batches", EPOCH), command.get("world_size", 1),
                       IMAGES)
    assert (plan.start_epoch, plan.skip_batches, plan.reopens) == expected
    assert plan.global_step == position[3]
    assert plan.record(Path("last.ckpt"))["from_step"] == position[3]


REFUSALS = [
    ("finished all --epochs", saved(2, EPOCH, True, 30), config(), {}, "raise --epochs"),
    ("already at --max-steps", saved(1, 5, False, 15), config(max_steps=15), {}, "raise --max-steps"),
    ("diverged", saved(0, 3, False, 3, diverged_at_step=3), config(), {}, "diverged"),
    ("other data", saved(0, 3, False, 3), config(), {"images": IMAGES + 1}, "--data-dir"),
    ("mid-epoch on another number of processes", saved(0, 3, False, 3), config(), {"world_size": 2}, "same number"),
    ("a limit that ends the epoch before the checkpoint's position", saved(0, 7, False, 7),
     config(limit_train_batches=5), {"epoch_batches": 5}, "give more than 7 batches"),
    ("another learning rate", saved(0, 3, False, 3), config(lr=0.5), {}, "--lr 0.5 (the run has"),
    ("another clip", saved(0, 3, False, 3), config(clip_grad_norm=1.0), {}, "--clip-grad-norm 1.0"),
]


@pytest.mark.parametrize("why, state, command, context, message", REFUSALS, ids=[row[0] for row in REFUSALS])
def test_what_cannot_continue_is_refused_in_one_line(why, state, command, context, message) -> None:
    with pytest.raises(DeeplabError, match=message.replace("(", r"\(")):
        plan_resume(state, command, context.get("epoch_batches", EPOCH), context.get("world_size", 1),
                    context.get("images", IMAGES))


def test_changeable_settings_are_applied_and_recorded() -> None:
    plan = plan_resume(saved(1, 5, False, 15), config(epochs=5, devices="2", log_dir="elsewhere"), EPOCH, 1, IMAGES)
    assert plan.changed == {"epochs": [3, 5], "devices": ["1", "2"]}  # output settings change silently


def test_the_run_state_round_trips_through_a_checkpoint() -> None:
    state = saved(1, 5, False, 15, history=[{"epoch": 1, "train_loss": 0.5}], resumes=[{"from_step": 3}],
                  clipped_steps=2, world_size=1)
    checkpoint: dict = {}
    write_run_state(checkpoint, state)
    assert read_run_state(checkpoint, Path("last.ckpt")) == state
    assert read_run_state({}) is None
    # a record written before clipped_steps and history existed reads with their defaults
    old = {key: value for key, value in checkpoint["deeplab"].items() if key not in ("clipped_steps", "history")}
    assert read_run_state({"deeplab": old}).clipped_steps == 0 and read_run_state({"deeplab": old}).history == []
