"""Running a depth search: one strategy per seed through the driver, judged, ledgered, summarized.

:func:`run_search` validates the plan (:func:`prepare_search`: every refusal before a probe trains),
then for each seed drives a :class:`~deeplab.search.bisection.BoundarySearch` (the seed's bisection) or
a :class:`~deeplab.search.bisection.PriorStartSearch` (from ``--start``, or the first seed's boundary)
through :func:`deeplab.search.driver.drive` — the ledger's verdicts first, the rest trained as
:mod:`deeplab.search.probes` — and writes ``search.json``, ``report.md`` and ``search.png``.

Probes are deterministic for a given (model, depth, seed) and settings: ``fit`` seeds everything from
``FitConfig.seed``. A probe stopped part-way (the search killed, SIGTERM, the machine gone) left its
run's ``checkpoints/last.ckpt``; running the search again continues that probe from it, exactly.
"""

from __future__ import annotations

import dataclasses
import re
import sys
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from deeplab.callbacks.verdict import ThresholdJudge, check_metric, check_threshold
from deeplab.config import MAX_SEED, FitConfig
from deeplab.errors import DeeplabError
from deeplab.io import make_writable_folder
from deeplab.search.bisection import BoundarySearch, PriorStartSearch, bisect_trainability, candidate_depths
from deeplab.search.driver import Probed, ProbeRunner, drive, open_runner
from deeplab.search.ledger import LEDGER_FILE, ProbeLedger, probe_settings
from deeplab.search.probes import ProbeRequest, probe_run_name
from deeplab.training.preflight import check_hardware, check_memory
from deeplab.training.resolve import resolve_config

__all__ = [
    "DEFAULT_SEARCH_EPOCHS",
    "SearchPlan",
    "run_search",
    "echo_line",
    "summarize_seeds",
    "mean_field_prediction",
    "prepare_search",
    "depth_multiple",
    "max_depth_line",
    "seed002_reference",
]

#: epochs per probe unless --epochs says otherwise (seed 002: "in 3 epochs")
DEFAULT_SEARCH_EPOCHS = 3


@dataclass
class SearchPlan:
    """One maximum-depth search: a family, a depth range, a criterion, seeds and devices."""

    model: str  # a registered depth family
    upper: int  # deepest candidate depth
    lower: int = 3  # shallowest candidate depth
    step: int = 3  # candidate spacing
    threshold: float = 0.2  # trainable: error < threshold
    metric: str = "test_error"  # test_error | train_error | either
    seeds: tuple[int, ...] = (0,)  # one search per seed
    parallel: int = 1  # probes trained at once (devices)
    out: str = "lightning_logs/search"  # ledger, search.json, plot, report, TensorBoard runs
    training: FitConfig | None = None  # training settings; unset fields come from the model's spec
    verbose: bool = False  # let each probe print the seeds' per-epoch lines
    backend: str = "local"  # local (this machine: in process or a process pool) | ray (deeplab.search.ray_backend)
    ray_address: str | None = None  # --backend ray: the cluster (None: RAY_ADDRESS or a local instance)
    start: int | None = None  # the first seed's prior depth (PriorStartSearch); None: bisection
    prior_from_first_seed: bool = False  # later seeds start at the first seed's boundary (True with `start`)
    #: how each seed was searched before ({seed: start depth, or None for bisection}): a replay of a
    #: recorded search from its ledger (search.py --table --render-only) searches each seed as it was
    starts: dict[int, int | None] | None = None

    def seed_start(self, index: int, first: dict[str, Any] | None) -> int | None:
        """Where seed number ``index`` starts: None (bisection) or a prior depth.

        As :attr:`starts` records, for a replay; else the first seed starts at :attr:`start`, and with a
        prior (or :attr:`prior_from_first_seed`) every later seed starts at the first seed's deepest
        trainable depth (``lower`` when nothing trained)."""
        if self.starts is not None and self.seeds[index] in self.starts:
            return self.starts[self.seeds[index]]
        if index == 0 or first is None:
            return self.start
        if self.start is None and not self.prior_from_first_seed:
            return None
        return first["max_trainable"] if first["max_trainable"] is not None else self.lower


