#!/usr/bin/env python
"""``python scripts/diagnose.py …`` = ``deeplab-diagnose …``; the command lives in ``deeplab/commands/diagnose.py``."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # a checkout works without installing

from deeplab.commands.diagnose import *  # noqa: E402,F401,F403  (build_parser, main: what tests and tools call)
from deeplab.commands.diagnose import entry  # noqa: E402

if __name__ == "__main__":
    entry()
