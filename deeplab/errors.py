"""The exceptions a user causes: a mistake (:class:`DeeplabError`) or a stop (:class:`RunInterrupted`).

Scripts catch :class:`DeeplabError`, print its message as one line and exit
with status 2 (``deeplab.cli.run_main``); :class:`RunInterrupted` prints how to
resume and exits 130 / 143. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import signal
from pathlib import Path

__all__ = ["DeeplabError", "OutputUnwritable", "RunInterrupted", "USAGE_EXIT_CODE"]

#: exit status of a script when the user's input is at fault
USAGE_EXIT_CODE = 2


class DeeplabError(Exception):
    """A mistake the user can fix; the message says how."""


class OutputUnwritable(DeeplabError):
    """A run's file could not be written (a full disk, a quota): ``problem`` says which and what survived;
    ``advice`` what to do next, which differs for a run (resume it) and a search (rerun the search)."""

    def __init__(self, problem: str, advice: str):
        self.problem, self.advice = problem, advice
        super().__init__(f"{problem}; {advice}")

    def __reduce__(self):  # a probe's, from a worker process, reaches the search intact
        return (OutputUnwritable, (self.problem, self.advice))


class RunInterrupted(Exception):
    """A run stopped by SIGINT or SIGTERM. ``exit_code`` is 128 + the signal number (130, 143).

    ``saved_step``/``checkpoint``: the step and file a resume continues from
    (``None`` when nothing was saved, e.g. a second signal before the first
    checkpoint). ``advice`` replaces the default message (the search says how
    to resume a search, not a probe).
    """

    def __init__(self, signum: int, saved_step: int | None = None, checkpoint: Path | None = None,
                 immediate: bool = False, advice: str | None = None):
        self.signum = int(signum)
        self.saved_step = saved_step
        self.checkpoint = checkpoint
        self.immediate = immediate  # a second signal: stopped at once, not at a step boundary
        self.advice = advice
        super().__init__(self.message())

    def __reduce__(self):  # a probe interrupted in a worker process reaches the search intact
        return (RunInterrupted, (self.signum, self.saved_step, self.checkpoint, self.immediate, self.advice))

    @property
    def signal_name(self) -> str:
        return signal.Signals(self.signum).name

    @property
    def exit_code(self) -> int:
        return 128 + self.signum

    def message(self) -> str:
        if self.advice is not None:
            return self.advice
        if self.checkpoint is None or self.saved_step is None:
            return f"interrupted ({self.signal_name}) before the first checkpoint; nothing to resume"
        return (f"interrupted at step {self.saved_step}; resume with: {fit_command()} --ckpt-path {self.checkpoint} "
                f"(the run's own settings come with it)")


def fit_command() -> str:
    """How this process's training command is typed again: ``python scripts/fit.py`` or ``deeplab-fit``."""
    import os
    import sys

    program = sys.argv[0] if sys.argv and sys.argv[0] else ""
    if os.path.basename(program) == "deeplab-fit":
        return "deeplab-fit"
    return f"python {program}" if program.endswith("fit.py") else "python scripts/fit.py"
