"""The CIFAR-10 model zoo of seeds 001, 003 and 004: every model on both input
shapes (3×32×32 and 1×28×28), the parameter counts the seeds report, the seed
initialization, and depth validation. Offline and CPU-only."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from deeplab.errors import DeeplabError
from deeplab.models import count_parameters, create_model, list_models, model_spec

SHAPES = {"cifar": (3, 32), "mnist": (1, 28)}

# (model name, extra kwargs): depth families at small depths so the file stays fast
CASES = [
    ("vgg", {}),
    ("resnet18", {}),
    ("resnet34", {}),
    ("resnet50", {}),
    ("plainnet18", {}),
    ("inception", {}),
    *[(name, {"activation": act}) for name in ("mlp_1", "mlp_2", "cnn_3", "cnn_4", "cnn_5") for act in ("relu", "sigmoid")],
    ("plain_deep", {"depth": 2}),
    ("plain_cnn_deep", {"depth": 2}),
    ("resnet_deep", {"depth": 4}),
    ("bottleneck_resnet50", {}),
    ("bottleneck_resnet101", {}),
    ("bottleneck_resnet152", {}),
]
MY_MODELS = sorted({name for name, _ in CASES})

ALLOWED_PROTOCOL = {
    "epochs": int,
    "batch_size": int,
    "lr": float,
    "momentum": float,
    "weight_decay": float,
    "optimizer": ("momentum_sgd", "sgd", "adam"),
    "loss": ("torch", "manual"),
    "schedule": ("none", "cosine", "step"),
    "val_split": float,
    "augment": bool,
    "input_noise_std": float,
    "crop_padding": int,
    "normalize_mean": tuple,
    "normalize_std": tuple,
}


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    # Batch-2 CPU passes gain little from 2 threads, and when the cores are busy
    # OpenMP's spinning threads made this file 10× slower (80 s instead of 7 s).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _case_id(case: tuple[str, dict]) -> str:
    name, kwargs = case
    return "-".join([name, *(f"{k}={v}" for k, v in kwargs.items())])


@pytest.mark.parametrize("shape", list(SHAPES), ids=list(SHAPES))
@pytest.mark.parametrize("case", CASES, ids=[_case_id(c) for c in CASES])
def test_forward_shape_finite_and_every_parameter_gets_a_gradient(case, shape):
    name, kwargs = case
    channels, side = SHAPES[shape]
    torch.manual_seed(0)
    model = create_model(name, in_channels=channels, num_classes=10, image_size=side, **kwargs)
    model.train()
    x = torch.randn(2, channels, side, side)
    logits = model(x)
    assert logits.shape == (2, 10)
    assert torch.isfinite(logits).all()
    F.cross_entropy(logits, torch.tensor([1, 7])).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing, f"{name}: no gradient for {missing[:5]}"
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


# ------------------------------------------------------------ parameter counts

# Seed 003's report: "98666", "101034", "76194", "77490", "40682" (3×32×32)
SEED003_COUNTS = {"mlp_1": 98_666, "mlp_2": 101_034, "cnn_3": 76_194, "cnn_4": 77_490, "cnn_5": 40_682}


@pytest.mark.parametrize("activation", ["relu", "sigmoid"])
@pytest.mark.parametrize("name", list(SEED003_COUNTS))
def test_seed003_parameter_counts(name, activation):
    model = create_model(name, activation=activation)
    assert count_parameters(model) == SEED003_COUNTS[name]


def test_seed003_counts_on_mnist_shape():
    # first layer sees 784 inputs (MLPs) or C·7·7 features (CNNs, 28→14→7)
    expected = {
        "mlp_1": 784 * 32 + 32 + 330,
        "mlp_2": 784 * 32 + 32 + 32 * 64 + 650,
        "cnn_3": 76_194 - 3 * 16 * 9 + 16 * 9 - (16 * 64 - 16 * 49) * 64,
        "cnn_4": 77_490 - 2 * 16 * 9 - (16 * 64 - 16 * 49) * 64,
        "cnn_5": 40_682 - 2 * 8 * 9 - (8 * 64 - 8 * 49) * 64,
    }
    for name, count in expected.items():
        assert count_parameters(create_model(name, in_channels=1, image_size=28)) == count, name


def test_seed001_parameter_counts():
    # The seed prints no outputs; its ResNet is kuangliu/pytorch-cifar's line for line.
    expected = {
        "resnet18": 11_173_962,
        "resnet34": 21_282_122,
        "resnet50": 23_520_842,
        "plainnet18": 11_173_962 - (64 * 128 + 256 + 128 * 256 + 512 + 256 * 512 + 1024),  # no projections
        "vgg": 33_646_666,
    }
    for name, count in expected.items():
        assert count_parameters(create_model(name)) == count, name
    assert count_parameters(create_model("inception")) < 2_000_000


def _depth_family_count(stem: int, blocks: int) -> int:
    block = 2 * (64 * 64 * 9 + 64) + 2 * 128  # two biased 3×3 convs + two BNs
    return stem + 128 + blocks * block + 64 * 10 + 10


@pytest.mark.parametrize("depth", [1, 3, 20])
def test_plain_deep_parameter_count(depth):
    model = create_model("plain_deep", depth=depth)
    assert count_parameters(model) == _depth_family_count(3 * 64 * 49 + 64, depth)
    assert len(model.layers) == depth


@pytest.mark.parametrize("depth", [2, 6, 28])
def test_resnet_deep_parameter_count(depth):
    model = create_model("resnet_deep", depth=depth)
    assert count_parameters(model) == _depth_family_count(3 * 64 * 9 + 64, depth // 2)
    assert len(model.layer1) == depth // 2
    # every block at 64 channels, stride 1: identity shortcuts only
    assert all(len(block.shortcut) == 0 for block in model.layer1)


def test_default_depths_match_the_seed():
    assert model_spec("plain_deep").default_depth == 20  # PlainConvNet(depth=20)
    assert model_spec("resnet_deep").default_depth == 56  # ResNet(depth=56)
    assert model_spec("plain_cnn_deep").default_depth == 56  # PlainCNN(depth=56)
    assert len(create_model("plain_deep").layers) == 20
    assert len(create_model("resnet_deep", depth=None).layer1) == 28
    assert count_parameters(create_model("resnet_deep")) == 2_077_706


def test_bottleneck_resnet_parameter_counts():
    # The seed's code (biased convs, 10-class fc); its "Expected Output" quotes other numbers.
    expected = {
        "bottleneck_resnet50": 23_555_082,
        "bottleneck_resnet101": 42_573_322,
        "bottleneck_resnet152": 58_240_010,
    }
    for name, count in expected.items():
        model = create_model(name)
        assert count_parameters(model) == count, name
        blocks = [len(getattr(model, f"layer{i}")) for i in range(1, 5)]
        assert 3 * sum(blocks) + 2 == int(name.rsplit("resnet", 1)[1])  # 50 / 101 / 152 weight layers


# ------------------------------------------------------------- depth validation


@pytest.mark.parametrize("depth", [0, 1, 3, 57, -2, 2.0, True, "20"])
def test_resnet_deep_rejects_bad_depths(depth):
    with pytest.raises(DeeplabError, match="even integer"):
        create_model("resnet_deep", depth=depth)


@pytest.mark.parametrize("name", ["plain_deep", "plain_cnn_deep"])
@pytest.mark.parametrize("depth", [0, -1, 2.5, False])
def test_plain_depth_families_reject_bad_depths(name, depth):
    with pytest.raises(DeeplabError, match="positive integer"):
        create_model(name, depth=depth)


@pytest.mark.parametrize("name", ["vgg", "resnet18", "cnn_5", "bottleneck_resnet50"])
def test_fixed_depth_models_refuse_depth(name):
    with pytest.raises(DeeplabError, match="fixed depth"):
        create_model(name, depth=8)


# ------------------------------------------------------------------ seed details


@pytest.mark.parametrize("name", list(SEED003_COUNTS))
def test_seed003_initialization_is_kaiming_uniform_with_zero_biases(name):
    torch.manual_seed(0)
    model = create_model(name)
    for module in model.modules():
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            fan_in = module.weight[0].numel()
            bound = math.sqrt(6.0 / fan_in)  # kaiming_uniform_ defaults: gain √2, fan-in
            assert module.weight.abs().max() <= bound
            assert module.weight.abs().max() > 0.9 * bound  # not PyTorch's default (bound/√6)
            if module.bias is not None:
                assert torch.count_nonzero(module.bias) == 0
    saved = {k: v.clone() for k, v in model.state_dict().items()}
    for tensor in model.parameters():
        nn.init.zeros_(tensor)
    model.init_weights()
    assert all(torch.count_nonzero(model.state_dict()[k]) > 0 for k in saved if k.endswith("weight"))


def test_seed003_state_dict_names_are_the_seeds():
    assert set(create_model("mlp_2").state_dict()) == {"fc1.weight", "fc1.bias", "fc2.weight", "fc3.weight", "fc3.bias"}
    assert [k for k in create_model("cnn_4").state_dict() if k.endswith("weight")] == [
        "conv1.weight", "conv2.weight", "conv3.weight", "conv4.weight", "fc1.weight", "fc2.weight"
    ]
    assert create_model("cnn_3").conv3.kernel_size == (7, 7)


def test_seed003_activation_switch():
    x = torch.randn(2, 3, 32, 32)
    torch.manual_seed(1)
    relu = create_model("cnn_5", activation="relu")
    torch.manual_seed(1)
    sigmoid = create_model("cnn_5", activation="sigmoid")
    assert torch.equal(relu.conv1.weight, sigmoid.conv1.weight)  # same init whatever the activation
    with torch.no_grad():
        assert not torch.allclose(relu(x), sigmoid(x))
    with pytest.raises(ValueError, match="activation"):
        create_model("mlp_1", activation="tanh")


def test_vgg_keeps_the_seeds_floor_pools_on_32_and_uses_ceil_pools_on_28():
    pools_32 = [m for m in create_model("vgg").modules() if isinstance(m, nn.MaxPool2d)]
    pools_28 = [m for m in create_model("vgg", in_channels=1, image_size=28).modules() if isinstance(m, nn.MaxPool2d)]
    assert len(pools_32) == len(pools_28) == 5
    assert not any(p.ceil_mode for p in pools_32)
    assert all(p.ceil_mode for p in pools_28)
    convs = [m for m in create_model("vgg").modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [64] * 2 + [128] * 2 + [256] * 3 + [512] * 6
    dropouts = [m.p for m in create_model("vgg").modules() if isinstance(m, nn.Dropout)]
    assert dropouts == [0.5, 0.5]


def test_seed001_resnet_details():
    model = create_model("resnet18")
    assert model.conv1.kernel_size == (3, 3) and model.conv1.stride == (1, 1)
    assert not any(isinstance(m, nn.MaxPool2d) for m in model.modules())
    assert all(m.bias is None for m in model.modules() if isinstance(m, nn.Conv2d))
    projections = [b for layer in (model.layer2, model.layer3, model.layer4) for b in layer if len(b.shortcut)]
    assert len(projections) == 3 and len(model.layer1[0].shortcut) == 0
    plain = create_model("plainnet18")
    assert not any(hasattr(block, "shortcut") for layer in (plain.layer1, plain.layer4) for block in layer)


def test_inception_network_starts_with_the_seeds_module():
    model = create_model("inception")
    first = model.stages[0][0]
    with torch.no_grad():
        out = first.eval()(torch.randn(2, 64, 32, 32))
    assert out.shape == (2, 16 + 32 + 16 + 16, 32, 32)  # the seed's printed check


def test_seed004_stems():
    plain = create_model("plain_deep", depth=1)
    assert plain.conv1.kernel_size == (7, 7) and plain.conv1.stride == (2, 2)
    assert isinstance(plain.maxpool, nn.MaxPool2d)
    resnet = create_model("resnet_deep", depth=2)
    assert resnet.conv1.kernel_size == (3, 3) and resnet.conv1.bias is not None
    deep = create_model("bottleneck_resnet50")
    assert deep.conv1.kernel_size == (7, 7) and deep.fc.in_features == 2048


# --------------------------------------------------------------------- registry


@pytest.mark.parametrize("name", MY_MODELS)
def test_specs_and_protocols(name):
    assert name in list_models()
    spec = model_spec(name)
    assert spec.dataset == "cifar10"
    assert spec.seed[:3] in ("001", "003", "004")
    for key, value in spec.protocol.items():
        assert key in ALLOWED_PROTOCOL, key
        allowed = ALLOWED_PROTOCOL[key]
        if isinstance(allowed, tuple):
            assert value in allowed, (key, value)
        else:
            assert isinstance(value, allowed) and not (allowed is not bool and isinstance(value, bool)), (key, value)
    assert spec.has_depth == (name in ("plain_deep", "plain_cnn_deep", "resnet_deep"))
    assert (spec.default_depth is not None) == spec.has_depth


def test_family_protocols_follow_the_seeds():
    assert model_spec("resnet18").protocol == dict(
        epochs=20, batch_size=128, lr=0.1, momentum=0.9, weight_decay=5e-4,
        optimizer="sgd", loss="torch", schedule="cosine", augment=True,
    )
    assert model_spec("cnn_5").protocol == dict(
        epochs=15, batch_size=50, lr=1e-3, optimizer="adam", loss="torch",
        schedule="none", val_split=0.1, augment=False, input_noise_std=0.007,
        normalize_mean=(0.4914, 0.4822, 0.4465), normalize_std=(0.247, 0.243, 0.261),  # part3.py line 23
    )
    assert model_spec("resnet_deep").protocol == dict(
        epochs=20, batch_size=128, lr=0.01, momentum=0.9, weight_decay=0.0,
        optimizer="sgd", loss="torch", schedule="step", augment=True,
        crop_padding=0,  # RandomHorizontalFlip() alone
    )
