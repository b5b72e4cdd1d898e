"""Seed 003's NumPy parts: a hand-written two-layer net on noisy XOR, and conv2d.

Seed 003 (EE449 HW1, a CIFAR-10 assignment) opens with two pieces written in
plain NumPy before it moves to PyTorch:

* **Part 1** (``part1.py``, report sections I-II): an ``MLP`` with one hidden
  layer of 4 units whose biases are folded into the weight matrices (a column
  of ones is prepended to the input and to the hidden activations), trained by
  full-batch gradient descent with hand-written backpropagation on a noisy XOR
  data set from the course's ``part1CreateDataset(train_samples=1000,
  val_samples=100, std=0.4)``, for tanh, sigmoid and ReLU.  The report shows the
  decision boundary of each (Figs. 2-4: tanh 0.99, sigmoid 0.94, ReLU 0.98
  validation accuracy after 50000 epochs) drawn by the course's
  ``part1PlotBoundary``.
* **Part 2** (``part2.py``, report section III): ``my_conv2d``, a loop-based
  2-D convolution (cross-correlation, stride 1, no padding) of a batch of
  images with a bank of kernels, and Fig. 7, the grid of output maps drawn by
  the course's ``part2Plots`` (one row per image, one column per filter).

This module keeps both as library code. Where the seed's code is wrong or
fragile it is kept available but not used silently:

* The seed's ``backward`` is not the gradient of its loss: it multiplies the
  output delta by an extra 2 and back-propagates ``output_error`` instead of
  ``output_delta`` into the hidden layer, i.e. it drops f'(output) there.
  :meth:`TwoLayerNet.backward` returns the exact gradient of the seed's loss
  (checked against torch autograd in the tests); :meth:`TwoLayerNet.seed_grads`
  returns the seed's update direction, which ``train_xor`` follows by default
  (``rule="seed"``) so that a default run is the seed's experiment;
  ``rule="exact"`` trains by true gradient descent instead.
* The seed writes tanh as (e^{2x} - 1)/(e^{2x} + 1), which is NaN for
  x > ~355; ``np.tanh`` is the same function without the overflow.
* The course's helpers (``part1CreateDataset``, ``part1PlotBoundary``,
  ``part2Plots``) are not in the seed text; they are reconstructed from the
  EE449 course ``utils.py`` (sklearn ``make_blobs`` with centres (+-1, +-1),
  std 0.4, labels XOR-ed; the contour plot; the ``make_grid`` tiling), without
  sklearn or torchvision.
"""

from __future__ import annotations

import os
from typing import Callable, NamedTuple

import numpy as np

from deeplab.errors import DeeplabError

__all__ = [
    "XOR_CENTERS",
    "XorData",
    "make_xor_data",
    "ACTIVATIONS",
    "TwoLayerNet",
    "mse_loss",
    "accuracy",
    "train_xor",
    "plot_decision_boundary",
    "conv2d",
    "conv2d_reference",
    "conv2d_backward",
    "conv2d_output_shape",
    "edge_kernels",
    "synthetic_image",
    "plot_conv2d_outputs",
]

# ---------------------------------------------------------------------------
# Part 1 data: noisy XOR
# ---------------------------------------------------------------------------

#: blob centres of the course's ``part1CreateDataset``, in make_blobs order;
#: blob i gets label i, then labels 2 -> 0 and 3 -> 1, so (1, 1) and (-1, -1)
#: are class 0 and (1, -1), (-1, 1) are class 1: label = XOR of the signs.
XOR_CENTERS = np.array([[1.0, 1.0], [1.0, -1.0], [-1.0, -1.0], [-1.0, 1.0]])

#: labels of the four blobs after the course's XOR relabelling
_XOR_BLOB_LABELS = np.array([0, 1, 0, 1])


