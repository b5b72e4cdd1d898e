"""Every registered model (``list_models()``, not a hand-written list) on both input shapes the project
trains on: it builds, its output is (batch, 10) and finite, and one backward pass reaches every
parameter with a finite gradient. A model added to the registry is covered without touching this file."""

from __future__ import annotations

import pytest
import torch

from deeplab.models import DATASET_SHAPES, create_model, list_models

pytestmark = pytest.mark.usefixtures("single_thread")

SHAPES = {"1x28x28": DATASET_SHAPES["mnist"], "3x32x32": DATASET_SHAPES["cifar10"]}


@pytest.mark.parametrize("shape", list(SHAPES))
@pytest.mark.parametrize("name", list_models())
def test_forward_backward_is_finite_and_reaches_every_parameter(name: str, shape: str) -> None:
    channels, height, width, classes = SHAPES[shape]
    torch.manual_seed(0)
    model = create_model(name, in_channels=channels, image_size=height, num_classes=classes).train()
    x = torch.randn(2, channels, height, width)
    logits = model(x)
    assert logits.shape == (2, classes)
    assert torch.isfinite(logits).all()
    torch.nn.functional.cross_entropy(logits, torch.tensor([0, 1])).backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, f"{name}: no gradient reaches {missing[:5]}"
    bad = [n for n, p in model.named_parameters() if p.grad is not None and not torch.isfinite(p.grad).all()]
    assert not bad, f"{name}: non-finite gradients in {bad[:5]}"


def test_the_registry_is_what_this_file_covers() -> None:
    names = list_models()
    assert len(names) == len(set(names)) >= 30
