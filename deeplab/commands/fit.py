"""Train one registered model: ``python scripts/fit.py --model cnn15_skip2``.

Every training option defaults to the model's seed protocol (see
--list-models). Prints a progress bar, one line per epoch in the seeds'
style, and last `results: <path to results.json>`. TensorBoard:
`tensorboard --logdir lightning_logs`.

Exit status: 0 trained; 2 bad input (one line on stderr says what to do);
3 the loss became NaN/inf (training stopped, results.json has diverged: true);
130 / 143 stopped by SIGINT (Ctrl-C) / SIGTERM: the checkpoint is saved at the
current step and the last line says how to resume.
"""

from __future__ import annotations

import argparse
import sys


from deeplab.cli import DIVERGED_EXIT_CODE, ArgumentParser, HelpFormatter, run_main


def build_parser() -> argparse.ArgumentParser:
    from deeplab.config import add_training_arguments

    parser = ArgumentParser(
        description=__doc__, formatter_class=HelpFormatter
    )
    parser.add_argument("--model", help="registered model name (see --list-models)")
    parser.add_argument("--list-models", "--list", dest="list_models", action="store_true",
                        help="print every model with its seed, dataset and size, then exit")
    parser.add_argument("--config", metavar="FILE",
                        help="take every setting from FILE — a run's config.json reruns that run exactly (as a new "
                             "run), or a YAML/JSON file of settings; options given beside it override it")
    parser.add_argument("--evaluate", metavar="CKPT",
                        help="evaluate a checkpoint (a .ckpt or a run folder) without training: its run's data, data "
                             "folder and normalization come from the checkpoint; prints the test (and validation) "
                             "metrics and writes evaluation.json into the run folder (--data-dir if the data moved)")
    parser.add_argument("--print-config", action="store_true",
                        help="print the resolved settings as JSON (what config.json would hold) and exit without "
                             "training; save it, edit it, run it with --config")
    add_training_arguments(parser)
    output = parser.add_argument_group("output")
    output.add_argument("--out", "--log-dir", dest="log_dir", default="lightning_logs",
                        help="where runs go: <out>/<model>/<what the run changed>-s<seed> (lr0.02-s0; s0 for the "
                             "seed protocol itself; -2, -3… when taken), or <out>/<--run-name> (default "
                             "lightning_logs/; --log-dir is the older name)")
    output.add_argument("--run-name", help="the run's folder and TensorBoard name, <out>/NAME (default: <model>/"
                                           "<what the run changed>-s<seed>)")
    output.add_argument("--ckpt-path", help="resume the run of this checkpoint (<run>/checkpoints/last.ckpt, or the run "
                                            "folder): its own settings and data folder come with it, so nothing else "
                                            "is needed; it continues where it stopped and trains until --epochs/"
                                            "--max-steps/--limit-train-batches (the run's, or given here); other run "
                                            "settings given here must match")
    output.add_argument("--checkpoint-every-n-steps", type=int, help="also checkpoint every N optimizer steps")
    output.add_argument("--checkpoint-every-minutes", type=float, default=5.0,
                        help="also checkpoint when this many minutes passed since the last one (default 5; 0: "
                             "only at epoch ends). last.ckpt is always written at each epoch's end, and on "
                             "SIGINT/SIGTERM before exiting")
    output.add_argument("--log-every-n-steps", type=int, default=50,
                        help="optimizer steps between train/loss_step points in TensorBoard (default 50)")
    output.add_argument("--check-val-every-n-epoch", type=int, default=1,
                        help="evaluate every N epochs (default 1); the run's final test accuracy is measured even "
                             "when the last epoch is not one of them")
    output.add_argument("--fast-dev-run", action="store_true", help="one batch of train and eval, no outputs kept")
    output.add_argument("--no-progress-bar", dest="progress_bar", action="store_false", help="hide the progress bar")
    output.add_argument("--no-run-figures", dest="run_figures", action="store_false",
                        help="skip learning_curves.png and grad_heatmap.png (drawn from the run's events at its end)")
    grads = parser.add_argument_group("gradient norms (on by default)")
    grads.add_argument("--no-grad-norms", dest="grad_norms", action="store_false", help="turn gradient-norm logging off")
    grads.add_argument("--grad-every", type=int,
                       help="record gradient norms every N steps (default: every 320 images: 10 steps at batch 32, "
                            "320 at batch 1); the first epoch's mean L1 always uses every step")
    grads.add_argument("--grad-l1-epoch", type=int, default=1,
                       help="the epoch whose every step's total L1 is averaged (results.json grad.epoch_mean_l1; "
                            "default 1, seed 000's first-epoch measure; seed 000 Part 3's 10.62 is epoch 11 of a "
                            "continued run: --ckpt-path <10-epoch run> --epochs 20 --grad-l1-epoch 11)")
    grads.add_argument("--grad-histograms-every", type=int, default=0, help="also log gradient histograms every M steps (0: off)")
    grads.add_argument("--signal-every", type=int, default=0, metavar="N",
                       help="also measure signal propagation (deeplab.diagnosis: per-layer variance, correlation map and "
                            "depth scale, gradient growth) at the start and every N steps into TensorBoard's "
                            "signal/* scalars and images (0: off)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    given = _settings_from_checkpoint(parser, argv)
    from deeplab.config import parse_with_config

    args = parse_with_config(parser, argv)
    if args.ckpt_path is not None:
        from deeplab.training.evaluate import checkpoint_of

        args.ckpt_path = str(checkpoint_of(args.ckpt_path))  # a run folder stands for its checkpoint
    from deeplab.models._listing import format_model_table

    if args.list_models:
        print(format_model_table())
        return 0
    if args.evaluate:
        return _evaluate(args.evaluate, given.data_dir)
    if not args.model:
        from deeplab.errors import DeeplabError

        raise DeeplabError("give --model NAME (see --list-models for the names), or --ckpt-path RUN to resume a run")
    from deeplab.config import config_from_args, config_to_json
    from deeplab.training.resolve import resolve_config

    config = config_from_args(args)
    if args.print_config:
        print(config_to_json(resolve_config(config)))
        return 0
    from deeplab.training.fit import fit

    results = fit(config)
    if not results["is_global_zero"]:
        return 0
    from deeplab.callbacks.progress import format_closing_line, format_epoch_line

    if results.get("partial_epoch"):
        print(format_epoch_line({**results["partial_epoch"], "val_acc": None}, results["hparams"]["epochs"],
                                results.get("eval_split", "test")))
    print(format_closing_line(results))
    if results["diverged"]:
        print(
            f"error: training diverged: the loss became NaN or infinite at step {results['diverged_at_step']}; "
            f"try a smaller --lr (results.json records diverged: true)",
            file=sys.stderr,
        )
    print(f"results: {results['results_path'] or 'none (--fast-dev-run keeps no files)'}")
    return DIVERGED_EXIT_CODE if results["diverged"] else 0


def _settings_from_checkpoint(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """``--ckpt-path``/``--evaluate`` without ``--config``: the checkpoint's run settings become the defaults,
    so the command needs nothing else and options given beside it are changes (checked by the resume).
    Returns what the command line itself gave of these options (and ``--data-dir``)."""
    first = argparse.ArgumentParser(add_help=False)
    for option in ("--ckpt-path", "--evaluate", "--config", "--data-dir"):
        first.add_argument(option)
    known, _ = first.parse_known_args(sys.argv[1:] if argv is None else argv)
    path = known.ckpt_path or known.evaluate
    if path is None or known.config:
        return known
    from deeplab.config import settings_of
    from deeplab.training.evaluate import checkpoint_of, saved_config
    from deeplab.training.resumable.state import load_run_state

    checkpoint = checkpoint_of(path, "--ckpt-path" if known.ckpt_path else "--evaluate")
    state, _ = load_run_state(checkpoint)
    saved = {name: value for name, value in saved_config(checkpoint).to_dict().items()
             if name not in settings_of("invocation")}
    if saved.get("val_split") is None:
        saved["val_split"] = "none"  # the saved (resolved) None is "no hold-out", not "the seed's choice"
    if 0 <= saved.get("max_steps", -1) <= state.global_step:
        saved["max_steps"] = -1  # stopped by its --max-steps: a resume trains on, to --epochs (or a new --max-steps)
    parser.set_defaults(**saved)
    return known


def _evaluate(checkpoint: str, data_dir: str | None) -> int:
    from deeplab.training.evaluate import evaluate

    results = evaluate(checkpoint, data_dir=data_dir)
    line = f"{results['model']} at step {results['global_step']}: test accuracy {100 * results['test_acc']:.2f} %"
    if results["val_acc"] is not None:
        line += f", validation accuracy {100 * results['val_acc']:.2f} %"
    print(line + f" (test loss {results['test_loss']:.4f})")
    print(f"results: {results['results_path']}")
    return 0


def entry() -> None:
    """The console entry point (``deeplab-fit``) and ``python scripts/fit.py``."""
    sys.exit(run_main(main))
