"""Running a recipe: budgets, seeds, one ``fit`` per training, the report and ``results.json``.

:func:`run_experiment` builds an :class:`ExperimentContext` and calls the
recipe with it. The recipe trains through :meth:`ExperimentContext.train`,
which turns a few fields (model, batch size, momentum...) into one
:class:`~deeplab.config.FitConfig` per seed (unset fields come from the
model's seed protocol), shrinks it under ``--quick``, applies the command
line's ``--epochs`` / ``--limit-*`` overrides, calls
:func:`deeplab.training.fit.fit` (one TensorBoard run per training under
``<out>/tb/<label>-seed<s>/``) and prints one line per training. The recipe
then writes tables and figures into ``ctx.report`` and its own numbers into
``ctx.data``; :meth:`ExperimentContext.finish` writes ``report.md`` and
``results.json``.

``--quick`` is a smoke budget (seconds to 3 minutes on a 2-core CPU for a whole
recipe): 1 epoch of :data:`QUICK_TRAIN_BATCHES` batches of at most
:data:`QUICK_MAX_BATCH` images, :data:`QUICK_VAL_BATCHES` evaluation batch,
gradient norms at every step; recipes shrink depths and batch sizes of their
large models further. Its numbers say the pipeline works, nothing about the
networks.
"""

from __future__ import annotations

import dataclasses
import math
import os
import shlex
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from deeplab.errors import DeeplabError, RunInterrupted
from deeplab.experiments.registry import DATASET_NAMES, Recipe, get_recipe
from deeplab.experiments.report import Report, markdown_table
from deeplab.io import atomic_write, atomic_write_json, make_writable_folder, no_empty_tree_on_failure
from deeplab.training.resumable.lifecycle import interrupt_at_once

__all__ = [
    "ExperimentOptions",
    "ExperimentContext",
    "Training",
    "run_experiment",
    "default_out",
    "QUICK_EPOCHS",
    "QUICK_TRAIN_BATCHES",
    "QUICK_VAL_BATCHES",
    "QUICK_MAX_BATCH",
    "percent",
    "mean_sd",
]

QUICK_EPOCHS = 1
QUICK_TRAIN_BATCHES = 3
QUICK_VAL_BATCHES = 1
QUICK_MAX_BATCH = 32
RESULTS_FILE = "results.json"
REPORT_FILE = "report.md"


@dataclass
class ExperimentOptions:
    """What the command line sets; every field has the full-budget default."""

    quick: bool = False  # the smoke budget (see the module docstring)
    dataset: str | None = None  # run on this data set instead of the seed's
    data_dir: str | None = None
    out: str | None = None  # default: lightning_logs/experiments/<name>[-<dataset>][-quick]
    seeds: tuple[int, ...] = (0,)  # repeat every training once per seed; tables give mean ± s.d.
    devices: str = "1"  # per training (a depth search: probes at once)
    accelerator: str = "auto"
    epochs: int | None = None  # override every training's epochs
    limit_train_batches: float | int | None = None  # override: batches (or fraction) per epoch
    limit_val_batches: float | int | None = None  # override: evaluation batches (or fraction)
    seed_protocol: bool = False  # replay a seed's protocol quirks where a recipe documents them
    command: str | None = None  # the command line, quoted in the report


def default_out(name: str, dataset: str | None, seed_dataset: str | None, quick: bool) -> Path:
    """``lightning_logs/experiments/<name>`` (beside fit runs and searches: one ``tensorboard --logdir
    lightning_logs`` shows them all), with ``-<dataset>`` when not the seed's and ``-quick`` under --quick."""
    parts = [name]
    if dataset is not None and dataset != seed_dataset:
        parts.append(dataset)
    if quick:
        parts.append("quick")
    return Path("lightning_logs") / "experiments" / "-".join(parts)


# ----------------------------------------------------------------------------- numbers
def _error(accuracy: float | None) -> float | None:
    return None if accuracy is None or not math.isfinite(accuracy) else 1.0 - accuracy



def _finite(values: Iterable[float | None]) -> list[float]:
    return [float(v) for v in values if v is not None and math.isfinite(float(v))]


