"""deeplab.training.engine.cpu_kernels: the vectorized ELU and small channels-last batch norm ``--fast-kernels`` swaps in.

- FastELU's forward is ``nn.ELU()``'s to 2 float ulps over 32 decades of inputs
  (and NaN, ±inf, ±0 exactly); its backward is ELU's own kernel, bit for bit.
- FastBatchNorm2d's forward, input gradient, parameter gradients and running
  statistics are closer to a float64 batch norm than PyTorch's NHWC kernel is;
  every case it does not take (evaluation, NCHW, > 8 channels) is the stock
  module bit for bit.
- Swapping keeps the ``state_dict`` and the parameter objects; ``auto`` swaps
  for eager CPU runs only; a run with fast kernels trains like one without
  (to rounding), records the choice, and resumes exactly.
"""

from __future__ import annotations

import contextlib
import copy
import io
from types import SimpleNamespace

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from deeplab.config import FitConfig
from deeplab.training.engine.cpu_kernels import (
    FAST_BATCH_NORM_MAX_CHANNELS,
    FastBatchNorm2d,
    FastELU,
    FastTanh,
    fast_elu,
    fast_tanh,
    swap_in_fast_kernels,
)
from deeplab.training.engine import resolve_engine
from deeplab.errors import DeeplabError
from deeplab.models import create_model
from deeplab.training.fit import fit


def ulp_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """|a - b| in float32 units in the last place (both finite, same sign or zero)."""
    return (a.view(torch.int32).long() - b.view(torch.int32).long()).abs()


# ----------------------------------------------------------------------- ELU
def test_fast_elu_is_elu_to_two_ulps_over_every_magnitude():
    magnitudes = torch.logspace(-30, 2, 400_000)
    x = torch.cat([-magnitudes, magnitudes, torch.randn(100_000, generator=torch.Generator().manual_seed(0))])
    ours, stock = fast_elu(x), F.elu(x)
    assert ulp_distance(ours, stock).max().item() <= 2
    # and as close to the float64 function as the stock kernel is, within one ulp
    exact = F.elu(x.double()).float()
    assert ulp_distance(ours, exact).max().item() <= ulp_distance(stock, exact).max().item() + 1


def test_fast_elu_special_values():
    x = torch.tensor([float("nan"), float("inf"), -float("inf"), 0.0, -0.0, -88.0, -1e-45])
    ours, stock = fast_elu(x), F.elu(x)
    assert torch.isnan(ours[0])
    assert torch.equal(ours[1:], stock[1:])


def test_fast_elu_backward_is_elus_own():
    x = torch.randn(4, 4, 28, 28, generator=torch.Generator().manual_seed(1)).contiguous(
        memory_format=torch.channels_last).requires_grad_()
    grad = torch.randn_like(x)
    (ours,) = torch.autograd.grad(FastELU()(x), x, grad)
    (stock,) = torch.autograd.grad(nn.ELU()(x), x, grad)
    assert torch.equal(ours, stock)
    assert ours.is_contiguous(memory_format=torch.channels_last)


def test_fast_tanh_is_tanh_to_one_ulp_with_tanhs_own_backward():
    magnitudes = torch.logspace(-30, 2, 400_000)
    x = torch.cat([-magnitudes, magnitudes, torch.tensor([float("inf"), -float("inf"), 0.0])])
    assert ulp_distance(fast_tanh(x), torch.tanh(x)).max().item() <= 1
    assert torch.isnan(fast_tanh(torch.tensor([float("nan")]))).all()
    x = torch.randn(4, 4, 28, 28, generator=torch.Generator().manual_seed(3)).requires_grad_()
    grad = torch.randn_like(x)
    y = FastTanh()(x)
    (ours,) = torch.autograd.grad(y, x, grad)
    assert torch.equal(ours, torch.ops.aten.tanh_backward(grad, y.detach()))
    (stock,) = torch.autograd.grad(torch.tanh(x), x, grad)
    assert (ours - stock).abs().max().item() <= 1e-6


