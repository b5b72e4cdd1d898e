"""The ``--list-models`` table: name, family, seed, dataset, parameters, description."""

from __future__ import annotations

from deeplab.models._registry import DATASET_SHAPES, count_parameters, create_model, list_models, model_spec

__all__ = ["format_model_table", "model_rows"]


def model_rows() -> list[dict[str, str]]:
    rows = []
    for name in list_models():
        spec = model_spec(name)
        channels, height, _, classes = DATASET_SHAPES[spec.dataset]
        model = create_model(name, in_channels=channels, image_size=height, num_classes=classes)
        depth = f" (depth {spec.default_depth})" if spec.has_depth else ""
        rows.append(dict(
            name=name, family=spec.family, seed=spec.seed, dataset=spec.dataset,
            parameters=f"{count_parameters(model):,}{depth}", description=spec.description,
        ))
    return rows


def format_model_table() -> str:
    rows = model_rows()
    columns = ["name", "family", "seed", "dataset", "parameters", "description"]
    widths = {c: max(len(c), *(len(r[c]) for r in rows)) for c in columns[:-1]}
    lines = ["  ".join(c.ljust(widths[c]) for c in columns[:-1]) + "  description"]
    lines.append("  ".join("-" * widths[c] for c in columns[:-1]) + "  " + "-" * 11)
    for row in rows:
        lines.append("  ".join(row[c].ljust(widths[c]) for c in columns[:-1]) + "  " + row["description"])
    return "\n".join(lines)
