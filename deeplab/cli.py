"""What every script shares: turn a :class:`~deeplab.errors.DeeplabError` into one line and exit 2, a stop into
its exit status, a closed pipe into a quiet exit."""

from __future__ import annotations

import argparse
import sys
from typing import Callable, NoReturn

from deeplab.errors import USAGE_EXIT_CODE, DeeplabError, RunInterrupted

__all__ = ["run_main", "ArgumentParser", "HelpFormatter", "DIVERGED_EXIT_CODE"]

#: exit status of a training script whose loss turned NaN/inf (results.json says diverged: true)
DIVERGED_EXIT_CODE = 3


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """The description as written, and each option's default after its help unless the help already says
    it (or there is none to say: unset options take the model's seed protocol)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if ("default" in text.lower() or default in (None, False, argparse.SUPPRESS) or action.nargs == 0
                or isinstance(default, (list, dict))):
            return text
        return f"{text} (default: %(default)s)"


class ArgumentParser(argparse.ArgumentParser):
    """argparse, but a bad option is one line (``error: ... (see --help)``), exit status 2."""

    def error(self, message: str) -> NoReturn:  # type: ignore[override]
        self.exit(USAGE_EXIT_CODE, f"error: {message} (see {self.prog} --help)\n")


def run_main(main: Callable[[], int]) -> int:
    """Run a script's ``main``; a user's mistake prints ``error: <what to do>`` and returns 2."""
    try:
        return main()
    except DeeplabError as error:
        print(f"error: {error}", file=sys.stderr)
        return USAGE_EXIT_CODE
    except RunInterrupted as interrupted:
        print(interrupted.message(), file=sys.stderr)
        return interrupted.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader went away (`fit.py --print-config | head`): not an error of ours; stop writing quietly
        import os

        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # (Python flushes stdout once more at exit)
        return 0
    except OSError as error:
        import errno

        if error.errno != errno.ENAMETOOLONG:
            raise  # anything else is a bug, with its traceback
        name = error.filename if isinstance(error.filename, str) else ""
        shown = f"{name[:60]}…{name[-20:]}" if len(name) > 90 else name
        print(f"error: a path is too long for the file system ({len(name)} characters: {shown}); give a shorter "
              f"one", file=sys.stderr)
        return USAGE_EXIT_CODE


def options_markdown(parser: argparse.ArgumentParser) -> str:
    """``parser``'s options as Markdown tables, one per argument group: option (with its aliases and
    metavar), default, what it does — the help text ``--help`` prints, so the two never disagree."""
    lines: list[str] = []
    for group in parser._action_groups:  # (argparse has no public accessor for its groups)
        actions = [a for a in group._group_actions if a.help is not argparse.SUPPRESS]
        if not actions:
            continue
        lines += [f"**{group.title}**", "", "| option | default | what |", "| --- | --- | --- |"]
        for action in actions:
            names = ", ".join(action.option_strings) or action.dest
            if action.option_strings and action.nargs != 0:
                metavar = action.metavar or (("{" + ",".join(map(str, action.choices)) + "}") if action.choices
                                             else action.dest.upper())
                names += f" {metavar if isinstance(metavar, str) else ' '.join(metavar)}"
            default = action.default
            shown = "" if default in (None, False, argparse.SUPPRESS) or action.nargs == 0 else f"`{default}`"
            text = action.help % {"default": default, "prog": parser.prog} if action.help else ""
            cell = " ".join(text.split()).replace("|", "\\|")
            lines.append(f"| `{names}` | {shown} | {cell} |")
        lines.append("")
    return "\n".join(lines)
