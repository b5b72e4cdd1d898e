"""MomentumSGD: the seeds' equation m ← α·m + g, θ ← θ − η·m on a case worked by hand,
bit-identical to torch.optim.SGD(momentum=α, dampening=0), checkpointable, Lightning-compatible."""

from __future__ import annotations

import copy
import io

import pytest
import torch
import torch.nn as nn

from deeplab.training.optim import MomentumSGD

pytestmark = pytest.mark.usefixtures("single_thread")


def test_three_steps_worked_by_hand():
    """η = 0.1, α = 0.9, θ₀ = (1, −2); gradients set by hand.

    step 1: g = (1, 2)      m = (1, 2)                          θ = (0.9, −2.2)
    step 2: g = (0.5, −1)   m = 0.9·(1, 2) + (0.5, −1) = (1.4, 0.8)     θ = (0.76, −2.28)
    step 3: g = (−1, 0)     m = 0.9·(1.4, 0.8) + (−1, 0) = (0.26, 0.72) θ = (0.734, −2.352)
    """
    theta = nn.Parameter(torch.tensor([1.0, -2.0], dtype=torch.float64))
    optimizer = MomentumSGD([theta], lr=0.1, momentum=0.9)
    steps = [
        ((1.0, 2.0), (1.0, 2.0), (0.9, -2.2)),
        ((0.5, -1.0), (1.4, 0.8), (0.76, -2.28)),
        ((-1.0, 0.0), (0.26, 0.72), (0.734, -2.352)),
    ]
    for gradient, momentum, expected in steps:
        theta.grad = torch.tensor(gradient, dtype=torch.float64)
        optimizer.step()
        torch.testing.assert_close(optimizer.state[theta]["momentum_buffer"], torch.tensor(momentum, dtype=torch.float64),
                                   rtol=0, atol=1e-12)
        torch.testing.assert_close(theta.detach(), torch.tensor(expected, dtype=torch.float64), rtol=0, atol=1e-12)


def test_weight_decay_worked_by_hand():
    """λ = 0.5 adds λ·θ to g: θ₀ = 2, g = 1 → g' = 2, m = 2, θ = 2 − 0.1·2 = 1.8;
    then g = 0 → g' = 0.9, m = 0.9·2 + 0.9 = 2.7, θ = 1.8 − 0.27 = 1.53."""
    theta = nn.Parameter(torch.tensor([2.0], dtype=torch.float64))
    optimizer = MomentumSGD([theta], lr=0.1, momentum=0.9, weight_decay=0.5)
    for gradient, expected in ((1.0, 1.8), (0.0, 1.53)):
        theta.grad = torch.tensor([gradient], dtype=torch.float64)
        optimizer.step()
        assert theta.item() == pytest.approx(expected, abs=1e-12)


def test_zero_momentum_is_plain_sgd_and_keeps_no_buffer():
    theta = nn.Parameter(torch.tensor([1.0, 1.0], dtype=torch.float64))
    optimizer = MomentumSGD([theta], lr=0.5, momentum=0.0)
    theta.grad = torch.tensor([2.0, -4.0], dtype=torch.float64)
    optimizer.step()
    torch.testing.assert_close(theta.detach(), torch.tensor([0.0, 3.0], dtype=torch.float64))
    assert "momentum_buffer" not in optimizer.state[theta]


