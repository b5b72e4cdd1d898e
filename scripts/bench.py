#!/usr/bin/env python
"""``python scripts/bench.py …`` = ``deeplab-bench …``; the command lives in ``deeplab/commands/bench.py``."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # a checkout works without installing

from deeplab.commands.bench import *  # noqa: E402,F401,F403  (build_parser, main: what tests and tools call)
from deeplab.commands.bench import entry  # noqa: E402

if __name__ == "__main__":
    entry()
