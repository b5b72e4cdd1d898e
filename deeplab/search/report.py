"""What a search leaves in ``--out``: ``search.json``, ``search.png``, ``report.md``; and the seven-family table.

``search.png``: each probe's error against depth (one marker series per
seed; hollow markers for diverged probes, drawn at their last measured error
or at 1.0), the threshold as a dashed line and the boundary as a dotted one.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

from deeplab.io import atomic_write, atomic_write_json
from deeplab.reporting.tables import markdown_table

__all__ = [
    "SEARCH_JSON", "SEARCH_PNG", "REPORT_MD", "TABLE_MD", "TABLE_JSON",
    "write_search_outputs", "plot_search", "search_figure", "format_report", "format_table", "format_depth_cell",
    "format_coverage",
]

SEARCH_JSON = "search.json"
SEARCH_PNG = "search.png"
REPORT_MD = "report.md"
TABLE_MD = "table.md"
TABLE_JSON = "table.json"


def write_search_outputs(summary: dict[str, Any], out: str | Path) -> None:
    out = Path(out)
    summary["plot"] = str(out / SEARCH_PNG)
    summary["report"] = str(out / REPORT_MD)
    plot_search(summary, out / SEARCH_PNG)
    text = format_report(summary)
    atomic_write(out / REPORT_MD, lambda file: file.write(text.encode()))
    atomic_write_json(out / SEARCH_JSON, summary)


def _percent(error: float | None) -> str:
    return "—" if error is None else f"{100 * error:.2f}%"


def _depth(depth: int | None) -> str:
    return "none" if depth is None else str(depth)


def plot_search(summary: dict[str, Any], path: str | Path) -> None:
    from deeplab.reporting.figures import pyplot

    plt = pyplot()

    figure = search_figure(summary)

    def save(file: Any) -> None:
        figure.savefig(file, format="png")

    atomic_write(path, save)
    plt.close(figure)


def search_figure(summary: dict[str, Any]) -> Any:
    """The matplotlib figure of :func:`plot_search` (error against depth per seed, threshold,
    boundary, seed 002's reported depth and the mean-field prediction)."""
    from deeplab.reporting.figures import pyplot

    plt = pyplot()
    figure, axes = plt.subplots(figsize=(7, 4.2), dpi=120)
    markers = "os^Dv<>ph*"
    for index, seed in enumerate(summary["seeds"]):
        probes = sorted((p for p in summary["probes"] if p["seed"] == seed), key=lambda p: p["depth"])
        if not probes:
            continue
        marker = markers[index % len(markers)]
        depths = [p["depth"] for p in probes]
        errors = [p["error"] if p["error"] is not None else 1.0 for p in probes]
        # (shrinking markers: seeds with the same errors stay visible under each other)
        (line,) = axes.plot(depths, errors, marker=marker, markersize=max(3.0, 7.0 - 1.3 * (index % 4)),
                            linestyle=":", linewidth=0.8, label=f"seed {seed}")
        diverged = [(p["depth"], p["error"] if p["error"] is not None else 1.0) for p in probes if p["diverged"]]
        if diverged:
            axes.scatter(*zip(*diverged), s=90, facecolors="none", edgecolors="red", zorder=3,
                         label="diverged (NaN/inf loss)" if index == 0 else None)
    axes.axhline(summary["threshold"], color="black", linestyle="--", linewidth=1,
                 label=f"threshold {summary['threshold']:g}")
    if summary.get("max_trainable") is not None:
        axes.axvline(summary["max_trainable"], color="green", linestyle=":", linewidth=1,
                     label=f"max trainable k = {summary['max_trainable']}")
    reported = summary.get("seed_reported_max")
    if reported is not None and summary["lower"] <= reported <= summary["upper"]:
        axes.axvline(summary["seed_reported_max"], color="gray", linestyle="-.", linewidth=0.8,
                     label=f"seed 002 reported k = {summary['seed_reported_max']}")
    predicted = summary.get("mean_field_predicted_max")
    if predicted is not None:
        if math.isfinite(predicted) and predicted <= 1.5 * summary["upper"]:
            axes.axvline(predicted, color="purple", linestyle=(0, (5, 2, 1, 2)), linewidth=1,
                         label=f"mean field 6 ξ_c ≈ {predicted:.1f}" if predicted < 10 else f"mean field 6 ξ_c ≈ {predicted:.0f}")
        else:  # critical (∞) or far beyond the range: say so instead of stretching the axis
            axes.plot([], [], color="purple", linestyle=(0, (5, 2, 1, 2)), linewidth=1,
                      label=f"mean field 6 ξ_c = {_mean_field_text(predicted)} (beyond the plot)")
    from deeplab.reporting.figures import fit_text, integer_ticks

    integer_ticks(axes.xaxis)  # depths are integers: no ticks at 3.5 (even for a single depth)
    axes.set_xlabel("depth k")
    epochs = f"{summary['epochs']} epoch{'s' if summary['epochs'] != 1 else ''}"
    axes.set_ylabel(f"{summary['metric'].replace('_', ' ')} after {epochs}")
    axes.set_ylim(0, 1.02)
    dataset = f" · {summary['dataset']}" if summary.get("dataset") else ""
    axes.set_title(f"{summary['model']}{dataset} (init {summary['init']}): trainability against depth")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=7, loc="best")
    return fit_text(figure)  # (titles wrapped to the canvas, tight layout)


