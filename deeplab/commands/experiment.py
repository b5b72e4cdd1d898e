"""Reproduce one seed experiment: ``python scripts/experiment.py skip_connections --dataset mnist``.

``--list`` prints every recipe with the seed experiment it reproduces, its
data set and its expected cost at full budget and at ``--quick``. A run
writes into ``--out`` (default ``lightning_logs/experiments/<NAME>[-<dataset>][-quick]``):
``report.md`` (exact settings; the seed's table with the measured numbers
beside the seed's), the PNG figures it shows, ``results.json`` and one
TensorBoard run per training under ``tb/``. It prints one line per training
and last ``report: <path>``.

Recipes run on the seed's data set unless ``--dataset`` says otherwise
(Fashion-MNIST and CIFAR-10 must be on disk: point ``--data-dir`` at them, or
run on ``--dataset mnist``). ``--quick`` is a smoke test: 1 epoch of a few batches, small depths (measured:
0.1 s to 3 min per recipe on a 2-core CPU; ``--list`` shows each).

Exit status: 0 done; 2 bad input (one line on stderr says what to do); 130 / 143 stopped by
SIGINT / SIGTERM.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


from deeplab.cli import ArgumentParser, HelpFormatter, run_main
from deeplab.errors import DeeplabError

#: measured --quick costs (tracked: others can check them), written by --measure-quick-costs
COSTS_FILE = Path(__file__).resolve().parents[2] / "reports" / "recipe_quick_costs.json"


def _seed_list(text: str) -> tuple[int, ...]:
    try:
        seeds = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected integers separated by commas, got {text!r}") from None
    if not seeds:
        raise argparse.ArgumentTypeError("give at least one seed, e.g. 0,1,2")
    return seeds


def build_parser() -> argparse.ArgumentParser:
    from deeplab.config import int_or_fraction

    parser = ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("name", nargs="?", help="recipe to run (see --list)")
    parser.add_argument("--list", action="store_true", help="print every recipe with its seed and cost, then exit")
    parser.add_argument("--config", metavar="FILE",
                        help="take the options from FILE (JSON, or YAML for .yaml/.yml), named as --print-config "
                             "prints them (name, quick, dataset, data_dir, out, seeds, ...); options given beside "
                             "it override it")
    parser.add_argument("--print-config", action="store_true",
                        help="print the resolved options as JSON and exit without running: save it, edit it, run it "
                             "with --config")
    parser.add_argument("--measure-quick-costs", action="store_true",
                        help=f"run every recipe with --quick (on --dataset, default mnist) in a temporary folder and "
                             f"write their wall times, with the machine and its load, to "
                             f"{COSTS_FILE.relative_to(COSTS_FILE.parents[1])} in deeplab's checkout; "
                             f"--list shows them")
    parser.add_argument("--quick", action="store_true",
                        help="smoke budget: 1 epoch of 3 batches (≤ 32 images), small depths; seconds to 3 min on a "
                             "2-core CPU (--list shows each recipe's measured cost)")
    parser.add_argument("--dataset", help="mnist | fashion_mnist | cifar10 (default: the seed's data set)")
    parser.add_argument("--data-dir", help="dataset folder (default $DEEPLAB_DATA_DIR or ./data)")
    parser.add_argument("--out", help="output folder (default lightning_logs/experiments/<NAME>[-<dataset>][-quick])")
    parser.add_argument("--seeds", type=_seed_list, default=(0,),
                        help="repeat every training with these seeds, e.g. 0,1,2; tables give mean ± s.d. (default 0)")
    parser.add_argument("--devices", default="1",
                        help="devices per training: a count, a list '0,1' or 'auto' (trainability: probes at once)")
    parser.add_argument("--accelerator", default="auto", help="cpu | gpu | auto (default auto)")
    parser.add_argument("--seed-protocol", action="store_true",
                        help="replay the seed's protocol quirks where the recipe documents them (skip_connections: "
                             "continue the trained plain 15-layer net for 10 more epochs, as seed 000's Part 3 "
                             "cell did, and take its gradient L1 over epoch 11)")
    budget = parser.add_argument_group("budget overrides (apply to every training of the recipe)")
    budget.add_argument("--epochs", type=int, help="epochs per training (xor_boundary: NumPy epochs)")
    budget.add_argument("--limit-train-batches", type=int_or_fraction, help="train on this many batches (or fraction) per epoch")
    budget.add_argument("--limit-val-batches", type=int_or_fraction, help="evaluate this many batches (or fraction)")
    return parser


def measured_costs() -> dict:
    """``reports/recipe_quick_costs.json``: {"machine", "measured_at", "load_average", "dataset", "seconds": {…}}."""
    import json

    try:
        return json.loads(COSTS_FILE.read_text())
    except (OSError, ValueError):
        return {}


def format_recipe_list() -> str:
    """Each recipe: name, seed, data set and experiment; then its cost at full budget and at --quick."""
    from deeplab.experiments import list_recipes
    from deeplab.experiments.registry import DATASET_NAMES

    measured = measured_costs()
    seconds = measured.get("seconds", {})
    recipes = list_recipes()
    width = max(len(r.name) for r in recipes) + 2
    pad = " " * width
    lines = [f"{'recipe'.ljust(width)}seed  {'data set'.ljust(15)}experiment", "-" * (width + 60)]
    for r in recipes:
        lines.append(f"{r.name.ljust(width)}{r.seed}   {DATASET_NAMES.get(r.dataset or '', '— (NumPy)').ljust(15)}{r.experiment}")
        lines.append(f"{pad}full: {r.full_cost}")
        quick = (f"{seconds[r.name]:.0f} s measured" if r.name in seconds else f"{r.quick_cost} (not measured)")
        lines.append(f"{pad}--quick: {quick}")
        lines.append(f"{pad}trains: {r.trainings}")
    if measured:
        lines += ["", f"--quick costs: measured by --measure-quick-costs on {measured.get('machine', '?')}, "
                      f"{measured.get('measured_at', '?')}, data {measured.get('dataset', '?')}, load average "
                      f"{measured.get('load_average', '?')} (start-up included)."]
    lines += ["full costs: estimates from the seeds' own timings and from deeplab's measured step times ('est.')."]
    return "\n".join(lines)


def measure_quick_costs(dataset: str, data_dir: str | None) -> dict:
    """Run every recipe with --quick in a temporary folder, one after another, and record each wall time."""
    import datetime
    import json
    import os
    import platform
    import tempfile
    import time

    import torch

    from deeplab.experiments import ExperimentOptions, list_recipes, run_experiment
    from deeplab.io import atomic_write_json

    seconds: dict[str, float] = {}
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="deeplab-costs-") as folder:
        for recipe in list_recipes():
            options = ExperimentOptions(quick=True, dataset=dataset if recipe.dataset else None, data_dir=data_dir,
                                        out=str(Path(folder) / recipe.name))
            started = time.perf_counter()
            run_experiment(recipe.name, options)
            seconds[recipe.name] = round(time.perf_counter() - started, 1)
            print(f"{recipe.name}: {seconds[recipe.name]:.1f} s", flush=True)
    load_after = os.getloadavg()
    data = {"machine": f"{platform.machine()} CPU, {os.cpu_count()} cores, {torch.get_num_threads()} torch thread(s), "
                       f"no GPU used",
            "measured_at": datetime.date.today().isoformat(), "dataset": dataset,
            "load_average": f"{load_before[0]:.1f} → {load_after[0]:.1f}", "seconds": seconds}
    atomic_write_json(COSTS_FILE, data)
    print(f"costs: {COSTS_FILE}")
    return data


#: options a --config file may set (the run's options, not the listing and measuring modes)
CONFIG_OPTIONS = ("name", "quick", "dataset", "data_dir", "out", "seeds", "devices", "accelerator", "seed_protocol",
                  "epochs", "limit_train_batches", "limit_val_batches")


#: what each --config option holds (None allowed for all but name, quick and seed_protocol's booleans)
_CONFIG_TYPES = {"name": str, "quick": bool, "dataset": str, "data_dir": str, "out": str, "devices": (str, int),
                 "accelerator": str, "seed_protocol": bool, "epochs": int, "limit_train_batches": (int, float),
                 "limit_val_batches": (int, float)}


def _check_config_types(path: str, values: dict) -> None:
    """One line naming the option when a --config value has the wrong type (``out: 5``, ``name: [..]``)."""
    for name, kinds in _CONFIG_TYPES.items():
        if name not in values or (values[name] is None and name != "name"):
            continue
        value = values[name]
        wrong_bool = isinstance(value, bool) and kinds is not bool
        if wrong_bool or not isinstance(value, kinds):
            raise DeeplabError(f"--config {path}: {name} must be {_KIND_NAMES.get(kinds, 'a number')}, got {value!r}")


_KIND_NAMES = {str: "text", bool: "true or false", int: "an integer", (str, int): "a count or a list like '0,1'"}


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    """The command line, over the options of ``--config FILE`` when one is given (the line wins)."""
    parser = build_parser()
    first = argparse.ArgumentParser(add_help=False)
    first.add_argument("--config")
    known, _ = first.parse_known_args(sys.argv[1:] if argv is None else argv)
    if known.config:
        from deeplab.config import read_settings_file

        values = read_settings_file(known.config, set(CONFIG_OPTIONS), "experiment.py --print-config's output",
                                    "experiment.py NAME --print-config")
        if "seeds" in values:  # a list in the file, "0,1,2" on the command line
            seeds = values["seeds"]
            try:
                values["seeds"] = _seed_list(",".join(map(str, seeds)) if isinstance(seeds, (list, tuple))
                                             else str(seeds))
            except argparse.ArgumentTypeError as error:
                raise DeeplabError(f"--config {known.config}: seeds: {error}") from None
        _check_config_types(known.config, values)
        parser.set_defaults(**values)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_arguments(argv)
    if args.list:
        print(format_recipe_list())
        return 0
    if args.measure_quick_costs:
        measure_quick_costs(args.dataset or "mnist", args.data_dir)
        return 0
    from deeplab.errors import DeeplabError

    if not args.name:
        raise DeeplabError("give a recipe NAME (see --list for the names)")
    if args.epochs is not None and args.epochs < 1:
        raise DeeplabError(f"--epochs must be a positive integer, got {args.epochs}")
    from deeplab.config import MAX_SEED, check_batch_limit

    check_batch_limit("--limit-train-batches", args.limit_train_batches, zero_allowed=False)
    check_batch_limit("--limit-val-batches", args.limit_val_batches, zero_allowed=True)
    for seed in args.seeds:
        if not 0 <= seed <= MAX_SEED:
            raise DeeplabError(f"--seeds: each seed must be an integer in [0, {MAX_SEED}], got {seed}")
    from deeplab.experiments import ExperimentOptions, get_recipe, run_experiment
    from deeplab.experiments.runner import command_line

    get_recipe(args.name)  # an unknown name fails before anything is imported or written
    if args.print_config:
        import json

        settings = {name: getattr(args, name) for name in CONFIG_OPTIONS}
        settings["seeds"] = list(settings["seeds"])
        print(json.dumps(settings, indent=2))
        return 0
    options = ExperimentOptions(
        quick=args.quick, dataset=args.dataset, data_dir=args.data_dir, out=args.out, seeds=args.seeds,
        devices=args.devices, accelerator=args.accelerator, epochs=args.epochs,
        limit_train_batches=args.limit_train_batches, limit_val_batches=args.limit_val_batches,
        seed_protocol=args.seed_protocol, command=command_line(["python", "scripts/experiment.py", *(sys.argv[1:] if argv is None else argv)]),
    )
    from deeplab.errors import RunInterrupted

    try:
        report = run_experiment(args.name, options)
    except RunInterrupted as stopped:
        raise RunInterrupted(stopped.signum, advice=(
            f"interrupted ({stopped.signal_name}): recipe {args.name} stopped before its report; "
            f"run the same command again to run it")) from None
    print(f"report: {report}")
    return 0


def entry() -> None:
    """The console entry point (``deeplab-experiment``) and ``python scripts/experiment.py``."""
    sys.exit(run_main(main))
