"""``diagnose.py --table``: seed 002's seven families diagnosed at initialization and scored against the
measured table (``reports/seed002/table.json``) and the notebook's numbers.

Each family is diagnosed at its search upper bound (24/120/150/300/450/120/24), at the seed's init and at
the frontier inits (``delta_orthogonal``; ``skipinit`` for the residual families), into
``<out>/<family>/<init>/``. The table gives, per row, the two depth scales, the predicted trainable
depth (:func:`deeplab.diagnosis.measure.predict_depth`, a rule fixed before this scoring), the measured
depth (median over the table's seeds; "≥ upper" where every seed trained at the upper bound), the
notebook's number, the ratio predicted / measured, and the mean-field prediction where deeplab has one;
then whether the seven families at the seed's init come out in the measured order (Spearman's ρ and
the pairs ordered alike).
"""

from __future__ import annotations

import json
import math
import re
import statistics
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from deeplab.errors import DeeplabError

__all__ = ["diagnose_table", "table_inits", "measured_depths", "rank_agreement", "TABLE_FILE"]

TABLE_FILE = "table.md"


def table_inits(family: str) -> list[str]:
    """The seed's init, then the frontier inits the seed 002 table measures for this family."""
    from deeplab.models.depth_family import FAMILY_CONFIGS

    return ["seed", "delta_orthogonal"] + (["skipinit"] if FAMILY_CONFIGS[family].residual else [])


def measured_depths(table_json: str | Path) -> dict[tuple[str, str], dict[str, Any]]:
    """(family, init) → ``value`` (median of the seeds' deepest trainable k), ``at_upper`` (every seed trained
    at the upper bound: the value is a lower bound), ``seeds`` and ``note`` ("in progress" for a family whose
    search has not finished every seed), from the seed 002 table's JSON. Unmeasured cells are left out."""
    path = Path(table_json)
    if not path.is_file():
        return {}
    data = json.loads(path.read_text(encoding="utf-8"))
    cells: dict[tuple[str, str], dict[str, Any]] = {}
    for row in data.get("rows", []):
        for init, search in (row.get("searches") or {}).items():
            cell = _measured_cell(search, row.get("upper"))
            if cell is not None:
                cells[(row["family"], init)] = cell
    return cells


def _measured_cell(search: Any, upper: int | None) -> dict[str, Any] | None:
    if isinstance(search, dict) and search.get("max_trainable_median") is not None:
        per_seed = search.get("per_seed") or []
        at_upper = bool(per_seed) and all(s.get("min_untrainable") is None for s in per_seed)
        return dict(value=float(search["max_trainable_median"]), at_upper=at_upper, seeds=list(search["seeds"]),
                    note=None)
    if isinstance(search, str) and search.startswith("in progress"):
        found = [(int(seed), int(depth)) for seed, depth in re.findall(r"seed (\d+): (\d+)", search)]
        if found:
            return dict(value=float(statistics.median(depth for _, depth in found)), at_upper=False,
                        seeds=[seed for seed, _ in found], note="in progress")
    return None


def rank_agreement(predicted: Sequence[float], measured: Sequence[float]) -> dict[str, Any]:
    """Spearman's ρ (average ranks for ties; an infinite prediction ranks above every finite one) and how many
    of the pairs the two order alike (ties in either count as half)."""
    def ranks(values: Sequence[float]) -> list[float]:
        order = sorted(range(len(values)), key=lambda i: values[i])
        result = [0.0] * len(values)
        i = 0
        while i < len(order):
            j = i
            while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
                j += 1
            for k in range(i, j + 1):
                result[order[k]] = (i + j) / 2 + 1
            i = j + 1
        return result

    n = len(predicted)
    if n < 2:
        return dict(spearman=None, concordant_pairs=None, pairs=0)
    rp, rm = ranks(predicted), ranks(measured)
    mean = (n + 1) / 2
    num = sum((a - mean) * (b - mean) for a, b in zip(rp, rm))
    den = math.sqrt(sum((a - mean) ** 2 for a in rp) * sum((b - mean) ** 2 for b in rm))
    concordant = 0.0
    pairs = 0
    for i in range(n):
        for j in range(i + 1, n):
            pairs += 1
            dp, dm = predicted[i] - predicted[j], measured[i] - measured[j]
            concordant += 0.5 if dp == 0 or dm == 0 else (1.0 if (dp > 0) == (dm > 0) else 0.0)
    return dict(spearman=num / den if den else None, concordant_pairs=concordant, pairs=pairs)