def test_a_failed_compile_falls_back_to_the_eager_formula_with_a_warning(monkeypatch):
    import deeplab.training.engine.cpu_kernels as kernels

    def broken(x):
        raise RuntimeError("no C++ compiler")

    monkeypatch.setattr(kernels, "_FUSED", {"_elu_formula": broken})
    broken.__name__ = "broken"
    x = torch.randn(1000, generator=torch.Generator().manual_seed(4))
    with pytest.warns(RuntimeWarning, match="using its eager form"):
        ours = fast_elu(x)
    assert kernels._FUSED["_elu_formula"] is kernels._elu_formula
    assert ulp_distance(ours, F.elu(x)).max().item() <= 2
    fast_elu(x)  # no second warning: the eager form is remembered


def test_fast_elu_leaves_other_dtypes_to_the_stock_kernel():
    x = torch.randn(100, dtype=torch.float64)
    assert torch.equal(fast_elu(x), F.elu(x))


# ---------------------------------------------------------------- batch norm
def _train_step(bn: nn.Module, x: torch.Tensor, grad: torch.Tensor) -> list[torch.Tensor]:
    x = x.clone().requires_grad_()
    out = bn(x)
    out.backward(grad)
    return [out, x.grad, bn.weight.grad, bn.bias.grad, bn.running_mean, bn.running_var]


@pytest.mark.parametrize("channels,side", [(4, 28), (8, 14)])
def test_fast_batch_norm_is_closer_to_float64_than_the_stock_kernel(channels, side):
    generator = torch.Generator().manual_seed(channels)
    stock = nn.BatchNorm2d(channels)
    with torch.no_grad():
        stock.weight.uniform_(0.5, 2.0, generator=generator)
        stock.bias.normal_(generator=generator)
    fast = FastBatchNorm2d.from_module(copy.deepcopy(stock))
    exact = copy.deepcopy(stock).double()
    x = (torch.randn(64, channels, side, side, generator=generator) * 3 + 1).contiguous(
        memory_format=torch.channels_last)
    grad = torch.randn(x.shape, generator=generator).contiguous(memory_format=torch.channels_last)

    reference = _train_step(exact, x.double(), grad.double())
    for name, ours, theirs, truth in zip(("output", "input grad", "weight grad", "bias grad", "running mean",
                                          "running var"),
                                         _train_step(fast, x, grad), _train_step(stock, x, grad), reference):
        scale = truth.abs().max()
        our_error = ((ours.double() - truth).abs().max() / scale).item()
        stock_error = ((theirs.double() - truth).abs().max() / scale).item()
        assert our_error <= max(stock_error, 1e-6), f"{name}: {our_error:.2g} vs stock {stock_error:.2g}"
        assert our_error < 1e-5, name
    assert fast.num_batches_tracked.item() == stock.num_batches_tracked.item() == 1
    assert _train_step(fast, x, grad)[0].is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("case", ["eval", "nchw", "wide"])
def test_fast_batch_norm_is_the_stock_module_where_it_does_not_apply(case):
    channels = FAST_BATCH_NORM_MAX_CHANNELS * 2 if case == "wide" else 4
    stock = nn.BatchNorm2d(channels)
    stock.running_mean.normal_()
    fast = FastBatchNorm2d.from_module(copy.deepcopy(stock))
    x = torch.randn(16, channels, 8, 8, generator=torch.Generator().manual_seed(2))
    if case != "nchw":
        x = x.contiguous(memory_format=torch.channels_last)
    if case == "eval":
        stock.eval(), fast.eval()
    grad = torch.randn_like(x)
    for ours, theirs in zip(_train_step(fast, x, grad), _train_step(stock, x, grad)):
        assert torch.equal(ours, theirs)


def test_swapping_keeps_the_state_dict_and_the_parameters():
    model = create_model("resnet_elu", depth=6, in_channels=1, num_classes=10, image_size=28)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    parameters = list(model.parameters())
    assert swap_in_fast_kernels(model) == 6 + 4  # every ELU; the batch norms of the 4- and 8-channel stages
    assert all(a is b for a, b in zip(parameters, model.parameters()))
    after = model.state_dict()
    assert after.keys() == before.keys() and all(torch.equal(after[k], before[k]) for k in before)
    assert sum(isinstance(m, FastBatchNorm2d) for m in model.modules()) == 4
    assert not any(type(m) is nn.ELU for m in model.modules())


