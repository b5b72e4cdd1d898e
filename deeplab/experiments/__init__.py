"""Seed experiment recipes: one command per experiment of the documents in ``../shared/seeds/``.

``python scripts/experiment.py NAME`` runs recipe ``NAME`` (``--list`` shows
them all with the seed each reproduces and its cost) and writes into its
output folder ``report.md`` (exact settings, the seed's table with the
measured numbers beside the seed's), the PNG figures the report shows,
``results.json`` and one TensorBoard run per training under ``tb/``.

* :mod:`~deeplab.experiments.registry` — ``register_recipe``, ``get_recipe``, ``list_recipes``;
* :mod:`~deeplab.experiments.runner` — options, budgets (``--quick``), seeds, ``train``, ``run_experiment``;
* :mod:`~deeplab.experiments.report` / :mod:`~deeplab.experiments.plots` — the report writer and figures;
* :mod:`~deeplab.experiments.callbacks` — seed 003's scheduled learning rate, the seeds' own curves;
* one module per seed: :mod:`~deeplab.experiments.seed000` … :mod:`~deeplab.experiments.seed004`;
* :mod:`~deeplab.experiments.frontier` — beyond the seeds: η against depth, the σ_w² phase diagram.
"""

from deeplab.experiments.registry import Recipe, get_recipe, list_recipes, register_recipe
from deeplab.experiments.runner import ExperimentContext, ExperimentOptions, Training, default_out, run_experiment

# Importing the seed modules registers their recipes, in seed order.
from deeplab.experiments import seed000, seed001, seed002, seed003, seed004, frontier  # noqa: E402,F401  isort: skip

__all__ = [
    "Recipe",
    "register_recipe",
    "get_recipe",
    "list_recipes",
    "ExperimentOptions",
    "ExperimentContext",
    "Training",
    "default_out",
    "run_experiment",
]