def diagnose_table(out: str | Path, *, measured_table: str | Path = "reports/seed002/table.json",
                   families: Sequence[str] | None = None, progress: Callable[[str], None] = print,
                   **settings: Any) -> dict[str, Any]:
    """Diagnose the families (default all seven) at each of :func:`table_inits`, score them against
    ``measured_table`` and write ``table.md``, ``table.json`` and ``table.png`` into ``out``. ``settings``
    go to :func:`~deeplab.diagnosis.diagnose.diagnose` (``data_dir``, ``examples``, …)."""
    from deeplab.diagnosis.diagnose import diagnose
    from deeplab.models.depth_family import FAMILY_CONFIGS

    chosen = list(FAMILY_CONFIGS) if families is None else list(families)
    unknown = [name for name in chosen if name not in FAMILY_CONFIGS]
    if unknown or not chosen:
        raise DeeplabError(f"--families: {', '.join(unknown) or '(none given)'} — choose from {', '.join(FAMILY_CONFIGS)}")
    out = Path(out)
    measured = measured_depths(measured_table)
    rows = []
    started = time.perf_counter()
    for family in chosen:
        for init in table_inits(family):
            record = diagnose(family, init=init, out=out / family / init, **settings)
            rows.append(_row(family, init, record, measured.get((family, init))))
            progress(_progress_line(rows[-1]))
    checks = mean_field_checks(out / "mean_field_check", progress=progress, **settings) if "cnn_tanh" in chosen else []
    seed_rows = [row for row in rows if row["init"] == "seed" and row["measured"] is not None]
    agreement = rank_agreement([_rankable(row["predicted"]) for row in seed_rows],
                               [row["measured"] for row in seed_rows])
    data = dict(rows=rows, mean_field_checks=checks, rank_agreement=agreement, families_ranked=[row["family"] for row in seed_rows],
                measured_table=str(measured_table), seconds=round(time.perf_counter() - started, 1))
    out.mkdir(parents=True, exist_ok=True)
    from deeplab.io import atomic_write_json, finite_or_text

    atomic_write_json(out / "table.json", finite_or_text(data))
    (out / TABLE_FILE).write_text(render_table(data), encoding="utf-8")
    _draw_scores(data, out / "table.png")
    data["table"] = str(out / TABLE_FILE)
    return data


#: the plain tanh family at Gaussian inits where mean field has finite and infinite depth scales:
#: (name, σ_w², σ_b²; None: the critical point at deeplab's default σ_b²), each at two depths
MEAN_FIELD_SETTINGS = (("critical", None, None), ("chaotic", 2.5, 0.1))
MEAN_FIELD_DEPTHS = (24, 120)


def mean_field_checks(out: Path, progress: Callable[[str], None] = print, **settings: Any) -> list[dict[str, Any]]:
    """``cnn_tanh`` with ``--init gaussian`` at :data:`MEAN_FIELD_SETTINGS`: the measured χ₁ (the last stage's
    Jacobian; r² from the gradients), χ_c, ξ_c and c* beside mean field's (:mod:`deeplab.theory.mean_field`)."""
    from deeplab.diagnosis.diagnose import diagnose
    from deeplab.models.inits import resolve_variances
    from deeplab.theory.mean_field import analyze

    rows = []
    for name, sigma_w2, sigma_b2 in MEAN_FIELD_SETTINGS:
        sigma_w2, sigma_b2 = resolve_variances("tanh", sigma_w2, sigma_b2)
        theory = analyze("tanh", sigma_w2, sigma_b2)
        for depth in MEAN_FIELD_DEPTHS:
            record = diagnose("cnn_tanh", depth, init="gaussian", sigma_w2=sigma_w2, sigma_b2=sigma_b2,
                              out=out / f"{name}-k{depth}", **settings)
            growth = record["gradient_growth"]["representation"]
            rows.append(dict(setting=name, sigma_w2=sigma_w2, sigma_b2=sigma_b2, depth=depth,
                             chi1=(record.get("jacobian") or {}).get("chi1"),
                             gradient_chi1=None if growth is None else growth ** 2,
                             chi_c=record["correlation"]["chi_c"], depth_scale=record["correlation"]["depth_scale"],
                             fixed_point=record["correlation"]["fixed_point"],
                             mean_field=dict(chi1=theory.chi1, chi_c=theory.chi_c, depth_scale=theory.depth_scale,
                                             fixed_point=theory.c_star)))
            progress(f"mean-field check {name} (σ_w² {sigma_w2:.4g}, σ_b² {sigma_b2:.3g}) k={depth}: χ₁ "
                     f"{_scale(rows[-1]['chi1'])} (mean field {theory.chi1:.4g}), ξ_c {_scale(rows[-1]['depth_scale'])} "
                     f"({_scale(theory.depth_scale)})")
    return rows


