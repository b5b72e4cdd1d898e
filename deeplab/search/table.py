"""``scripts/search.py --table``: seed 002's seven families, searched with the seed's upper bounds.

One search per (family, init) in ``<out>/<family>/<init>/`` (each with its own
ledger, so an interrupted table resumes), then ``<out>/table.md`` beside the
seed's reported maxima (cnn_tanh 3, cnn_tanh_newinit 84, cnn_elu 93,
cnn_elu_bn 156, resnet_elu 447, cnn_tanh_bn_oldinit 96, resnet_elu_nobn 12)
and, per init, the mean-field predicted depth where
:func:`deeplab.search.prediction.predict_for_model` gives one ("—" otherwise).
An init a family cannot take (``fixup`` on a plain net, ``tat`` with skips or batch norm) gets "n/a".

The table accumulates: every family is a row, and a family not searched by
this command (``--families`` picks some) shows the search its folder already
holds (its ``search.json``), or "not yet measured". So
``search.py --table --families cnn_tanh --seeds 0,1,2 --out reports/seed002``
on one machine and ``--families resnet_elu_nobn`` on another grow one table,
and every probe stays in a committed ledger that can be rerun and checked.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Callable, Sequence

from deeplab.config import FitConfig
from deeplab.errors import DeeplabError
from deeplab.io import atomic_write, atomic_write_json
from deeplab.search.driver import ProbeRunner
from deeplab.search.ledger import LEDGER_FILE, ProbeLedger
from deeplab.search.report import SEARCH_JSON, TABLE_JSON, TABLE_MD, format_table
from deeplab.search.runner import SearchPlan, echo_line, mean_field_prediction, run_search, seed002_reference

__all__ = ["run_table", "init_applies", "replay_search", "cell_data", "write_table", "NOT_MEASURED"]

#: what a cell says for a family × init this folder has no search for yet
NOT_MEASURED = "not yet measured"
#: the summary keys a table cell keeps (what format_depth_cell reads, and the seeds' coverage)
_CELL_KEYS = ("seeds", "lower", "upper", "threshold", "metric", "epochs", "max_trainable", "min_untrainable",
              "max_trainable_median", "max_trainable_range", "max_trainable_spread", "seeds_nothing_trainable",
              "non_monotone", "training")
_SEED_KEYS = ("seed", "method", "start", "max_trainable", "min_untrainable", "probes", "bisection_probes")


def init_applies(family: str, init: str) -> bool:
    """Whether ``family`` can be built with ``init`` (DeeplabError for an unknown init)."""
    import deeplab.models.inits as inits
    from deeplab.models.depth_family import FAMILY_CONFIGS

    if init not in inits.SCHEMES:
        inits.check_scheme(init, residual=True)  # raises with the list of schemes
    try:
        inits.check_scheme(init, residual=FAMILY_CONFIGS[family].residual, family=family)
    except DeeplabError:
        return False
    return not (init in inits.VANILLA_SCHEMES and FAMILY_CONFIGS[family].batch_norm)  # TAT: no normalization


def run_table(
    out: str | Path,
    *,
    families: Sequence[str] | None = None,
    inits: Sequence[str] = ("seed",),
    seeds: Sequence[int] = (0,),
    threshold: float = 0.2,
    metric: str = "test_error",
    parallel: int = 1,
    training: FitConfig | None = None,
    runner: ProbeRunner | None = None,
    echo: Callable[[str], None] = echo_line,
    backend: str = "local",
    ray_address: str | None = None,
    start: str | None = None,
    render_only: bool = False,
) -> dict[str, Any]:
    """Search every family × init; write ``table.md`` and ``table.json``; return the table data.

    The first seed of each family is found by the seed's bisection, or with ``start="seed"`` from the
    notebook's own number (:class:`~deeplab.search.bisection.PriorStartSearch`); every later seed starts at
    the first seed's boundary. A family this command does not search (``families`` picks some;
    ``render_only``: none) is replayed from its folder's ledger as its ``search.json`` recorded it, training
    nothing — so the table is always what the committed ledgers say."""
    reference = seed002_reference()
    if not reference:
        raise DeeplabError("the seed 002 families (deeplab.models.depth_family) are not available")
    if start not in (None, "seed"):
        raise DeeplabError(f"--start {start}: with --table give --start seed (each family from the notebook's "
                           f"number) or no --start (the first seed by bisection)")
    if families is not None and not families:
        raise DeeplabError("--families is empty; give family names (or drop --families for all seven)")
    families = list(families or reference)
    for family in families:
        if family not in reference:
            raise DeeplabError(f"--families: {family!r} is not a seed 002 family; choose from {', '.join(reference)}")
    if not inits:
        raise DeeplabError("--inits is empty; give schemes like seed,delta_orthogonal")
    out = Path(out)
    rows: list[dict[str, Any]] = []
    for family, (upper, reported) in reference.items():
        row: dict[str, Any] = {"family": family, "upper": upper, "seed_reported_max": reported,
                               "searches": {}, "mean_field": {}}
        for init in inits:
            row["mean_field"][init] = mean_field_prediction(family, init)
            tag = lambda line, f=family, i=init: echo(f"[{f} / {i}] {line}")  # noqa: E731
            if not init_applies(family, init):
                row["searches"][init] = None
                if family in families and not render_only:
                    echo(f"[{family} / {init}] n/a: {family} cannot take init {init!r}")
                continue
            folder = out / family / init
            if family in families and not render_only:
                base = training or FitConfig(model=family)
                plan = SearchPlan(
                    model=family, upper=upper, lower=3, step=3, threshold=threshold, metric=metric,
                    seeds=tuple(seeds), parallel=parallel, out=str(folder),
                    training=dataclasses.replace(base, model=family, init=None if init == "seed" else init),
                    backend=backend, ray_address=ray_address,
                    start=reported if start == "seed" else None, prior_from_first_seed=True,
                )
                summary: dict[str, Any] | str = run_search(plan, runner=runner, echo=tag)
            else:
                summary = replay_search(folder, family, upper, echo=tag)
            row["searches"][init] = summary if isinstance(summary, str) else cell_data(summary, folder)
        rows.append(row)
    return write_table(out, rows, list(inits), threshold, metric)


def replay_search(folder: Path, family: str, upper: int, echo: Callable[[str], None] = echo_line) -> dict[str, Any] | str:
    """The search ``folder``'s ``search.json`` recorded, replayed from its ledger (nothing trained: a probe
    missing from the ledger is one line). Without one (a search still running): the seeds its ledger already
    completes (:func:`_seeds_so_far`), else :data:`NOT_MEASURED`, with the probes so far."""
    ledger = folder / LEDGER_FILE
    try:
        recorded = json.loads((folder / SEARCH_JSON).read_text())
    except FileNotFoundError:
        count = len(ProbeLedger(ledger)) if ledger.is_file() else 0
        if count:
            probes = f"{count} probe{'s' if count != 1 else ''} so far"
            done = _seeds_so_far(folder, family, upper)
            return f"in progress: {done} ({probes})" if done else f"{NOT_MEASURED} ({probes})"
        return NOT_MEASURED
    except (OSError, ValueError) as error:
        raise DeeplabError(f"cannot read {folder / SEARCH_JSON} ({error}); move it away to re-measure that family") from None
    starts = {int(seed["seed"]): (seed.get("start") if seed.get("method") == "prior" else None)
              for seed in recorded["per_seed"]}
    plan = SearchPlan(model=family, upper=upper, lower=recorded["lower"], step=recorded["step"],
                      threshold=recorded["threshold"], metric=recorded["metric"], seeds=tuple(recorded["seeds"]),
                      parallel=recorded.get("parallel", 1), out=str(folder), starts=starts,
                      training=FitConfig(**recorded["training"]))

    try:
        replayed = run_search(plan, runner=_ledger_only, echo=lambda line: None, write_outputs=False)
    except _NotInLedger as missing:
        raise DeeplabError(f"{folder}: probe k={missing.depth} seed={missing.seed} is not in its ledger; run the "
                           f"table without --render-only to train it") from None
    summary = _with_history(replayed, recorded)
    from deeplab.search.report import write_search_outputs

    write_search_outputs(summary, folder)  # the same search, its derived fields (and their wording) current
    return summary


class _NotInLedger(Exception):
    """A replay needs a probe the ledger does not hold yet."""

    def __init__(self, depth: int, seed: int):
        self.depth, self.seed = depth, seed
        super().__init__(f"k={depth} seed={seed}")


def _ledger_only(requests: Sequence[Any]) -> Any:
    """The probe runner of a replay: every verdict comes from the ledger, so any probe asked for is missing."""
    for request in requests:
        raise _NotInLedger(request.depth, request.seed)
    return iter(())


def _seeds_so_far(folder: Path, family: str, upper: int, seeds: Sequence[int] = (0, 1, 2)) -> str:
    """For a table search still running (no ``search.json`` yet): the seeds whose search the ledger already
    completes, as the table searches them — the first seed by bisection or from the notebook's number,
    each later seed from the first seed's boundary — e.g. ``seed 0: 147, seed 1: ≥ 450``; "" if none."""
    reference = seed002_reference()
    init = folder.name
    training = FitConfig(model=family, init=None if init == "seed" else init)

    def replay(seed: int, start: int | None) -> dict[str, Any] | None:
        plan = SearchPlan(model=family, upper=upper, lower=3, step=3, seeds=(seed,), out=str(folder),
                          training=training, starts={seed: start})
        try:
            return run_search(plan, runner=_ledger_only, echo=lambda line: None, write_outputs=False)["per_seed"][0]
        except _NotInLedger:
            return None

    first = replay(seeds[0], None) or replay(seeds[0], reference[family][1])
    if first is None:
        return ""
    found = [(seeds[0], first)]
    for seed in seeds[1:]:
        later = replay(seed, first["max_trainable"] if first["max_trainable"] is not None else 3)
        if later is not None:
            found.append((seed, later))

    def text(result: dict[str, Any]) -> str:
        depth = result["max_trainable"]
        return "none" if depth is None else (f"≥ {depth}" if depth >= upper else str(depth))

    return ", ".join(f"seed {seed}: {text(result)}" for seed, result in found)