class XorData(NamedTuple):
    """Train and validation splits; x is (N, 2) float64, y is (N, 1) int64 in {0, 1}."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray


def _xor_blobs(n: int, std: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """n points from the 4 Gaussian blobs, shuffled; like sklearn's make_blobs.

    make_blobs gives each centre ``n // 4`` points and the first ``n % 4``
    centres one more, draws each blob as N(centre, std^2 I), then shuffles.
    """
    counts = np.full(len(XOR_CENTERS), n // len(XOR_CENTERS))
    counts[: n % len(XOR_CENTERS)] += 1
    x = np.concatenate(
        [rng.normal(loc=c, scale=std, size=(k, 2)) for c, k in zip(XOR_CENTERS, counts)]
    )  # (n, 2)
    y = np.repeat(_XOR_BLOB_LABELS, counts).astype(np.int64)  # (n,)
    order = rng.permutation(n)
    return x[order], y[order].reshape(-1, 1)  # (n, 2), (n, 1)


def make_xor_data(
    rng: np.random.Generator,
    train_samples: int = 1000,
    val_samples: int = 100,
    std: float = 0.4,
) -> XorData:
    """Noisy XOR, as the seed's ``part1CreateDataset(1000, 100, std=0.4)``.

    Four isotropic Gaussian blobs of standard deviation ``std`` centred at
    (+-1, +-1); a point's label is 1 when its blob's coordinates have opposite
    signs. The training split is drawn before the validation split, both from
    ``rng``, so the same generator state gives the same data.
    """
    if train_samples < 1 or val_samples < 1:
        raise DeeplabError("train_samples and val_samples must be positive")
    if std < 0:
        raise DeeplabError(f"std must be >= 0, got {std}")
    x_train, y_train = _xor_blobs(train_samples, std, rng)
    x_val, y_val = _xor_blobs(val_samples, std, rng)
    return XorData(x_train, y_train, x_val, y_val)


# ---------------------------------------------------------------------------
# Part 1 network
# ---------------------------------------------------------------------------

# Each activation is (f, f' written as a function of the activation's OUTPUT
# a = f(z)), which is how the seed writes them: tanh' = 1 - a^2,
# sigmoid' = a (1 - a), relu' = [a > 0]. For ReLU, [a > 0] == [z > 0], and
# at z = 0 it is 0, the same subgradient torch uses.


def _sigmoid(z: np.ndarray) -> np.ndarray:
    # 1 / (1 + e^-z) == (1 + tanh(z/2)) / 2; this form never overflows (the
    # seed's warns for z < -709) and is ~3x faster than a logaddexp form
    return 0.5 + 0.5 * np.tanh(0.5 * z)


ACTIVATIONS: dict[str, tuple[Callable[[np.ndarray], np.ndarray], Callable[[np.ndarray], np.ndarray]]] = {
    "tanh": (np.tanh, lambda a: 1.0 - np.square(a)),
    "sigmoid": (_sigmoid, lambda a: a * (1.0 - a)),
    "relu": (lambda z: np.maximum(0.0, z), lambda a: (a > 0).astype(a.dtype)),
}


def _with_ones(x: np.ndarray) -> np.ndarray:
    """(K, n) -> (K, n + 1) with a leading column of ones (the folded-in bias)."""
    return np.hstack((np.ones((x.shape[0], 1), dtype=x.dtype), x))


def mse_loss(output: np.ndarray, targets: np.ndarray) -> float:
    """mean((output - targets)^2) over all K x out entries.

    This is the loss whose gradient the seed's backward starts from
    (``output_error = (output - targets) * 2 / targets.size``). The seed prints
    half of it on the validation split; that factor changes nothing else.
    """
    return float(np.mean(np.square(output - targets)))


class TwoLayerNet:
    """The seed's ``MLP``: in -> hidden -> out, the same activation on both layers.

    Biases live in row 0 of each weight matrix and meet a prepended column of
    ones, as in the seed:

    * ``w1``: (in + 1, hidden)  -- the seed's ``weights_input_hidden`` (3 x 4)
    * ``w2``: (hidden + 1, out) -- the seed's ``weights_hidden_output`` (5 x 1)

    Both start as standard normal draws (the seed's ``np.random.randn``), here
    from ``rng``. The seed's separate ``bias_hidden`` / ``bias_output`` are
    zeros that are never used, so they are left out.
    """

    def __init__(
        self,
        activation: str = "tanh",
        input_size: int = 2,
        hidden_size: int = 4,
        output_size: int = 1,
        rng: np.random.Generator | None = None,
    ) -> None:
        if activation not in ACTIVATIONS:
            raise DeeplabError(
                f"unknown activation {activation!r}; choose one of {sorted(ACTIVATIONS)}"
            )
        if min(input_size, hidden_size, output_size) < 1:
            raise DeeplabError("input_size, hidden_size and output_size must be positive")
        rng = np.random.default_rng() if rng is None else rng
        self.activation = activation
        self.f, self.df = ACTIVATIONS[activation]
        self.w1 = rng.standard_normal((input_size + 1, hidden_size))  # (in+1, H)
        self.w2 = rng.standard_normal((hidden_size + 1, output_size))  # (H+1, out)

    @property
    def params(self) -> dict[str, np.ndarray]:
        """The weight matrices by name, the keys :meth:`backward` uses."""
        return {"w1": self.w1, "w2": self.w2}

    def forward(self, x: np.ndarray) -> np.ndarray:
        """(K, in) inputs -> (K, out) outputs; caches what backward needs."""
        self._xb = _with_ones(np.asarray(x, dtype=np.float64))  # (K, in+1)
        self._h = self.f(self._xb @ self.w1)  # (K, H) hidden activations
        self._hb = _with_ones(self._h)  # (K, H+1)
        self._o = self.f(self._hb @ self.w2)  # (K, out)
        return self._o

    __call__ = forward

    def _check_cache(self, targets: np.ndarray) -> np.ndarray:
        if not hasattr(self, "_o"):
            raise DeeplabError("call forward(x) before backward")
        targets = np.asarray(targets, dtype=np.float64).reshape(self._o.shape)
        return targets

    def backward(self, targets: np.ndarray) -> dict[str, np.ndarray]:
        """Exact d mse_loss / d weights for the batch of the last :meth:`forward`.

        With o = f(Hb w2), h = f(Xb w1), L = mean((o - y)^2) over K x out:

        * delta_o = 2 (o - y) / (K out) * f'(o)        (K, out)
        * dL/dw2  = Hb^T delta_o                        (H+1, out)
        * delta_h = (delta_o w2[1:]^T) * f'(h)          (K, H) -- row 0 of w2
          is the bias, which no hidden unit feeds
        * dL/dw1  = Xb^T delta_h                        (in+1, H)
        """
        y = self._check_cache(targets)
        delta_o = 2.0 * (self._o - y) / y.size * self.df(self._o)  # (K, out)
        delta_h = (delta_o @ self.w2[1:].T) * self.df(self._h)  # (K, H)
        return {"w1": self._xb.T @ delta_h, "w2": self._hb.T @ delta_o}

    def seed_grads(self, targets: np.ndarray) -> dict[str, np.ndarray]:
        """The seed's update direction, verbatim (NOT the gradient of any loss).

        The seed computes ``output_delta = output_error * f'(o) * 2`` (twice the
        gradient) and ``hidden_error = output_error @ w2[1:].T`` -- from the
        error, not the delta, so f'(o) never reaches the hidden layer. Kept so
        ``train_xor`` (default ``rule="seed"``) reproduces the seed's run.
        """
        y = self._check_cache(targets)
        output_error = (self._o - y) * 2.0 / y.size  # (K, out)
        output_delta = output_error * self.df(self._o) * 2.0  # (K, out)
        hidden_error = output_error @ self.w2[1:].T  # (K, H)
        hidden_delta = hidden_error * self.df(self._h)  # (K, H)
        return {"w1": self._xb.T @ hidden_delta, "w2": self._hb.T @ output_delta}

    def step(self, grads: dict[str, np.ndarray], learning_rate: float) -> None:
        """Plain gradient descent, in place: w -= learning_rate * grad."""
        self.w1 -= learning_rate * grads["w1"]
        self.w2 -= learning_rate * grads["w2"]

    def predict(self, x: np.ndarray, threshold: float = 0.5) -> np.ndarray:
        """(K, in) -> (K, out) int labels: output > threshold, as in the seed."""
        return (self.forward(x) > threshold).astype(np.int64)


def accuracy(net: TwoLayerNet, x: np.ndarray, y: np.ndarray) -> float:
    """Fraction of rows where ``net.predict(x)`` (output > 0.5) equals y."""
    return float(np.mean(net.predict(x) == np.asarray(y).reshape(-1, 1)))


def train_xor(
    activation: str = "tanh",
    seed: int = 0,
    *,
    data: XorData | None = None,
    hidden_size: int = 4,
    learning_rate: float = 0.001,
    epochs: int = 50000,
    rule: str = "seed",
) -> tuple[TwoLayerNet, np.ndarray]:
    """Train the seed's XOR network; return ``(net, loss_history)``.

    Defaults are the seed's: hidden size 4, standard-normal init, loss
    mean((o - y)^2), learning rate 0.001, 50000 full-batch epochs over the
    1000 training points. ``loss_history[e]`` is the training loss at the start
    of epoch ``e`` (the forward pass the update uses), shape (epochs,).

    ``rng = np.random.default_rng(seed)`` draws the data (unless ``data`` is
    given) and then the weights, so ``make_xor_data(np.random.default_rng(seed))``
    recreates the data a default run used.

    ``rule="seed"`` (default) steps along the seed's own update
    (:meth:`TwoLayerNet.seed_grads`), so a default run reproduces the seed's
    experiment; ``rule="exact"`` descends the true gradient
    (:meth:`TwoLayerNet.backward`). At the seed's learning rate and epochs the
    seed's rule trains sigmoid and ReLU nets further than exact descent does,
    because it doubles the output layer's step and skips the shrinking
    factor f'(o) in the hidden layer's.
    """
    if rule not in ("exact", "seed"):
        raise DeeplabError(f"rule must be 'exact' or 'seed', got {rule!r}")
    if epochs < 0:
        raise DeeplabError(f"epochs must be >= 0, got {epochs}")
    rng = np.random.default_rng(seed)
    if data is None:
        data = make_xor_data(rng)
    net = TwoLayerNet(activation, input_size=data.x_train.shape[1], hidden_size=hidden_size,
                      output_size=1, rng=rng)
    y = data.y_train.astype(np.float64)  # (N, 1)
    history = np.empty(epochs)
    for epoch in range(epochs):
        out = net.forward(data.x_train)  # (N, 1)
        history[epoch] = np.mean(np.square(out - y))
        grads = net.backward(y) if rule == "exact" else net.seed_grads(y)
        net.step(grads, learning_rate)
    return net, history


def _pyplot():
    """matplotlib.pyplot on the file-only Agg backend (:func:`deeplab.reporting.figures.pyplot`)."""
    from deeplab.reporting.figures import pyplot

    return pyplot()


def _prepare_path(path: str | os.PathLike) -> str:
    path = os.fspath(path)
    parent = os.path.dirname(path)
    if parent:
        os.makedirs(parent, exist_ok=True)
    return path


def plot_decision_boundary(
    net: TwoLayerNet,
    X: np.ndarray,
    y: np.ndarray,
    path: str | os.PathLike,
    title: str = "Decision Boundary",
    h: float = 0.01,
) -> str:
    """Write the seed's decision-boundary figure (course ``part1PlotBoundary``) as PNG.

    The net is evaluated on a grid of step ``h`` over the data's bounding box
    plus 0.1; the two output classes (< 0.5, > 0.5) are filled light coral and
    light blue, the 0.5 level is drawn in black, and the points (X: (K, 2),
    y: (K,) or (K, 1)) are scattered coloured by label with RdYlBu. The seed
    fills only outputs within [0, 1], leaving tanh's negative and ReLU's > 1
    regions blank; here the output is clipped to [0, 1] first so every grid
    point shows its predicted class. Returns ``path``.
    """
    plt = _pyplot()
    X = np.asarray(X, dtype=np.float64)
    x_min, x_max = X[:, 0].min() - 0.1, X[:, 0].max() + 0.1
    y_min, y_max = X[:, 1].min() - 0.1, X[:, 1].max() + 0.1
    xx, yy = np.meshgrid(np.arange(x_min, x_max, h), np.arange(y_min, y_max, h))  # (G1, G0)
    z = net.forward(np.c_[xx.ravel(), yy.ravel()])[:, 0].reshape(xx.shape)  # (G1, G0)
    z = np.clip(z, 0.0, 1.0)

    fig, ax = plt.subplots()
    ax.contourf(xx, yy, z, levels=[0, 0.5, 1], colors=["lightcoral", "lightblue"], alpha=0.5)
    if z.min() < 0.5 < z.max():  # contour warns when the level is never crossed
        ax.contour(xx, yy, z, levels=[0.5], colors="black")
    ax.scatter(X[:, 0], X[:, 1], c=np.asarray(y).ravel(), cmap="RdYlBu")
    ax.set_xlabel("X1")
    ax.set_ylabel("X2")
    ax.set_title(title)
    path = _prepare_path(path)
    fig.savefig(path)
    plt.close(fig)
    return path


# ---------------------------------------------------------------------------
# Part 2: conv2d
# ---------------------------------------------------------------------------


def _pair(v: int | tuple[int, int], name: str, minimum: int) -> tuple[int, int]:
    pair = (v, v) if isinstance(v, (int, np.integer)) else tuple(v)
    if len(pair) != 2 or any(int(p) != p or p < minimum for p in pair):
        raise DeeplabError(f"{name} must be an int >= {minimum} or a pair of them, got {v!r}")
    return int(pair[0]), int(pair[1])


def conv2d_output_shape(
    input_shape: tuple[int, int, int, int],
    kernel_shape: tuple[int, int, int, int],
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] = 0,
) -> tuple[int, int, int, int]:
    """(B, C, H, W) x (O, C, kh, kw) -> (B, O, OH, OW), OH = (H + 2 ph - kh) // sh + 1.

    With the seed's stride 1 and no padding this is the seed's
    ``in_height - kernel_height + 1``. Raises DeeplabError on mismatched
    channels or a kernel larger than the padded input.
    """
    if len(input_shape) != 4 or len(kernel_shape) != 4:
        raise DeeplabError(
            f"input must be (B, C, H, W) and kernel (O, C, kh, kw); got {input_shape} and {kernel_shape}"
        )
    sh, sw = _pair(stride, "stride", 1)
    ph, pw = _pair(padding, "padding", 0)
    b, c, h, w = input_shape
    o, kc, kh, kw = kernel_shape
    if c != kc:
        raise DeeplabError(
            f"the number of input channels ({c}) must match the kernel's input channels ({kc})"
        )
    if kh > h + 2 * ph or kw > w + 2 * pw:
        raise DeeplabError(
            f"kernel {kh}x{kw} is larger than the padded input {h + 2 * ph}x{w + 2 * pw}"
        )
    return b, o, (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1


def _padded(x: np.ndarray, padding: tuple[int, int]) -> np.ndarray:
    ph, pw = padding
    return np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))


def _windows(xp: np.ndarray, kh: int, kw: int, oh: int, ow: int, sh: int, sw: int) -> np.ndarray:
    """(B, C, Hp, Wp) -> read-only view (B, C, OH, OW, kh, kw) of the strided patches."""
    win = np.lib.stride_tricks.sliding_window_view(xp, (kh, kw), axis=(2, 3))
    return win[:, :, : (oh - 1) * sh + 1 : sh, : (ow - 1) * sw + 1 : sw]


def conv2d(
    input: np.ndarray,
    kernel: np.ndarray,
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] = 0,
) -> np.ndarray:
    """Seed 003's ``my_conv2d``, vectorised, with stride and zero padding added.

    ``output[b, o, i, j] = sum_{c, m, n} input_p[b, c, i*sh + m, j*sw + n] * kernel[o, c, m, n]``

    where input_p is the input zero-padded by ``padding`` on each side: a
    cross-correlation (the kernel is not flipped), as in the seed and in
    ``torch.nn.functional.conv2d``; no bias. Defaults (stride 1, padding 0)
    are the seed's. input: (B, C, H, W); kernel: (O, C, kh, kw);
    returns float64 (B, O, OH, OW) (see :func:`conv2d_output_shape`).
    """
    input = np.asarray(input, dtype=np.float64)
    kernel = np.asarray(kernel, dtype=np.float64)
    _, _, oh, ow = conv2d_output_shape(input.shape, kernel.shape, stride, padding)
    sh, sw = _pair(stride, "stride", 1)
    win = _windows(_padded(input, _pair(padding, "padding", 0)), *kernel.shape[2:], oh, ow, sh, sw)
    return np.einsum("bchwmn,ocmn->bohw", win, kernel, optimize=True)


def conv2d_reference(
    input: np.ndarray,
    kernel: np.ndarray,
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] = 0,
) -> np.ndarray:
    """The seed's four nested loops (batch, out channel, row, column), plus stride/padding.

    Slow (pure Python over every output pixel); kept as the readable
    definition that :func:`conv2d` is tested against.
    """
    input = np.asarray(input, dtype=np.float64)
    kernel = np.asarray(kernel, dtype=np.float64)
    b_, o_, oh, ow = conv2d_output_shape(input.shape, kernel.shape, stride, padding)
    sh, sw = _pair(stride, "stride", 1)
    xp = _padded(input, _pair(padding, "padding", 0))
    kh, kw = kernel.shape[2:]
    output = np.zeros((b_, o_, oh, ow))
    for b in range(b_):
        for oc in range(o_):
            for i in range(oh):
                for j in range(ow):
                    patch = xp[b, :, i * sh : i * sh + kh, j * sw : j * sw + kw]  # (C, kh, kw)
                    output[b, oc, i, j] = np.sum(patch * kernel[oc])
    return output


def conv2d_backward(
    grad_output: np.ndarray,
    input: np.ndarray,
    kernel: np.ndarray,
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Gradients of ``sum(grad_output * conv2d(input, kernel, stride, padding))``.

    Returns ``(grad_input, grad_kernel)`` with the shapes of input (B, C, H, W)
    and kernel (O, C, kh, kw). The seed only has the forward pass; this is
    its adjoint, checked against torch autograd in the tests:

    * grad_kernel[o, c, m, n] = sum_{b,i,j} g[b, o, i, j] input_p[b, c, i*sh+m, j*sw+n]
    * grad_input_p[b, c, i*sh+m, j*sw+n] += sum_o g[b, o, i, j] kernel[o, c, m, n],
      then the padding border is cut off.
    """
    input = np.asarray(input, dtype=np.float64)
    kernel = np.asarray(kernel, dtype=np.float64)
    out_shape = conv2d_output_shape(input.shape, kernel.shape, stride, padding)
    g = np.asarray(grad_output, dtype=np.float64)
    if g.shape != out_shape:
        raise DeeplabError(f"grad_output has shape {g.shape}, expected {out_shape}")
    (sh, sw), (ph, pw) = _pair(stride, "stride", 1), _pair(padding, "padding", 0)
    _, _, oh, ow = out_shape
    kh, kw = kernel.shape[2:]
    xp = _padded(input, (ph, pw))  # (B, C, Hp, Wp)
    grad_kernel = np.einsum("bohw,bchwmn->ocmn", g, _windows(xp, kh, kw, oh, ow, sh, sw), optimize=True)
    grad_xp = np.zeros_like(xp)
    for m in range(kh):  # one strided scatter-add per kernel tap
        for n in range(kw):
            grad_xp[:, :, m : m + (oh - 1) * sh + 1 : sh, n : n + (ow - 1) * sw + 1 : sw] += np.einsum(
                "bohw,oc->bchw", g, kernel[:, :, m, n]
            )
    grad_input = grad_xp[:, :, ph : ph + input.shape[2], pw : pw + input.shape[3]]
    return grad_input, grad_kernel