def _rankable(value: float | None) -> float:
    return math.inf if value is None else value


def _row(family: str, init: str, record: dict[str, Any], measured: dict[str, Any] | None) -> dict[str, Any]:
    from deeplab.models.depth_family import FAMILY_CONFIGS

    prediction = record["prediction"]
    predicted = prediction["predicted_max_depth"]
    value = None if measured is None else measured["value"]
    ratio = None if value is None or predicted is None else predicted / value
    mean_field = record.get("mean_field") or {}
    return dict(
        family=family, init=init, depth=record["depth"],
        correlation_depth_scale=record["correlation"]["depth_scale"],
        correlation_regime=record["correlation"].get("regime"),
        gradient_growth=record["gradient_growth"]["representation"],
        gradient_depth_scale=prediction["gradient_depth_scale"],
        jacobian_chi1=(record.get("jacobian") or {}).get("chi1"),
        predicted=predicted, limited_by=prediction["limited_by"],
        measured=value, measured_at_upper=None if measured is None else measured["at_upper"],
        measured_seeds=None if measured is None else measured["seeds"],
        measured_note=None if measured is None else measured["note"],
        notebook=FAMILY_CONFIGS[family].seed_max_depth if init == "seed" else None,
        ratio=ratio, mean_field=mean_field.get("predicted_max_depth"), seconds=record["seconds"],
    )


def _depth(value: float | None) -> str:
    if value is None:
        return "—"
    if value == math.inf:
        return "∞"
    return f"{value:.0f}" if value >= 10 else f"{value:.1f}"


def _scale(value: float | None) -> str:
    if value is None:
        return "—"
    return "∞" if value == math.inf else f"{value:.3g}"


def _measured_text(row: dict[str, Any]) -> str:
    if row["measured"] is None:
        return "not measured"
    text = ("≥ " if row["measured_at_upper"] else "") + _depth(row["measured"])
    seeds = row["measured_seeds"] or []
    text += f" ({len(seeds)} seed{'s' if len(seeds) != 1 else ''}" + (", in progress" if row["measured_note"] else "") + ")"
    return text


def _ratio_text(row: dict[str, Any]) -> str:
    ratio = row["ratio"]
    if ratio is None:
        return "—"
    if ratio == math.inf:
        return "∞"
    return ("≤ " if row["measured_at_upper"] else "") + f"{ratio:.2f}"


def _progress_line(row: dict[str, Any]) -> str:
    return (f"{row['family']:<20} {row['init']:<17} k={row['depth']:<4} ξ_c {_scale(row['correlation_depth_scale']):>6}  "
            f"ξ_∇ {_scale(row['gradient_depth_scale']):>6}  predicted {_depth(row['predicted']):>5}  measured "
            f"{_measured_text(row)}  ({row['seconds']:.0f} s)")