def mean_sd(values: Iterable[float | None]) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation (None with fewer than 2 values) of the finite values."""
    clean = _finite(values)
    if not clean:
        return None, None
    return statistics.fmean(clean), (statistics.stdev(clean) if len(clean) > 1 else None)


def percent(value: float | None, digits: int = 2) -> str:
    """A fraction as a percentage ('91.05%'); '—' for None."""
    return "—" if value is None or not math.isfinite(value) else f"{100 * value:.{digits}f}%"


def format_values(values: Sequence[float | None], *, scale: float = 1.0, digits: int = 2,
                  unit: str = "", sci: bool = False) -> str:
    """One cell from per-seed values: 'x' for one seed, 'mean ± s.d.' for several, '—' for none."""
    mean, sd = mean_sd(values)
    if mean is None:
        return "—"

    big = abs(mean * scale) >= 1e5  # a diverging loss: 3.26e+07, not 32581912.0000

    def fmt(x: float) -> str:
        return f"{x * scale:.{digits}e}" if sci or big else f"{x * scale:.{digits}f}"

    text = fmt(mean) if sd is None else f"{fmt(mean)} ± {fmt(sd)}"
    return text + unit


# ---------------------------------------------------------------------------- training
@dataclass
class Training:
    """One labelled training, repeated once per seed: its configs, results and callbacks."""

    label: str
    model: str
    configs: list[Any] = field(default_factory=list)  # resolved FitConfig per seed
    results: list[dict[str, Any]] = field(default_factory=list)  # fit() results per seed
    callbacks: list[list[Any]] = field(default_factory=list)  # the recipe's callbacks per seed
    notes: list[str] = field(default_factory=list)

    # per-seed values --------------------------------------------------------
    def values(self, get: Callable[[dict[str, Any]], float | None]) -> list[float | None]:
        out = []
        for result in self.results:
            try:
                out.append(get(result))
            except (KeyError, IndexError, TypeError):
                out.append(None)
        return out

    def last(self, key: str) -> list[float | None]:
        """The last epoch's ``key`` (train_loss, train_acc, val_loss, val_acc) per seed."""
        return self.values(lambda r: r["history"][-1][key])

    @property
    def test_acc(self) -> list[float | None]:
        return self.values(lambda r: r["test_acc"])

    def best(self, key: str) -> list[float | None]:
        return self.values(lambda r: max(e[key] for e in r["history"]))

    def cell(self, get: Callable[[dict[str, Any]], float | None] | list[float | None], *,
             pct: bool = False, digits: int = 2, unit: str = "", sci: bool = False) -> str:
        values = get if isinstance(get, list) else self.values(get)
        if pct:
            return format_values(values, scale=100.0, digits=digits, unit="%")
        return format_values(values, digits=digits, unit=unit, sci=sci)

    def mean(self, get: Callable[[dict[str, Any]], float | None] | list[float | None]) -> float | None:
        values = get if isinstance(get, list) else self.values(get)
        return mean_sd(values)[0]

    def curves(self, key: str) -> list[list[float]]:
        """Per seed, the per-epoch ``key`` values."""
        return [[entry[key] for entry in result["history"]] for result in self.results]

    @property
    def eval_split(self) -> str:
        return self.results[0]["eval_split"] if self.results else "test"

    def summary(self) -> dict[str, Any]:
        """What results.json keeps of this training."""
        per_seed = []
        for config, result in zip(self.configs, self.results):
            grad = result.get("grad") or {}
            per_seed.append({
                "seed": config.seed,
                "test_acc": result.get("test_acc"),
                "test_loss": result.get("test_loss"),
                "eval_split": result.get("eval_split"),
                "epochs_run": result.get("epochs_run"),
                "global_step": result.get("global_step"),
                "diverged": result.get("diverged"),
                "diverged_at_step": result.get("diverged_at_step"),
                "wall_time_s": result.get("wall_time_s"),
                "train_time_s": result.get("train_time_s"),
                "images_per_s": result.get("images_per_s"),
                "parameters": result.get("parameters"),
                "device": result.get("device"),
                "history": result.get("history"),
                "grad_first_epoch_mean_l1": grad.get("first_epoch_mean_l1"),
                "grad_l1_epoch": grad.get("l1_epoch"),
                "grad_epoch_mean_l1": grad.get("epoch_mean_l1"),
                "resumes": result.get("resumes") or [],
                "grad_layers": grad.get("layers"),
                "grad_per_epoch_layer_l2": grad.get("per_epoch_layer_l2"),
                "run_dir": result.get("run_dir"),
            })
        test_mean, test_sd = mean_sd(self.test_acc)
        config = self.configs[0].to_dict() if self.configs else {}
        config.pop("seed", None)
        config.pop("run_name", None)
        return {"label": self.label, "model": self.model, "config": config, "notes": self.notes,
                "test_acc_mean": test_mean, "test_acc_sd": test_sd, "per_seed": per_seed}


