"""Tests for deeplab.experiments.numpy_nets (seed 003, Parts 1-2): NumPy backprop and conv2d vs torch."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from deeplab.errors import DeeplabError
from deeplab.experiments.numpy_nets import (
    ACTIVATIONS,
    XOR_CENTERS,
    TwoLayerNet,
    accuracy,
    conv2d,
    conv2d_backward,
    conv2d_output_shape,
    conv2d_reference,
    edge_kernels,
    make_xor_data,
    mse_loss,
    plot_conv2d_outputs,
    plot_decision_boundary,
    synthetic_image,
    train_xor,
)

TORCH_ACT = {"tanh": torch.tanh, "sigmoid": torch.sigmoid, "relu": torch.relu}


# --------------------------------------------------------------------- data


def test_xor_data_deterministic_for_a_seed():
    a = make_xor_data(np.random.default_rng(7))
    b = make_xor_data(np.random.default_rng(7))
    c = make_xor_data(np.random.default_rng(8))
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)
    assert not np.array_equal(a.x_train, c.x_train)


def test_xor_data_shapes_and_labels_follow_the_seed():
    d = make_xor_data(np.random.default_rng(0))
    assert d.x_train.shape == (1000, 2) and d.y_train.shape == (1000, 1)
    assert d.x_val.shape == (100, 2) and d.y_val.shape == (100, 1)
    assert set(np.unique(d.y_train)) == {0, 1}
    # each point sits near its blob's centre; its label is the XOR of the centre's signs
    nearest = np.argmin(((d.x_train[:, None, :] - XOR_CENTERS[None]) ** 2).sum(-1), axis=1)
    centre = XOR_CENTERS[nearest]
    xor = (np.sign(centre[:, 0]) != np.sign(centre[:, 1])).astype(int)
    assert np.mean(xor == d.y_train[:, 0]) > 0.97  # std 0.4: a few points cross an axis
    # make_blobs split: 1000 = 4 x 250, 50/50 classes; std ~0.4 around the centres
    assert np.sum(d.y_train) == 500
    assert abs(np.std(d.x_train - centre) - 0.4) < 0.03


def test_xor_data_uneven_split_like_make_blobs():
    d = make_xor_data(np.random.default_rng(0), train_samples=7, val_samples=5, std=0.0)
    # std 0: points are exactly the centres; blobs 0..2 get 2 points, blob 3 gets 1
    counts = [int(np.sum(np.all(d.x_train == c, axis=1))) for c in XOR_CENTERS]
    assert counts == [2, 2, 2, 1]


# ------------------------------------------------------------ backprop


def _torch_loss_and_grads(net: TwoLayerNet, x: np.ndarray, y: np.ndarray):
    w1 = torch.tensor(net.w1, dtype=torch.float64, requires_grad=True)
    w2 = torch.tensor(net.w2, dtype=torch.float64, requires_grad=True)
    xt = torch.tensor(x, dtype=torch.float64)
    yt = torch.tensor(y, dtype=torch.float64)
    act = TORCH_ACT[net.activation]
    h = act(torch.cat([torch.ones(len(xt), 1, dtype=torch.float64), xt], 1) @ w1)
    o = act(torch.cat([torch.ones(len(h), 1, dtype=torch.float64), h], 1) @ w2)
    loss = torch.mean((o - yt) ** 2)
    loss.backward()
    return o.detach().numpy(), loss.item(), w1.grad.numpy(), w2.grad.numpy()


@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
@pytest.mark.parametrize("out_size", [1, 3])
def test_backward_matches_torch_autograd(activation, out_size):
    # seed 1: the ReLU nets have live output units (with N(0, 1) init many
    # ReLU nets start with a dead output and an all-zero gradient)
    rng = np.random.default_rng(1)
    net = TwoLayerNet(activation, input_size=2, hidden_size=4, output_size=out_size, rng=rng)
    x = rng.normal(size=(64, 2))
    y = rng.integers(0, 2, size=(64, out_size)).astype(np.float64)
    out = net.forward(x)
    grads = net.backward(y)
    o_t, loss_t, g1_t, g2_t = _torch_loss_and_grads(net, x, y)
    np.testing.assert_allclose(out, o_t, rtol=1e-12, atol=1e-14)
    assert mse_loss(out, y) == pytest.approx(loss_t, rel=1e-12)
    assert grads["w1"].shape == net.w1.shape and grads["w2"].shape == net.w2.shape
    np.testing.assert_allclose(grads["w1"], g1_t, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(grads["w2"], g2_t, rtol=1e-10, atol=1e-14)
    assert np.abs(grads["w1"]).max() > 0  # not trivially zero (relu: some units live)


def test_seed_grads_are_the_seeds_update_not_the_gradient():
    # the seed doubles the output-layer step and leaves f'(o) out of the hidden one
    rng = np.random.default_rng(1)
    net = TwoLayerNet("tanh", rng=rng)
    x, y = rng.normal(size=(32, 2)), rng.integers(0, 2, size=(32, 1)).astype(float)
    net.forward(x)
    exact, seed = net.backward(y), net.seed_grads(y)
    np.testing.assert_allclose(seed["w2"], 2 * exact["w2"], rtol=1e-12)
    err = 2 * (net.forward(x) - y) / y.size
    h = np.tanh(np.hstack([np.ones((32, 1)), x]) @ net.w1)
    expected_w1 = np.hstack([np.ones((32, 1)), x]).T @ ((err @ net.w2[1:].T) * (1 - h**2))
    np.testing.assert_allclose(seed["w1"], expected_w1, rtol=1e-12)
    assert not np.allclose(seed["w1"], exact["w1"])


def test_backward_before_forward_and_bad_activation_raise():
    with pytest.raises(DeeplabError):
        TwoLayerNet("tanh", rng=np.random.default_rng(0)).backward(np.zeros((1, 1)))
    with pytest.raises(DeeplabError, match="unknown activation"):
        TwoLayerNet("gelu")
    with pytest.raises(DeeplabError, match="rule"):
        train_xor("tanh", epochs=1, rule="adam")


def test_dead_relu_output_gives_zero_gradient_like_torch():
    net = TwoLayerNet("relu", rng=np.random.default_rng(0))
    net.w2[:] = -1.0  # every output pre-activation < 0 for hidden >= 0
    x, y = np.ones((5, 2)), np.ones((5, 1))
    net.forward(x)
    grads = net.backward(y)
    _, _, g1_t, g2_t = _torch_loss_and_grads(net, x, y)
    assert not grads["w1"].any() and not grads["w2"].any()
    np.testing.assert_array_equal(grads["w1"], g1_t)
    np.testing.assert_array_equal(grads["w2"], g2_t)


@pytest.mark.parametrize("rule", ["exact", "seed"])
def test_training_decreases_loss(rule):
    d = make_xor_data(np.random.default_rng(0))
    for act in ACTIVATIONS:
        _, hist = train_xor(act, seed=1, data=d, epochs=200, learning_rate=0.05, rule=rule)
        assert hist[-1] < hist[0], act


# ------------------------------------------------------------- training


def test_train_xor_tanh_reaches_seed_accuracy_and_plots(tmp_path):
    # the seed reports 0.99 validation accuracy for tanh after 50000 epochs (Fig. 2)
    net, hist = train_xor("tanh", seed=0)
    assert hist.shape == (50000,)
    assert hist[-1] < 0.5 * hist[0]
    d = make_xor_data(np.random.default_rng(0))  # the data the default run used
    assert accuracy(net, d.x_val, d.y_val) >= 0.97
    path = plot_decision_boundary(net, d.x_val, d.y_val, tmp_path / "sub" / "tanh.png",
                                  title="Activation Function: Tanh")
    with open(path, "rb") as fh:
        assert fh.read(8) == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "sub" / "tanh.png").stat().st_size > 1000


def test_train_xor_is_reproducible():
    a_net, a_hist = train_xor("relu", seed=5, epochs=300)
    b_net, b_hist = train_xor("relu", seed=5, epochs=300)
    np.testing.assert_array_equal(a_hist, b_hist)
    np.testing.assert_array_equal(a_net.w1, b_net.w1)


# --------------------------------------------------------------- conv2d

CONV_CASES = [
    # (B, C, H, W), (O, kh, kw), stride, padding
    ((2, 1, 28, 28), (8, 4, 4), 1, 0),  # the seed's case: MNIST 28x28 -> 25x25
    ((3, 3, 9, 11), (4, 3, 3), 1, 0),
    ((2, 3, 9, 11), (5, 3, 2), 2, 1),
    ((1, 2, 10, 7), (3, 5, 3), (2, 3), (2, 0)),
    ((2, 4, 8, 8), (2, 1, 1), 3, 0),
    ((1, 1, 5, 5), (1, 5, 5), 1, 2),
]


@pytest.mark.parametrize("in_shape,k_shape,stride,padding", CONV_CASES)
def test_conv2d_matches_torch(in_shape, k_shape, stride, padding):
    rng = np.random.default_rng(0)
    x = rng.normal(size=in_shape)
    k = rng.normal(size=(k_shape[0], in_shape[1], k_shape[1], k_shape[2]))
    expected = F.conv2d(torch.from_numpy(x), torch.from_numpy(k), stride=stride, padding=padding).numpy()
    out = conv2d(x, k, stride, padding)
    assert out.shape == expected.shape == conv2d_output_shape(x.shape, k.shape, stride, padding)
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(conv2d_reference(x, k, stride, padding), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("in_shape,k_shape,stride,padding", CONV_CASES)
def test_conv2d_backward_matches_torch(in_shape, k_shape, stride, padding):
    rng = np.random.default_rng(1)
    x = torch.tensor(rng.normal(size=in_shape), requires_grad=True)
    k = torch.tensor(rng.normal(size=(k_shape[0], in_shape[1], *k_shape[1:])), requires_grad=True)
    out = F.conv2d(x, k, stride=stride, padding=padding)
    g = torch.from_numpy(rng.normal(size=tuple(out.shape)))
    (out * g).sum().backward()
    gx, gk = conv2d_backward(g.numpy(), x.detach().numpy(), k.detach().numpy(), stride, padding)
    np.testing.assert_allclose(gx, x.grad.numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(gk, k.grad.numpy(), rtol=1e-12, atol=1e-12)


def test_conv2d_is_cross_correlation_and_validates():
    x = np.arange(9.0).reshape(1, 1, 3, 3)
    k = np.zeros((1, 1, 2, 2))
    k[0, 0, 0, 0] = 1.0  # picks the patch's top-left pixel: no kernel flip
    np.testing.assert_array_equal(conv2d(x, k)[0, 0], [[0, 1], [3, 4]])
    with pytest.raises(DeeplabError, match="input channels"):
        conv2d(np.zeros((1, 2, 5, 5)), np.zeros((1, 3, 3, 3)))
    with pytest.raises(DeeplabError, match="larger"):
        conv2d(np.zeros((1, 1, 2, 2)), np.zeros((1, 1, 3, 3)))
    with pytest.raises(DeeplabError, match="stride"):
        conv2d(x, k, stride=0)


def test_conv_figure_written(tmp_path):
    img = synthetic_image(28)
    assert img.shape == (28, 28) and img.max() == 1.0
    batch = np.stack([img, img.T])[:, None]  # (2, 1, 28, 28)
    path = tmp_path / "conv.png"
    out = plot_conv2d_outputs(batch, path)
    assert out.shape == (2, 8, 26, 26)
    np.testing.assert_allclose(out, conv2d(batch, edge_kernels(1)))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 1000
    # a single (H, W) image and a caller-supplied 4x4 kernel bank (the seed's 25x25 maps)
    out2 = plot_conv2d_outputs(img, tmp_path / "one.png", kernel=np.ones((3, 1, 4, 4)))
    assert out2.shape == (1, 3, 25, 25)
    # Sobel x finds the stroke's vertical edges
    assert np.abs(out[0, 0]).max() > 0