# --------------------------------------------------------------------------- validation
def seed002_reference() -> dict[str, tuple[int, int]]:
    """Seed 002's ``{family: (search upper bound, reported max depth)}`` (empty if unavailable)."""
    try:
        from deeplab.models.depth_family import SEED002_SEARCH
    except ImportError:  # pragma: no cover - the families ship with deeplab
        return {}
    return dict(SEED002_SEARCH)


def depth_multiple(model: str) -> int:
    """What depths of ``model`` must be multiples of (seed 002: 3); DeeplabError for fixed-depth models."""
    from deeplab.models import list_models, model_spec

    spec = model_spec(model)  # unknown name → DeeplabError with close matches
    if not spec.has_depth:
        families = ", ".join(name for name in list_models() if model_spec(name).has_depth)
        raise DeeplabError(f"model {model!r} has a fixed depth; a depth search needs a depth family: {families}")
    return 3 if spec.family == "seed002-depth" else 1


def _check_range(model: str, lower: int, upper: int, step: int) -> None:
    multiple = depth_multiple(model)
    if step <= 0:
        raise DeeplabError(f"--step must be positive, got {step}")
    if multiple > 1:
        for option, value in (("--lower", lower), ("--upper", upper), ("--step", step)):
            if value % multiple:
                raise DeeplabError(
                    f"{option} {value}: {model} counts depth in multiples of {multiple} "
                    f"(3 stages of k/3 convs); give a multiple of {multiple}"
                )
    candidate_depths(lower, upper, step)  # lower > 0, lower ≤ upper, upper on the grid


def prepare_search(plan: SearchPlan) -> FitConfig:
    """Validate ``plan`` (DeeplabError for what the user can fix) and resolve its training settings."""
    check_threshold(plan.threshold)
    check_metric(plan.metric)
    if plan.parallel < 1:
        raise DeeplabError(f"--parallel must be ≥ 1, got {plan.parallel}")
    from deeplab.search.ray_backend import BACKENDS

    if plan.backend not in BACKENDS:
        raise DeeplabError(f"--backend {plan.backend!r} is not one of {', '.join(BACKENDS)}")
    if plan.ray_address is not None and plan.backend != "ray":
        raise DeeplabError("--ray-address goes with --backend ray")
    if not plan.seeds:
        raise DeeplabError("--seeds is empty; give seeds like 0,1,2")
    if len(set(plan.seeds)) != len(plan.seeds):
        raise DeeplabError(f"--seeds repeats a seed: {','.join(map(str, plan.seeds))}")
    for seed in plan.seeds:
        if not 0 <= seed <= MAX_SEED:
            raise DeeplabError(f"--seeds: each seed must be an integer in [0, {MAX_SEED}], got {seed}")
    _check_range(plan.model, plan.lower, plan.upper, plan.step)
    if plan.start is not None:
        PriorStartSearch(plan.lower, plan.upper, plan.step, plan.start)  # on the grid, else one line
    out = Path(plan.out)
    if out.exists() and not out.is_dir():
        raise DeeplabError(f"--out {out} is a file; give a folder for the ledger, report and runs")
    if (out / LEDGER_FILE).exists() and not (out / LEDGER_FILE).is_file():
        raise DeeplabError(f"the ledger {out / LEDGER_FILE} is a folder; move it away or give another --out")
    base = plan.training or FitConfig(model=plan.model)
    from deeplab.config import parse_devices

    if parse_devices(base.devices) != 1:
        raise DeeplabError(
            f"--devices {base.devices}: a search trains each probe on one device; "
            f"use --parallel N to train N probes at once on N devices"
        )
    base = dataclasses.replace(
        base,
        model=plan.model,
        depth=plan.lower,
        epochs=base.epochs if base.epochs is not None else DEFAULT_SEARCH_EPOCHS,
        devices="1",
        grad_norms=False,
        run_figures=False,  # the search draws search.png
        progress_bar=False,
        ckpt_path=None,
        fast_dev_run=False,
        log_dir=str(Path(plan.out) / "runs"),
    )
    resolved = resolve_config(base)
    check_hardware(resolved)
    # Build the shallowest network once, here, so a bad --init or depth fails in one line
    # before any worker starts, not inside the first probe.
    from deeplab.models import create_model
    from deeplab.training.fit import build_model_kwargs

    create_model(resolved.model, **build_model_kwargs(resolved))
    # The deepest probe must fit in memory: found now, not after the shallow probes trained.
    check_memory(resolved.model, build_model_kwargs(dataclasses.replace(resolved, depth=plan.upper)),
                 resolved.batch_size, resolved.accelerator, option="--upper")
    try:
        make_writable_folder(out)
    except OSError as error:
        raise DeeplabError(f"--out {out} is not writable ({error.strerror}); give a folder you can write to") from None
    return resolved


