"""deeplab.models.inits: the named initialization schemes, on seed 002's families and generic models."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn

from deeplab.models import inits
from deeplab.theory import mean_field
from deeplab.errors import DeeplabError
from deeplab.models import create_model
from deeplab.models.depth_family import FAMILY_CONFIGS, ResidualBlock

RESIDUAL = [name for name, config in FAMILY_CONFIGS.items() if config.residual]
PLAIN = [name for name, config in FAMILY_CONFIGS.items() if not config.residual]
GENERIC = ["seed", "xavier", "kaiming", "orthogonal", "delta_orthogonal"]


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    # These models are tiny: intra-op threads only add overhead, and on a busy
    # 2-core machine their spin-waits make each op orders of magnitude slower.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _convs(model):
    return [m for m in model.modules() if isinstance(m, nn.Conv2d)]


# --- every scheme on every family it fits ---------------------------------------------


@pytest.mark.parametrize("name", list(FAMILY_CONFIGS))
@pytest.mark.parametrize("scheme", inits.SCHEMES)
def test_every_valid_combination_builds_and_trains(name, scheme):
    if scheme in inits.RESIDUAL_SCHEMES and name not in RESIDUAL:
        with pytest.raises(DeeplabError, match="residual"):
            create_model(name, depth=6, init=scheme)
        return
    if scheme in inits.VANILLA_SCHEMES and (name in RESIDUAL or FAMILY_CONFIGS[name].batch_norm):
        with pytest.raises(DeeplabError, match="skip connections|batch norm"):
            create_model(name, depth=6, init=scheme)
        return
    torch.manual_seed(0)
    model = create_model(name, depth=6, init=scheme)
    assert model.init == scheme
    out = model(torch.randn(4, 1, 28, 28))
    assert out.shape == (4, 10) and torch.isfinite(out).all()
    nn.functional.cross_entropy(out, torch.tensor([0, 1, 2, 3])).backward()
    assert all(p.grad is not None for p in model.parameters())


def test_unknown_scheme_suggests_a_close_name():
    with pytest.raises(DeeplabError, match="delta_orthogonal"):
        create_model("cnn_tanh", depth=3, init="delta_orthogonl")


def test_fixup_on_a_plain_family_says_what_to_do():
    with pytest.raises(DeeplabError, match="resnet_elu"):
        create_model("cnn_elu", depth=6, init="fixup")


# --- generic schemes: statistics -------------------------------------------------------


def test_xavier_and_kaiming_std():
    torch.manual_seed(0)
    layer = nn.Conv2d(64, 64, 3)
    inits.xavier_(layer)
    fan = 64 * 9
    assert abs(layer.weight.std().item() / math.sqrt(2 / (fan + fan)) - 1) < 0.03
    assert torch.count_nonzero(layer.bias) == 0
    inits.kaiming_(layer)
    assert abs(layer.weight.std().item() / math.sqrt(2 / fan) - 1) < 0.03  # σ_w² = 2


def test_orthogonal_rows_scaled_by_sigma_w():
    torch.manual_seed(0)
    layer = nn.Conv2d(16, 32, 3)
    inits.orthogonal_(layer, sigma_w2=1.5, sigma_b2=0.0)
    w = layer.weight.flatten(1)  # (32, 144): wide, orthonormal rows
    assert torch.allclose(w @ w.T, 1.5 * torch.eye(32), atol=1e-5)


@pytest.mark.parametrize("c_in, c_out", [(1, 4), (4, 4), (4, 8), (16, 16)])
def test_delta_orthogonal_centre_tap_has_orthonormal_columns(c_in, c_out):
    torch.manual_seed(0)
    layer = nn.Conv2d(c_in, c_out, 3, padding=1)
    inits.delta_orthogonal_(layer, sigma_w2=1.2, sigma_b2=0.01)
    w = layer.weight
    mask = torch.ones(3, 3, dtype=torch.bool)
    mask[1, 1] = False
    assert torch.count_nonzero(w[:, :, mask]) == 0  # every non-centre tap exactly zero
    centre = w[:, :, 1, 1]  # (C_out, C_in), C_out ≥ C_in
    assert torch.allclose(centre.T @ centre, 1.2 * torch.eye(c_in), atol=1e-5)  # WᵀW = σ_w² I


def test_delta_orthogonal_shrinking_layer_has_orthonormal_rows():
    torch.manual_seed(0)
    layer = nn.Conv2d(8, 4, 5)
    inits.delta_orthogonal_(layer, sigma_w2=2.0, sigma_b2=0.0)
    centre = layer.weight[:, :, 2, 2]
    assert torch.allclose(centre @ centre.T, 2.0 * torch.eye(4), atol=1e-5)
    assert torch.count_nonzero(layer.bias) == 0


def test_delta_orthogonal_bias_variance():
    torch.manual_seed(0)
    layer = nn.Linear(10, 20000)
    inits.delta_orthogonal_(layer, sigma_w2=1.0, sigma_b2=0.04)
    assert abs(layer.bias.std().item() - 0.2) < 0.01


def test_delta_orthogonal_needs_odd_kernels():
    with pytest.raises(DeeplabError, match="odd"):
        inits.delta_orthogonal_(nn.Conv2d(4, 4, 2), 1.0, 0.0)


def test_delta_orthogonal_on_a_seed002_model_uses_the_critical_point():
    torch.manual_seed(0)
    model = create_model("cnn_tanh", depth=9, init="delta_orthogonal")
    sigma_w2, sigma_b2 = inits.critical_point("tanh")
    for conv in _convs(model):
        centre = conv.weight[:, :, 1, 1]
        gram = centre.T @ centre
        assert torch.allclose(gram, sigma_w2 * torch.eye(conv.in_channels), atol=1e-5)
        off_centre = conv.weight.clone()
        off_centre[:, :, 1, 1] = 0
        assert torch.count_nonzero(off_centre) == 0
    fc = model.fully_connected.weight  # (10, 144): orthonormal rows
    assert torch.allclose(fc @ fc.T, sigma_w2 * torch.eye(10), atol=1e-5)


def test_critical_points_are_on_the_edge_of_chaos():
    sigma_w2, sigma_b2 = inits.critical_point("tanh")
    assert sigma_b2 == 1e-4 and 1.0 < sigma_w2 < 1.2
    assert abs(mean_field.analyze("tanh", sigma_w2, sigma_b2).chi1 - 1) < 1e-8
    sigma_w2, sigma_b2 = inits.critical_point("elu")
    assert abs(mean_field.analyze("elu", sigma_w2, sigma_b2).chi1 - 1) < 1e-8
    assert inits.critical_point("relu") == (2.0, 0.0)
    with pytest.raises(DeeplabError):
        inits.critical_point("swish")


# --- apply_init on other models (seed 000's cnn15) -------------------------------------


@pytest.mark.parametrize("scheme", GENERIC)
def test_apply_init_works_on_cnn15(scheme):
    torch.manual_seed(0)
    model = create_model("cnn15_plain")
    assert inits.apply_init(model, scheme, activation="relu") is model
    assert torch.isfinite(model(torch.randn(2, 1, 28, 28))).all()
    if scheme == "delta_orthogonal":
        for conv in _convs(model):
            centre = conv.weight[:, :, 1, 1]
            assert torch.allclose(centre.T @ centre, 2.0 * torch.eye(conv.in_channels), atol=1e-5)


def test_apply_init_residual_schemes_need_a_model_built_for_them():
    with pytest.raises(DeeplabError, match="residual"):
        inits.apply_init(create_model("cnn15_skip1"), "fixup")
    with pytest.raises(DeeplabError, match="init='fixup'"):
        inits.apply_init(create_model("resnet_elu_nobn", depth=6), "fixup")
    model = create_model("resnet_elu_nobn", depth=6, init="skipinit")
    with torch.no_grad():
        model.residual_blocks()[0].gain.fill_(5.0)
    inits.apply_init(model, "skipinit")
    assert model.residual_blocks()[0].gain.item() == 0.0


def test_apply_init_seed_restores_the_seeds_init():
    model = create_model("cnn_tanh", depth=30, init="kaiming")
    inits.apply_init(model, "seed")
    weights = torch.cat([c.weight.flatten() for c in _convs(model)])
    assert abs(weights.std().item() - 0.05) < 0.003
    assert model.fully_connected.weight.abs().max() <= 1 / math.sqrt(144)  # PyTorch default again


# --- fixup ------------------------------------------------------------------------------


def test_fixup_zeroes_each_branch_and_the_classifier():
    torch.manual_seed(0)
    model = create_model("resnet_elu_nobn", depth=9, init="fixup")
    blocks = model.residual_blocks()
    assert len(blocks) == 6  # L = 6 branches of m = 1 conv
    for block in blocks:
        assert torch.count_nonzero(block.conv.weight) == 0 and torch.count_nonzero(block.conv.bias) == 0
        assert block.bias_in.item() == 0 and block.bias_out.item() == 0 and block.scale.item() == 1
    assert torch.count_nonzero(model.fully_connected.weight) == 0
    assert torch.count_nonzero(model.fully_connected.bias) == 0
    # the plain convs that open each stage keep the seed's N(0, 1/(9 C_in))
    for stage in model.stages:
        assert stage[0].weight.std() > 0
    x = torch.randn(3, 1, 28, 28)
    for block in blocks:
        h = torch.randn(2, block.conv.in_channels, 5, 5)
        assert torch.equal(block(h), h)  # every block starts as the identity
    out = model(x)
    assert torch.count_nonzero(out) == 0
    nn.functional.cross_entropy(out, torch.tensor([1, 2, 3])).backward()
    assert model.fully_connected.weight.grad.abs().sum() > 0
    # three scalars per block
    assert sum(p.numel() for p in model.parameters()) == sum(
        p.numel() for p in create_model("resnet_elu_nobn", depth=9).parameters()
    ) + 3 * 6


def test_fixup_with_batch_norm_zeroes_the_branch_bn_gamma():
    model = create_model("resnet_elu", depth=6, init="fixup")
    for block in model.residual_blocks():
        assert torch.count_nonzero(block.bn.weight) == 0 and torch.count_nonzero(block.bn.bias) == 0
        assert block.conv.weight.std() > 0
        h = torch.randn(4, block.conv.in_channels, 5, 5)
        assert torch.equal(block.train()(h), h)


def test_fixup_scale_formula():
    assert inits.fixup_scale(4, 2) == pytest.approx(0.5)  # L^(−1/2)
    assert inits.fixup_scale(16, 3) == pytest.approx(0.5)  # L^(−1/4)
    with pytest.raises(ValueError):
        inits.fixup_scale(4, 1)  # m = 1: nothing to scale


def test_fixup_helper_scales_inner_layers_of_deeper_branches():
    torch.manual_seed(0)
    branches = [[nn.Conv2d(4, 4, 3), nn.Conv2d(4, 4, 3)] for _ in range(9)]
    before = [b[0].weight.clone() for b in branches]
    classifier = nn.Linear(4, 2)
    inits.fixup_(branches, classifier)
    for (first, last), original in zip(branches, before):
        assert torch.allclose(first.weight, original * 9 ** -0.5)
        assert torch.count_nonzero(last.weight) == 0 and torch.count_nonzero(last.bias) == 0
    assert torch.count_nonzero(classifier.weight) == 0


# --- skipinit ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", RESIDUAL)
def test_skipinit_gains_start_at_zero_and_learn(name):
    torch.manual_seed(0)
    model = create_model(name, depth=9, init="skipinit")
    blocks = model.residual_blocks()
    assert blocks and all(b.gain.item() == 0.0 and b.gain.requires_grad for b in blocks)
    for block in blocks:
        h = torch.randn(2, block.conv.in_channels, 5, 5)
        assert torch.equal(block(h), h)
    loss = nn.functional.cross_entropy(model(torch.randn(8, 1, 28, 28)), torch.arange(8))
    loss.backward()
    assert any(b.gain.grad.abs().item() > 0 for b in blocks)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    optimizer.step()
    assert any(b.gain.item() != 0.0 for b in blocks)


def test_residual_block_without_scheme_has_no_scalars():
    names = {name for name, _ in ResidualBlock(4, "elu", False).named_parameters()}
    assert names == {"conv.weight", "conv.bias"}


# --- signal propagation -----------------------------------------------------------------


def _last_activation_variance(model, x):
    outputs = []
    last = [m for m in model.modules() if isinstance(m, nn.Tanh)][-1]
    handle = last.register_forward_hook(lambda module, inputs, output: outputs.append(output))
    with torch.no_grad():
        model(x)
    handle.remove()
    return outputs[0].var().item()


def test_delta_orthogonal_keeps_a_60_layer_tanh_signal_alive():
    torch.manual_seed(0)
    x = torch.randn(8, 1, 28, 28)
    seed_variance = _last_activation_variance(create_model("cnn_tanh", depth=60), x)
    delta_variance = _last_activation_variance(create_model("cnn_tanh", depth=60, init="delta_orthogonal"), x)
    q_star = mean_field.analyze("tanh", *inits.critical_point("tanh")).q_star  # ≈ 0.046
    assert seed_variance < 1e-12  # σ_w² ≤ 0.36 per layer: the signal collapses
    assert q_star / 10 < delta_variance < q_star * 10  # stays near the fixed point


def test_fixup_with_one_conv_per_branch_makes_a_stages_branches_identical():
    """Why ``fixup`` misses the 300-layer target on seed 002's ResNet_noBN (m = 1) while ``skipinit`` meets it.

    With one zero-initialized conv per branch every block of a stage is the identity at
    init, so every branch sees the same input and the same upstream gradient: one step
    later all of a stage's branch convs are the same matrix (cosine 1) and the stage
    computes a power of one map, which explodes with depth. SkipInit's zero gains leave
    each branch's random conv in place, so the branches stay distinct.
    """
    from deeplab.models.depth_family import ResidualBlock

    torch.manual_seed(0)
    images, labels = torch.randn(32, 1, 28, 28), torch.randint(0, 10, (32,))
    similarity = {}
    for scheme in ("fixup", "skipinit"):
        model = create_model("resnet_elu_nobn", depth=12, init=scheme, in_channels=1, num_classes=10, image_size=28)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        for _ in range(3):  # step 1 moves only the (zero) classifier; the body learns from step 2
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(model(images), labels).backward()
            optimizer.step()
        blocks = [m for m in model.stages[1] if isinstance(m, ResidualBlock)]
        with torch.no_grad():
            branch = [b.conv.weight.flatten() * (b.gain if scheme == "skipinit" else 1.0) for b in blocks]
            unit = torch.nn.functional.normalize(torch.stack(branch), dim=1)
            cosine = unit @ unit.T
        similarity[scheme] = cosine[~torch.eye(len(blocks), dtype=torch.bool)]
    assert similarity["fixup"].min() > 0.9999
    assert similarity["skipinit"].abs().max() < 0.5