def format_report(summary: dict[str, Any]) -> str:
    s = summary
    lines = [
        f"# Maximum trainable depth: {s['model']}",
        "",
        f"Depths {s['lower']}…{s['upper']} in steps of {s['step']}; a depth is trainable when its "
        f"{s['metric'].replace('_', ' ')} after {s['epochs']} epoch(s) is below {s['threshold']:g} and its loss "
        f"never turned NaN/inf. Dataset {s['dataset']}, init {s['init']}, seeds "
        f"{', '.join(map(str, s['seeds']))}; {s['parallel']} probe(s) at a time.",
        "",
        f"- **max trainable depth: {format_depth_cell(s) if len(s['seeds']) > 1 else _depth(s['max_trainable'])}**"
        + _seeds_text(s),
        (f"- min untrainable depth: {_depth(s['min_untrainable'])}" if len(s["seeds"]) < 2 else
         "- min untrainable depth per seed: " + ", ".join(f"{_depth(seed['min_untrainable'])} (seed {seed['seed']})"
                                                         for seed in s["per_seed"])),
    ]
    if s.get("seed_reported_max") is not None:
        lines.append(f"- seed 002 reported: {s['seed_reported_max']}")
    if s.get("mean_field_predicted_max") is not None:
        lines.append(f"- mean-field predicted depth: {_mean_field_text(s['mean_field_predicted_max'])}")
    if s["max_trainable"] is None:
        lines.append(f"- not even depth {s['lower']} trains: " + (
            f"lower --lower (the family starts at {s.get('min_depth', 1)}), or change the training settings"
            if s["lower"] > s.get("min_depth", 1) else
            f"{s['lower']} is this family's shallowest network; change the training settings (--lr, --init, --epochs)"))
    if s["min_untrainable"] is None:
        lines.append(f"- every depth up to {s['upper']} trains: the boundary lies above; raise --upper")
    lines += [
        f"- {s['probes_trained']} probe(s) trained, {s['probes_reused']} read from the ledger, "
        f"{s['rounds']} round(s), {s['wall_time_s']:.0f} s",
        "",
        f"![error against depth]({SEARCH_PNG})",
        "",
        "## Per seed",
        "",
        markdown_table(["seed", "found by", "max trainable", "min untrainable", "probes", "bisection's probes",
                        "rounds", "core-hours"],
                       [[seed["seed"], _method_text(seed), _depth(seed["max_trainable"]),
                         _depth(seed["min_untrainable"]), seed["probes"], seed.get("bisection_probes", "—"),
                         seed["rounds"], _hours(seed.get("core_hours"))] for seed in s["per_seed"]],
                       align="rlrrrrrr"),
        "",
        "Found by: the seed's bisection over the whole range, or a walk from a prior depth (the notebook's "
        "number, or the first seed's boundary) to a trainable k and an untrainable k + step. Bisection's "
        "probes: what the seed's bisection over the same range needs for the same boundary. Probes include "
        "those read from the ledger.",
    ]
    lines += [
        "",
        "## Non-monotone pairs",
        "",
    ]
    if s["non_monotone"]:
        lines.append("Trainable at a depth deeper than one that did not train (same seed) — a finding about "
                     "these networks, not a fault of the search:")
        lines.append("")
        for pair in s["non_monotone"]:
            lines.append(f"- seed {pair['seed']}: k = {pair['untrainable_depth']} untrainable, "
                         f"k = {pair['trainable_depth']} trainable")
        lines += ["", "The edge is ragged, so the boundary depends on where a search looks: the pair each seed's "
                      "search found is in the table above, and a search started elsewhere (bisection, or "
                      "another prior) could have found another pair that meets the criterion as well."]
    else:
        lines.append("None seen among the probes.")
    lines += [
        "",
        "## Probes",
        "",
        "| seed | round | depth | train error | test error | trainable | epochs | diverged | time (s) |",
        "| ---: | ---: | ---: | ---: | ---: | :---: | ---: | :---: | ---: |",
    ]
    for p in sorted(s["probes"], key=lambda p: (p["seed"], p["depth"])):
        time_text = "—" if p["wall_time_s"] is None else f"{p['wall_time_s']:.1f}"
        if p["reused"]:
            time_text += " (ledger)"
        diverged = f"step {p['diverged_at_step']}" if p["diverged"] else "no"
        lines.append(
            f"| {p['seed']} | {p['round']} | {p['depth']} | {_percent(p['train_error'])} | {_percent(p['test_error'])} "
            f"| {'yes' if p['trainable'] else 'no'} | {p['epochs_run']} | {diverged} | {time_text} |"
        )
    lines += ["", f"Probes ledger: `{Path(s['ledger']).name}`; TensorBoard runs under `runs/`.", ""]
    return "\n".join(lines)


