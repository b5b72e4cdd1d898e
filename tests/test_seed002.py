"""Seed 002's seven depth families: shapes, parameter counts, depth validation,
the seed's exact initialization, and bit-identity with the seed's own classes."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
import torch
import torch.nn as nn

from deeplab.errors import DeeplabError
from deeplab.models import count_parameters, create_model, list_models, model_spec
from deeplab.models.depth_family import (
    DEFAULT_DEPTH,
    FAMILY_CONFIGS,
    SEED002_SEARCH,
    DepthCNN,
    ResidualBlock,
    validate_depth,
)

FAMILIES = list(FAMILY_CONFIGS)
PLAIN_NO_BN = ["cnn_tanh", "cnn_tanh_newinit", "cnn_elu", "resnet_elu_nobn"]
WITH_BN = ["cnn_elu_bn", "resnet_elu", "cnn_tanh_bn_oldinit"]


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    # These models are tiny: intra-op threads only add overhead, and on a busy
    # 2-core machine their spin-waits make each op orders of magnitude slower.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


# --- the seed's classes, as seed 002 writes them (k → model), for bit-identity checks ---


def _seed_stages(k, layer_fn, residual_block=None):
    stages = nn.ModuleList()
    out_channels = [4, 8, 16]
    in_channels = 1
    for i in range(3):
        stage = nn.ModuleList()
        for index in range(k // 3):
            if residual_block is not None and index > 0:
                stage.append(residual_block(in_channels, out_channels[i]))
            else:
                stage.extend(layer_fn(in_channels, out_channels[i]))
                in_channels = out_channels[i]
        stage.append(nn.AvgPool2d(kernel_size=2, stride=2))
        stages.append(stage)
    return stages


class _SeedNet(nn.Module):
    """The seed's CNNtanh / CNNtanh_newinit / CNNelu / CNNeluBN / CNNtanhBN_oldinit / ResNet / ResNet_noBN."""

    def __init__(self, k, layer_fn, naive, residual_block=None):
        super().__init__()
        self.stages = _seed_stages(k, layer_fn, residual_block)
        self.fully_connected = nn.Linear(16 * 3 * 3, 10)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                if naive:
                    m.weight.data.normal_(0, 0.05)
                else:
                    sigma = np.sqrt(1 / (9 * m.in_channels))
                    m.weight.data.normal_(0, sigma)
                m.bias.data.zero_()

    def forward(self, input):
        L = input
        for stage in self.stages:
            for layer in stage:
                L = layer(L)
        L = L.view(L.size(0), -1)
        return self.fully_connected(L)


class _SeedResBlock(nn.Module):
    def __init__(self, ins, outs, kernel_size=3, stride=1, padding=1, bn=True):
        super().__init__()
        self.conv = nn.Conv2d(ins, outs, kernel_size, stride, padding)
        self.bn = nn.BatchNorm2d(outs) if bn else None
        self.elu = nn.ELU()

    def forward(self, x):
        out = self.conv(x)
        if self.bn is not None:
            out = self.bn(out)
        out = self.elu(out)
        return out + x


def _conv(i, o):
    return nn.Conv2d(i, o, kernel_size=3, stride=1, padding=1)


SEED_CLASSES = {
    "cnn_tanh": lambda k: _SeedNet(k, lambda i, o: [_conv(i, o), nn.Tanh()], naive=True),
    "cnn_tanh_newinit": lambda k: _SeedNet(k, lambda i, o: [_conv(i, o), nn.Tanh()], naive=False),
    "cnn_elu": lambda k: _SeedNet(k, lambda i, o: [_conv(i, o), nn.ELU()], naive=False),
    "cnn_elu_bn": lambda k: _SeedNet(k, lambda i, o: [_conv(i, o), nn.BatchNorm2d(o), nn.ELU()], naive=False),
    "resnet_elu": lambda k: _SeedNet(
        k, lambda i, o: [_conv(i, o), nn.BatchNorm2d(o), nn.ELU()], naive=False, residual_block=_SeedResBlock
    ),
    "cnn_tanh_bn_oldinit": lambda k: _SeedNet(
        k, lambda i, o: [_conv(i, o), nn.BatchNorm2d(o), nn.Tanh()], naive=True
    ),
    "resnet_elu_nobn": lambda k: _SeedNet(
        k,
        lambda i, o: [_conv(i, o), nn.ELU()],
        naive=False,
        residual_block=lambda i, o: _SeedResBlock(i, o, bn=False),
    ),
}


# --- registry ---------------------------------------------------------------------------


def test_all_families_registered_with_seed_protocol():
    names = list_models()
    for name in FAMILIES:
        assert name in names
        spec = model_spec(name)
        assert spec.dataset == "mnist"
        assert spec.has_depth and spec.default_depth == DEFAULT_DEPTH == 9
        assert spec.family == "seed002-depth"
        assert spec.protocol == dict(
            epochs=3, batch_size=256, optimizer="sgd", lr=0.01, momentum=0.9, loss="torch", schedule="none"
        )
        upper, reported = SEED002_SEARCH[name]
        assert f"upper {upper}" in spec.description and f"max k={reported}" in spec.description


