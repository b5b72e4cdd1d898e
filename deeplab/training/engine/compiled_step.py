"""A whole training step — forward, loss, backward, the optimizer's update — compiled as one graph (issue 14).

Eager PyTorch pays a fixed cost per operation (dispatch, autograd bookkeeping,
a fresh gradient tensor per parameter, the optimizer's Python loop) that
dominates small steps: seed 000's batch-1 networks spend more time there than
in arithmetic. :class:`CompiledStep` traces one step with ``torch.func``
(``grad_and_value`` over ``functional_call``, so parameters, batch-norm
buffers and optimizer state are plain graph inputs updated in place) and hands
it to ``torch.compile``; Inductor fuses the gradient into the update and the
update into the next forward.

What it gains, and where ``--compile auto`` uses it: :mod:`deeplab.training.engine` (the engine's one
account of each lever, measured by ``scripts/bench.py``).

The update is the optimizer's own rule (:data:`deeplab.training.optim.OPTIMIZERS`: the same function
:class:`~deeplab.training.optim.MomentumSGD` runs eagerly), and what happens between the gradient and the
update — gradient norms, clipping — is :func:`deeplab.training.optim.gradient_stage`, the function an eager
step calls too. The optimizer's state lives in ``optimizer.state[p]`` under torch's names
(``momentum_buffer``; ``step``, ``exp_avg``, ``exp_avg_sq``), so checkpoints are the same files an eager
run writes and either kind of step can resume them. Fused kernels round differently from eager ones:
after 300 steps the parameters agree with the eager loop's to ~1e-6 relative (tested), not bit for bit —
a run keeps the step kind it started with (``deeplab.training.resumable.resume``).

Unrolling: ``unroll`` U > 1 compiles U consecutive steps into one graph, which
saves the per-call cost (~40 µs on this CPU) U − 1 times. Groups are aligned
to multiples of U from the epoch's first batch, and a partial group (a resume
part-way, the epoch's end, ``--max-steps``) runs in the same graph with the
missing steps masked (their update scaled by zero, their batch-norm statistics
kept), so every step is computed by the same kernels wherever the run was
stopped: resume stays bit-exact.
"""

from __future__ import annotations

import time
import types
from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.nn as nn
from torch.func import functional_call, grad_and_value

from deeplab.errors import DeeplabError
from deeplab.training.optim import OPTIMIZERS, gradient_stage, norm_mode

__all__ = ["CompiledStep", "StepOutputs", "STATS_MODES", "compiled_step_blocker"]

#: which gradient norms a compiled group of steps returns (see ``CompiledStep._graph``): none; every step's
#: total L1; the full vector of the group's first step; both
STATS_MODES = ("none", "l1", "first", "l1+first")


@dataclass
class StepOutputs:
    """What a call returns, one row per step: loss, correct predictions, gradient norms (or None)."""

    losses: torch.Tensor  # (n,)
    correct: torch.Tensor  # (n,) int64
    norms: torch.Tensor | None  # (n, 2 + layers): total L2, total L1, each layer's weight-gradient L2
    clip_factors: torch.Tensor | None = None  # (n,): each step's clip_grad_norm factor (< 1: clipped)


def compiled_step_blocker(model: nn.Module, name: str | None = None, *, world_size: int = 1,
                          precision: str = "32-true", needs_every_batch: bool = False,
                          eval_mode_epochs: bool = False) -> str | None:
    """Why this run cannot train with the compiled step, as the line ``--compile step`` is refused with;
    None when it can (``--compile auto`` then may choose it: :func:`deeplab.training.engine.resolve_engine`).
    The one list of the step's limits."""
    name = name or type(model).__name__
    for module in model.modules():
        if isinstance(module, nn.modules.dropout._DropoutNd):
            # Dropout's masks come from Inductor's own random streams under compilation: not the eager run
            return (f"--compile step: {name} cannot use it: it uses dropout ({type(module).__name__}), whose "
                    f"masks differ under compilation; use --compile model or off")
    if world_size > 1:
        return ("--compile step trains one process (its update bypasses DDP's gradient all-reduce); with several "
                "devices use --compile model or off")
    if precision != "32-true":
        return f"--compile step runs in 32-bit; drop --precision {precision} or use --compile model"
    if needs_every_batch:
        return "--compile step: a callback of this run reads gradients after every batch; use --compile model or off"
    if eval_mode_epochs:
        return ("--compile step traces the train-mode step; with --eval-mode-after-first-epoch use --compile model "
                "or off")
    return None


