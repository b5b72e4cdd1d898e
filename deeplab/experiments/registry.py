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
from typing import TYPE_CHECKING, Callable

from deeplab.errors import DeeplabError

if TYPE_CHECKING:  # pragma: no cover
    from deeplab.experiments.runner import ExperimentContext

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
    run: Callable[["ExperimentContext"], None]


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
) -> Callable[[Callable[["ExperimentContext"], None]], Callable[["ExperimentContext"], None]]:
    """Decorator: register ``run(ctx)`` as recipe ``name``. Duplicates raise ``ValueError``."""

    def decorate(run: Callable[["ExperimentContext"], None]) -> Callable[["ExperimentContext"], None]:
        if name in _RECIPES:
            raise ValueError(f"recipe {name!r} is already registered")
        _RECIPES[name] = Recipe(name, seed, experiment, title, dataset, trainings, full_cost, quick_cost, run)
        return run

    return decorate


def _ensure_loaded() -> None:
    """Every entry is registered by now: importing this module imported its package first, whose
    ``__init__`` imports every module that registers one (no import of the package from here: a cycle)."""


def list_recipes() -> list[Recipe]:
    """Every recipe, in seed order."""
    _ensure_loaded()
    return list(_RECIPES.values())


def get_recipe(name: str) -> Recipe:
    """The recipe called ``name``; DeeplabError with close matches otherwise."""
    _ensure_loaded()
    try:
        return _RECIPES[name]
    except KeyError:
        close = difflib.get_close_matches(name, _RECIPES, n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise DeeplabError(
            f"unknown experiment {name!r}.{hint} Run `python scripts/experiment.py --list` for all names."
        ) from None
