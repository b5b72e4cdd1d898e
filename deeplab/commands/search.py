"""Find the deepest trainable network of a depth family: ``python scripts/search.py --model cnn_tanh --upper 24``.

Seed 002's bisection over depths k = lower, lower + step, …, upper: a depth is
trainable when its error after --epochs (3) epochs is below --threshold (0.2)
and its loss never turned NaN/inf. Every finished probe goes to
``<out>/probes.jsonl``; running the same command again resumes. Writes
``search.json``, ``search.png``, ``report.md`` and a TensorBoard run per probe
(``<out>/runs/``). The last line printed is ``max trainable depth: K``
(``none (below L)`` when not even --lower trained). Exit status: 0 when the
search finished, whatever it found; 2 for bad input; 130/143 when stopped by
Ctrl-C/SIGTERM (finished probes are kept: rerun to resume).

``--table`` searches seed 002's seven families with the seed's upper bounds
and writes ``<out>/table.md`` beside the seed's reported maxima.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


from deeplab.cli import ArgumentParser, HelpFormatter, run_main


def _int_list(text: str) -> list[int]:
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected integers separated by commas, got {text!r}") from None


def _name_list(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def build_parser() -> argparse.ArgumentParser:
    from deeplab.config import add_training_arguments
    from deeplab.callbacks.verdict import METRICS

    parser = ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    search = parser.add_argument_group("search")
    search.add_argument("--model", help="depth family to search (e.g. cnn_tanh; see fit.py --list-models)")
    search.add_argument("--upper", type=int, help="deepest depth to consider (seed 002: 24 for cnn_tanh)")
    search.add_argument("--lower", type=int, default=3, help="shallowest depth to consider (default 3)")
    search.add_argument("--step", type=int, default=3, help="spacing of the candidate depths (default 3)")
    search.add_argument("--start", metavar="K|seed",
                        help="start from a prior depth K instead of bisecting: probe K, walk up or down by --step "
                             "(doubling the stride) and bisect back to a trainable k and an untrainable k + step; "
                             "'seed': the notebook's own number (seed 002 families). Later --seeds start at the "
                             "first seed's boundary. (default: bisection over --lower…--upper)")
    search.add_argument("--threshold", type=float, default=0.2,
                        help="trainable: error below this after the probe's epochs (default 0.2)")
    search.add_argument("--metric", default="test_error", choices=METRICS,
                        help="test_error (the seed's code, default) | train_error | either (the seed's prose)")
    search.add_argument("--seeds", type=_int_list,
                        help="one search per seed, e.g. 0,1,2 (default: --seed); the report gives median and spread")
    search.add_argument("--parallel", type=int, default=1,
                        help="probe N depths at once on N devices (GPUs, else CPU processes) (default 1)")
    search.add_argument("--backend", default="local", choices=("local", "ray"),
                        help="local: this machine (in process, or --parallel worker processes) (default); "
                             "ray: each probe a Ray task on a cluster (pip install \"deeplab[ray]\"; every node "
                             "needs deeplab, --data-dir and --out at the same paths)")
    search.add_argument("--ray-address", help="with --backend ray: the cluster's address, e.g. auto or "
                                              "ray://head:10001 (default: $RAY_ADDRESS, else a local instance)")
    search.add_argument("--out", help="ledger, search.json, plot, report and runs "
                                      "(default lightning_logs/search/<model>, or .../table)")
    search.add_argument("--verbose", action="store_true", help="print each probe's per-epoch lines")
    search.add_argument("--config", metavar="FILE",
                        help="training settings from FILE — a run's config.json (its model and settings; the search "
                             "varies the depth) or a YAML/JSON file; options given beside it override it")
    table = parser.add_argument_group("table (seed 002's seven families)")
    table.add_argument("--table", action="store_true", help="search all seven families with the seed's upper bounds")
    table.add_argument("--inits", type=_name_list, help="with --table: one column per init, e.g. seed,delta_orthogonal")
    table.add_argument("--families", type=_name_list, help="with --table: only these families (the others are "
                                                            "rendered from their ledgers)")
    table.add_argument("--render-only", action="store_true",
                       help="with --table: train nothing; rebuild table.md and table.json (and each family's report) "
                            "from the ledgers under --out, replaying each search as its search.json recorded it")
    add_training_arguments(parser, include_depth=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    from deeplab.config import parse_with_config

    args = parse_with_config(build_parser(), argv)
    from deeplab.config import config_from_args
    from deeplab.errors import DeeplabError

    seeds = tuple(args.seeds) if args.seeds is not None else (args.seed,)
    if args.table:
        for option, value in (("--model", args.model), ("--upper", args.upper)):
            if value is not None:
                raise DeeplabError(f"--table searches every seed 002 family with the seed's upper bounds; drop {option} "
                                   f"(use --families to pick families)")
        if args.init is not None:
            raise DeeplabError("with --table give --inits (one column each) instead of --init")
        from deeplab.search.table import run_table

        out = args.out or "lightning_logs/search/table"
        data = run_table(
            out, start=args.start, render_only=args.render_only, families=args.families, inits=args.inits or ["seed"], seeds=seeds,
            threshold=args.threshold, metric=args.metric, parallel=args.parallel,
            training=config_from_args(args, model="cnn_tanh"), backend=args.backend, ray_address=args.ray_address,
        )
        print()
        print(Path(data["table"]).read_text(), end="")
        print(f"table: {data['table']}")
        return 0

    if args.render_only:
        raise DeeplabError("--render-only goes with --table")
    if args.inits is not None or args.families is not None:
        raise DeeplabError("--inits and --families go with --table; for one search use --model NAME [--init NAME]")
    if not args.model:
        raise DeeplabError("give --model FAMILY and --upper K (or --table for all seed 002 families)")
    if args.upper is None:
        raise DeeplabError("give --upper K, the deepest depth to try (seed 002 used 24 for cnn_tanh)")
    from deeplab.search.runner import SearchPlan, max_depth_line, run_search, seed002_reference

    start = _start_depth(args.start, args.model, seed002_reference())
    plan = SearchPlan(
        start=start,
        model=args.model, upper=args.upper, lower=args.lower, step=args.step, threshold=args.threshold,
        metric=args.metric, seeds=seeds, parallel=args.parallel,
        out=args.out or f"lightning_logs/search/{args.model}",
        training=config_from_args(args, model=args.model), verbose=args.verbose,
        backend=args.backend, ray_address=args.ray_address,
    )
    summary = run_search(plan)
    print(f"search: {Path(plan.out) / 'search.json'}  report: {summary['report']}  plot: {summary['plot']}")
    if len(seeds) > 1:
        per_seed = ", ".join(f"seed {s['seed']}: {s['max_trainable'] if s['max_trainable'] is not None else 'none'}"
                             for s in summary["per_seed"])
        spread = ("" if summary["max_trainable_median"] is None else
                  f"; median {summary['max_trainable_median']:g}, spread {summary['max_trainable_spread']} "
                  f"(over the seeds that found a depth)")
        print(f"per seed: {per_seed}{spread}")
    for pair in summary["non_monotone"]:
        print(f"non-monotone (seed {pair['seed']}): k={pair['untrainable_depth']} untrainable but "
              f"k={pair['trainable_depth']} trainable")
    if summary["min_untrainable"] is None:
        print(f"note: every depth up to --upper {plan.upper} trained; the boundary lies above it")
    if summary["max_trainable"] is None:
        print(f"note: not even --lower {plan.lower} trained" + (
            "" if plan.lower > summary["min_depth"] else
            f" ({plan.lower} is the family's shallowest network: change the training settings)"))
    if summary.get("seed_reported_max") is not None:
        print(f"seed 002 reported: {summary['seed_reported_max']}")
    print(_mean_field_line(args.model, args.init or "seed"))
    print(max_depth_line(summary))
    return 0


def _start_depth(text: str | None, model: str, reference: dict[str, tuple[int, int]]) -> int | None:
    """``--start``: a depth, or ``seed`` for the notebook's number of a seed 002 family."""
    from deeplab.errors import DeeplabError

    if text is None:
        return None
    if text == "seed":
        if model not in reference:
            raise DeeplabError(f"--start seed: {model} has no number in seed 002's table; give --start K")
        return reference[model][1]
    try:
        return int(text)
    except ValueError:
        raise DeeplabError(f"--start takes a depth K or 'seed', got {text!r}") from None


def _mean_field_line(model: str, init: str) -> str:
    """Schoenholz et al. (2017): trainable up to ~6 ξ_c, ξ_c = −1/ln χ₁ (seed 002 families only)."""
    from deeplab.errors import DeeplabError
    from deeplab.search.prediction import predict_for_model

    try:
        prediction = predict_for_model(model, init)
    except DeeplabError:
        return f"mean-field prediction: none ({model} is not a seed 002 family)"
    if prediction.get("predicted_max_depth") is None:
        return f"mean-field prediction: none ({prediction.get('reason') or 'not a plain network'})"
    depth = prediction["predicted_max_depth"]
    depth_text = "any depth (χ₁ = 1: critical, ξ_c = ∞)" if depth == float("inf") else f"~{depth:.0f} layers"
    return (f"mean-field prediction: trainable to {depth_text} "
            f"(σ_w² = {prediction['sigma_w2']:.4g}, σ_b² = {prediction['sigma_b2']:.2g}, χ₁ = {prediction['chi1']:.4g}, "
            f"ξ_c = {prediction['depth_scale']:.3g}, 6 ξ_c)")


def entry() -> None:
    """The console entry point (``deeplab-search``) and ``python scripts/search.py``."""
    sys.exit(run_main(main))