# ------------------------------------------------------------------------------ search
def _format_error(error: float | None) -> str:
    return "   n/a " if error is None else f"{100 * error:6.2f}%"


def _probe_line(entry: dict[str, Any], metric: str) -> str:
    verdict = "trainable" if entry["trainable"] else "untrainable"
    epochs = f"{entry['epochs_run']} epoch{'s' if entry['epochs_run'] != 1 else ''}"
    how = f"diverged at step {entry['diverged_at_step']}" if entry["diverged"] else epochs
    source = "ledger" if entry["reused"] else f"{entry['wall_time_s']:.1f} s"
    if entry.get("resumed_from_step"):
        source += f", continued from step {entry['resumed_from_step']}"
    return (f"probe k={entry['depth']:<4d} seed={entry['seed']:<3d} {metric.replace('_', ' ')} "
            f"{_format_error(entry['error'])}  {verdict:<11s}  ({how}, {source})")


def _probe_entry(probed: Probed) -> dict[str, Any]:
    """A probe as search.json and report.md list it."""
    record = probed.record
    return {
        "depth": int(record["depth"]),
        "seed": int(record["seed"]),
        "error": probed.error,
        "trainable": probed.trainable,
        "epochs_run": record.get("epochs_run"),
        "diverged": bool(record.get("diverged")),
        "diverged_at_step": record.get("diverged_at_step"),
        "wall_time_s": record.get("wall_time_s"),
        "resumed_from_step": record.get("resumed_from_step"),
        "train_error": record.get("train_error"),
        "test_error": record.get("test_error"),
        "epoch_errors": [
            {"epoch": e.get("epoch"), "train_error": e.get("train_error"), "test_error": e.get("test_error")}
            for e in record.get("epoch_errors", [])
        ],
        "core_seconds": core_seconds(record),
        "round": probed.round,
        "reused": probed.reused,
        "run_dir": record.get("run_dir"),
        "process": record.get("process"),
    }


def core_seconds(record: dict[str, Any]) -> float | None:
    """A probe's CPU-core seconds: its wall time × the threads it trained with (``device`` says
    ``cpu (2 cores, 1 threads)``); a GPU probe counts its wall time (one device)."""
    wall = record.get("wall_time_s")
    if wall is None:
        return None
    threads = re.search(r"(\d+) threads?\)", str(record.get("device") or ""))
    return float(wall) * (int(threads.group(1)) if threads else 1)


def bisection_probe_count(plan: SearchPlan, max_trainable: int | None) -> int:
    """How many probes the seed's bisection over the plan's range needs to find the same boundary
    (a monotone network whose deepest trainable depth is ``max_trainable``)."""
    boundary = plan.lower - plan.step if max_trainable is None else max_trainable
    return bisect_trainability(lambda depth: depth <= boundary, plan.lower, plan.upper, plan.step).probes


def _median_low(values: list[int]) -> int:
    return int(statistics.median_low(values))


