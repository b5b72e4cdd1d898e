#!/usr/bin/env python
"""Training throughput of deeplab against the seeds' own loops, side by side (issue 7).

    python scripts/bench.py --data-dir ../shared/datasets            # every case
    python scripts/bench.py --quick --cases cnn5_bs32,lightning_overhead --json bench.json

Each case alternates deeplab's ``fit`` with a faithful re-creation of the
seed's loop (torchvision dataset + per-sample PIL transforms + DataLoader, the
seed's update rule and per-step ``.item()``s) on the same model, batch size and
device, in one process: one warm-up segment each, then ``--repeats`` pairs of
``steps`` training batches; it prints each side's median images/s and the
median per-pair ratio. What is and is not timed: see ``deeplab/bench.py``.
``lightning_overhead`` compares ``fit`` with a plain loop over deeplab's own
DataModule, model and optimizer: ratio 0.9 = 10 % framework overhead.

On a shared CPU, run when the machine is quiet (the table records the load
average): with more runnable threads than cores, every multi-threaded PyTorch
op waits for a descheduled worker thread (a 200k-element ``_foreach_add_``
went from 13 µs to 3.2 ms at load 2 on 2 cores), which swamps everything
measured here; ``--threads 1`` makes the comparison robust to that.

Measured (2-core shared CPU, no GPU, real MNIST, 2 threads, load 1.3-2.1, 3 alternating
pairs, medians; see the README's Performance section):

    case                          deeplab img/s  reference img/s  ratio  target
    cnn5_bs32                           3,578.4          3,279.6  1.09×  ≥ 5× missed
    cnn5_bs32_ceiling                   3,603.4          3,284.2  1.10×
    two_layer_mlp_bs1                   1,139.8          1,987.5  0.57×  ≥ 8× missed
    two_layer_mlp_bs1_ceiling           4,094.2          2,016.2  2.02×
    cnn_elu_bn_k30_bs256                1,420.2          1,445.7  1.02×  ≥ 1× ok
    cnn_elu_bn_k30_bs256_compile        1,592.3          1,661.7  0.96×  ≥ 1× missed
    resnet18_bs128                         70.3             56.6  1.16×  ≥ 1× ok
    lightning_overhead                  3,279.7          3,859.5  0.86×  ≥ 0.9× missed
    lightning_overhead_bs1                995.6          3,124.4  0.32×
    grad_norms_overhead                 1,236.9          1,337.3  0.91×  ≥ 0.87× ok

The ``_ceiling`` cases (the model's bare steps on one in-memory batch) show the most
any loop could gain over the seed's here: 1.10× and 2.02×.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from deeplab.cli import ArgumentParser, run_main  # noqa: E402


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

    if path.is_dir():
        raise DeeplabError(f"--json {path} is a folder; give a file name such as {path / 'bench.json'}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        probe = path.parent / f".deeplab-write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as error:
        raise DeeplabError(f"--json {path}: cannot write there ({error.strerror}); give another path") from None


def build_parser() -> argparse.ArgumentParser:
    from deeplab.bench import CASES, DEFAULT_CASES

    parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", help=f"comma-separated cases (default: {','.join(DEFAULT_CASES)}); known: {', '.join(CASES)}")
    parser.add_argument("--quick", action="store_true", help="short segments (a smoke run, not a measurement)")
    parser.add_argument("--repeats", type=int, default=3, help="measured pairs per case after the warm-up (default 3, ≥ 3 for a report)")
    parser.add_argument("--steps", type=int, help="training batches per segment (default: the case's)")
    parser.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N (default cpu)")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads for both sides (default: PyTorch's)")
    parser.add_argument("--data-dir", help="folder holding MNIST/raw/ (default $DEEPLAB_DATA_DIR or ./data)")
    parser.add_argument("--json", dest="json_path", help="also write the table (a list of rows) to this JSON file")
    parser.add_argument("--deeplab-set", action="append", type=_parse_override, default=[], metavar="KEY=VALUE",
                        help="override a FitConfig field on the deeplab side, e.g. progress_bar=false, compile=true")
    parser.add_argument("--list-cases", action="store_true", help="print the cases and exit")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import dataclasses

    import torch

    from deeplab.bench import CASES, BenchContext, format_table, iter_case_names, run_benchmark
    from deeplab.config import FitConfig
    from deeplab.data import resolve_data_dir
    from deeplab.errors import DeeplabError

    if args.list_cases:
        for case in CASES.values():
            target = "report" if case.target is None else f"≥ {case.target:g}×"
            print(f"{case.name:32s} {target:8s} {case.description}")
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
    if args.threads is not None:
        if args.threads < 1:
            raise DeeplabError(f"--threads must be ≥ 1, got {args.threads}")
        torch.set_num_threads(args.threads)

    context = BenchContext(
        data_dir=resolve_data_dir(args.data_dir), device=args.device, quick=args.quick, deeplab_overrides=overrides
    )
    names = list(iter_case_names(args.cases))
    if not names:
        raise DeeplabError(f"--cases {args.cases!r} names no case; give names like cnn5_bs32 (see --list-cases)")
    unknown = [name for name in names if name not in CASES]
    if unknown:
        raise DeeplabError(f"--cases: unknown case {unknown[0]!r}; choose from {', '.join(CASES)}")
    load = os.getloadavg()
    print(f"deeplab bench: {', '.join(names)} | device {args.device}, {torch.get_num_threads()} threads, "
          f"{os.cpu_count()} cores, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
          + (f" | deeplab overrides {overrides}" if overrides else ""), flush=True)
    rows = run_benchmark(names, context, repeats=args.repeats, steps=args.steps,
                         log=lambda line: print(line, flush=True))
    print()
    print(format_table(rows))
    load = os.getloadavg()
    print(f"load average at the end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    if args.json_path:
        path = Path(args.json_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(rows, indent=2) + "\n")
        print(f"json: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
