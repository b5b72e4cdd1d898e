"""The ``--list-models`` table: name, family, seed, dataset, parameters, description."""

from __future__ import annotations

from deeplab.reporting.tables import text_table
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
    columns = ["name", "family", "seed", "dataset", "parameters", "description"]
    rows = [[row[c] for c in columns] for row in model_rows()]
    return text_table(columns, rows, align="l" * len(columns), ragged_last=True)
