"""Training throughput of deeplab against the seeds' own loops, side by side.

    python scripts/bench.py --data-dir ../shared/datasets            # every case (~16 min on 2 CPU cores)
    python scripts/bench.py --quick --cases cnn5_bs32,lightning_overhead --json bench.json

Each case alternates deeplab's ``fit`` with a faithful re-creation of the
seed's loop (torchvision dataset + per-sample PIL transforms + DataLoader, the
seed's update rule and per-step ``.item()``s) on the same model, batch size and
device, in one process: one warm-up segment each, then ``--repeats`` pairs of
``steps`` training batches. It prints each side's median images/s and the
median per-pair ratios in wall time and in CPU time, and the machine's load.
``_ceiling`` cases put the best loop one can write (the compiled whole step on
batches already in memory) against the seed's loop; ``lightning_overhead``
puts ``fit`` against a plain loop with the same step and data: 0.9 = 10 %
framework overhead. What is and is not timed: ``deeplab/bench/harness.py``.

On a shared CPU with few cores the benchmark runs one torch thread by default
(``--threads``): with more runnable threads than cores a multi-threaded op
waits for a descheduled worker (a 200k-element ``_foreach_add_`` went from
13 µs to 3.2 ms at load 2 on 2 cores), which swamps everything measured here.
Measured tables: docs/engine.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path


from deeplab.cli import ArgumentParser, HelpFormatter, run_main
from deeplab.errors import RunInterrupted

#: machines with at most this many cores benchmark at one torch thread
FEW_CORES = 4


def _parse_override(text: str) -> tuple[str, object]:
    """``compile=true`` → ("compile", True); numbers and booleans are parsed, the rest stays text."""
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    key, raw = text.split("=", 1)
    lowered = raw.strip().lower()
    value: object
    if lowered in ("true", "false"):
        value = lowered == "true"
    else:
        try:
            value = int(raw)
        except ValueError:
            try:
                value = float(raw)
            except ValueError:
                value = raw
    return key.strip(), value


def _check_json_destination(path: Path) -> None:
    from deeplab.errors import DeeplabError
    from deeplab.io import make_writable_folder

    if path.is_dir():
        raise DeeplabError(f"--json {path} is a folder; give a file name such as {path / 'bench.json'}")
    try:
        make_writable_folder(path.parent)
    except OSError as error:
        raise DeeplabError(f"--json {path}: cannot write there ({error.strerror}); give another path") from None


def build_parser() -> argparse.ArgumentParser:
    from deeplab.bench import CASES, DEFAULT_CASES

    parser = ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--cases", help="comma-separated cases (default: all of them; see --list-cases)")
    parser.add_argument("--quick", action="store_true",
                        help="short segments, one pair, no warm-up: a smoke run of every code path (< 3 min; "
                             "two cases whose path another case runs are left out), not a measurement")
    parser.add_argument("--repeats", type=int, default=3, help="measured pairs per case after the warm-up (default 3, ≥ 3 for a report)")
    parser.add_argument("--steps", type=int, help="training batches per segment (default: the case's)")
    parser.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N (default cpu)")
    parser.add_argument("--threads", type=int,
                        help=f"torch.set_num_threads for both sides (default: 1 on machines with ≤ {FEW_CORES} cores, "
                             f"else PyTorch's)")
    parser.add_argument("--data-dir", help="folder holding MNIST/raw/ (default $DEEPLAB_DATA_DIR or ./data)")
    parser.add_argument("--json", dest="json_path", help="also write the table (a list of rows) to this JSON file")
    parser.add_argument("--deeplab-set", action="append", type=_parse_override, default=[], metavar="KEY=VALUE",
                        help="override a FitConfig field on the deeplab side, e.g. progress_bar=false, compile=true")
    parser.add_argument("--list-cases", "--list", dest="list_cases", action="store_true",
                        help="print the cases and exit")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import dataclasses

    import torch

    from deeplab.bench import CASES, DEFAULT_CASES, GROUP_TARGETS, BenchContext, format_table, iter_case_names
    from deeplab.bench import quick_selection, run_case, summary_rows
    from deeplab.config import FitConfig
    from deeplab.data.datamodules import resolve_data_dir
    from deeplab.errors import DeeplabError

    if args.list_cases:
        for case in CASES.values():
            target = "report" if case.target is None else f"≥ {case.target:g}×"
            print(f"{case.name:32s} {target:8s} {case.description}")
        for group, target in GROUP_TARGETS.items():
            print(f"{group:32s} ≥ {target:g}×  geometric mean of its cases")
        return 0
    if args.repeats < 1:
        raise DeeplabError(f"--repeats must be ≥ 1, got {args.repeats}")
    if args.steps is not None and args.steps < 1:
        raise DeeplabError(f"--steps must be ≥ 1, got {args.steps}")
    if not (args.device == "cpu" or args.device == "cuda" or
            (args.device.startswith("cuda:") and args.device[5:].isdigit())):
        raise DeeplabError(f"--device {args.device!r}: give cpu, cuda or cuda:N")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise DeeplabError("--device cuda, but this machine has no CUDA GPU; use --device cpu")
    if args.json_path:
        _check_json_destination(Path(args.json_path))  # before the benchmark runs, not after
    fields = {f.name for f in dataclasses.fields(FitConfig)}
    overrides = dict(args.deeplab_set)
    for key in overrides:
        if key not in fields:
            raise DeeplabError(f"--deeplab-set {key}: not a FitConfig field; known: {', '.join(sorted(fields))}")
    threads = args.threads
    if threads is None and (os.cpu_count() or 1) <= FEW_CORES:
        threads = 1
    if threads is not None:
        if threads < 1:
            raise DeeplabError(f"--threads must be ≥ 1, got {threads}")
        torch.set_num_threads(threads)

    names = list(iter_case_names(args.cases, DEFAULT_CASES))
    skipped = []
    if args.quick and args.cases is None:
        names, skipped = quick_selection(names, CASES)
    if not names:
        raise DeeplabError(f"--cases {args.cases!r} names no case; give names like cnn5_bs32 (see --list-cases)")
    unknown = [name for name in names if name not in CASES]
    if unknown:
        raise DeeplabError(f"--cases: unknown case {unknown[0]!r}; choose from {', '.join(CASES)}")
    from deeplab.training.engine.allocator import keep_freed_memory

    # For both sides, before any case: the seeds' loops get deeplab's allocator settings too, so a
    # ratio compares training steps, not which case ran before (deeplab.training.engine.allocator)
    allocator = "glibc thresholds fixed for both sides" if keep_freed_memory() else "the platform's"
    context = BenchContext(
        data_dir=resolve_data_dir(args.data_dir), device=args.device, quick=args.quick, deeplab_overrides=overrides
    )
    cores = os.cpu_count() or 1
    load = os.getloadavg()
    print(f"deeplab bench: {len(names)} case(s) | device {args.device}, {torch.get_num_threads()} torch thread(s), "
          f"{cores} cores, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}, allocator: {allocator}"
          + (" | --quick: a smoke run, not a measurement" if args.quick else "")
          + (f" | deeplab overrides {overrides}" if overrides else ""), flush=True)
    if skipped:
        print("--quick leaves out " + ", ".join(f"{name} (its code path runs in {CASES[name].quick_covered_by})"
                                                for name in skipped) + "; name them with --cases to run them",
              flush=True)
    _warn_if_loaded(cores)
    rows = []
    try:
        for name in names:
            rows.append(run_case(CASES[name], context, repeats=1 if args.quick else args.repeats, steps=args.steps,
                                 log=lambda line: print(line, flush=True)))
            _warn_if_loaded(cores)
    except RunInterrupted as stopped:  # its runs are throwaway measurements: nothing to resume
        raise RunInterrupted(stopped.signum, advice=f"interrupted ({stopped.signal_name}): the bench stopped after "
                                                    f"{len(rows)} of {len(names)} case(s); nothing was saved") from None
    finally:
        shutil.rmtree(context.work_dir, ignore_errors=True)  # its scratch runs and data, also after an error
    rows += summary_rows(rows, GROUP_TARGETS)
    print()
    print(format_table(rows, judged=not args.quick))
    load = os.getloadavg()
    print(f"load average at the end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} ({cores} cores, "
          f"{torch.get_num_threads()} torch thread(s)); ratios are deeplab / reference, in wall time and in CPU time")
    if args.json_path:
        path = Path(args.json_path)
        path.write_text(json.dumps(rows, indent=2) + "\n")
        print(f"json: {path}")
    return 0


def _warn_if_loaded(cores: int) -> None:
    load = os.getloadavg()[0]
    if load > cores:
        print(f"warning: load average {load:.2f} exceeds the {cores} cores: other work is competing; wall-time "
              f"ratios are unreliable now, CPU-time ratios less so", flush=True)


def entry() -> None:
    """The console entry point (``deeplab-bench``) and ``python scripts/bench.py``."""
    sys.exit(run_main(main))
