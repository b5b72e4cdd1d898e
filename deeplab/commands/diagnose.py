"""Diagnose a network's trainability at initialization, in seconds: ``python scripts/diagnose.py --model cnn_elu_bn``.

Builds the model as fit.py would (same settings and seed, so the same initial weights), passes the first
--examples training images through it once forward and once backward, and measures, layer by layer: the
signal propagation (average channel squared mean and variance, the residual branch's variance), the
correlation map between inputs with its fitted fixed point and depth scale ξ_c, the gradients' growth
per layer, and the exact Jacobian spectrum of the last stage (its mean squared singular value per layer:
the empirical χ₁). Predicts the deepest trainable depth as 6·min(ξ_c, ξ_∇) (Schoenholz et al. 2017;
ξ_∇ = 1/|ln r²|, r the gradients' growth per layer) beside mean-field theory's number where deeplab has
one. Writes diagnosis.json and signal_propagation.png, correlation.png, gradients.png, jacobian.png into
--out; the last line printed is ``diagnosis: PATH``. Nothing is trained.

``--table`` diagnoses seed 002's seven families at their search upper bounds (seed init and the frontier
inits) and scores the predictions against the measured table (``reports/seed002/table.json``): per family
predicted / measured, and whether the families come out in the measured order.
"""

from __future__ import annotations

import argparse
import sys

from deeplab.cli import ArgumentParser, HelpFormatter, run_main


def _name_list(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def build_parser() -> argparse.ArgumentParser:
    from deeplab.config import add_training_arguments

    parser = ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    group = parser.add_argument_group("diagnosis")
    group.add_argument("--model", help="the network (a seed 002 family such as cnn_elu_bn, or any registered model; "
                                       "see fit.py --list-models)")
    group.add_argument("--examples", type=int, default=64,
                       help="training images measured (the correlation averages their pairs; default 64)")
    group.add_argument("--no-jacobian", dest="jacobian", action="store_false",
                       help="skip the Jacobian spectrum (the slowest part: ~20 s for resnet_elu at k = 450)")
    group.add_argument("--out", help="folder for diagnosis.json and the figures (default "
                                     "lightning_logs/diagnose/<model>-k<depth>-<init>; with --table "
                                     "lightning_logs/diagnose/table)")
    group.add_argument("--config", metavar="FILE",
                       help="model and data settings from FILE — a run's config.json or a YAML/JSON file; options "
                            "given beside it override it")
    table = parser.add_argument_group("table (seed 002's seven families)")
    table.add_argument("--table", action="store_true",
                       help="diagnose every seed 002 family at its search upper bound (seed and frontier inits) and "
                            "score the predictions against the measured table")
    table.add_argument("--families", type=_name_list, help="with --table: only these families")
    table.add_argument("--measured", default="reports/seed002/table.json",
                       help="with --table: the measured table's JSON (search.py --table writes it)")
    add_training_arguments(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    from deeplab.config import config_from_args, parse_with_config
    from deeplab.errors import DeeplabError

    args = parse_with_config(build_parser(), argv)
    if args.table:
        for option, value in (("--model", args.model), ("--depth", args.depth), ("--init", args.init)):
            if value is not None:
                raise DeeplabError(f"--table diagnoses every seed 002 family at its upper bound and table inits; "
                                   f"drop {option} (use --families to pick families)")
        from deeplab.diagnosis.table import diagnose_table

        data = diagnose_table(args.out or "lightning_logs/diagnose/table", measured_table=args.measured,
                              families=args.families, data_dir=args.data_dir, seed=args.seed,
                              examples=args.examples, jacobian=args.jacobian)
        print()
        print(open(data["table"], encoding="utf-8").read(), end="")
        print(f"table: {data['table']}")
        return 0
    if args.families is not None:
        raise DeeplabError("--families goes with --table")
    if not args.model:
        raise DeeplabError("give --model NAME (e.g. --model cnn_elu_bn; --depth K, default the seed's search upper "
                           "bound) or --table for all seed 002 families")
    from deeplab.diagnosis.diagnose import default_depth, diagnose

    config = config_from_args(args, model=args.model, depth=default_depth(args.model, args.depth))
    out = args.out or f"lightning_logs/diagnose/{args.model}-k{config.depth}-{args.init or 'seed'}"
    record = diagnose(config, out=out, examples=args.examples, jacobian=args.jacobian)
    print(summary_text(record))
    print(f"diagnosis: {out}/diagnosis.json")
    return 0


def summary_text(record: dict) -> str:
    """The console report of one diagnosis."""
    import math

    def number(value, digits=3):
        if value is None:
            return "—"
        return "∞" if value == math.inf else f"{value:.{digits}g}"

    correlation, growth, prediction = record["correlation"], record["gradient_growth"], record["prediction"]
    first, last = record["layers"][0], record["layers"][-1]
    lines = [
        f"{record['model']} k = {record['depth']}, init {record['init']}, {record['parameters']:,} parameters, "
        f"{record['examples']} {record['dataset']} images, {len(record['layers'])} layers measured "
        f"({record['seconds']:.1f} s)",
        f"signal: channel variance {number(first['variance'])} at layer 1 → {number(last['variance'])} at layer "
        f"{last['layer']}" + (f"; residual branch variance {number(last['branch_variance'])}"
                               if last.get("branch_variance") is not None else ""),
        f"correlation map: c {number(first['correlation'])} → {number(last['correlation'])}; fitted in {correlation['stage']} "
        f"({correlation['regime']}): c* = {number(correlation['fixed_point'])}, χ_c = {number(correlation['chi_c'])}, "
        f"ξ_c = {number(correlation['depth_scale'])}",
        f"gradients at init: ‖∂loss/∂h_l‖ × {number(growth['representation'], 4)} per layer toward the input "
        f"(ξ_∇ = {number(prediction['gradient_depth_scale'])}); weight gradients × {number(growth['weight'], 4)}",
    ]
    spectrum = record.get("jacobian")
    if spectrum:
        lines.append(f"Jacobian of {spectrum['stage']} (layers {spectrum['first_layer']}–{spectrum['last_layer']}): mean "
                     f"squared singular value {number(spectrum['mean_squared_singular_value'])}, χ₁ = "
                     f"{number(spectrum['chi1'], 4)} per layer; singular values {number(spectrum['min'])} … "
                     f"{number(spectrum['median'])} (median) … {number(spectrum['max'])}")
    mean_field = record.get("mean_field") or {}
    theory = (f"mean field: χ₁ = {number(mean_field['chi1'], 4)}, 6 ξ_c = {number(mean_field['predicted_max_depth'])}"
              if mean_field.get("chi1") is not None else
              f"mean field: none ({mean_field['reason']})" if mean_field.get("reason") else None)
    if theory:
        lines.append(theory)
    reported = record.get("seed_reported_max")
    lines.append(f"predicted trainable depth: {number(prediction['predicted_max_depth'])} "
                 f"(6·min(ξ_c, ξ_∇), limited by the {prediction['limited_by']} depth scale)"
                 + (f"; seed 002 reported {reported}" if reported is not None else ""))
    return "\n".join(lines)


def entry() -> None:
    """The console entry point (``deeplab-diagnose``) and ``python scripts/diagnose.py``."""
    sys.exit(run_main(main))
