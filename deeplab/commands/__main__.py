"""``python -m deeplab.commands > docs/cli.md``: every script's options as tables (the README links it;
``tests/test_docs.py`` holds the committed page to this output)."""

from __future__ import annotations

import importlib

from deeplab.cli import options_markdown

COMMANDS = ("fit", "search", "diagnose", "experiment", "bench")


def cli_reference() -> str:
    parts = ["# Command-line reference", "",
             "Every option of the five scripts, as their `--help` prints it (generated: `python -m deeplab.commands "
             "> docs/cli.md`). Unset training options take the model's seed protocol: "
             "`python scripts/fit.py --model NAME --print-config` shows them.", ""]
    for name in COMMANDS:
        parser = importlib.import_module(f"deeplab.commands.{name}").build_parser()
        parser.prog = f"{name}.py"
        description = " ".join((parser.description or "").split("\n\n")[0].split())
        parts += [f"## `scripts/{name}.py`", "", description, "", options_markdown(parser)]
    return "\n".join(parts).rstrip() + "\n"


if __name__ == "__main__":
    print(cli_reference(), end="")
