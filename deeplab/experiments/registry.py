"""The recipe registry: one named, runnable reproduction per seed experiment.

A recipe is a function ``run(ctx)`` of an
:class:`~deeplab.experiments.runner.ExperimentContext` plus what ``--list``
shows: the seed document and experiment it reproduces, the seed's data set,
and its cost at full budget and at ``--quick``. Like the model registry,
duplicate names raise and an unknown name is a :class:`~deeplab.errors.DeeplabError`
that lists close matches.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any, Callable

from deeplab.errors import DeeplabError

__all__ = ["Recipe", "register_recipe", "get_recipe", "list_recipes", "DATASET_NAMES"]

#: how reports name the data sets
DATASET_NAMES = {"mnist": "MNIST", "fashion_mnist": "Fashion-MNIST", "cifar10": "CIFAR-10"}


@dataclass(frozen=True)
class Recipe:
    """One seed experiment, runnable as ``scripts/experiment.py NAME``."""

    name: str
    seed: str  # seed document number, e.g. "000"
    experiment: str  # which part of the seed, e.g. "Part 3: skip connections"
    title: str  # one line, the report's heading
    dataset: str | None  # the seed's data set; None for the NumPy recipes
    trainings: str  # what a full run trains, e.g. "4 × 10 epochs, batch 32"
    full_cost: str  # expected cost at full budget (the seed's protocol)
    quick_cost: str  # measured cost of --quick on a 2-core CPU
    run: Callable[[Any], None]
    #: the budget a full run trains at where it is not the seed's protocol (the frontier recipes' reduced probe)
    budget: str | None = None


_RECIPES: dict[str, Recipe] = {}


def register_recipe(
    name: str,
    *,
    seed: str,
    experiment: str,
    title: str,
    dataset: str | None,
    trainings: str,
    full_cost: str,
    quick_cost: str,
    budget: str | None = None,
) -> Callable[[Callable[[Any], None]], Callable[[Any], None]]:
    """Decorator: register ``run(ctx)`` as recipe ``name``. Duplicates raise ``ValueError``."""

    def decorate(run: Callable[[Any], None]) -> Callable[[Any], None]:
        if name in _RECIPES:
            raise ValueError(f"recipe {name!r} is already registered")
        _RECIPES[name] = Recipe(name, seed, experiment, title, dataset, trainings, full_cost, quick_cost, run,
                                budget)
        return run

    return decorate


def list_recipes() -> list[Recipe]:
    """Every recipe, in seed order (each registered when the package's ``__init__`` imported its module,
    before this one could be imported)."""
    return list(_RECIPES.values())


def get_recipe(name: str) -> Recipe:
    """The recipe called ``name``; DeeplabError with close matches otherwise."""
    try:
        return _RECIPES[name]
    except KeyError:
        close = difflib.get_close_matches(name, _RECIPES, n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise DeeplabError(
            f"unknown experiment {name!r}.{hint} Run `python scripts/experiment.py --list` for all names."
        ) from None
