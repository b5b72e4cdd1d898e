"""Plain ``nn.Module`` architectures, one file per seed family, registered by name.

Models know nothing of Lightning. Importing this package imports every module
in it, and each module registers its models with ``@register_model``.
"""

import importlib
import pkgutil

from deeplab.models._registry import (
    DATASET_SHAPES,
    ModelSpec,
    count_parameters,
    create_model,
    list_models,
    model_spec,
    register_model,
)

# Registration order = listing order: seed 000 first, then by file name.
for _module in sorted(
    (info.name for info in pkgutil.iter_modules(__path__) if not info.name.startswith("_")),
    key=lambda name: (name != "seed000", name),
):
    importlib.import_module(f"{__name__}.{_module}")

__all__ = [
    "DATASET_SHAPES",
    "ModelSpec",
    "count_parameters",
    "create_model",
    "list_models",
    "model_spec",
    "register_model",
]