# ------------------------------------------------------------------- engine
def _config(**fields) -> SimpleNamespace:
    values = dict(model="cnn_elu_bn", batch_size=256, compile="auto", channels_last=None, steps_per_call=None,
                  precision="32-true", fast_dev_run=False, fast_kernels=None)
    values.update(fields)
    return SimpleNamespace(**values)


def test_auto_swaps_for_eager_cpu_runs_of_models_that_have_slow_kernels():
    family = create_model("cnn_elu_bn", depth=6, in_channels=1, num_classes=10, image_size=28)
    cnn5 = create_model("cnn5", in_channels=1, num_classes=10, image_size=28)
    assert resolve_engine(_config(), family, 700, 1, False).fast_kernels
    assert not resolve_engine(_config(), family, 700, 1, True).fast_kernels  # a GPU
    assert not resolve_engine(_config(compile="model"), family, 700, 1, False).fast_kernels  # Inductor's own
    assert not resolve_engine(_config(model="cnn5", batch_size=32), cnn5, 700, 1, False).fast_kernels  # ReLU, no BN
    assert not resolve_engine(_config(fast_kernels=False), family, 700, 1, False).fast_kernels
    assert not resolve_engine(_config(), family, 300, 1, False).fast_kernels  # 76,800 images: not worth compiling
    assert resolve_engine(_config(fast_kernels=True), family, 300, 1, False).fast_kernels


def _fit(config: FitConfig) -> dict:
    with contextlib.redirect_stdout(io.StringIO()):
        return fit(config)


def _parameters(results: dict) -> dict[str, torch.Tensor]:
    state = torch.load(results["checkpoint"], map_location="cpu", weights_only=True)["state_dict"]
    return {k: v for k, v in state.items() if k.startswith("model.")}


def test_a_run_with_fast_kernels_trains_like_one_without_and_resumes_exactly(synthetic_data_dir, tmp_path,
                                                                             single_thread):
    base = dict(model="resnet_elu", depth=6, dataset="mnist", data_dir=str(synthetic_data_dir), batch_size=16,
                epochs=2, limit_val_batches=1, optimizer="sgd", lr=0.02, momentum=0.9, seed=3, progress_bar=False,
                grad_norms=False)
    fast = _fit(FitConfig(**base, log_dir=str(tmp_path / "fast"), fast_kernels=True))
    stock = _fit(FitConfig(**base, log_dir=str(tmp_path / "stock"), fast_kernels=False))
    assert fast["engine"]["fast_kernels"] and not stock["engine"]["fast_kernels"]
    assert fast["hparams"]["fast_kernels"] is True
    for name, ours in _parameters(fast).items():
        theirs = _parameters(stock)[name]
        assert (ours - theirs).abs().max().item() <= 1e-4 * max(1.0, theirs.abs().max().item()), name
    assert fast["history"][-1]["train_loss"] == pytest.approx(stock["history"][-1]["train_loss"], rel=1e-4)

    # stopped mid-epoch, resumed with the straight command: the straight fast run, bit for bit
    stopped = _fit(FitConfig(**base, log_dir=str(tmp_path / "stopped"), max_steps=21,  # mid-epoch 2 (16 an epoch)
                             fast_kernels=True))
    resumed = _fit(FitConfig(**base, log_dir=str(tmp_path / "stopped"), ckpt_path=stopped["checkpoint"]))
    assert resumed["engine"]["fast_kernels"]
    straight, again = _parameters(fast), _parameters(resumed)
    assert all(torch.equal(straight[k], again[k]) for k in straight)
    assert resumed["history"] == fast["history"]

    # the kernels are part of the run: a resume cannot switch them
    with pytest.raises(DeeplabError, match="--fast-kernels False"):
        _fit(FitConfig(**base, log_dir=str(tmp_path / "stopped"), ckpt_path=stopped["checkpoint"],
                       fast_kernels=False))
