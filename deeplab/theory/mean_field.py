"""Mean-field signal propagation in deep, wide, random networks.

After Poole et al., "Exponential expressivity in deep neural networks through
transient chaos" (NeurIPS 2016) and Schoenholz et al., "Deep Information
Propagation" (ICLR 2017). A layer ``h = W φ(h_prev) + b`` with weights of
variance ``σ_w² / fan_in`` and biases of variance ``σ_b²`` maps the
per-unit pre-activation variance ``q`` of an input to

    q ← σ_w² · E_z[φ(√q z)²] + σ_b²,          z ~ N(0, 1)          (length map)

and the correlation ``c`` between two inputs to

    c ← (σ_w² · E[φ(u₁) φ(u₂)] + σ_b²) / q*,  u₁ = √q* z₁,
         u₂ = √q* (c z₁ + √(1 − c²) z₂)                            (correlation map)

Quantities computed here, all by numerical quadrature (numpy only; see
:func:`_gaussian_grid`):

* ``q*``: the fixed point of the length map reached from ``q0`` (the map is
  increasing, so iteration from ``q0`` converges monotonically to the nearest
  fixed point in the direction it moves; we find that root directly by a sign
  scan and bisection instead of iterating, because near criticality the
  iteration converges only as a power law).
* ``χ₁ = σ_w² · E[φ'(√q* z)²]``: the mean squared singular value of the
  layer Jacobian; χ₁ < 1 is the ordered phase (gradients vanish, inputs
  collapse together), χ₁ > 1 the chaotic phase (gradients explode), χ₁ = 1
  the *edge of chaos*.
* ``c*`` and ``χ_c = σ_w² · E[φ'(u₁) φ'(u₂)]`` at ``c*``: the slope of the
  correlation map at its stable fixed point. In the ordered phase ``c* = 1``,
  so ``u₁ = u₂`` and χ_c equals χ₁ exactly; in the chaotic phase ``c* < 1`` and
  χ_c is evaluated there with a two-dimensional quadrature.
* ``ξ_c = −1 / ln χ_c``: the depth scale over which correlations (and, by the
  same argument, gradients) decay; infinite at χ_c = 1. Schoenholz et al. find
  networks trainable up to roughly ``6 ξ_c`` layers: :data:`TRAINABLE_DEPTH_FACTOR`.
* ``ξ_q = −1 / ln(χ₁ + σ_w² E[φ''(u) φ(u)])``: the depth scale over which the
  length ``q`` relaxes to ``q*`` (Schoenholz et al. eq. 8).

Conventions. ``σ_w²`` is the *variance gain*: a Gaussian weight has standard
deviation ``σ_w / √fan_in`` with ``fan_in = C_in · k_h · k_w`` for a conv.
Confusing ``σ_w`` with ``σ_w²`` is the usual slip (N(0, 0.05) in seed 002 is a
standard deviation of 0.05, i.e. σ_w² = 0.05² · fan_in). Where ``q* = 0``
(e.g. tanh with σ_b = 0, σ_w² ≤ 1) φ' is evaluated in the limit q → 0⁺, so
relu's step derivative averages to ½ rather than being taken at exactly 0.

Caveat: the theory is for infinitely wide, plain (non-residual,
non-normalized) networks at initialization. Seed 002's nets are 4–16 channels
wide and pool between stages, so predictions are order-of-magnitude guides;
:func:`deeplab.search.prediction.predict_for_model` declines (returns ``None`` predictions with a
reason) for the batch-norm and residual families.

Seed 002 at its own inits (:func:`deeplab.search.prediction.predict_for_model`, large-depth limit):

* ``cnn_tanh``, N(0, std 0.05): σ_w² = 0.0225·C_in per layer, geometric mean
  0.18; q* = 0, χ₁ = 0.18, ξ_c = 0.58, 6 ξ_c ≈ 3.5 — the seed found k = 3.
* ``cnn_tanh_newinit`` and ``cnn_elu``, N(0, 1/(9·C_in)): σ_w² = 1, σ_b = 0,
  which is exactly critical for both tanh and elu (q* = 0, χ₁ = 1, ξ_c = ∞).
  Mean field sets no depth limit there; the seed's 84 and 93 come from what
  it leaves out (4–16 channels, pooling, the power-law decay q_l ~ 1/(2l) of
  the signal toward q* = 0, 3 epochs at lr 0.01).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Callable

import numpy as np

from deeplab.errors import DeeplabError

__all__ = [
    "ACTIVATIONS",
    "TRAINABLE_DEPTH_FACTOR",
    "MeanFieldResult",
    "q_star",
    "chi1",
    "correlation_fixed_point",
    "depth_scale",
    "analyze",
    "critical_sigma_w2",
]

#: Schoenholz et al. (2017): networks train up to about this many ξ_c layers.
TRAINABLE_DEPTH_FACTOR = 6.0

_QUADRATURE_POINTS = 200  # Gauss–Legendre nodes per half-line for 1-D expectations
_QUADRATURE_POINTS_2D = 60  # per half-axis for the correlation map's 2-D expectations
_Q_FLOOR = 1e-24  # evaluate φ' at q → 0⁺ when q* = 0
_Q_INFINITY = 1e12  # stands in for q* = ∞ (relu/linear/elu with a diverging length map)
_LEAKY_SLOPE = 0.01  # seed 000's leaky ReLU
_CRITICAL_TOLERANCE = 1e-6  # |χ − 1| below this counts as critical: ξ = ∞ (ξ > 10⁶ layers)


def _elu(x: np.ndarray) -> np.ndarray:
    return np.where(x > 0, x, np.expm1(np.minimum(x, 0.0)))


def _sech2(x: np.ndarray) -> np.ndarray:
    # sech² x = 4 e^{−2|x|} / (1 + e^{−2|x|})², overflow-free
    e = np.exp(-2.0 * np.abs(x))
    return 4.0 * e / (1.0 + e) ** 2


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


# name → (φ, φ', φ'')
_FUNCTIONS: dict[str, tuple[Callable, Callable, Callable]] = {
    "tanh": (
        np.tanh,
        _sech2,
        lambda x: -2.0 * np.tanh(x) * _sech2(x),
    ),
    "relu": (
        lambda x: np.maximum(x, 0.0),
        lambda x: (x > 0).astype(float),
        lambda x: np.zeros_like(x),
    ),
    "leaky_relu": (
        lambda x: np.where(x > 0, x, _LEAKY_SLOPE * x),
        lambda x: np.where(x > 0, 1.0, _LEAKY_SLOPE),
        lambda x: np.zeros_like(x),
    ),
    "elu": (
        _elu,
        lambda x: np.where(x > 0, 1.0, np.exp(np.minimum(x, 0.0))),
        lambda x: np.where(x > 0, 0.0, np.exp(np.minimum(x, 0.0))),
    ),
    "sigmoid": (
        _sigmoid,
        lambda x: _sigmoid(x) * (1.0 - _sigmoid(x)),
        lambda x: _sigmoid(x) * (1.0 - _sigmoid(x)) * (1.0 - 2.0 * _sigmoid(x)),
    ),
    "linear": (
        lambda x: x,
        lambda x: np.ones_like(x),
        lambda x: np.zeros_like(x),
    ),
}

#: activations the mean-field functions know (``leaky_relu`` has slope 0.01, seed 000's)
ACTIVATIONS: tuple[str, ...] = tuple(_FUNCTIONS)


def _functions(activation: str) -> tuple[Callable, Callable, Callable]:
    try:
        return _FUNCTIONS[activation]
    except KeyError:
        raise DeeplabError(
            f"mean field: unknown activation {activation!r}; choose one of {', '.join(ACTIVATIONS)}."
        ) from None


@lru_cache(maxsize=64)
def _gaussian_grid(resolution: float, points: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes zᵢ and weights wᵢ with Σ wᵢ f(zᵢ) ≈ E_z[f(z)], z ~ N(0, 1).

    Each half-line is mapped by z = ±h · sinh(t), t ∈ [0, asinh(12/h)], and
    integrated by ``points``-node Gauss–Legendre in t. Node spacing near z = 0
    is then ~h times the Legendre spacing, so a unit-width feature of φ stays
    resolved when it shrinks to width 1/√q in z (h ~ 1/√q), and the halves
    meet at z = 0, where relu/elu have their kinks: each half's integrand is
    smooth, so the rule converges spectrally. Nodes are symmetric, so a step
    (relu's φ') averages to exactly ½. Weights are normalized to sum to 1.
    """
    h = resolution
    t_max = math.asinh(12.0 / h)
    x, w = np.polynomial.legendre.leggauss(points)
    t = 0.5 * t_max * (x + 1.0)
    z_half = h * np.sinh(t)
    w_half = 0.5 * t_max * w * h * np.cosh(t) * np.exp(-0.5 * z_half * z_half)
    z = np.concatenate([-z_half[::-1], z_half])
    weights = np.concatenate([w_half[::-1], w_half])
    return z, weights / weights.sum()