#: what only the run of a search knows (how it trained), kept from its search.json when it is replayed
_HISTORY = ("parallel", "backend", "rounds", "probes_trained", "probes_reused", "wall_time_s")
_SEED_HISTORY = ("rounds", "probes_trained")
_PROBE_HISTORY = ("round", "reused")


def _with_history(replayed: dict[str, Any], recorded: dict[str, Any]) -> dict[str, Any]:
    """A replayed summary with the recorded run's history: its rounds, the probes it trained rather than
    read, its time (a replay trains nothing in no time; that is not how the boundary was measured)."""
    summary = {**replayed, **{key: recorded[key] for key in _HISTORY if key in recorded}}
    seeds = {seed["seed"]: seed for seed in recorded.get("per_seed", [])}
    summary["per_seed"] = [{**seed, **{key: seeds[seed["seed"]][key] for key in _SEED_HISTORY
                                       if key in seeds.get(seed["seed"], {})}} for seed in replayed["per_seed"]]
    probes = {(p["seed"], p["depth"]): p for p in recorded.get("probes", [])}
    summary["probes"] = [{**probe, **{key: probes[(probe["seed"], probe["depth"])][key] for key in _PROBE_HISTORY
                                      if key in probes.get((probe["seed"], probe["depth"]), {})}}
                         for probe in replayed["probes"]]
    return summary


