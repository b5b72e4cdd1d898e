"""Trainability measured on the network itself, at initialization: signal propagation, the empirical
correlation map and its depth scale, gradient growth and a stage's Jacobian spectrum.

:mod:`deeplab.theory.mean_field` predicts these quantities from formulas for wide, plain networks;
here they are measured by forward and backward passes of the real network on real inputs, so they
exist for every family (batch norm, residual branches, 4/8/16 channels, pooling included).

**Where the network is measured.** :func:`propagation_points` walks the model in order and takes one
*point* per layer: the input of each activation module (the pre-activation ``h_l`` of mean-field
theory) for a plain layer, and the output of each residual block (``x_{l+1} = x_l + f(x_l)``, with
the branch ``f(x_l)`` beside it) for a residual one. A point's ``stage`` is the top-level child of the
network it sits in (seed 002's ``stages.i``): quantities that compare consecutive layers never compare
across a pooling layer.

Quantities (``l`` indexes points, ``B`` examples, statistics over batch and space per channel):

* **Signal propagation** (Brock, De & Smith, "Characterizing signal propagation to close the
  performance gap in unnormalized ResNets", ICLR 2021): the average channel squared mean
  ``mean_c (E[h_c])²``, the average channel variance ``mean_c Var[h_c]``, and for residual blocks the
  residual branch's average channel variance. ``q_l = E[h²]`` is mean-field's length.
* **The correlation map** (Poole et al. 2016; Schoenholz et al., "Deep Information Propagation",
  ICLR 2017): ``c_l``, the mean cosine between two different inputs' representations at point ``l``
  (over all pairs of the batch). Near its fixed point ``c*`` the map is linear with slope ``χ_c``:
  ``c_{l+1} − c* ≈ χ_c (c_l − c*)``. :func:`fit_depth_scale` takes ``c*`` from the deepest layers of the
  deepest stage that still converges and fits that slope by least squares through the origin over the
  layers nearest ``c*`` (above the finite-batch noise, :data:`CORRELATION_NOISE`): ``ξ_c = −1 / ln χ_c``.
  Schoenholz et al. find networks trainable to
  about ``6 ξ_c`` layers.
* **Gradient growth** (Yang et al., "A Mean Field Theory of Batch Normalization", ICLR 2019: batch
  norm makes gradients explode with depth at initialization): the norms of one backward pass's
  gradients, per layer, with respect to each point's representation and each layer's weight. The
  growth rate per layer toward the input is ``e^{−slope}`` of a least-squares fit of ``ln ‖g_l‖`` on
  ``l`` with one intercept per stage (a stage's pooling changes a gradient's size, not its rate).
* **The Jacobian spectrum** (Pennington, Schoenholz & Ganguli, "Resurrecting the sigmoid in deep
  learning through dynamical isometry", NeurIPS 2017): the exact Jacobian ``∂h_j/∂h_i`` of one
  example's representation between a stage's first and last points (forward-mode, one column per
  input coordinate), its singular values, their mean square ``χ`` and per layer ``χ₁ = χ^{1/(j−i)}``
  (mean-field's χ₁, empirically). With batch norm the other examples of the batch stay in the batch
  (they set its statistics); their inputs are held fixed.

Every measurement runs on a copy of the network whose batch norms neither read nor update running
statistics (they normalize by the batch, as in training), so measuring a network that is training
changes nothing about its run; no random numbers are drawn.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch
import torch.nn as nn

__all__ = [
    "CORRELATION_NOISE",
    "POINT_ACTIVATIONS",
    "Point",
    "propagation_points",
    "measurement_copy",
    "forward_signals",
    "fit_depth_scale",
    "gradient_growth",
    "jacobian_spectrum",
    "stage_rate_fit",
]

#: the activation modules whose inputs are a plain layer's pre-activations
POINT_ACTIVATIONS: tuple[type[nn.Module], ...] = (nn.Tanh, nn.ELU, nn.ReLU, nn.LeakyReLU, nn.GELU, nn.SiLU,
                                                  nn.Sigmoid, nn.Softplus, nn.SELU, nn.CELU)
#: changes of the correlation map below this are finite-batch noise, not signal (a pair cosine's
#: standard error over a batch of 64 is ~1e-3; consecutive-layer changes below 1e-4 are left out)
CORRELATION_NOISE = 1e-4
#: Jacobian columns computed at once (forward-mode, vmapped): bounds the memory of a deep stage's Jacobian
JACOBIAN_CHUNK = 98


@dataclass(frozen=True)
class Point:
    """One measured layer: its name, the module observed, ``kind`` ("pre-activation" or "block": which
    representation is read) and ``stage`` (the network's top-level part it lies in)."""

    name: str
    module: nn.Module
    kind: str
    stage: str


def _residual_types() -> tuple[type[nn.Module], ...]:
    from deeplab.models.depth_family import ResidualBlock
    from deeplab.models.resnet import BasicBlock, Bottleneck

    return ResidualBlock, BasicBlock, Bottleneck


def propagation_points(model: nn.Module) -> list[Point]:
    """The network's layers in order, one :class:`Point` each (see the module docstring); a residual
    block is one point (its inner activation is not another)."""
    residual = _residual_types()
    points: list[Point] = []

    def visit(module: nn.Module, prefix: str) -> None:
        for name, child in module.named_children():
            qualified = f"{prefix}.{name}" if prefix else name
            if isinstance(child, residual):
                points.append(Point(qualified, child, "block", _stage_of(qualified)))
            elif isinstance(child, POINT_ACTIVATIONS) or getattr(child, "is_activation", False):
                points.append(Point(qualified, child, "pre-activation", _stage_of(qualified)))
            else:
                visit(child, qualified)

    visit(model, "")
    return points


def measurement_copy(model: nn.Module) -> nn.Module:
    """A copy of ``model`` in train mode whose batch norms use batch statistics without keeping
    running ones (so measuring never changes the model, nor the run it trains in)."""
    measured = copy.deepcopy(model)
    measured.train()
    for module in measured.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.track_running_stats = False
            module.running_mean = None
            module.running_var = None
            module.num_batches_tracked = None
    for parameter in measured.parameters():
        parameter.requires_grad_(True)
    return measured


def _observe(points: Sequence[Point], on_point: Callable[[int, torch.Tensor, torch.Tensor | None], None]) -> list:
    """Hooks calling ``on_point(index, representation, branch)`` as each point is reached."""
    handles = []
    for index, point in enumerate(points):
        if point.kind == "pre-activation":
            def pre(module, args, index=index):
                on_point(index, args[0], None)
            handles.append(point.module.register_forward_pre_hook(pre))
        else:
            def post(module, args, output, index=index):
                on_point(index, output, output - args[0])
            handles.append(point.module.register_forward_hook(post))
    return handles


def _channel_statistics(h: torch.Tensor) -> tuple[float, float, float]:
    """(average channel squared mean, average channel variance, E[h²]) of (B, C, …) or (B, C)."""
    flat = h.detach().double().transpose(0, 1).reshape(h.shape[1], -1)  # (C, B·spatial)
    mean = flat.mean(dim=1)
    variance = flat.var(dim=1, unbiased=False)
    return float((mean ** 2).mean()), float(variance.mean()), float((flat ** 2).mean())


def _mean_pair_cosine(h: torch.Tensor) -> float:
    """Mean cosine between the flattened representations of every pair of different examples."""
    flat = h.detach().double().reshape(h.shape[0], -1)
    norms = flat.norm(dim=1).clamp_min(1e-300)
    unit = flat / norms[:, None]
    gram = unit @ unit.T
    count = h.shape[0]
    return float((gram.sum() - gram.diagonal().sum()) / (count * (count - 1)))


@torch.no_grad()
def forward_signals(model: nn.Module, x: torch.Tensor, points: Sequence[Point] | None = None) -> dict[str, list]:
    """One forward pass of ``x`` (a batch of at least two examples) through ``model`` as it is: per
    point, the signal-propagation statistics, ``q`` and the correlation ``c`` (lists in point order;
    ``branch_variance`` None for plain layers). Pass a :func:`measurement_copy` to keep batch norms'
    running statistics untouched."""
    if x.shape[0] < 2:
        raise ValueError("forward_signals needs at least two examples (the correlation is between pairs)")
    points = propagation_points(model) if points is None else points
    rows: dict[str, list] = {key: [None] * len(points) for key in
                             ("squared_mean", "variance", "q", "correlation", "branch_variance")}

    def on_point(index: int, h: torch.Tensor, branch: torch.Tensor | None) -> None:
        squared_mean, variance, q = _channel_statistics(h)
        rows["squared_mean"][index], rows["variance"][index], rows["q"][index] = squared_mean, variance, q
        rows["correlation"][index] = _mean_pair_cosine(h)
        if branch is not None:
            rows["branch_variance"][index] = _channel_statistics(branch)[1]

    handles = _observe(points, on_point)
    try:
        model(x)
    finally:
        for handle in handles:
            handle.remove()
    return rows


def fit_depth_scale(correlations: Sequence[float], stages: Sequence[str],
                    noise: float = CORRELATION_NOISE) -> dict[str, Any]:
    """``χ_c``, ``ξ_c`` and ``c*`` of an empirical correlation map (see the module docstring), fitted in
    the deepest stage whose correlations still move.

    Per stage, ``c*`` is the mean of its last quarter of ``c_l``, and the distances ``d_l = |c_l − c*|``
    count as signal while they exceed ``noise`` and three standard deviations of that quarter (a finite
    network's correlations fluctuate around ``c*``). The map's slope at its fixed point is fitted over the
    second half of those layers (the ones nearest ``c*``, where the map is linear): ``d_{l+1} ≈ χ_c d_l``,
    least squares through the origin; ``ξ_c = −1/ln χ_c``. A stage that does not move at all is either
    collapsed (``c* = 1``: every input already looks alike, ``ξ_c`` = 0) or an identity map (an
    identity-initialized residual stack, a network in its linear regime: ``χ_c`` = 1, ``ξ_c`` = ∞).

    Returns ``chi_c``, ``depth_scale`` (ξ_c), ``fixed_point`` (c*), ``layers_used``, ``stage`` and
    ``regime`` ("converging", "collapsed" or "identity")."""
    c = [float(v) for v in correlations]
    if not c:
        return dict(chi_c=None, depth_scale=None, fixed_point=None, layers_used=0, stage=None, regime=None)
    order: list[str] = []
    for stage in stages:
        if stage not in order:
            order.append(stage)
    flat = None
    for stage in reversed(order):
        fit = _fit_stage(c, [l for l in range(len(c)) if stages[l] == stage], noise)
        fit["stage"] = stage
        if fit["regime"] == "converging":
            return fit
        flat = flat or fit  # the deepest stage decides when none moves
    return flat


def _fit_stage(c: list[float], layers: list[int], noise: float) -> dict[str, Any]:
    values = [c[l] for l in layers]
    quarter = values[-max(2, len(values) // 4):]
    fixed_point = sum(quarter) / len(quarter)
    spread = (sum((v - fixed_point) ** 2 for v in quarter) / len(quarter)) ** 0.5
    floor = max(noise, 3 * spread)
    signal = []
    for l, v in zip(layers, values):
        if abs(v - fixed_point) <= floor:
            break
        signal.append(l)
    if len(signal) < 2:
        collapsed = abs(fixed_point - 1.0) <= max(floor, 1e-3)
        return dict(chi_c=0.0 if collapsed else 1.0, depth_scale=0.0 if collapsed else math.inf,
                    fixed_point=fixed_point, layers_used=0, regime="collapsed" if collapsed else "identity")
    asymptotic = signal[len(signal) // 2:] if len(signal) >= 6 else signal
    d = {l: c[l] - fixed_point for l in layers}
    pairs = [(d[l], d[l + 1]) for l in asymptotic if l + 1 in d]
    chi_c = sum(a * b for a, b in pairs) / sum(a * a for a, _ in pairs)
    depth_scale = math.inf if chi_c >= 1 else (0.0 if chi_c <= 0 else -1.0 / math.log(chi_c))
    return dict(chi_c=chi_c, depth_scale=depth_scale, fixed_point=fixed_point, layers_used=len(pairs),
                regime="converging")


def stage_rate_fit(values: Sequence[float], stages: Sequence[str]) -> float | None:
    """The common slope of ``ln values[l]`` against ``l`` with one intercept per stage (least squares;
    stages of one layer carry no slope information). None when no stage has two positive values."""
    groups: dict[str, list[tuple[int, float]]] = {}
    for index, (value, stage) in enumerate(zip(values, stages)):
        if value is not None and value > 0 and math.isfinite(value):
            groups.setdefault(stage, []).append((index, math.log(value)))
    sxx = sxy = 0.0
    for members in groups.values():
        if len(members) < 2:
            continue
        mean_x = sum(l for l, _ in members) / len(members)
        mean_y = sum(y for _, y in members) / len(members)
        sxx += sum((l - mean_x) ** 2 for l, _ in members)
        sxy += sum((l - mean_x) * (y - mean_y) for l, y in members)
    return sxy / sxx if sxx > 0 else None


def gradient_growth(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                    points: Sequence[Point] | None = None) -> dict[str, Any]:
    """One backward pass of the cross-entropy of ``model(x)`` against ``y``: per point the norm of the
    loss's gradient with respect to its representation, per weight layer (convs and linears in order,
    the classifier last) its weight gradient's norm, and the growth rate per layer toward the input of
    each (``e^{−slope}`` of :func:`stage_rate_fit`; > 1: gradients grow toward the input)."""
    points = propagation_points(model) if points is None else points
    norms: list[float | None] = [None] * len(points)

    def on_point(index: int, h: torch.Tensor, branch: torch.Tensor | None) -> None:
        if h.requires_grad:
            h.register_hook(lambda grad, index=index: norms.__setitem__(index, float(grad.double().norm())))

    model.zero_grad(set_to_none=True)
    handles = _observe(points, on_point)
    try:
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
    finally:
        for handle in handles:
            handle.remove()
    weights = [(name, module) for name, module in model.named_modules() if isinstance(module, (nn.Conv2d, nn.Linear))]
    weight_norms = [float(m.weight.grad.double().norm()) if m.weight.grad is not None else None for _, m in weights]
    weight_stages = [_stage_of(name) for name, _ in weights]
    stages = [point.stage for point in points]
    representation_slope = stage_rate_fit(norms, stages)
    # the classifier is a stage of its own (its gradient's size is set by the loss, not by depth)
    weight_slope = stage_rate_fit(weight_norms, weight_stages)
    model.zero_grad(set_to_none=True)
    return dict(
        loss=float(loss.detach()),
        representation_grad_norms=norms,
        weight_names=[name for name, _ in weights],
        weight_grad_norms=weight_norms,
        representation_growth=None if representation_slope is None else math.exp(-representation_slope),
        weight_growth=None if weight_slope is None else math.exp(-weight_slope),
    )


def _stage_of(name: str) -> str:
    """The stage of a module by its qualified name: nothing for the network's own children (``3``),
    the top-level part for a part's children (``body.3`` → ``body``, ``layer1.0`` → ``layer1``), and
    the indexed part below a container of stages (``stages.0.3.conv`` → ``stages.0``)."""
    parts = name.split(".")
    if len(parts) == 1:
        return ""
    return ".".join(parts[:2]) if len(parts) > 2 else parts[0]


def jacobian_spectrum(model: nn.Module, x: torch.Tensor, first: int, last: int,
                      points: Sequence[Point] | None = None, example: int = 0) -> dict[str, Any]:
    """Singular values of ``∂h_last/∂h_first`` for example ``example`` of the batch ``x`` (points
    ``first < last``, of equal shape), by forward-mode differentiation of the network between them.

    The representation at ``first`` is captured in one forward pass, then the layers between are re-run
    with example ``example``'s representation as the input of a function (the other examples fixed):
    forward-mode products with every basis vector (``torch.func.jvp``, vmapped in chunks of
    :data:`JACOBIAN_CHUNK`) give the exact Jacobian. Returns ``singular_values`` (descending),
    ``mean_squared_singular_value`` (χ over the span), ``layers`` (``last − first``), ``chi1`` (χ per
    layer), and the spectrum's ``max``, ``median``, ``min`` and ``spread`` (standard deviation of the
    squared singular values over their mean: 0 is dynamical isometry's ideal)."""
    points = propagation_points(model) if points is None else points
    if not 0 <= first < last < len(points):
        raise ValueError(f"jacobian_spectrum: need 0 ≤ first < last < {len(points)}, got {first}, {last}")
    start, stop = points[first], points[last]
    captured: dict[str, torch.Tensor] = {}

    def grab(index: int, h: torch.Tensor, branch: torch.Tensor | None) -> None:
        if index == first:
            captured["h"] = h.detach()

    handles = _observe(points, grab)
    try:
        with torch.no_grad():
            model(x)
    finally:
        for handle in handles:
            handle.remove()
    base = captured["h"]
    between = _layers_between(model, start, stop)

    def through(h_example: torch.Tensor) -> torch.Tensor:
        h = torch.cat([base[:example], h_example[None], base[example + 1:]])
        out = between(h)
        return out[example].reshape(-1)

    primal = base[example]
    basis = torch.eye(primal.numel(), dtype=primal.dtype, device=primal.device).reshape(-1, *primal.shape)
    column = lambda tangent: torch.func.jvp(through, (primal,), (tangent,))[1]  # noqa: E731  (J · e_i)
    with torch.no_grad():  # forward-mode only: no graph is kept, and chunks bound the memory
        columns = torch.func.vmap(column, chunk_size=JACOBIAN_CHUNK)(basis)  # (n_in, n_out)
    jacobian = columns.T
    singular = torch.linalg.svdvals(jacobian.detach().double())
    squared = singular ** 2
    mean_squared = float(squared.mean())
    layers = last - first
    return dict(
        singular_values=[float(s) for s in singular],
        mean_squared_singular_value=mean_squared,
        layers=layers,
        chi1=mean_squared ** (1.0 / layers) if mean_squared > 0 else 0.0,
        max=float(singular[0]),
        median=float(singular.median()),
        min=float(singular[-1]),
        spread=float(squared.std(unbiased=False) / squared.mean()) if mean_squared > 0 else None,
    )


def _layers_between(model: nn.Module, start: Point, stop: Point) -> Callable[[torch.Tensor], torch.Tensor]:
    """The function from ``start``'s representation to ``stop``'s: the modules after ``start``'s
    position up to ``stop`` in their common parent Sequential (both must share one)."""
    parent, start_index, stop_index = _common_sequential(model, start, stop)
    children = list(parent.children())
    # a pre-activation point reads a module's input: the layers from that module on; a block's output:
    # the layers after the block
    first = start_index if start.kind == "pre-activation" else start_index + 1
    last = stop_index if stop.kind == "pre-activation" else stop_index + 1
    layers = children[first:last]

    def run(h: torch.Tensor) -> torch.Tensor:
        for layer in layers:
            h = layer(h)
        return h

    return run


def _common_sequential(model: nn.Module, start: Point, stop: Point) -> tuple[nn.Module, int, int]:
    start_parent, start_name = start.name.rsplit(".", 1) if "." in start.name else ("", start.name)
    stop_parent, stop_name = stop.name.rsplit(".", 1) if "." in stop.name else ("", stop.name)
    if start_parent != stop_parent:
        raise ValueError(f"jacobian_spectrum: points {start.name} and {stop.name} are in different parts of the "
                         "network (choose two points of one stage)")
    parent = model.get_submodule(start_parent) if start_parent else model
    if not isinstance(parent, nn.Sequential):
        raise ValueError(f"jacobian_spectrum: {start_parent or 'the model'} is not an nn.Sequential")
    names = [name for name, _ in parent.named_children()]
    return parent, names.index(start_name), names.index(stop_name)
