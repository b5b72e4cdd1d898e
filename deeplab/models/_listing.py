"""The ``--list-models`` listing: one row per model (name, family, seed document, dataset, parameters), its
description and the seed's class below it, everything within 100 columns."""

from __future__ import annotations

import textwrap

from deeplab.models._registry import DATASET_SHAPES, count_parameters, create_model, list_models, model_spec
from deeplab.reporting.tables import text_table

__all__ = ["format_model_table", "model_rows", "LISTING_WIDTH"]

#: the widest line --list-models prints
LISTING_WIDTH = 100


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
    """The table of :func:`model_rows`: the seed column names the document (``000``, …); its part and class,
    with the description, follow on indented lines."""
    columns = ["name", "family", "seed", "dataset", "parameters"]
    rows = model_rows()
    table = text_table(columns, [[row["name"], row["family"], row["seed"].split()[0], row["dataset"],
                                  row["parameters"]] for row in rows], align="llllr").splitlines()
    lines = table[:2]
    for row, line in zip(rows, table[2:]):
        where = row["seed"].split(" ", 1)[1] if " " in row["seed"] else ""
        text = f"{row['description']} — seed {row['seed'].split()[0]}, {where}" if where else row["description"]
        lines.append(line)
        lines += textwrap.wrap(text, LISTING_WIDTH, initial_indent="    ", subsequent_indent="    ")
    return "\n".join(lines)