def summarize_seeds(per_seed: list[dict[str, Any]], lower: int, upper: int, step: int) -> dict[str, Any]:
    """The boundary over seeds, and the median and spread of the seeds that found one.

    ``max_trainable``: the lower median of the per-seed maxima, where a seed
    with nothing trainable counts as ``lower − step`` (seed 002's ``3r = 0``),
    so it is None ("nothing trainable") when most seeds found nothing; likewise
    ``min_untrainable`` with ``upper + step`` for a seed where all trained.
    ``max_trainable_median`` / ``_range`` / ``_spread`` / ``_stdev`` describe
    only the seeds that found a depth (None when none did);
    ``seeds_nothing_trainable`` lists the others.
    """
    below, above = lower - step, upper + step
    maxima = [s["max_trainable"] if s["max_trainable"] is not None else below for s in per_seed]
    minima = [s["min_untrainable"] if s["min_untrainable"] is not None else above for s in per_seed]
    max_low, min_low = _median_low(maxima), _median_low(minima)
    found = [s["max_trainable"] for s in per_seed if s["max_trainable"] is not None]
    return {
        "max_trainable": None if max_low == below else max_low,
        "min_untrainable": None if min_low == above else min_low,
        "max_trainable_median": float(statistics.median(found)) if found else None,
        "max_trainable_spread": max(found) - min(found) if found else None,
        "max_trainable_range": [min(found), max(found)] if found else None,
        "max_trainable_stdev": float(statistics.pstdev(found)) if found else None,
        "seeds_nothing_trainable": [s["seed"] for s in per_seed if s["max_trainable"] is None],
    }


def mean_field_prediction(model: str, init: str | None, sigma_w2: float | None = None,
                          sigma_b2: float | None = None) -> float | None:
    """The mean-field predicted maximum depth (6 ξ_c) of a seed 002 family, or None where the theory
    makes none (another family, batch norm or residual branches, an init it does not cover)."""
    from deeplab.search.prediction import predict_for_model

    try:
        prediction = predict_for_model(model, init or "seed", sigma_w2=sigma_w2, sigma_b2=sigma_b2)
    except DeeplabError:  # not a seed 002 family, or an init the family does not take: no column value
        return None
    depth = prediction.get("predicted_max_depth")
    return None if depth is None else float(depth)


def echo_line(line: str) -> None:
    """Print one progress line now (flushed: a search usually runs under nohup, into a file)."""
    print(line, flush=True)


def run_search(
    plan: SearchPlan,
    runner: ProbeRunner | None = None,
    echo: Callable[[str], None] = echo_line,
    write_outputs: bool = True,
) -> dict[str, Any]:
    """Search every seed of ``plan``; returns (and writes to ``<out>/search.json``) the summary.

    ``runner`` trains a batch of probes (default: in this process, or a
    spawn pool when ``plan.parallel > 1``); tests pass a fake one.
    """
    base = prepare_search(plan)
    settings = probe_settings(base)
    ledger = _open_ledger(Path(plan.out), echo)
    judge = ThresholdJudge(plan.threshold, plan.metric)
    started = time.perf_counter()
    per_seed: list[dict[str, Any]] = []
    probes: list[dict[str, Any]] = []
    with open_runner(plan.parallel, plan.backend, plan.ray_address, base.accelerator in ("auto", "gpu", "cuda"),
                     runner, echo, stopped_advice=lambda: f"{len(ledger)} finished probe(s) are kept in "
                                                          f"{ledger.path}; run the same command again to resume",
                     ) as run_probes:
        for line in describe_plan(plan, base, ledger):
            echo(line)
        for index, seed in enumerate(plan.seeds):
            seed_summary, seed_probes = _search_seed(plan, base, settings, ledger, judge, run_probes, echo, seed,
                                                     plan.seed_start(index, per_seed[0] if per_seed else None))
            per_seed.append(seed_summary)
            probes.extend(seed_probes)
    summary = _search_summary(plan, base, settings, per_seed, probes, ledger, time.perf_counter() - started)
    if write_outputs:
        from deeplab.search.report import write_search_outputs

        write_search_outputs(summary, Path(plan.out))
    return summary


def seconds_per_layer(ledger: ProbeLedger) -> float | None:
    """A probe's measured cost per layer in this ledger (the median over its probes that ran all their
    epochs; a probe's time grows about linearly with depth), or None before any."""
    rates = [r["wall_time_s"] / r["depth"] for r in ledger.records()
             if r.get("wall_time_s") and r.get("depth") and not r.get("diverged") and not r.get("resumed_from_step")]
    return statistics.median(rates) if rates else None