def render_table(data: dict[str, Any]) -> str:
    lines = [
        "| family | init | k diagnosed | ξ_c (correlation) | r (gradient growth / layer) | ξ_∇ | predicted 6·min(ξ_c, ξ_∇) "
        "| measured (seed 002 protocol) | notebook | predicted / measured | mean field 6 ξ_c |",
        "| :--- | :--- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in data["rows"]:
        regime = row["correlation_regime"]
        xi_c = _scale(row["correlation_depth_scale"]) + (f" ({regime})" if regime not in (None, "converging") else "")
        growth = "—" if row["gradient_growth"] is None else f"{row['gradient_growth']:.3f}"
        lines.append(
            f"| {row['family']} | {row['init']} | {row['depth']} | {xi_c} | {growth} | {_scale(row['gradient_depth_scale'])} "
            f"| {_depth(row['predicted'])} ({row['limited_by'] or '—'}) | {_measured_text(row)} "
            f"| {row['notebook'] if row['notebook'] is not None else '—'} | {_ratio_text(row)} | {_depth(row['mean_field'])} |")
    agreement = data["rank_agreement"]
    lines += ["", "ξ_c: the empirical correlation map's depth scale; r: ‖∂loss/∂h_l‖'s growth per layer toward the "
              "input at initialization, ξ_∇ = 1/|ln r²|; the prediction rule (6·min(ξ_c, ξ_∇), Schoenholz et al. "
              "2017) is `deeplab/diagnosis/measure.py`'s, fixed before this scoring. Measured: the median over the "
              "seed 002 table's seeds (`reports/seed002/table.md`); ≥: every seed trained at the upper bound."]
    if agreement["pairs"]:
        rho = agreement["spearman"]
        lines += ["", f"**Order** of the {len(data['families_ranked'])} families at the seed's init "
                      f"({', '.join(data['families_ranked'])}): Spearman ρ = "
                      f"{'—' if rho is None else f'{rho:.2f}'}; {agreement['concordant_pairs']:g} of "
                      f"{agreement['pairs']} pairs ordered as measured."]
    checks = data.get("mean_field_checks") or []
    if checks:
        lines += ["", "**Against mean field** (`cnn_tanh`, `--init gaussian`: a plain tanh stack whose σ_w², σ_b² "
                      "mean field describes; measured at initialization as above):", "",
                  "| setting | σ_w² | σ_b² | k | χ₁ measured (Jacobian; r²) | χ₁ mean field | χ_c measured | χ_c mean field "
                  "| ξ_c measured | ξ_c mean field | c* measured | c* mean field |",
                  "| :--- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for row in checks:
            theory = row["mean_field"]
            lines.append(f"| {row['setting']} | {row['sigma_w2']:.4g} | {row['sigma_b2']:.3g} | {row['depth']} "
                         f"| {_scale(row['chi1'])}; {_scale(row['gradient_chi1'])} | {_scale(theory['chi1'])} "
                         f"| {_scale(row['chi_c'])} | {_scale(theory['chi_c'])} | {_scale(row['depth_scale'])} "
                         f"| {_scale(theory['depth_scale'])} | {_scale(row['fixed_point'])} | {_scale(theory['fixed_point'])} |")
    return "\n".join(lines) + "\n"


def _draw_scores(data: dict[str, Any], path: Path) -> None:
    from deeplab.reporting.figures import fit_text, pyplot

    plt = pyplot()
    figure, axis = plt.subplots(figsize=(7, 5))
    scored = [row for row in data["rows"] if row["measured"] is not None and row["predicted"] not in (None, math.inf)]
    markers = {"seed": "o", "delta_orthogonal": "s", "skipinit": "^"}
    for init, marker in markers.items():
        chosen = [row for row in scored if row["init"] == init]
        if not chosen:
            continue
        axis.scatter([row["measured"] for row in chosen], [max(row["predicted"], 0.5) for row in chosen],
                     marker=marker, label=f"init {init}")
        for row in chosen:
            axis.annotate(row["family"] + (" (≥)" if row["measured_at_upper"] else ""),
                          (row["measured"], max(row["predicted"], 0.5)), fontsize=7, xytext=(4, 2),
                          textcoords="offset points")
    values = [v for row in scored for v in (row["measured"], max(row["predicted"], 0.5))] or [1, 10]
    low, high = min(values) / 1.5, max(values) * 1.5
    axis.plot([low, high], [low, high], color="grey", linestyle="--", label="predicted = measured")
    axis.set_xscale("log")
    axis.set_yscale("log")
    axis.set_xlabel("measured deepest trainable k (seed 002 protocol; ≥: all seeds trained at the upper bound)")
    axis.set_ylabel("predicted at initialization, 6·min(ξ_c, ξ_∇)")
    axis.set_title("seed 002's families: diagnosed at initialization against trained")
    axis.legend(fontsize=8)
    fit_text(figure)
    figure.savefig(path, dpi=110)
    plt.close(figure)