def edge_kernels(in_channels: int = 1) -> np.ndarray:
    """A bank of 8 fixed 3x3 filters, (8, in_channels, 3, 3), for the conv figure.

    The seed convolves with the course's ``kernel.npy``, whose values the seed
    text does not contain; these stand in for it: Sobel x / y, the two
    diagonal Sobels, a Laplacian, a horizontal and a vertical line detector
    and a 3x3 box blur. Each is spread evenly over the input channels.
    """
    if in_channels < 1:
        raise DeeplabError(f"in_channels must be positive, got {in_channels}")
    k = np.array(
        [
            [[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]],  # Sobel x: vertical edges
            [[-1, -2, -1], [0, 0, 0], [1, 2, 1]],  # Sobel y: horizontal edges
            [[0, 1, 2], [-1, 0, 1], [-2, -1, 0]],  # diagonal /
            [[-2, -1, 0], [-1, 0, 1], [0, 1, 2]],  # diagonal \
            [[0, 1, 0], [1, -4, 1], [0, 1, 0]],  # Laplacian
            [[-1, -1, -1], [2, 2, 2], [-1, -1, -1]],  # horizontal line
            [[-1, 2, -1], [-1, 2, -1], [-1, 2, -1]],  # vertical line
            [[1, 1, 1], [1, 1, 1], [1, 1, 1]],  # box blur (sum; scaled below)
        ],
        dtype=np.float64,
    )
    k[7] /= 9.0
    return np.repeat(k[:, None], in_channels, axis=1) / in_channels  # (8, C, 3, 3)