# ----------------------------------------------------------------------------- context
class ExperimentContext:
    """What a recipe works with: options, the output folder, ``train``, the report and data."""

    def __init__(self, recipe: Recipe, options: ExperimentOptions):
        from deeplab.models import DATASET_SHAPES

        self.recipe = recipe
        self.options = options
        self.dataset = options.dataset or recipe.dataset
        if options.dataset is not None and options.dataset not in DATASET_SHAPES:
            raise DeeplabError(f"--dataset {options.dataset!r}: choose one of {', '.join(DATASET_SHAPES)}")
        if not options.seeds:
            raise DeeplabError("--seeds is empty; give seeds like 0,1,2")
        if len(set(options.seeds)) != len(options.seeds):
            raise DeeplabError(f"--seeds repeats a seed: {','.join(map(str, options.seeds))}")
        self.out = Path(options.out) if options.out else default_out(recipe.name, self.dataset, recipe.dataset, options.quick)
        try:
            make_writable_folder(self.out)
        except OSError as error:
            raise DeeplabError(f"--out {self.out} is not writable ({error.strerror}); give a folder you can write to") from None
        self.report = Report(self.out, quick=options.quick)
        self.trainings: list[Training] = []
        self.data: dict[str, Any] = {}  # the recipe's own numbers for results.json
        self.rank_zero = True
        self.started = time.perf_counter()
        self.probe_seconds = 0.0  # training time of the search probes the report stands on (ledgers included)
        self.probe_count = 0
        self._count = 0

    # ----------------------------------------------------------------- options
    @property
    def quick(self) -> bool:
        return self.options.quick

    @property
    def seeds(self) -> tuple[int, ...]:
        return tuple(self.options.seeds)

    @property
    def on_seed_dataset(self) -> bool:
        """Whether this run uses the data set the seed used (NumPy recipes: always)."""
        return self.recipe.dataset is None or self.dataset == self.recipe.dataset

    def dataset_name(self, dataset: str | None = None) -> str:
        dataset = dataset or self.dataset
        return DATASET_NAMES.get(dataset or "", dataset or "—")

    def seed_header(self, what: str = "seed") -> str:
        """Column header for the seed's reported numbers, flagged when they are another data set's."""
        base = f"{what} {self.recipe.seed}"
        if self.on_seed_dataset:
            return base
        return f"{base} ({self.dataset_name(self.recipe.dataset)}, reference only)"

    @property
    def grad_every(self) -> int:
        return 1 if self.quick else 10

    def echo(self, line: str) -> None:
        if self.rank_zero:
            print(line, flush=True)

    def count_probes(self, probes: list[dict[str, Any]]) -> None:
        """Add search probes (records with ``wall_time_s``) to the report's probe time: a recipe that reads its
        probes from ledgers runs in seconds, and its report says what they cost when they ran."""
        self.probe_count += len(probes)
        self.probe_seconds += sum(p.get("wall_time_s") or 0.0 for p in probes)

    # ------------------------------------------------------------------ train
    def _budget(self, config: Any, quick: dict[str, Any], explicit: set[str]) -> tuple[Any, list[str]]:
        """Resolve ``config`` against its model's protocol, then apply --quick and the overrides."""
        from deeplab.training.resolve import resolve_config
        from deeplab.models import model_spec

        notes: list[str] = []
        resolved = resolve_config(config)
        spec = model_spec(resolved.model)
        if ("augment" not in explicit and spec.protocol.get("augment") and resolved.dataset != "cifar10"
                and resolved.augment):
            # The protocol's crop + flip is CIFAR-10's augmentation; mirrored digits are not digits.
            resolved.augment = False
            notes.append(f"the seed's CIFAR-10 crop + flip augmentation is off on {self.dataset_name(resolved.dataset)}")
        if self.quick:
            resolved.epochs = QUICK_EPOCHS
            resolved.limit_train_batches = QUICK_TRAIN_BATCHES
            resolved.limit_val_batches = QUICK_VAL_BATCHES
            resolved.batch_size = min(resolved.batch_size, QUICK_MAX_BATCH)
            for name, value in quick.items():
                if name == "model_kwargs":
                    resolved.model_kwargs = {**resolved.model_kwargs, **value}
                else:
                    setattr(resolved, name, value)
        if self.options.epochs is not None:
            resolved.epochs = self.options.epochs
        if self.options.limit_train_batches is not None:
            resolved.limit_train_batches = self.options.limit_train_batches
        if self.options.limit_val_batches is not None:
            resolved.limit_val_batches = self.options.limit_val_batches
        return resolved, notes

    def train(
        self,
        label: str,
        model: str,
        *,
        quick: dict[str, Any] | None = None,
        callbacks: Callable[[], Sequence[Any]] | None = None,
        **fields: Any,
    ) -> Training:
        """Train ``model`` once per seed with ``fields`` set (FitConfig names); the rest is its protocol.

        ``quick``: fields that replace the setting under --quick (e.g. a smaller depth).
        ``callbacks``: makes fresh Lightning callbacks for each seed's run.
        """
        from deeplab.config import FitConfig
        from deeplab.training.fit import fit

        training = Training(label=label, model=model)
        for seed in self.seeds:
            config = FitConfig(
                model=model, dataset=self.dataset, data_dir=self.options.data_dir,
                log_dir=str(self.out / "tb"), run_name=f"{label}-seed{seed}", seed=seed,
                devices=self.options.devices, accelerator=self.options.accelerator,
                progress_bar=False, run_figures=False, grad_every=self.grad_every, **fields,
            )
            config, notes = self._budget(config, quick or {}, set(fields))
            for note in notes:
                if note not in training.notes:
                    training.notes.append(note)
            run_callbacks = list(callbacks()) if callbacks else []
            started = time.perf_counter()
            result = fit(config, callbacks=run_callbacks, quiet=True)
            self.rank_zero = self.rank_zero and bool(result.get("is_global_zero", True))
            training.configs.append(config)
            training.results.append(result)
            training.callbacks.append(run_callbacks)
            self._count += 1
            self.echo(self._progress_line(label, seed, result, time.perf_counter() - started))
        self.trainings.append(training)
        return training

    def continue_training(self, base: Training, label: str, extra_epochs: int, **fields: Any) -> Training:
        """``base`` (every seed) trained ``extra_epochs`` more from its last checkpoint: the same
        objects continued, weights and optimizer state carried over (``--ckpt-path --epochs``), as
        seed 000's Part 3 cell continued its already-trained plain net. ``fields``: settings a
        resume may change (e.g. ``grad_l1_epoch``). The continued run is the same run: its results
        replace ``base``'s files on disk (``base.results`` keeps the shorter run in memory)."""
        from deeplab.training.fit import fit

        training = Training(label=label, model=base.model, notes=list(base.notes))
        for config, result in zip(base.configs, base.results):
            if not result.get("checkpoint"):
                raise DeeplabError(f"{base.label}: seed {config.seed} left no checkpoint to continue")
            continued = dataclasses.replace(config, ckpt_path=result["checkpoint"], epochs=config.epochs + extra_epochs,
                                            **fields)
            started = time.perf_counter()
            outcome = fit(continued, quiet=True)
            training.configs.append(continued)
            training.results.append(outcome)
            training.callbacks.append([])
            self._count += 1
            self.echo(self._progress_line(label, config.seed, outcome, time.perf_counter() - started))
        self.trainings.append(training)
        return training

    def _progress_line(self, label: str, seed: int, result: dict[str, Any], seconds: float) -> str:
        history = result.get("history") or []
        parts = [f"[{self.recipe.name} {self._count}] {label} (seed {seed}):"]
        if result.get("diverged"):
            parts.append(f"DIVERGED at step {result.get('diverged_at_step')},")
        # errors, as every epoch line says them (seed 002's "Test Error")
        parts.append(f"test error {percent(_error(result.get('test_acc')))},")
        if history:
            parts.append(f"train error {percent(_error(history[-1].get('train_acc')))},")
        parts.append(f"{result.get('epochs_run', 0)} epoch(s), {result.get('global_step', 0)} steps, {seconds:.1f} s")
        parts.append(f"→ {self.relative(result.get('run_dir', ''))}")
        return " ".join(parts)

    # --------------------------------------------------------------- outputs
    def path(self, name: str) -> Path:
        """A file in the output folder."""
        return self.out / name

    def relative(self, path: str | os.PathLike) -> str:
        try:
            return str(Path(path).resolve().relative_to(self.out.resolve()))
        except ValueError:
            return str(path)

    def settings_table(self) -> str:
        """Markdown: every training's exact settings (what was run), one column per training (split into
        several tables when they would be wider than the report's 100 characters)."""
        from deeplab.experiments.report import fitted_tables

        names = ["model", "depth", "data", "epochs", "batch", "optimizer", "lr", "α", "weight decay", "schedule",
                 "loss", "hold-out", "augment", "input noise", "train batches/epoch", "eval batches", "seeds",
                 "TensorBoard runs"]
        columns = []
        for t in self.trainings:
            c = t.configs[0]
            augment = "no"
            if c.augment:
                augment = "flip only" if c.crop_padding == 0 else f"crop (pad {c.crop_padding or 4}) + flip"
            columns.append([
                f"`{t.model}`" + (f" {c.model_kwargs}" if c.model_kwargs else ""),
                "—" if c.depth is None else str(c.depth), self.dataset_name(c.dataset), str(c.epochs),
                str(c.batch_size), c.optimizer, f"{c.lr:g}", "—" if c.optimizer == "adam" else f"{c.momentum:g}",
                f"{c.weight_decay:g}", c.schedule, c.loss,
                "none (test split each epoch)" if c.val_split is None else f"{c.val_split:g}", augment,
                f"{c.input_noise_std:g}" if c.input_noise_std else "0",
                "all" if c.limit_train_batches is None else f"{c.limit_train_batches:g}",
                "all" if c.limit_val_batches is None else f"{c.limit_val_batches:g}",
                ",".join(str(cfg.seed) for cfg in t.configs),
                "<br>".join(f"`{self.relative(r['run_dir'])}`" for r in t.results),
            ])
        headers = ["setting", *[t.label for t in self.trainings]]
        rows = [[name, *[column[i] for column in columns]] for i, name in enumerate(names)]
        return "\n\n".join(table for _, table in fitted_tables(headers, rows, align="l" * len(headers)))

    def finish(self) -> Path:
        """Write report.md and results.json (rank 0 only); return the report's path."""
        report_path = self.out / REPORT_FILE
        if not self.rank_zero:
            return report_path
        wall = time.perf_counter() - self.started
        text = self._render(wall)
        atomic_write(report_path, lambda file: file.write(text.encode()))
        atomic_write_json(self.out / RESULTS_FILE, {
            "recipe": self.recipe.name,
            "seed_document": self.recipe.seed,
            "experiment": self.recipe.experiment,
            "title": self.recipe.title,
            "dataset": self.dataset,
            "seed_dataset": self.recipe.dataset,
            "on_seed_dataset": self.on_seed_dataset,
            "quick": self.quick,
            "seeds": list(self.seeds),
            "options": dataclasses.asdict(self.options),
            "trainings": [t.summary() for t in self.trainings],
            "tables": self.report.tables,
            "figures": self.report.figures,
            "results": self.data,
            "report": REPORT_FILE,
            "wall_time_s": round(wall, 3),
        })
        return report_path

    def _render(self, wall: float) -> str:
        r = self.recipe
        lines = [f"# {r.title}", ""]
        if self.quick:
            lines += ["> **Smoke run (`--quick`)**: one short epoch per training. These numbers show that the "
                      "pipeline runs; they say nothing about the networks, and no conclusion is drawn from them.", ""]
        lines += [f"Recipe `{r.name}` reproduces **seed {r.seed}, {r.experiment}**.", ""]
        if r.dataset is not None:
            if self.on_seed_dataset:
                lines.append(f"- data set: **{self.dataset_name()}** (the seed's)")
            else:
                lines.append(f"- data set: **{self.dataset_name()}** — **not the seed's** ({self.dataset_name(r.dataset)}). "
                             f"The seed's numbers below are shown as a reference only: they were measured on "
                             f"{self.dataset_name(r.dataset)} and are not comparable with these.")
        budget = "**--quick** (a smoke test: its numbers say the pipeline runs, nothing about the networks)" \
            if self.quick else r.budget or "full (the seed's protocol)"
        overrides = [f"{name} {value}" for name, value in (
            ("--epochs", self.options.epochs), ("--limit-train-batches", self.options.limit_train_batches),
            ("--limit-val-batches", self.options.limit_val_batches)) if value is not None]
        if overrides:
            budget += ", overridden by " + ", ".join(overrides)
        lines.append(f"- budget: {budget}")
        seeds = ", ".join(map(str, self.seeds))
        lines.append(f"- seeds: {seeds}" + (" — tables give mean ± sample s.d. over the seeds" if len(self.seeds) > 1 else ""))
        if self.trainings:
            lines.append(f"- device: {self.trainings[0].results[0].get('device', '?')}")
        lines.append(f"- wall time: {wall:.0f} s" + (
            f"; the {self.probe_count} probes reported took {self.probe_seconds:.0f} s of training when they ran "
            "(probes already in a ledger are read, not rerun)" if self.probe_count else ""))
        if self.options.command:
            lines.append(f"- command: `{self.options.command}`")
        lines.append("")
        lines.append(self.report.render())
        if self.trainings:
            lines += ["## What was run", "",
                      "Every training's exact settings (unset options come from the model's seed protocol, "
                      "see `scripts/fit.py --list-models`); `tensorboard --logdir "
                      f"{self.out / 'tb'}` shows their curves.", "", self.settings_table(), ""]
            notes = sorted({n for t in self.trainings for n in t.notes})
            if notes:
                lines += ["Adjustments: " + "; ".join(notes) + ".", ""]
        lines += ["Machine-readable results: `results.json`.", ""]
        return "\n".join(lines)