def _pair_text(seed: dict[str, Any], search: dict[str, Any]) -> str:
    if seed["max_trainable"] is None:
        return f"not even k = {search['lower']} trains"
    if seed["min_untrainable"] is None:
        return f"trains up to the upper bound, k = {seed['max_trainable']}"
    return f"k = {seed['max_trainable']} trains, {seed['min_untrainable']} does not"


def _method_text(seed: dict[str, Any]) -> str:
    return "bisection" if seed.get("method", "bisection") == "bisection" else f"from k = {seed['start']}"


def _hours(hours: float | None) -> str:
    return "—" if hours is None else f"{hours:.2f}"


def _seeds_text(s: dict[str, Any]) -> str:
    """Several seeds: the median and spread of the seeds that found a depth, and those that did not."""
    if len(s["seeds"]) < 2:
        return ""
    parts = []
    if s.get("max_trainable_median") is not None:
        low, high = s["max_trainable_range"]
        found = len(s["seeds"]) - len(s.get("seeds_nothing_trainable") or [])
        parts.append(f"median over the {found} seed(s) that found a depth {s['max_trainable_median']:g}, "
                     f"spread {s['max_trainable_spread']} = {low}…{high}")
    if s.get("seeds_nothing_trainable"):
        parts.append(f"nothing trainable with seed(s) {', '.join(map(str, s['seeds_nothing_trainable']))}")
    return f" ({'; '.join(parts)})" if parts else ""


def _mean_field_text(value: float | None) -> str:
    if value is None:
        return "—"
    if math.isinf(value):
        return "∞"
    return f"{value:.0f}"


def format_depth_cell(summary: dict[str, Any] | str | None) -> str:
    """A table cell: ``max`` for one seed, ``median (min–max)`` for several; ``n/a`` when not run."""
    if summary is None:
        return "n/a"
    if isinstance(summary, str):  # e.g. "not yet measured"
        return summary
    return _max_depth_text(summary) + _non_monotone_text(summary)


def _non_monotone_text(summary: dict[str, Any]) -> str:
    """A deeper depth that trained although a shallower one did not: the boundary is not sharp."""
    deeper = sorted({pair["trainable_depth"] for pair in summary.get("non_monotone") or []})
    return f" (yet k = {', '.join(map(str, deeper))} trained)" if deeper else ""