def cell_data(summary: dict[str, Any], folder: Path) -> dict[str, Any]:
    """What the table keeps of a search: the cell's numbers and, per seed, what it stands on — how its
    boundary was found, the probes it used, and every probe of that seed in the ledger with their
    core-hours (what the cell cost); probes of the folder's ledger no seed's search is about are strays."""
    from deeplab.search.ledger import probe_key
    from deeplab.search.runner import core_seconds

    ledger = ProbeLedger(folder / LEDGER_FILE)
    settings = summary["training"]
    cell = {key: summary.get(key) for key in _CELL_KEYS}
    cell["per_seed"] = []
    used: set[str] = set()
    for seed in summary["per_seed"]:
        records = ledger.records_for(settings, seed["seed"])
        used.update(probe_key(settings, depth, seed["seed"]) for depth in records)
        cell["per_seed"].append({**{key: seed.get(key) for key in _SEED_KEYS}, "ledger_probes": len(records),
                                 "core_hours": round(sum(core_seconds(r) or 0.0 for r in records.values()) / 3600, 3)})
    cell["strays"] = sorted(({"depth": r["depth"], "seed": r["seed"], "test_error": r.get("test_error"),
                              "settings_differ": probe_key(r["settings"], 0, 0) != probe_key(settings, 0, 0)}
                             for r in ledger.records() if probe_key(r["settings"], r["depth"], r["seed"]) not in used),
                            key=lambda r: (r["seed"], r["depth"]))
    return cell


def write_table(out: Path, rows: list[dict[str, Any]], inits: list[str], threshold: float, metric: str) -> dict[str, Any]:
    """``table.md`` (the table, what each cell stands on, stray probes) and ``table.json``, both
    functions of the ledgers alone (a render reproduces them byte for byte)."""
    from deeplab.search.report import format_coverage

    table = format_table(rows, inits)
    table += ("\nk: the deepest depth whose probe reached the threshold; several seeds: median (min–max). "
              "Probes: `<family>/<init>/probes.jsonl`.\n")
    table += format_coverage(rows, inits)
    atomic_write(out / TABLE_MD, lambda file: file.write(table.encode()))
    data = {"inits": inits, "threshold": threshold, "metric": metric, "rows": rows, "table": str(out / TABLE_MD)}
    atomic_write_json(out / TABLE_JSON, {key: value for key, value in data.items() if key != "table"})
    return data