class SmallNet(nn.Module):
    """Conv + linear layers, and a parameter that never gets a gradient (must be left alone)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 6 * 6, 10)
        self.unused = nn.Parameter(torch.ones(3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.tanh(self.conv(x)).flatten(1))


def train_steps(model: nn.Module, optimizer: torch.optim.Optimizer, steps: int, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        x = torch.randn(8, 1, 6, 6, generator=generator)
        y = torch.randint(0, 10, (8,), generator=generator)
        optimizer.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()


def assert_models_equal(a: nn.Module, b: nn.Module) -> None:
    for (name, pa), pb in zip(a.named_parameters(), b.parameters()):
        assert torch.equal(pa, pb), f"{name} differs by {(pa - pb).abs().max().item():.3g}"


@pytest.mark.parametrize("foreach", [False, True], ids=["for-loop", "foreach"])
@pytest.mark.parametrize("weight_decay", [0.0, 1e-2])
@pytest.mark.parametrize("momentum", [0.0, 0.5, 0.9])
def test_bit_identical_to_torch_sgd_over_50_steps(momentum, weight_decay, foreach):
    torch.manual_seed(0)
    ours = SmallNet()
    reference = copy.deepcopy(ours)
    train_steps(ours, MomentumSGD(ours.parameters(), lr=0.05, momentum=momentum, weight_decay=weight_decay), 50, seed=1)
    torch_sgd = torch.optim.SGD(reference.parameters(), lr=0.05, momentum=momentum, dampening=0,
                                weight_decay=weight_decay, nesterov=False, foreach=foreach)
    train_steps(reference, torch_sgd, 50, seed=1)
    assert_models_equal(ours, reference)
    assert torch.equal(ours.unused, torch.ones(3))
    assert not torch.equal(ours.conv.weight, SmallNet().conv.weight)  # it did train


def test_parameter_groups_use_their_own_settings():
    torch.manual_seed(0)
    ours = SmallNet()
    reference = copy.deepcopy(ours)

    def groups(model):
        return [{"params": model.conv.parameters(), "lr": 0.2, "momentum": 0.5},
                {"params": model.fc.parameters(), "weight_decay": 0.1}]

    train_steps(ours, MomentumSGD(groups(ours), lr=0.05, momentum=0.9), 20, seed=2)
    train_steps(reference, torch.optim.SGD(groups(reference), lr=0.05, momentum=0.9), 20, seed=2)
    assert_models_equal(ours, reference)


def test_state_dict_round_trip_continues_exactly():
    torch.manual_seed(0)
    model = SmallNet()
    resumed_model = copy.deepcopy(model)
    optimizer = MomentumSGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-3)
    train_steps(model, optimizer, 10, seed=3)

    # checkpoint through bytes, as a .ckpt would
    buffer = io.BytesIO()
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict()}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    assert len(saved["optimizer"]["state"]) == 4  # a momentum buffer for each parameter with a gradient
    resumed_model.load_state_dict(saved["model"])
    resumed = MomentumSGD(resumed_model.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-3)
    resumed.load_state_dict(saved["optimizer"])

    train_steps(model, optimizer, 10, seed=4)  # uninterrupted
    train_steps(resumed_model, resumed, 10, seed=4)
    assert_models_equal(model, resumed_model)
    for p, q in zip(model.parameters(), resumed_model.parameters()):
        if "momentum_buffer" in optimizer.state[p]:
            assert torch.equal(optimizer.state[p]["momentum_buffer"], resumed.state[q]["momentum_buffer"])


def test_closure_runs_and_its_loss_is_returned():
    torch.manual_seed(0)
    model = nn.Linear(3, 1)
    before = model.weight.detach().clone()
    optimizer = MomentumSGD(model.parameters(), lr=0.1, momentum=0.9)
    x = torch.randn(4, 3)
    calls = []

    def closure():
        calls.append(1)
        optimizer.zero_grad()
        loss = model(x).pow(2).mean()
        loss.backward()  # step() is under no_grad; the closure must still build a graph
        return loss

    loss = optimizer.step(closure)
    assert calls == [1]
    assert isinstance(loss, torch.Tensor) and loss.requires_grad
    # the update used the closure's gradient: θ₁ = θ₀ − η·g (first step: m = g)
    torch.testing.assert_close(model.weight.detach(), before - 0.1 * model.weight.grad)
    assert optimizer.step() is None  # no closure, no loss


@pytest.mark.parametrize("kwargs", [
    dict(lr=0.0), dict(lr=-0.1), dict(momentum=1.0), dict(momentum=-0.1), dict(momentum=1.5),
    dict(weight_decay=-1e-4),
])
def test_invalid_arguments_raise(kwargs):
    with pytest.raises(ValueError):
        MomentumSGD(nn.Linear(2, 2).parameters(), **kwargs)


def test_defaults_are_the_seeds():
    optimizer = MomentumSGD(nn.Linear(2, 2).parameters())
    assert optimizer.defaults == {"lr": 0.005, "momentum": 0.9, "weight_decay": 0.0}


@pytest.mark.parametrize("lr, momentum, weight_decay, option", [
    (float("inf"), 0.9, 0.0, "--lr"), (0.0, 0.9, 0.0, "--lr"), (0.1, 1.0, 0.0, "--momentum"),
    (0.1, -0.1, 0.0, "--momentum"), (0.1, 0.9, float("nan"), "--weight-decay"), (0.1, 0.9, -1.0, "--weight-decay"),
])
def test_optimizer_settings_are_refused_alike_everywhere(lr, momentum, weight_decay, option) -> None:
    """One rule (deeplab.checks): the config, the Classifier and MomentumSGD refuse the same values, the
    first two with the same line; MomentumSGD with a ValueError as torch's optimizers do."""
    from deeplab.config import FitConfig
    from deeplab.training.resolve import resolve_config
    from deeplab.errors import DeeplabError
    from deeplab.training.module import Classifier

    with pytest.raises(DeeplabError) as from_config:
        resolve_config(FitConfig(model="cnn5", lr=lr, momentum=momentum, weight_decay=weight_decay))
    with pytest.raises(DeeplabError) as from_module:
        Classifier("cnn5", lr=lr, momentum=momentum, weight_decay=weight_decay)
    assert str(from_config.value) == str(from_module.value) and str(from_config.value).startswith(option + " ")
    with pytest.raises(ValueError, match=option.lstrip("-").replace("-", "_")):
        MomentumSGD([torch.zeros(1, requires_grad=True)], lr=lr, momentum=momentum, weight_decay=weight_decay)