def _grid_for(q: float, points: int) -> tuple[np.ndarray, np.ndarray]:
    # resolve unit-width features of φ at u = √q z: spacing in z ~ 1/√q; bucket q by powers of 4
    resolution = 1.0 if q <= 1.0 else 2.0 ** -math.ceil(math.log(math.sqrt(q), 2))
    return _gaussian_grid(resolution, points)


def _gauss_mean(f: Callable[[np.ndarray], np.ndarray], scale: float) -> float:
    """E_z[f(scale · z)], z ~ N(0, 1)."""
    z, w = _grid_for(scale * scale, _QUADRATURE_POINTS)
    return float(np.dot(w, f(scale * z)))


def _length_map(activation: str, sigma_w2: float, sigma_b2: float, q: float) -> float:
    phi = _functions(activation)[0]
    return sigma_w2 * _gauss_mean(lambda x: phi(x) ** 2, math.sqrt(q)) + sigma_b2


def _check_variances(sigma_w2: float, sigma_b2: float) -> None:
    if not (sigma_w2 >= 0 and sigma_b2 >= 0) or math.isnan(sigma_w2) or math.isnan(sigma_b2):
        raise DeeplabError(
            f"mean field: σ_w² and σ_b² are variances and must be ≥ 0, got σ_w²={sigma_w2}, σ_b²={sigma_b2}."
        )