def synthetic_image(size: int = 28) -> np.ndarray:
    """A (size, size) float64 image in [0, 1] with a '7'-like stroke, for demos.

    Stands in for the seed's MNIST samples when none are at hand: a
    horizontal bar near the top and a diagonal stroke down to the bottom left,
    so edge filters have horizontal, vertical and diagonal edges to find.
    """
    if size < 8:
        raise DeeplabError(f"size must be >= 8, got {size}")
    img = np.zeros((size, size))
    top, left, right, bottom = size // 5, size // 5, size - size // 5, size - size // 7
    thick = max(1, size // 10)
    img[top : top + thick, left:right] = 1.0  # the bar
    for r in range(top, bottom):  # the stroke, from the bar's right end
        c = int(round(right - 1 - (r - top) * (right - left) * 0.6 / (bottom - top)))
        img[r, max(c - thick + 1, 0) : c + 1] = 1.0
    return img


def _as_batch(images: np.ndarray) -> np.ndarray:
    """(H, W) | (C, H, W) | (B, C, H, W) -> (B, C, H, W) float64."""
    x = np.asarray(images, dtype=np.float64)
    if x.ndim == 2:
        return x[None, None]
    if x.ndim == 3:
        return x[None]
    if x.ndim == 4:
        return x
    raise DeeplabError(f"images must be (H, W), (C, H, W) or (B, C, H, W); got shape {x.shape}")


def plot_conv2d_outputs(
    images: np.ndarray,
    path: str | os.PathLike,
    kernel: np.ndarray | None = None,
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] = 0,
    nmax: int = 64,
    padding_px: int = 2,
) -> np.ndarray:
    """Convolve ``images`` with ``kernel`` and write the seed's Fig. 7 grid as PNG.

    Like the course's ``part2Plots(out)``: every output map (B x O of them,
    at most ``nmax``) is a tile in a grid with one row per image and one
    column per filter, separated by ``padding_px`` pixels (``make_grid``'s
    padding), so a column shows one filter across images and a row one image
    across filters. ``part2Plots`` shows the maps as RGB, clipping to [0, 1];
    here they share one grey scale from the smallest to the largest value, so
    negative responses stay visible. ``kernel`` defaults to
    :func:`edge_kernels`. images: (H, W), (C, H, W) or (B, C, H, W). Returns
    the (B, O, OH, OW) conv2d output.
    """
    x = _as_batch(images)  # (B, C, H, W)
    kernel = edge_kernels(x.shape[1]) if kernel is None else np.asarray(kernel, dtype=np.float64)
    out = conv2d(x, kernel, stride, padding)  # (B, O, OH, OW)
    b, o, oh, ow = out.shape
    maps = out.reshape(-1, oh, ow)[:nmax]  # (n, OH, OW), image-major as part2Plots
    ncol = min(o, len(maps))
    nrow = -(-len(maps) // ncol)
    p = padding_px
    lo, hi = float(maps.min()), float(maps.max())
    grid = np.full((nrow * (oh + p) + p, ncol * (ow + p) + p), hi)  # border drawn white
    for k, m in enumerate(maps):
        r, c = divmod(k, ncol)
        grid[p + r * (oh + p) : p + r * (oh + p) + oh, p + c * (ow + p) : p + c * (ow + p) + ow] = m

    plt = _pyplot()
    # part2Plots uses an 8 x 8 inch figure; keep the width, fit the height to the grid
    fig, ax = plt.subplots(figsize=(8, max(1.0, 8 * grid.shape[0] / grid.shape[1])))
    ax.set_xticks([])
    ax.set_yticks([])
    ax.imshow(grid, cmap="gray", vmin=lo, vmax=hi if hi > lo else lo + 1.0, interpolation="nearest")
    path = _prepare_path(path)
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)
    return out
