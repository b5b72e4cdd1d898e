"""The four commands (``deeplab-fit``, ``deeplab-search``, ``deeplab-experiment``, ``deeplab-bench``; the same
as ``python scripts/<name>.py``): each module has ``build_parser()``, ``main(argv)`` and ``entry()``.

Nothing here imports torch at import time, so ``--help`` answers at once.
"""