def _bisect(g: Callable[[float], float], lo: float, hi: float, iterations: int = 200) -> float:
    """A root of g in [lo, hi] where g(lo), g(hi) have opposite signs."""
    g_lo = g(lo)
    for _ in range(iterations):
        mid = 0.5 * (lo + hi) if hi / max(lo, 1e-300) < 4 else math.sqrt(max(lo, 1e-300) * hi)
        g_mid = g(mid)
        if g_mid == 0:
            return mid
        if (g_mid > 0) == (g_lo > 0):
            lo, g_lo = mid, g_mid
        else:
            hi = mid
        if hi - lo <= 1e-14 * hi:
            break
    return 0.5 * (lo + hi)


def q_star(activation: str, sigma_w2: float, sigma_b2: float, q0: float = 1.0) -> float:
    """Fixed point of the length map reached by iterating from ``q0``.

    Returns ``0.0`` when the length collapses (e.g. tanh, σ_b = 0, σ_w² ≤ 1)
    and ``math.inf`` when it diverges (e.g. relu with σ_w² > 2). Where the map
    is the identity (relu at σ_w² = 2, σ_b = 0; linear at σ_w² = 1, σ_b = 0)
    every q is fixed and ``q0`` is returned.
    """
    _check_variances(sigma_w2, sigma_b2)
    if not (0 < q0 < math.inf):
        raise DeeplabError(f"mean field: the starting length q0 must be positive and finite, got {q0}.")

    def g(q: float) -> float:
        return _length_map(activation, sigma_w2, sigma_b2, q) - q

    g0 = g(q0)
    if abs(g0) <= 1e-12 * max(q0, 1e-300):
        return float(q0)
    return float(_q_star_search(g, g0, q0))


def _q_star_search(g: Callable[[float], float], g0: float, q0: float) -> float:
    if g0 < 0:  # length shrinks: largest root below q0
        grid = q0 * np.logspace(0, -14, 141)
        previous = q0
        for q in grid[1:]:
            if g(q) >= 0:
                return _bisect(g, q, previous)
            previous = q
        return 0.0 if g(0.0) <= 1e-300 else _bisect(g, 0.0, previous)
    # length grows: smallest root above q0
    grid = q0 * np.logspace(0, 14, 141)
    previous = q0
    for q in grid[1:]:
        if g(q) <= 0:
            return _bisect(g, previous, q)
        previous = q
    return math.inf


def chi1(activation: str, sigma_w2: float, q: float) -> float:
    """χ₁ = σ_w² E[φ'(√q z)²] at length ``q`` (q = 0 means the limit q → 0⁺)."""
    dphi = _functions(activation)[1]
    q = min(max(q, _Q_FLOOR), _Q_INFINITY)
    return sigma_w2 * _gauss_mean(lambda x: dphi(x) ** 2, math.sqrt(q))


def _correlation_expectations(activation: str, q: float, c: float, derivative: bool) -> float:
    """E[f(u₁) f(u₂)] for f = φ or φ', (u₁, u₂) jointly Gaussian, variances q, correlation c."""
    phi, dphi, _ = _functions(activation)
    f = dphi if derivative else phi
    z, w = _grid_for(q, _QUADRATURE_POINTS_2D)
    z1, z2 = np.meshgrid(z, z, indexing="ij")
    weights = np.outer(w, w)
    s = math.sqrt(q)
    c = min(max(c, -1.0), 1.0)
    u1 = s * z1
    u2 = s * (c * z1 + math.sqrt(max(0.0, 1.0 - c * c)) * z2)
    return float(np.sum(weights * f(u1) * f(u2)))


