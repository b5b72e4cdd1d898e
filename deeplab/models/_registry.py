"""A strict model registry, after torchvision's ``models/_api.py``.

Each model is a factory function registered under one name with a
:class:`ModelSpec`: which seed document and experiment it comes from, its
default dataset, and the seed protocol's hyperparameters, so
``scripts/fit.py --model NAME`` reproduces that run. Duplicate names raise;
an unknown name raises :class:`~deeplab.errors.DeeplabError` listing close
matches.
"""

from __future__ import annotations

import difflib
import inspect
from dataclasses import dataclass, field
from typing import Any, Callable

import torch.nn as nn

from deeplab.errors import DeeplabError

__all__ = [
    "ModelSpec",
    "register_model",
    "create_model",
    "list_models",
    "model_spec",
    "count_parameters",
    "DATASET_SHAPES",
]

#: (channels, height, width, classes) of each dataset deeplab knows
DATASET_SHAPES: dict[str, tuple[int, int, int, int]] = {
    "mnist": (1, 28, 28, 10),
    "fashion_mnist": (1, 28, 28, 10),
    "cifar10": (3, 32, 32, 10),
}


@dataclass(frozen=True)
class ModelSpec:
    """What a registered model is and how its seed trained it."""

    name: str
    family: str  # e.g. "cnn15", "seed002-depth", "seed001-resnet"
    seed: str  # seed document and experiment, e.g. "000 Part 3"
    description: str  # one line
    dataset: str  # default dataset: mnist | fashion_mnist | cifar10
    protocol: dict[str, Any] = field(default_factory=dict)  # fit.py defaults: epochs, batch_size, lr, ...
    has_depth: bool = False  # takes a `depth` keyword (seed 002/004 families)
    default_depth: int | None = None
    takes_init: bool = False  # takes an `init` keyword (--init: seed 002 families, cnn15)
    keywords: tuple[str, ...] = ()  # every keyword the factory takes


_MODELS: dict[str, tuple[Callable[..., nn.Module], ModelSpec]] = {}


def register_model(
    name: str,
    *,
    family: str,
    seed: str,
    description: str,
    dataset: str,
    protocol: dict[str, Any] | None = None,
    default_depth: int | None = None,
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator: register ``factory`` under ``name``. Duplicates raise ``ValueError``."""

    if dataset not in DATASET_SHAPES:
        raise ValueError(f"model {name!r}: unknown default dataset {dataset!r}")

    def decorate(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _MODELS:
            raise ValueError(f"model {name!r} is already registered")
        parameters = inspect.signature(factory).parameters
        has_depth = "depth" in parameters
        spec = ModelSpec(
            name=name,
            family=family,
            seed=seed,
            description=description,
            dataset=dataset,
            protocol=dict(protocol or {}),
            has_depth=has_depth,
            default_depth=default_depth,
            takes_init="init" in parameters,
            keywords=tuple(parameters),
        )
        _MODELS[name] = (factory, spec)
        return factory

    return decorate


def _lookup(name: str) -> tuple[Callable[..., nn.Module], ModelSpec]:
    # Every entry is registered by now: importing this module imported its package first, whose
    # ``__init__`` imports ``zoo``, which registers every one.
    try:
        return _MODELS[name]
    except KeyError:
        close = difflib.get_close_matches(name, _MODELS, n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise DeeplabError(
            f"unknown model {name!r}.{hint} Run `python scripts/fit.py --list-models` for all names."
        ) from None


def model_spec(name: str) -> ModelSpec:
    """The :class:`ModelSpec` registered under ``name``."""
    return _lookup(name)[1]


def list_models() -> list[str]:
    """All registered names, in registration order (seed 000 first)."""
    return list(_MODELS)


def create_model(name: str, **kwargs: Any) -> nn.Module:
    """Build model ``name``; the caller's keyword arguments win over defaults.

    ``depth`` is validated here so every family gives the same clear error.
    """
    factory, spec = _lookup(name)
    if "depth" in kwargs and kwargs["depth"] is not None and not spec.has_depth:
        raise DeeplabError(
            f"model {name!r} has a fixed depth; drop --depth (models taking a depth: "
            f"{', '.join(n for n in list_models() if _MODELS[n][1].has_depth)})."
        )
    if kwargs.get("depth", "absent") is None:
        kwargs.pop("depth")
    if spec.has_depth and "depth" not in kwargs and spec.default_depth is not None:
        kwargs["depth"] = spec.default_depth
    for keyword in ("num_classes", "in_channels", "image_size"):
        value = kwargs.get(keyword)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool)
                                  or value < (2 if keyword == "num_classes" else 1)):
            least = 2 if keyword == "num_classes" else 1
            raise DeeplabError(f"create_model({name!r}): {keyword} must be an integer ≥ {least}, got {value!r}")
    model = factory(**kwargs)
    size = kwargs.get("image_size")
    if size is not None and size not in _DATASET_SIDES:  # an image size no data set has: does it fit the network?
        _check_image_size(name, model, kwargs.get("in_channels", 1), size)
    return model


#: the image sides of the data sets deeplab reads (MNIST, Fashion-MNIST: 28; CIFAR-10: 32): every model fits them
_DATASET_SIDES = frozenset(height for _, height, _, _ in DATASET_SHAPES.values())


def _check_image_size(name: str, model: nn.Module, channels: int, size: int) -> None:
    """One forward pass of a zero image in eval mode (no statistics move): a size the network's
    pooling cannot take fails here, in one line, instead of at the first training step."""
    import torch

    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, channels, size, size))
    except RuntimeError as error:
        raise DeeplabError(f"create_model({name!r}): image_size {size} does not fit the network "
                           f"({str(error).splitlines()[0][:120]})") from None
    finally:
        model.train(was_training)


def count_parameters(model: nn.Module) -> int:
    """Number of scalar parameters, as the seeds print it."""
    return sum(p.numel() for p in model.parameters())