def _decompose_outer_product_mm(a: torch.Tensor, b: torch.Tensor) -> Any:
    """An (n, 1) × (1, m) matrix product as a broadcast multiply.

    At batch 1 every Linear layer's weight gradient is such an outer product.
    Inductor's CPU lowering sends it to a BLAS call that writes the gradient to
    a fresh (n, m) buffer, which the update then reads back; as a pointwise
    product it fuses into the update kernel, which then reads and writes the
    weight once (two_layer_mlp: −1.6 MB of memory traffic a step).
    """
    if a.dim() == 2 and b.dim() == 2 and a.shape[1] == 1 and b.shape[0] == 1:
        return a * b
    return NotImplemented


def _inductor_backend(gm: torch.fx.GraphModule, example_inputs: list[torch.Tensor]) -> Callable:
    from torch._inductor.compile_fx import compile_fx
    from torch._inductor.decomposition import select_decomp_table

    decompositions = dict(select_decomp_table())
    default_mm = decompositions.get(torch.ops.aten.mm.default)

    def mm(a: torch.Tensor, b: torch.Tensor) -> Any:
        result = _decompose_outer_product_mm(a, b)
        if result is NotImplemented and default_mm is not None:
            return default_mm(a, b)
        return result

    decompositions[torch.ops.aten.mm.default] = mm
    return compile_fx(gm, example_inputs, decompositions=decompositions)