def correlation_fixed_point(activation: str, sigma_w2: float, sigma_b2: float, q: float) -> float:
    """Stable fixed point c* of the correlation map at length ``q`` (= q*).

    c = 1 is always a fixed point; it is the stable one when χ₁ ≤ 1 (ordered
    phase). Otherwise the map is iterated from c = 0 to the fixed point c* < 1.
    """
    if chi1(activation, sigma_w2, q) <= 1.0 + _CRITICAL_TOLERANCE or q <= 0 or not math.isfinite(q):
        return 1.0
    c = 0.0
    for _ in range(2000):
        new = (sigma_w2 * _correlation_expectations(activation, q, c, derivative=False) + sigma_b2) / q
        new = min(max(new, -1.0), 1.0)
        if abs(new - c) < 1e-12:
            return new
        c = new
    return c


def depth_scale(chi: float) -> float:
    """ξ = −1 / ln χ; infinite where |ln χ| < 1e-6 (ξ beyond 10⁶ layers, and within
    the quadrature's precision of χ = 1); for χ > 1 uses |ln χ|."""
    if chi <= 0:
        return 0.0
    log = math.log(chi)
    if abs(log) < _CRITICAL_TOLERANCE:
        return math.inf
    return 1.0 / abs(log)


@dataclass(frozen=True)
class MeanFieldResult:
    """One (activation, σ_w², σ_b²) point's mean-field quantities."""

    activation: str
    sigma_w2: float  # weight variance gain: weight std = σ_w / √fan_in
    sigma_b2: float  # bias variance
    q_star: float  # length fixed point (0: collapses; inf: diverges)
    chi1: float  # σ_w² E[φ'(√q* z)²]
    c_star: float  # correlation fixed point (1 in the ordered phase)
    chi_c: float  # slope of the correlation map at c* (= χ₁ when c* = 1)
    depth_scale: float  # ξ_c = −1/ln χ_c
    length_depth_scale: float  # ξ_q = −1/ln(χ₁ + σ_w² E[φ''φ])
    predicted_max_depth: float  # TRAINABLE_DEPTH_FACTOR · ξ_c

    def as_dict(self) -> dict:
        return asdict(self)


def analyze(activation: str, sigma_w2: float, sigma_b2: float = 0.0, q0: float = 1.0) -> MeanFieldResult:
    """All mean-field quantities at (σ_w², σ_b²), starting the length map at ``q0``."""
    _check_variances(sigma_w2, sigma_b2)
    phi, _, d2phi = _functions(activation)
    q = q_star(activation, sigma_w2, sigma_b2, q0)
    c1 = chi1(activation, sigma_w2, q)
    c_star = correlation_fixed_point(activation, sigma_w2, sigma_b2, q)
    if c_star >= 1.0:
        chi_c = c1  # u₁ = u₂ at c* = 1, so σ_w² E[φ'(u₁)φ'(u₂)] = χ₁
    else:
        chi_c = sigma_w2 * _correlation_expectations(activation, q, c_star, derivative=True)
    q_eval = min(max(q, _Q_FLOOR), _Q_INFINITY)
    chi_q = c1 + sigma_w2 * _gauss_mean(lambda x: d2phi(x) * phi(x), math.sqrt(q_eval))
    xi_c = depth_scale(chi_c)
    return MeanFieldResult(
        activation=activation,
        sigma_w2=float(sigma_w2),
        sigma_b2=float(sigma_b2),
        q_star=q,
        chi1=c1,
        c_star=c_star,
        chi_c=chi_c,
        depth_scale=xi_c,
        length_depth_scale=depth_scale(chi_q),
        predicted_max_depth=TRAINABLE_DEPTH_FACTOR * xi_c,
    )


def critical_sigma_w2(activation: str, sigma_b2: float = 0.0, q0: float = 1.0) -> float:
    """The σ_w² on the edge of chaos for bias variance ``sigma_b2``: χ₁(σ_w², q*(σ_w², σ_b²)) = 1.

    Known values: tanh and linear 1 at σ_b = 0; relu 2 (any σ_b, since its χ₁ =
    σ_w²/2 does not depend on q); elu 1 at σ_b = 0. Solved by bisection in
    log σ_w² on [1e-3, 1e3].
    """
    _check_variances(1.0, sigma_b2)
    _functions(activation)

    def g(sigma_w2: float) -> float:
        return chi1(activation, sigma_w2, q_star(activation, sigma_w2, sigma_b2, q0)) - 1.0

    lo, hi = 1e-3, 1e3
    if g(lo) > 0 or not g(hi) > 0:
        raise DeeplabError(
            f"mean field: no critical σ_w² in [{lo}, {hi}] for {activation} with σ_b²={sigma_b2}; "
            "try a smaller σ_b²."
        )
    for _ in range(200):
        mid = math.sqrt(lo * hi)
        if g(mid) > 0:
            hi = mid
        else:
            lo = mid
        if hi / lo - 1 < 1e-10:
            break
    return math.sqrt(lo * hi)
