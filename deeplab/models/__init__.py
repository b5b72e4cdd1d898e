"""Plain ``nn.Module`` architectures, one file per architecture family, registered by name.

Models know nothing of Lightning. The family files (``mlp``, ``small_cnn``, ``cnn15``, ``vgg``,
``resnet``, ``inception``, ``depth_family``, ``plain``) hold the modules; :mod:`deeplab.models.zoo`
registers every named configuration of them, seed by seed, with its seed's protocol. Importing
this package imports the zoo, so every model is registered, in the zoo's order: that is the order
of ``list_models()`` (seed 000 first, then 001 … 004).
"""

from deeplab.models import zoo  # noqa: F401  (registers every model, in listing order)
from deeplab.models._registry import (
    DATASET_SHAPES,
    ModelSpec,
    count_parameters,
    create_model,
    list_models,
    model_spec,
    register_model,
)

__all__ = [
    "DATASET_SHAPES",
    "ModelSpec",
    "count_parameters",
    "create_model",
    "list_models",
    "model_spec",
    "register_model",
]