#: the seed's class names → deeplab's family names
SEED_CLASS_NAMES = {"CNNtanh": "cnn_tanh", "CNNtanh_newinit": "cnn_tanh_newinit", "CNNelu": "cnn_elu",
                "CNNeluBN": "cnn_elu_bn", "ResNet": "resnet_elu", "CNNtanhBN_oldinit": "cnn_tanh_bn_oldinit",
                "ResNet_noBN": "resnet_elu_nobn"}
#: the seed's summary lines' names → deeplab's family names
SEED_SUMMARY_NAMES = {"Tanh": "cnn_tanh", "Tanh with better init": "cnn_tanh_newinit", "Elu": "cnn_elu",
                      "Elu with batch normalization": "cnn_elu_bn", "Elu Resnet": "resnet_elu",
                      "CNNtanhBN_oldinit": "cnn_tanh_bn_oldinit", "ResNet_noBN": "resnet_elu_nobn"}


def test_search_table_is_read_from_the_seed_text():
    """SEED002_SEARCH against the seed document itself: each ``search(lr=0.01, upper=N,
    model_factory=Class)`` call gives the upper bound, its summary bullets the maximum."""
    import re

    from conftest import SEEDS_DIR

    documents = sorted(SEEDS_DIR.glob("002_*.txt")) if SEEDS_DIR.is_dir() else []
    if not documents:
        pytest.skip(f"seed 002's document is not at {SEEDS_DIR} (it lives beside the repository, not in it)")
    text = documents[0].read_text()
    uppers = {SEED_CLASS_NAMES[cls]: int(upper)
              for upper, cls in re.findall(r"search\(lr=0\.01, upper=(\d+), model_factory=(\w+)\)", text)}
    maxima = {}
    for name, k in re.findall(r"<li> (.+?) - (?:Max )?trainable (?:with|to) (?:only )?k ?= ?(\d+)", text):
        if name.strip() in SEED_SUMMARY_NAMES:
            maxima[SEED_SUMMARY_NAMES[name.strip()]] = int(k)
    assert set(uppers) == set(maxima) == set(SEED002_SEARCH)
    assert {family: (uppers[family], maxima[family]) for family in SEED002_SEARCH} == SEED002_SEARCH


def test_default_depth_used_when_none_given():
    model = create_model("cnn_elu")
    assert model.depth == 9
    assert sum(isinstance(m, nn.Conv2d) for m in model.modules()) == 9


# --- shapes, gradients, parameter counts ------------------------------------------------


@pytest.mark.parametrize("name", FAMILIES)
@pytest.mark.parametrize("depth", [3, 6])
@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32)])
def test_forward_shape_finite_and_every_parameter_gets_a_gradient(name, depth, shape):
    torch.manual_seed(0)
    channels, side, _ = shape
    model = create_model(name, depth=depth, in_channels=channels, image_size=side)
    out = model(torch.randn(4, *shape))
    assert out.shape == (4, 10)
    assert torch.isfinite(out).all()
    out.square().mean().backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, pname
        assert torch.isfinite(p.grad).all(), pname
    assert sum(isinstance(m, nn.Conv2d) for m in model.modules()) == depth


@pytest.mark.parametrize("name", PLAIN_NO_BN)
def test_parameter_count_without_batch_norm_at_k3_is_2954(name):
    assert count_parameters(create_model(name, depth=3)) == 2954  # 40 + 296 + 1168 + 1450


@pytest.mark.parametrize("name", WITH_BN)
def test_parameter_count_with_batch_norm_at_k3_is_3010(name):
    assert count_parameters(create_model(name, depth=3)) == 2954 + 2 * (4 + 8 + 16)


@pytest.mark.parametrize("side, features", [(28, 144), (32, 256)])
def test_classifier_input_size(side, features):
    model = create_model("cnn_tanh", depth=3, image_size=side)
    assert model.fully_connected.in_features == features


def test_num_classes():
    assert create_model("resnet_elu", depth=6, num_classes=7)(torch.randn(2, 1, 28, 28)).shape == (2, 7)


# --- validation -------------------------------------------------------------------------


@pytest.mark.parametrize("depth", [0, 4, -3, 10, "abc", "9", 3.0, True, None])
def test_bad_depth_raises_deeplab_error(depth):
    with pytest.raises(DeeplabError, match="positive multiple of 3"):
        DepthCNN(depth, "tanh", False, False, "0.05")


@pytest.mark.parametrize("depth", [0, 4, -3, "abc"])
def test_bad_depth_through_registry(depth):
    with pytest.raises(DeeplabError, match="positive multiple of 3"):
        create_model("cnn_tanh", depth=depth)