class CompiledStep:
    """``n`` training steps on a chunk ``(images (n, B, …), labels (n, B))`` through one compiled graph.

    Args:
        model: the network; trained in place (its parameters and buffers are the graph's inputs).
        optimizer: the torch optimizer whose ``param_groups[0]`` (lr) and ``state`` this step uses.
        rule: ``momentum_sgd`` | ``sgd`` | ``adam``.
        loss: ``(logits, labels) → scalar`` (deeplab's ``torch`` or ``manual`` loss).
        layer_weights: for gradient norms, each layer's weight tensor (``layers.parameterized_layers``);
            None: no norms computed.
        unroll: steps per compiled graph (see the module docstring).
        channels_last: feed 4-D inputs in NHWC.
        clip_norm, clip_value: gradient clipping before each update (``gradient_stage``).
    """

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, rule: str,
                 loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                 layer_weights: list[torch.Tensor] | None = None, unroll: int = 1, channels_last: bool = False,
                 clip_norm: float | None = None, clip_value: float | None = None):
        if rule not in OPTIMIZERS:
            raise DeeplabError(f"the compiled step has no update rule {rule!r}")
        if len(optimizer.param_groups) != 1:
            raise DeeplabError("the compiled step trains one parameter group")
        blocker = compiled_step_blocker(model)
        if blocker is not None:
            raise DeeplabError(blocker)
        self.model, self.optimizer, self.rule, self.loss = model, optimizer, rule, loss
        self.kind = OPTIMIZERS[rule]
        self.clip_norm, self.clip_value = clip_norm, clip_value
        self.unroll = max(1, int(unroll))
        self.channels_last = channels_last
        named = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
        self.names = [name for name, _ in named]
        # Detached views of the same storage: the graph updates them in place, the model sees it.
        self.params = [p.detach() for _, p in named]
        self._trained = [p for _, p in named]  # the Parameters themselves: the optimizer's state keys
        in_group = {id(p) for p in optimizer.param_groups[0]["params"]}
        if any(id(p) not in in_group for p in self._trained):
            raise DeeplabError("the compiled step trains every parameter that requires a gradient; "
                               "the optimizer must hold them all")
        self.buffer_names = [name for name, _ in model.named_buffers()]
        self.buffers = [b for _, b in model.named_buffers()]
        # the rule's hyperparameters, fixed for the graph (η is a graph input: a schedule does not recompile)
        self.group = {key: value for key, value in optimizer.param_groups[0].items() if key not in ("params", "lr")}
        self.state = self._optimizer_state()
        positions = {id(p): i for i, (_, p) in enumerate(named)}
        self.layer_index = None if layer_weights is None else [positions.get(id(w), -1) for w in layer_weights]
        self._lr = torch.zeros((), dtype=torch.float32, device=self.params[0].device)
        self._graphs: dict[tuple[int, str], Callable] = {}
        self._compiled_sizes: set[tuple[int, str]] = set()
        self._masks: dict[tuple[int, int, int], torch.Tensor] = {}
        #: seconds spent compiling (the first call of each graph), for results.json; and this
        #: process's CPU seconds in them
        self.compile_seconds = 0.0
        self.compile_cpu_seconds = 0.0

    # ------------------------------------------------------------------ state
    def _optimizer_state(self) -> list[list[torch.Tensor]]:
        """The optimizer's per-parameter state tensors, created as the eager optimizer would at its first
        step (a momentum buffer at zero: the first step's m = αm + g = g exactly)."""
        keys = self.kind.keys_for(self.group)
        columns: list[list[torch.Tensor]] = [[] for _ in keys]
        for p in self._trained:
            state = self.optimizer.state[p]
            for column, key in zip(columns, keys):
                if key not in state:
                    # torch.optim.Adam keeps `step` as a float32 CPU scalar tensor
                    state[key] = (torch.zeros((), dtype=torch.float32) if key == "step"
                                  else torch.zeros_like(p, memory_format=torch.preserve_format))
                column.append(state[key])
        return columns

    # ------------------------------------------------------------------ graph
    def _one_step(self, params, buffers, state, x, y, lr, active, mode):
        """One step as a pure-tensor function; ``active`` 0 makes it leave everything as it was."""
        names, buffer_names = self.names, self.buffer_names
        new_buffers = [b.clone() for b in buffers]  # batch-norm statistics, committed below if active

        def loss_of(p: list[torch.Tensor], b: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
            # b is an argument (not differentiated), so batch norm may update it in place
            logits = functional_call(self.model, (dict(zip(names, p)), dict(zip(buffer_names, b))), (x,))
            return self.loss(logits, y), logits

        grads, (loss, logits) = grad_and_value(loss_of, argnums=0, has_aux=True)(params, new_buffers)
        for buffer, new in zip(buffers, new_buffers):
            buffer.copy_(torch.where(active > 0, new, buffer))
        grads, norms, factor = gradient_stage(list(grads), self.layer_index or [], mode, self.clip_norm,
                                              self.clip_value)
        self.kind.update(params, grads, state, self.group, lr=lr, active=active)
        correct = (logits.argmax(dim=1) == y).sum()
        return loss, correct, norms, factor

    def _graph(self, count: int, stats: str) -> Callable:
        """The compiled function running ``count`` masked steps (``count``: 1 or the unroll).

        ``stats`` says which gradient norms it returns: ``none``; ``l1`` (every
        step's total L1); ``first`` (the full vector of the group's first step);
        ``l1+first`` (both). Rows not computed are NaN.
        """
        key = (count, stats)
        if key in self._graphs:
            return self._graphs[key]
        every_l1, first_full = "l1" in stats, "first" in stats
        modes = [norm_mode(full=i == 0 and first_full, l1=every_l1) for i in range(count)]
        width = 2 + len(self.layer_index or [])

        def steps(params, buffers, state, images, labels, lr, active):
            losses, corrects, norms, factors = [], [], [], []
            for i in range(count):
                loss, correct, norm, factor = self._one_step(params, buffers, state, images[i], labels[i], lr,
                                                             active[i], modes[i])
                losses.append(loss)
                corrects.append(correct)
                norms.append(norm if norm is not None else torch.full((width,), float("nan"), device=loss.device))
                factors.append(factor)
            return (torch.stack(losses), torch.stack(corrects), torch.stack(norms) if stats != "none" else None,
                    torch.stack(factors) if self.clip_norm is not None else None)

        # A code object of its own per instance and variant: Dynamo caches compiled graphs per
        # code object, and its guards on the model are switched off (guard_filter_fn, ~40 µs a
        # call saved), so two models must never share a cache entry.
        name = f"deeplab_step_{id(self)}_{count}_{stats.replace('+', '_')}"
        fresh = types.FunctionType(steps.__code__.replace(co_name=name), steps.__globals__, name, None,
                                   steps.__closure__)
        self._graphs[key] = torch.compile(
            fresh, backend=_inductor_backend, fullgraph=True,
            options={"guard_filter_fn": torch.compiler.skip_guard_on_all_nn_modules_unsafe})
        return self._graphs[key]

    # ------------------------------------------------------------------- call
    def __call__(self, images: torch.Tensor, labels: torch.Tensor, first_position: int = 0,
                 stats: str | Callable[[int], str] = "none") -> StepOutputs:
        """Train on ``images[i], labels[i]`` for each i, in order.

        ``first_position``: the index in its epoch of the first batch, which
        fixes where unrolled groups start (see the module docstring).
        ``stats``: gradient norms to return (see :meth:`_graph`; with ``first``,
        the full vector of each *group's* first step — every step when unroll is
        1), or a function of a group's first position in the epoch that says so.
        """
        stats_of = stats if callable(stats) else (lambda position: stats)
        self._lr.fill_(float(self.optimizer.param_groups[0]["lr"]))
        n = len(labels)
        if self.channels_last and images.dim() == 5:
            images = torch.stack([x.contiguous(memory_format=torch.channels_last) for x in images])
        outputs: list[StepOutputs] = []
        done = 0
        while done < n:
            offset = (first_position + done) % self.unroll  # steps of this group already behind us
            count = min(self.unroll - offset, n - done)
            mode = stats_of(first_position + done - offset)
            if mode not in STATS_MODES or (mode != "none" and self.layer_index is None):
                raise ValueError(f"gradient norms {mode!r}: not one of {', '.join(STATS_MODES)}, "
                                 f"or this CompiledStep was built without layer_weights")
            outputs.append(self._run_group(images[done:done + count], labels[done:done + count], offset, mode))
            done += count
        if len(outputs) == 1:
            return outputs[0]
        width = 2 + len(self.layer_index or [])
        norms = [o.norms if o.norms is not None else torch.full((len(o.losses), width), float("nan"))
                 for o in outputs]
        any_norms = any(o.norms is not None for o in outputs)
        factors = torch.cat([o.clip_factors for o in outputs]) if self.clip_norm is not None else None
        return StepOutputs(torch.cat([o.losses for o in outputs]), torch.cat([o.correct for o in outputs]),
                           torch.cat(norms) if any_norms else None, factors)

    def _mask(self, size: int, first: int, count: int, device: torch.device) -> torch.Tensor:
        """1 for the group's real steps, 0 for padding (cached: a handful of patterns recur)."""
        key = (size, first, count)
        mask = self._masks.get(key)
        if mask is None:
            mask = torch.zeros(size, dtype=torch.float32, device=device)
            mask[first:first + count] = 1.0
            self._masks[key] = mask
        return mask

    def _run_group(self, images: torch.Tensor, labels: torch.Tensor, offset: int, stats: str) -> StepOutputs:
        """``len(labels)`` steps at positions ``offset…`` of a group of ``self.unroll`` (1: plain)."""
        size, count = self.unroll, len(labels)
        pad_before = 0
        if size > count:  # a partial group: pad with copies, masked out
            pad_before, pad_after = offset, size - offset - count
            images = torch.cat([images[:1].expand(pad_before, *images.shape[1:]), images,
                                images[-1:].expand(pad_after, *images.shape[1:])])
            labels = torch.cat([labels[:1].expand(pad_before, *labels.shape[1:]), labels,
                                labels[-1:].expand(pad_after, *labels.shape[1:])])
        active = self._mask(size, pad_before, count, images.device)
        graph = self._graph(size, stats)
        if (size, stats) in self._compiled_sizes:
            losses, correct, norms, factors = graph(self.params, self.buffers, self.state, images, labels, self._lr,
                                                    active)
        else:
            started, started_cpu = time.perf_counter(), time.process_time()
            losses, correct, norms, factors = graph(self.params, self.buffers, self.state, images, labels, self._lr,
                                                    active)
            self.compile_seconds += time.perf_counter() - started
            self.compile_cpu_seconds += time.process_time() - started_cpu  # (C++ compilers run in children)
            self._compiled_sizes.add((size, stats))
        if size == count:
            return StepOutputs(losses, correct, norms, factors)
        window = slice(pad_before, pad_before + count)
        return StepOutputs(losses[window], correct[window], norms[window] if norms is not None else None,
                           factors[window] if factors is not None else None)