def _duration(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 5400 else f"{seconds / 60:.0f} min" if seconds >= 90 else \
        f"{seconds:.0f} s"


def describe_plan(plan: SearchPlan, base: FitConfig, ledger: ProbeLedger) -> list[str]:
    """The search's plan in a few lines, before anything trains: what, where, how judged, how long."""
    depths = candidate_depths(plan.lower, plan.upper, plan.step)
    how = "bisection" if plan.start is None else f"a walk from k = {plan.start}"
    later = " (later seeds from the first seed's boundary)" if plan.start is not None or plan.prior_from_first_seed \
        else ""
    probes = bisect_trainability(lambda k: k <= depths[len(depths) // 2], plan.lower, plan.upper, plan.step).probes
    lines = [f"search {plan.model} (init {base.init or 'seed'}) on {base.dataset}: depths {plan.lower}…{plan.upper} "
             f"(step {plan.step}, {len(depths)} candidates), seeds {', '.join(map(str, plan.seeds))}, by {how}{later}",
             f"each probe: {base.epochs} epoch(s), batch {base.batch_size}, {base.optimizer} lr {base.lr:g}; trainable: "
             f"{plan.metric.replace('_', ' ')} < {plan.threshold:g}; {plan.parallel} at a time"]
    pace = seconds_per_layer(ledger)
    if pace:
        middle = depths[len(depths) // 2]
        lines.append(f"expected: about {probes} probes a seed by bisection (fewer from a good prior), "
                     f"~{_duration(pace * middle)} each near k = {middle} ({pace:.1f} s a layer, measured on this "
                     f"ledger's {len(ledger)} probe(s)); ETA ~{_duration(pace * middle * probes * len(plan.seeds) / plan.parallel)}")
    else:
        lines.append(f"expected: about {probes} probes a seed by bisection (fewer from a good prior); an ETA after "
                     f"the first probe")
    return lines


def _open_ledger(out: Path, echo: Callable[[str], None]) -> ProbeLedger:
    out.mkdir(parents=True, exist_ok=True)
    ledger = ProbeLedger(out / LEDGER_FILE)
    if ledger.skipped_lines:
        echo(f"ledger: ignored {ledger.skipped_lines} unreadable line(s) of {ledger.path} (a probe cut short)")
    if ledger.conflicts:
        pairs = ", ".join(f"k={depth} seed {seed}" for depth, seed in ledger.conflicts)
        echo(f"ledger: {len(ledger.conflicts)} probe(s) recorded twice with different results ({pairs}); "
             f"the later record counts")
    if len(ledger):
        echo(f"ledger: {len(ledger)} finished probe(s) in {ledger.path}; matching ones are not trained again")
    return ledger


def _search_seed(plan: SearchPlan, base: FitConfig, settings: dict[str, Any], ledger: ProbeLedger,
                 judge: ThresholdJudge, run_probes: ProbeRunner, echo: Callable[[str], None], seed: int,
                 start: int | None) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """One seed's search (bisection, or outward from ``start``), on the ledger's verdicts first."""
    known_records = ledger.records_for(settings, seed)
    known = {depth: judge(record)[1] for depth, record in known_records.items()}
    strategy: BoundarySearch | PriorStartSearch = (
        BoundarySearch(plan.lower, plan.upper, plan.step, plan.parallel, known=known) if start is None
        else PriorStartSearch(plan.lower, plan.upper, plan.step, start, plan.parallel, known=known))

    def request(depth: int) -> ProbeRequest:
        config = dataclasses.replace(base, depth=depth, seed=seed,
                                     run_name=probe_run_name(plan.model, base.init, depth, seed))
        return ProbeRequest(config=config.to_dict(), settings=settings, verbose=plan.verbose,
                            threshold=plan.threshold, metric=plan.metric,
                            progress=plan.parallel == 1 and plan.backend == "local" and sys.stderr.isatty())

    pace = seconds_per_layer(ledger)

    def announce(requests: Sequence[ProbeRequest]) -> None:
        for todo in requests:
            expected = f", ~{_duration(pace * todo.depth)} expected" if pace else ""
            echo(f"probe k={todo.depth:<4d} seed={todo.seed:<3d} started{expected}")

    probed = drive(strategy, request, ledger, judge, run_probes, point_of=lambda record: int(record["depth"]),
                   echo=lambda p: echo(_probe_line(_probe_entry(p), plan.metric)), started=announce)
    result = strategy.result()
    for depth in result.outcomes:  # the ledger's verdicts the search took as they were
        if depth not in probed:
            probed[depth] = Probed(known_records[depth], *judge(known_records[depth]), round=0, reused=True)
            echo(_probe_line(_probe_entry(probed[depth]), plan.metric))
    seed_probes = [_probe_entry(probed[depth]) for depth in result.outcomes]
    summary = {
        "seed": seed,
        "method": "bisection" if start is None else "prior",
        "start": start,
        "max_trainable": result.max_trainable,
        "min_untrainable": result.min_untrainable,
        "rounds": len(result.rounds),
        "probes": result.probes,
        "bisection_probes": bisection_probe_count(plan, result.max_trainable),
        "core_hours": round(sum(p["core_seconds"] or 0.0 for p in seed_probes) / 3600, 3),
        "probes_trained": sum(not p["reused"] for p in seed_probes),
        "non_monotone": [{"untrainable_depth": bad, "trainable_depth": good} for bad, good in result.non_monotone],
    }
    how = "bisection" if start is None else f"from k={start}"
    echo(f"seed {seed}: max trainable depth {_depth_text(result.max_trainable)}, "
         f"min untrainable depth {_depth_text(result.min_untrainable)} ({how}: {_count(result.probes, 'probe')}, "
         f"{summary['probes_trained']} trained, {_count(len(result.rounds), 'round')}; bisection needs "
         f"{summary['bisection_probes']} for this boundary)")
    return summary, seed_probes


def _search_summary(plan: SearchPlan, base: FitConfig, settings: dict[str, Any], per_seed: list[dict[str, Any]],
                    probes: list[dict[str, Any]], ledger: ProbeLedger, seconds: float) -> dict[str, Any]:
    """search.json's content."""
    reference = seed002_reference().get(plan.model)
    trained = sum(not p["reused"] for p in probes)
    return {
        "model": plan.model,
        "init": base.init or "seed",
        "dataset": base.dataset,
        "lower": plan.lower,
        "upper": plan.upper,
        "step": plan.step,
        "threshold": plan.threshold,
        "metric": plan.metric,
        "epochs": base.epochs,
        "min_depth": depth_multiple(plan.model),  # the family's shallowest depth
        "seeds": list(plan.seeds),
        "parallel": plan.parallel,
        "backend": plan.backend,
        "start": plan.start,
        "prior_from_first_seed": plan.prior_from_first_seed,
        **summarize_seeds(per_seed, plan.lower, plan.upper, plan.step),
        "per_seed": per_seed,
        "non_monotone": [dict(pair, seed=s["seed"]) for s in per_seed for pair in s["non_monotone"]],
        "seed_reported_max": reference[1] if reference else None,
        "mean_field_predicted_max": mean_field_prediction(plan.model, base.init, base.sigma_w2, base.sigma_b2),
        "rounds": sum(s["rounds"] for s in per_seed),
        "probes_trained": trained,
        "probes_reused": len(probes) - trained,
        "wall_time_s": round(seconds, 3),
        "training": settings,
        "probes": probes,
        "ledger": str(ledger.path),
    }


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


def _depth_text(depth: int | None) -> str:
    return "none" if depth is None else str(depth)


def max_depth_line(summary: dict[str, Any]) -> str:
    """The search's verdict in one line (the script's last): ``max trainable depth: K``, with why when
    it is not a boundary found inside the range."""
    if summary["max_trainable"] is None:
        return f"max trainable depth: none (below {summary['lower']})"
    if summary["min_untrainable"] is None:
        return f"max trainable depth: {summary['max_trainable']} (every depth up to --upper trained)"
    return f"max trainable depth: {summary['max_trainable']}"