def run_experiment(name: str, options: ExperimentOptions) -> Path:
    """Run recipe ``name``; return the path of its ``report.md``."""
    recipe = get_recipe(name)
    out = Path(options.out) if options.out else default_out(recipe.name, options.dataset or recipe.dataset,
                                                             recipe.dataset, options.quick)
    try:
        # SIGTERM, like SIGINT, stops a recipe cleanly between its trainings (each training handles its own)
        with no_empty_tree_on_failure(out), interrupt_at_once():
            return _run_experiment(recipe, options)
    except RunInterrupted as stopped:
        if stopped.advice is not None or stopped.checkpoint is not None:
            raise
        raise RunInterrupted(stopped.signum, advice=f"interrupted ({stopped.signal_name}): recipe {recipe.name} "
                                                   f"stopped; run the same command again to start it over") from None


def _run_experiment(recipe: Recipe, options: ExperimentOptions) -> Path:
    ctx = ExperimentContext(recipe, options)
    ctx.echo(f"experiment {recipe.name}: seed {recipe.seed}, {recipe.experiment} — "
             f"{'quick' if options.quick else 'full'} budget, data {ctx.dataset_name() if recipe.dataset else 'none (NumPy)'}, "
             f"seeds {','.join(map(str, ctx.seeds))}, out {ctx.out}")
    recipe.run(ctx)
    return ctx.finish()


def command_line(argv: Sequence[str] | None = None) -> str:
    argv = list(sys.argv if argv is None else argv)
    return " ".join(shlex.quote(a) for a in argv)