def test_validate_depth_accepts_numpy_ints():
    assert validate_depth(np.int64(12)) == 12


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(image_size=4), "image_size"),
        (dict(in_channels=0), "in_channels"),
        (dict(num_classes=-1), "num_classes"),
        (dict(init="bogus"), "unknown init"),
    ],
)
def test_bad_arguments_raise_deeplab_error(kwargs, match):
    with pytest.raises(DeeplabError, match=match):
        create_model("cnn_elu", depth=3, **kwargs)


# --- the seed's architecture and initialization ----------------------------------------


@pytest.mark.parametrize("name", FAMILIES)
@pytest.mark.parametrize("depth", [3, 9])
def test_bit_identical_to_the_seeds_class(name, depth):
    torch.manual_seed(123)
    ours = create_model(name, depth=depth)
    torch.manual_seed(123)
    theirs = SEED_CLASSES[name](depth)
    ours_state, theirs_state = ours.state_dict(), theirs.state_dict()
    assert list(ours_state) == list(theirs_state)
    for key in ours_state:
        assert torch.equal(ours_state[key], theirs_state[key]), key
    x = torch.randn(3, 1, 28, 28)
    ours.train(), theirs.train()
    assert torch.allclose(ours(x), theirs(x), atol=1e-6)


def test_naive_init_std_is_0_05():
    torch.manual_seed(0)
    for name in ("cnn_tanh", "cnn_tanh_bn_oldinit"):
        model = create_model(name, depth=30)
        convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
        weights = torch.cat([c.weight.flatten() for c in convs])
        assert weights.numel() > 20_000
        assert abs(weights.std().item() - 0.05) < 0.002
        assert all(torch.count_nonzero(c.bias) == 0 for c in convs)


@pytest.mark.parametrize("name", ["cnn_tanh_newinit", "cnn_elu", "cnn_elu_bn", "resnet_elu", "resnet_elu_nobn"])
def test_fan_in_init_std_is_sqrt_one_over_nine_c_in(name):
    torch.manual_seed(0)
    model = create_model(name, depth=60)
    by_in_channels: dict[int, list[torch.Tensor]] = {}
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            by_in_channels.setdefault(m.in_channels, []).append(m.weight.flatten())
            assert torch.count_nonzero(m.bias) == 0
    for c_in, weights in by_in_channels.items():
        w = torch.cat(weights)
        if w.numel() < 2000:
            continue
        expected = math.sqrt(1 / (9 * c_in))  # a standard deviation: variance 1/fan_in, σ_w² = 1
        assert abs(w.std().item() / expected - 1) < 0.05, c_in


def test_classifier_keeps_pytorch_default_init():
    torch.manual_seed(0)
    fc = create_model("cnn_tanh", depth=3).fully_connected
    bound = 1 / math.sqrt(144)
    assert fc.weight.abs().max() <= bound and fc.bias.abs().max() <= bound
    assert torch.count_nonzero(fc.bias) > 0


def test_batch_norm_defaults():
    model = create_model("cnn_elu_bn", depth=6)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            assert torch.all(m.weight == 1) and torch.all(m.bias == 0)


@pytest.mark.parametrize("name, blocks", [("resnet_elu", 3), ("resnet_elu_nobn", 3)])
def test_residual_blocks_everywhere_but_each_stages_first_layer(name, blocks):
    assert len(create_model(name, depth=3).residual_blocks()) == 0
    model = create_model(name, depth=6)
    assert len(model.residual_blocks()) == blocks
    model = create_model(name, depth=12)
    assert len(model.residual_blocks()) == 9  # 3 per stage
    for stage in model.stages:
        assert isinstance(stage[0], nn.Conv2d) and not isinstance(stage[0], ResidualBlock)


@pytest.mark.parametrize("batch_norm", [False, True])
def test_residual_block_adds_after_the_activation(batch_norm):
    torch.manual_seed(0)
    block = ResidualBlock(4, "elu", batch_norm)
    x = torch.randn(2, 4, 6, 6)
    branch = block.conv(x)
    if batch_norm:
        branch = block.bn(branch)
    assert torch.allclose(block(x), nn.functional.elu(branch) + x)


def test_init_weights_reinitializes_reproducibly():
    torch.manual_seed(1)
    model = create_model("resnet_elu", depth=6)
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(3.0)
    torch.manual_seed(5)
    model.init_weights()
    first = {k: v.clone() for k, v in model.state_dict().items()}
    torch.manual_seed(5)
    model.init_weights()
    for key, value in model.state_dict().items():
        assert torch.equal(value, first[key]), key
    assert not torch.all(model.fully_connected.weight == 3.0)


def test_deep_models_build_fast():
    start = time.perf_counter()
    model = create_model("resnet_elu", depth=450)
    elapsed = time.perf_counter() - start
    assert sum(isinstance(m, nn.Conv2d) for m in model.modules()) == 450
    assert elapsed < 5.0