# ------------------------------------------------------------------ the table and the settings
def test_one_optimizer_table_for_every_reader() -> None:
    """The optimizer names live with the setting; the table binds each to its torch optimizer and rule, and
    what the compiled step keeps per parameter is what the eager optimizer keeps."""
    from deeplab.config import OPTIMIZER_CHOICES
    from deeplab.training import module
    from deeplab.training.optim import OPTIMIZERS, create_optimizer

    assert tuple(OPTIMIZERS) == OPTIMIZER_CHOICES and module.OPTIMIZERS is OPTIMIZERS
    for name, kind in OPTIMIZERS.items():
        net = SmallNet()
        optimizer = create_optimizer(name, net.parameters(), 0.01, 0.9, 0.0)
        net(torch.randn(2, 1, 6, 6)).sum().backward()
        optimizer.step()
        assert set(optimizer.state[net.conv.weight]) == set(kind.keys_for(optimizer.param_groups[0])), name


def test_every_setting_declares_its_role() -> None:
    """A new FitConfig field without a role fails here, before it can silently be changeable on resume and
    absent from a probe's ledger key."""
    import dataclasses

    from deeplab.config import CHANGEABLE_ON_RESUME, KEPT_ON_RESUME, ROLES, FitConfig, key_settings, settings_of

    from deeplab.search.ledger import KEY_SETTINGS
    from deeplab.training.resumable.resume import CHANGEABLE_SETTINGS, RUN_SETTINGS

    for item in dataclasses.fields(FitConfig):
        assert item.metadata.get("role") in ROLES, f"FitConfig.{item.name} has no role (deeplab.config.setting)"
    assert RUN_SETTINGS == settings_of(*KEPT_ON_RESUME) and CHANGEABLE_SETTINGS == settings_of(*CHANGEABLE_ON_RESUME)
    assert KEY_SETTINGS == key_settings() and "clip_grad_norm" in KEY_SETTINGS and "clip_grad_norm" in RUN_SETTINGS
    assert "depth" not in KEY_SETTINGS and "seed" not in KEY_SETTINGS and "data_dir" not in KEY_SETTINGS
