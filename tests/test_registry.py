"""The model registry: strict names, close-match suggestions, depth validation, seed 000's
parameter counts and skip placements, and ``fit.py --list-models``."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest
import torch
import torch.nn as nn

from conftest import SCRIPTS_DIR, fit_environment
from deeplab.config import FitConfig
from deeplab.errors import DeeplabError
from deeplab.models import _registry, count_parameters, create_model, list_models, model_spec, register_model
from deeplab.models.cnn15 import CNN15_SKIPS, DeepCNN15
from deeplab.training.fit import build_model_kwargs

pytestmark = pytest.mark.usefixtures("single_thread")

SEED000_PARAMETERS = {
    "two_layer_mlp": 203_530,
    "cnn5": 173_578,
    "cnn5_sigmoid": 173_578,
    "cnn15_plain": 384_858,
    "cnn15_skip1": 384_858,
    "cnn15_skip2": 384_858,
}


def load_fit_script():
    spec = importlib.util.spec_from_file_location("fit_script", SCRIPTS_DIR / "fit.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ------------------------------------------------------------------ names
def test_seed000_models_come_first():
    assert list_models()[:6] == list(SEED000_PARAMETERS)
    assert len(set(list_models())) == len(list_models())


def test_duplicate_name_raises_and_leaves_the_registry_alone():
    original = _registry._MODELS["cnn5"]
    with pytest.raises(ValueError, match="already registered"):
        register_model("cnn5", family="x", seed="x", description="x", dataset="mnist")(lambda: nn.Identity())
    assert _registry._MODELS["cnn5"] is original

    name = "test_registry_temporary_model"
    try:
        register_model(name, family="t", seed="t", description="t", dataset="mnist")(lambda: nn.Identity())
        with pytest.raises(ValueError, match="already registered"):
            register_model(name, family="t", seed="t", description="t", dataset="mnist")(lambda: nn.Linear(1, 1))
        assert isinstance(create_model(name), nn.Identity)
    finally:
        _registry._MODELS.pop(name, None)
    assert name not in list_models()


def test_unknown_default_dataset_raises():
    with pytest.raises(ValueError, match="imagenet"):
        register_model("never_registered", family="t", seed="t", description="t", dataset="imagenet")


@pytest.mark.parametrize("typo, suggestion", [("cnn15_skp2", "cnn15_skip2"), ("cnn5_sigmiod", "cnn5_sigmoid"), ("two_layer_mpl", "two_layer_mlp")])
def test_unknown_name_lists_close_matches(typo, suggestion):
    for lookup in (create_model, model_spec):
        with pytest.raises(DeeplabError) as error:
            lookup(typo)
        message = str(error.value)
        assert repr(typo) in message and "Did you mean" in message and suggestion in message
        assert "--list-models" in message


def test_unknown_name_with_no_close_match():
    with pytest.raises(DeeplabError) as error:
        create_model("zzzzzzzz")
    assert "Did you mean" not in str(error.value) and "--list-models" in str(error.value)


def test_unknown_model_from_the_script_is_one_line(capsys):
    from deeplab.cli import run_main

    fit_script = load_fit_script()
    status = run_main(lambda: fit_script.main(["--model", "cnn15_skp2"]))
    err = capsys.readouterr().err
    assert status == 2
    assert err.count("\n") == 1 and err.startswith("error: ") and "cnn15_skip2" in err


# ------------------------------------------------------------------ depth
@pytest.mark.parametrize("name", list(SEED000_PARAMETERS))
def test_depth_on_a_fixed_depth_model_is_an_error(name):
    assert not model_spec(name).has_depth
    with pytest.raises(DeeplabError, match="fixed depth"):
        create_model(name, depth=3)
    with pytest.raises(DeeplabError, match="drop --depth"):
        build_model_kwargs(FitConfig(model=name, dataset="fashion_mnist", depth=3))
    assert isinstance(create_model(name, depth=None), nn.Module)  # "not given" is fine


# ---------------------------------------------------------- seed 000 models
@pytest.mark.parametrize("name, count", SEED000_PARAMETERS.items())
def test_seed000_parameter_counts(name, count):
    model = create_model(name)
    assert count_parameters(model) == count
    spec = model_spec(name)
    assert spec.dataset == "fashion_mnist" and spec.seed.startswith("000")
    logits = model(torch.randn(2, 1, 28, 28))
    assert logits.shape == (2, 10) and torch.isfinite(logits).all()


@pytest.mark.parametrize("name", list(SEED000_PARAMETERS))
def test_seed000_models_on_cifar_shapes(name):
    model = create_model(name, in_channels=3, image_size=32, num_classes=10)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def conv_zeroed_outputs(skips: str, inputs: torch.Tensor) -> dict[int, bool]:
    """For each conv k: does the output still depend on the input once conv k's weights and
    bias are zero? A skip (s, d) carries conv s's output around convs s+1..d, so the answer
    is yes exactly for k in s+1..d of some skip."""
    torch.manual_seed(0)
    reference = DeepCNN15(skips=skips).eval()
    depends = {}
    for k in range(1, 13):
        model = DeepCNN15(skips=skips).eval()
        model.load_state_dict(reference.state_dict())
        with torch.no_grad():
            model.convs[k - 1].weight.zero_()
            model.convs[k - 1].bias.zero_()
            out = model(inputs)
        depends[k] = not torch.allclose(out[0], out[1], atol=0, rtol=0)
    return depends


@pytest.mark.parametrize("skips", ["plain", "skip1", "skip2"])
def test_cnn15_skip_placement_behaviourally(skips):
    inputs = torch.randn(2, 1, 28, 28, generator=torch.Generator().manual_seed(3))
    bridged = {k for source, dest in CNN15_SKIPS[skips] for k in range(source + 1, dest + 1)}
    expected = {
        "plain": set(),
        "skip1": {2, 6, 10},  # conv1→2, conv5→6, conv9→10
        "skip2": {2, 3, 6, 7, 8, 10, 11, 12},  # conv1→3, conv5→8, conv9→12
    }[skips]
    assert bridged == expected
    depends = conv_zeroed_outputs(skips, inputs)
    assert {k for k, flag in depends.items() if flag} == expected


def test_cnn15_registered_names_use_their_skips():
    torch.manual_seed(0)
    for name, skips in (("cnn15_plain", "plain"), ("cnn15_skip1", "skip1"), ("cnn15_skip2", "skip2")):
        model = create_model(name)
        assert isinstance(model, DeepCNN15) and model.skips == skips


def test_cnn15_skip_adds_the_source_activation():
    """With conv d zeroed, the activation after conv d is exactly the saved conv s output."""
    torch.manual_seed(0)
    model = DeepCNN15(skips="skip2").eval()
    captured = {}
    model.convs[0].register_forward_hook(lambda m, i, o: captured.__setitem__("conv1", o))
    model.convs[3].register_forward_hook(lambda m, i, o: captured.__setitem__("conv4_input", i[0]))
    with torch.no_grad():
        model.convs[2].weight.zero_()
        model.convs[2].bias.zero_()
        model(torch.randn(1, 1, 28, 28))
    conv1_activation = torch.where(captured["conv1"] > 0, captured["conv1"], 0.01 * captured["conv1"])
    torch.testing.assert_close(captured["conv4_input"], conv1_activation)


# --------------------------------------------------------------- listing
def test_list_models_script_prints_the_table(tmp_path):
    completed = subprocess.run([sys.executable, str(SCRIPTS_DIR / "fit.py"), "--list-models"], cwd=tmp_path,
                               env=fit_environment(), capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr
    lines = completed.stdout.splitlines()
    header = lines[0].split()
    assert header == ["name", "family", "seed", "dataset", "parameters"]
    assert max(len(line) for line in lines) <= 100  # fits a terminal
    rows = {line.split()[0]: line for line in lines[2:] if line.strip() and not line.startswith(" ")}
    assert set(rows) == set(list_models())
    assert "    784→256 hand-written sigmoid" in completed.stdout  # each description under its model
    for name, count in SEED000_PARAMETERS.items():
        assert f"{count:,}" in rows[name] and "fashion_mnist" in rows[name]
