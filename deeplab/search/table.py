"""``scripts/search.py --table``: seed 002's seven families, searched with the seed's upper bounds.

One search per (family, init) in ``<out>/<family>/<init>/`` (each with its own
ledger, so an interrupted table resumes), then ``<out>/table.md`` beside the
seed's reported maxima (cnn_tanh 3, cnn_tanh_newinit 84, cnn_elu 93,
cnn_elu_bn 156, resnet_elu 447, cnn_tanh_bn_oldinit 96, resnet_elu_nobn 12)
and, per init, the mean-field predicted depth where
:func:`deeplab.search.prediction.predict_for_model` gives one ("—" otherwise).
An init a family cannot take (``fixup`` on a plain net) gets "n/a".

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
from deeplab.search.report import SEARCH_JSON, TABLE_JSON, TABLE_MD, format_table
from deeplab.search.runner import (
    ProbeRunner,
    SearchPlan,
    echo_line,
    mean_field_prediction,
    run_search,
    seed002_reference,
)

__all__ = ["run_table", "init_applies"]

#: what a cell says for a family × init this folder has no search for yet
NOT_MEASURED = "not yet measured"


def _earlier_search(folder: Path) -> dict[str, Any] | str:
    """The summary a previous ``--table`` run left in ``folder`` (without its probes), else
    :data:`NOT_MEASURED`."""
    path = folder / SEARCH_JSON
    try:
        summary = json.loads(path.read_text())
    except FileNotFoundError:
        return NOT_MEASURED
    except (OSError, ValueError) as error:
        raise DeeplabError(f"cannot read {path} ({error}); move it away to re-measure that family") from None
    return {key: value for key, value in summary.items() if key != "probes"}


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
    return True


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
) -> dict[str, Any]:
    """Search every family × init; write ``table.md`` and ``table.json``; return the table data.

    The first seed of each family is found by the seed's bisection, or with ``start="seed"`` from the
    notebook's own number (:class:`~deeplab.search.bisection.PriorStartSearch`); every later seed starts at
    the first seed's boundary."""
    if start not in (None, "seed"):
        raise DeeplabError(f"--start {start}: with --table give --start seed (each family from the notebook's "
                           f"number) or no --start (the first seed by bisection)")
    reference = seed002_reference()
    if not reference:
        raise DeeplabError("the seed 002 families (deeplab.models.depth_family) are not available")
    families = list(families or reference)
    for family in families:
        if family not in reference:
            raise DeeplabError(f"--families: {family!r} is not a seed 002 family; choose from {', '.join(reference)}")
    if not inits:
        raise DeeplabError("--inits is empty; give schemes like seed,delta_orthogonal")
    applies = {(family, init): init_applies(family, init) for family in families for init in inits}

    out = Path(out)
    rows: list[dict[str, Any]] = []
    for family in reference:
        upper, reported = reference[family]
        row: dict[str, Any] = {"family": family, "upper": upper, "seed_reported_max": reported,
                               "searches": {}, "mean_field": {}}
        for init in inits:
            row["mean_field"][init] = mean_field_prediction(family, init)
            if family not in families:
                row["searches"][init] = _earlier_search(out / family / init)
                continue
            if not applies[(family, init)]:
                row["searches"][init] = None
                echo(f"[{family} / {init}] n/a: {family} has no residual branches for init {init!r}")
                continue
            base = training or FitConfig(model=family)
            plan = SearchPlan(
                model=family, upper=upper, lower=3, step=3, threshold=threshold, metric=metric,
                seeds=tuple(seeds), parallel=parallel, out=str(out / family / init),
                training=dataclasses.replace(base, model=family, init=None if init == "seed" else init),
                backend=backend, ray_address=ray_address,
                start=reported if start == "seed" else None, prior_from_first_seed=True,
            )
            summary = run_search(plan, runner=runner, echo=lambda line, f=family, i=init: echo(f"[{f} / {i}] {line}"))
            row["searches"][init] = {key: value for key, value in summary.items() if key != "probes"}
        rows.append(row)

    table = format_table(rows, list(inits))
    table += ("\nk: the deepest depth whose probe reached the threshold; several seeds: median (min–max). "
              "Probes: `<family>/<init>/probes.jsonl`.\n")
    atomic_write(out / TABLE_MD, lambda file: file.write(table.encode()))
    data = {"inits": list(inits), "seeds": list(seeds), "threshold": threshold, "metric": metric, "rows": rows,
            "table": str(out / TABLE_MD)}
    atomic_write_json(out / TABLE_JSON, data)
    return data
