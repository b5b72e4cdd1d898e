"""Seed 000's hand-written sigmoid, softmax and cross-entropy against torch's, values and gradients.

Tolerances: in float32 the hand-written forms differ from torch's fused kernels by
rounding only (a few ulps, rtol 1e-6). The cross-entropy also adds ε = 1e-10 inside
the log: per sample −log(p + ε) = −log p − log(1 + ε/p), so it is *below* torch's
by at most ε/p, and its gradient is torch's scaled by p/(p + ε). Those two facts are
checked in float64, where rounding (~1e-16) is far below ε/p.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from deeplab.models import functional as HF
pytestmark = pytest.mark.usefixtures("single_thread")


def logits_and_labels(dtype=torch.float32, scale=3.0, batch=16, classes=10, seed=0):
    generator = torch.Generator().manual_seed(seed)
    logits = (torch.randn(batch, classes, generator=generator) * scale).to(dtype)
    labels = torch.randint(0, classes, (batch,), generator=generator)
    return logits, labels


def gradient(function, x: torch.Tensor, upstream: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    x = x.detach().clone().requires_grad_(True)
    y = function(x)
    y.backward(upstream if upstream is not None else torch.ones_like(y))
    return y.detach(), x.grad


def test_epsilon_is_the_seeds():
    assert HF.LOG_EPSILON == 1e-10


# ----------------------------------------------------------------- sigmoid
def test_sigmoid_matches_torch_values_and_gradients():
    # |x| ≤ 30: the seed's 1/(1 + e^(−x)) has a NaN gradient below x ≈ −88.7 in float32
    # (e^(−x) overflows to inf and autograd forms inf/inf); the forward value stays right.
    x = torch.linspace(-30, 30, 2001)
    upstream = torch.randn(x.shape, generator=torch.Generator().manual_seed(1))
    ours, our_grad = gradient(HF.sigmoid, x, upstream)
    theirs, their_grad = gradient(torch.sigmoid, x, upstream)
    torch.testing.assert_close(ours, theirs, rtol=1e-6, atol=1e-7)
    # torch's backward forms σ·(1 − σ); for x ≳ 8 the float32 1 − σ is a multiple of 2⁻²⁴ ≈ 6e-8,
    # times an upstream gradient of a few units: absolute differences of a few 1e-7
    torch.testing.assert_close(our_grad, their_grad, rtol=1e-5, atol=1e-6)
    assert HF.sigmoid(torch.tensor([-1000.0, 0.0, 1000.0])).tolist() == [0.0, 0.5, 1.0]


# ----------------------------------------------------------------- softmax
@pytest.mark.parametrize("scale", [1.0, 10.0, 1000.0], ids=["small", "large", "huge"])
def test_softmax_matches_torch_values_and_gradients(scale):
    logits, _ = logits_and_labels(scale=scale)
    upstream = torch.randn(logits.shape, generator=torch.Generator().manual_seed(2))
    ours, our_grad = gradient(HF.softmax, logits, upstream)
    theirs, their_grad = gradient(lambda t: torch.softmax(t, dim=1), logits, upstream)
    assert torch.isfinite(ours).all()  # the row-max shift keeps e^x finite even at 1000·N(0, 1)
    torch.testing.assert_close(ours, theirs, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(our_grad, their_grad, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(ours.sum(dim=1), torch.ones(len(logits)))


def test_softmax_is_shift_invariant():
    logits, _ = logits_and_labels(dtype=torch.float64)
    torch.testing.assert_close(HF.softmax(logits + 123.0), HF.softmax(logits))


# ----------------------------------------------------------- cross-entropy
def test_cross_entropy_matches_torch_in_float32():
    logits, labels = logits_and_labels()
    ours, our_grad = gradient(lambda t: HF.cross_entropy(t, labels), logits)
    theirs, their_grad = gradient(lambda t: F.cross_entropy(t, labels), logits)
    assert ours.shape == () and ours.item() > 0
    torch.testing.assert_close(ours, theirs, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(our_grad, their_grad, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("scale", [1.0, 5.0, 12.0])
def test_cross_entropy_differs_from_torch_exactly_by_the_epsilon(scale):
    logits, labels = logits_and_labels(dtype=torch.float64, scale=scale, batch=64)
    p = torch.softmax(logits, dim=1).gather(1, labels[:, None]).squeeze(1)  # probability of the true class
    eps = HF.LOG_EPSILON

    ours, our_grad = gradient(lambda t: HF.cross_entropy(t, labels), logits)
    theirs, their_grad = gradient(lambda t: F.cross_entropy(t, labels), logits)
    expected_gap = torch.log1p(eps / p).mean()  # torch − ours, per the identity in the module docstring
    assert (theirs - ours).item() == pytest.approx(expected_gap.item(), rel=1e-4, abs=1e-15)
    assert 0 <= (theirs - ours).item() <= (eps / p).mean().item() + 1e-15
    # ∂/∂z [−log(p + ε)] = p/(p + ε) · ∂/∂z [−log p], sample by sample
    torch.testing.assert_close(our_grad, their_grad * (p / (p + eps))[:, None], rtol=1e-10, atol=1e-15)


def test_cross_entropy_saturates_at_minus_log_epsilon():
    """A confidently wrong sample costs at most −log(1e-10) ≈ 23.03 (torch's keeps growing)."""
    logits = torch.tensor([[0.0, 100.0], [0.0, 60.0]], dtype=torch.float64)
    labels = torch.tensor([0, 0])
    assert HF.cross_entropy(logits, labels).item() == pytest.approx(-math.log(1e-10), rel=1e-9)
    assert F.cross_entropy(logits, labels).item() == pytest.approx(80.0, rel=1e-9)


def test_cross_entropy_is_a_batch_mean():
    logits, labels = logits_and_labels(dtype=torch.float64)
    per_sample = torch.stack([HF.cross_entropy(logits[i : i + 1], labels[i : i + 1]) for i in range(len(labels))])
    torch.testing.assert_close(HF.cross_entropy(logits, labels), per_sample.mean())


# -------------------------------------------------------------- leaky ReLU
@pytest.mark.parametrize("slope", [0.01, 0.1])
def test_leaky_relu_matches_torch(slope):
    x = torch.linspace(-5, 5, 101)
    ours, our_grad = gradient(lambda t: HF.leaky_relu(t, slope), x)
    theirs, their_grad = gradient(lambda t: F.leaky_relu(t, slope), x)
    torch.testing.assert_close(ours, theirs)
    nonzero = x != 0  # torch.maximum splits the gradient at the kink
    torch.testing.assert_close(our_grad[nonzero], their_grad[nonzero])