def _max_depth_text(summary: dict[str, Any]) -> str:
    best = _depth(summary["max_trainable"])
    if summary["max_trainable"] is None:
        best = f"< {summary['lower']}"
    elif summary["min_untrainable"] is None:
        best = f"≥ {summary['max_trainable']}"
    if len(summary["seeds"]) > 1:
        if summary.get("max_trainable_range") is None:  # no seed found a trainable depth
            return f"< {summary['lower']} (all {len(summary['seeds'])} seeds)"
        low, high = summary["max_trainable_range"]
        median = summary["max_trainable_median"]
        missing = summary.get("seeds_nothing_trainable") or []
        note = f"; seed {', '.join(map(str, missing))}: < {summary['lower']}" if missing else ""
        if low == high and not missing:
            # every seed trained up to the upper bound: the boundary lies above it, as one seed's "≥ k" says
            above = "≥ " if summary["min_untrainable"] is None else ""
            return f"{above}{median:g} (all {len(summary['seeds'])} seeds)"
        return f"{median:g} ({low}–{high}{note})" if low != high else f"{median:g} ({low}{note})"
    return best


def table_rows(rows: Sequence[dict[str, Any]], inits: Sequence[str]) -> tuple[list[str], list[list[str]]]:
    """Headers and cells of the table: one row per family; seed 002's upper bound and reported maximum,
    then per init deeplab's maximum trainable depth and the mean-field prediction."""
    header = ["family", "upper", "seed 002 max k"]
    for init in inits:
        suffix = f" ({init})" if len(inits) > 1 or init != "seed" else ""
        header += [f"deeplab max k{suffix}", f"mean-field k{suffix}"]
    body = []
    for row in rows:
        cells = [row["family"], str(row["upper"]), _depth(row["seed_reported_max"])]
        for init in inits:
            cells.append(format_depth_cell(row["searches"].get(init)))
            cells.append(_mean_field_text(row["mean_field"].get(init)))
        body.append(cells)
    return header, body


def format_table(rows: Sequence[dict[str, Any]], inits: Sequence[str]) -> str:
    """:func:`table_rows` as markdown (``table.md``)."""
    return markdown_table(*table_rows(rows, inits)) + "\n"


def format_coverage(rows: Sequence[dict[str, Any]], inits: Sequence[str]) -> str:
    """table.md's account of what each cell stands on: per family and init the seeds it covers, the probes of
    its ledger and their core-hours; per seed the boundary pair, how it was found and the probes its
    search used (bisection's count for the same boundary beside it); the total; and the stray probes no
    seed's search is about."""
    lines, strays, hours, probes = [], [], 0.0, 0
    for row in rows:
        for init in inits:
            cell = row["searches"].get(init)
            if not isinstance(cell, dict):
                continue
            cell_probes = sum(seed["ledger_probes"] for seed in cell["per_seed"])
            cell_hours = sum(seed["core_hours"] or 0.0 for seed in cell["per_seed"])
            probes, hours = probes + cell_probes, hours + cell_hours
            seeds = ", ".join(str(seed["seed"]) for seed in cell["per_seed"])
            lines.append(f"- **{row['family']} / {init}**: seed{'s' if len(cell['per_seed']) > 1 else ''} {seeds}; "
                         f"{cell_probes} probes in the ledger, {cell_hours:.2f} core-hours")
            for seed in cell["per_seed"]:
                lines.append(f"  - seed {seed['seed']}: {_pair_text(seed, cell)}; {_method_text(seed)}, "
                             f"{seed['probes']} probes used (bisection: {seed.get('bisection_probes', '—')}), "
                             f"{seed['ledger_probes']} in the ledger, {_hours(seed['core_hours'])} core-hours")
            for stray in cell.get("strays", []):
                why = "other settings" if stray["settings_differ"] else f"seed {stray['seed']} is not in the search"
                strays.append(f"- {row['family']} / {init}: k = {stray['depth']}, seed {stray['seed']}, test error "
                              f"{_percent(stray['test_error'])} ({why})")
    if not lines:
        return ""
    text = ["", "## What each cell stands on", "",
            "Per seed, the boundary its search holds (the seed's criterion: trainable at k, not at k + 3), how it "
            "was found (the seed's bisection over 3…upper, or a walk from a prior depth: the notebook's number or "
            "the first seed's boundary), the probes its path used (with what bisection needs for the same "
            "boundary), and every probe of that seed in the ledger with their core-hours (wall time × threads): "
            "what the cell cost.", "", *lines, "", f"In all: {probes} probes, {hours:.1f} core-hours.", ""]
    if strays:
        text += ["## Stray probes", "", "Probes in a family's ledger that no seed's search above is about:", "",
                 *strays, ""]
    return "\n".join(text)
