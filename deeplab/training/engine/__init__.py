"""How a run's training steps execute: ``--compile``, ``--channels-last``, ``--steps-per-call`` and their ``auto``.

Three levers, measured on this project's 2-core CPU at one thread (CPU time,
alternating sides; ``scripts/bench.py`` reproduces them, docs/engine.md has the
table):

- **Chunks** (``--steps-per-call K``): the DataModule hands ``training_step``
  K consecutive batches and the module runs K complete updates, so
  Lightning's per-batch machinery (fetch, hooks, progress, logging: ~59 % of a
  batch-1 step, cProfile) runs once per chunk. Same updates, same order.
- **A compiled whole step** (``--compile step``, ``deeplab.training.engine.compiled_step``):
  forward, loss, backward and update as one Inductor graph.
  ``two_layer_mlp`` batch 1: 466 → 71 µs a step (8 steps unrolled per graph);
  ``cnn5`` batch 32 channels-last: 18 → 6.8 ms; ``cnn5_sigmoid`` batch 1:
  1.37 → 0.52 ms (4 unrolled). Seed 002's 30-layer stacks at batch 256 gain nothing or
  lose (``cnn_elu_bn``: 654 → 389 img/s) and compile for up to a minute.
- **Fast CPU kernels** (``--fast-kernels``, :mod:`deeplab.training.engine.cpu_kernels`): PyTorch's NHWC batch
  norm loops over 4 channels innermost (10.3 ms where NCHW takes 3.9; stand-in 2.0), its ELU
  computes expm1 one element at a time (7.1 ms; one Inductor loop 1.25) and its tanh takes
  2.1 ms (1.26). Equal to a few float ulps. Whole step, ``cnn_elu_bn`` k = 30, batch 256,
  eager channels-last, allocator fixed: 1.32× (``cnn_tanh`` 1.03×; ``cnn_elu`` 1.00×: its
  activations are tiny, where glibc's expm1 is quick).
- **Channels-last** (NHWC): oneDNN's preferred layout. Seed 002's families at
  k = 30, batch 256, eager: ``cnn_tanh`` 2.3×, ``cnn_tanh_newinit`` 2.1×,
  ``cnn_elu`` 1.7×, ``cnn_elu_bn`` 1.4×, ``resnet_elu`` 1.4×,
  ``cnn_tanh_bn_oldinit`` 1.7×, ``resnet_elu_nobn`` 1.8×; ``cnn5`` batch 32
  1.5×; batch-1 convolutions: no difference.

``auto`` (the default of each) picks from what the run is, deterministically,
so a resumed run makes the same choice (and a resume inherits the run's
choices: ``deeplab.training.fit``):

- chunks of K = 256 // batch batches (1 from batch 256 on), 1 when a
  callback needs every batch (``needs_every_batch``) or for ``--fast-dev-run``;
- the compiled step when the run is long enough to repay its compile time
  (≥ :data:`COMPILE_MIN_STEPS` optimizer steps planned), the batch is small
  (≤ :data:`COMPILE_MAX_BATCH`), one process trains in 32-bit, the model has
  no dropout and no callback needs gradients in ``.grad``; else eager;
- channels-last on the CPU for convolutional models from batch 8 on;
- fast CPU kernels (:mod:`deeplab.training.engine.cpu_kernels`) for eager CPU runs of ≥ 100,000 images of
  models with an ELU, a tanh or a batch norm of ≤ 8 channels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch.nn as nn

from deeplab.config import COMPILE_CHOICES, COMPILE_MAX_BATCH, COMPILE_MIN_STEPS
from deeplab.errors import DeeplabError

__all__ = ["Engine", "resolve_engine", "describe", "COMPILE_CHOICES", "COMPILE_MIN_STEPS", "COMPILE_MAX_BATCH",
           "MAX_STEPS_PER_CALL"]

# --compile's values and auto's thresholds live with the options (deeplab.config: no torch there)
#: the largest chunk --steps-per-call auto makes (at batch 1: Lightning's ~0.9 ms per training_step
#: is 1/20 of a 256-step chunk)
MAX_STEPS_PER_CALL = 256
#: batch-1 MLPs unroll this many steps per compiled graph (each call costs ~40 µs of dispatch):
#: two_layer_mlp 120 → 71 µs a step (1 → 8 unrolled, CPU time, alternating)
SMALL_BATCH_UNROLL = 8
#: --fast-kernels auto needs a run of at least this many training images (a seed 002 probe has 180,000)
FAST_KERNELS_MIN_IMAGES = 100_000
#: batch-1 CNNs unroll fewer (their graphs take ~25 s each to compile at 4): cnn5_sigmoid 569 → 515 µs
SMALL_BATCH_UNROLL_CONV = 4


@dataclass(frozen=True)
class Engine:
    """The resolved engine of one run."""

    compile: str  # off | model | step
    channels_last: bool
    steps_per_call: int
    unroll: int  # steps per compiled graph (compile == "step")
    fast_kernels: bool = False  # deeplab.training.engine.cpu_kernels' ELU and batch norm swapped in


def _has_convolutions(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.conv._ConvNd) for m in model.modules())


def resolve_engine(config: Any, model: nn.Module, planned_steps: int, world_size: int, on_gpu: bool,
                   callbacks: Sequence[Any] = ()) -> Engine:
    """``config``'s ``compile``/``channels_last``/``steps_per_call`` with every ``auto`` decided."""
    from deeplab.training.engine.compiled_step import compiled_step_blocker
    from deeplab.training.engine.cpu_kernels import has_slow_kernels

    needs_every_batch = any(getattr(c, "needs_every_batch", False) for c in callbacks)
    eval_mode_epochs = getattr(config, "eval_mode_after_first_epoch", False)  # seed 002's quirk
    batch = config.batch_size
    if config.compile not in COMPILE_CHOICES:
        raise DeeplabError(f"--compile {config.compile!r} is not one of {', '.join(COMPILE_CHOICES)}")
    compile_mode = config.compile
    blocker = compiled_step_blocker(model, config.model, world_size=world_size, precision=config.precision,
                                    needs_every_batch=needs_every_batch, eval_mode_epochs=eval_mode_epochs)
    if compile_mode == "step" and blocker is not None:
        raise DeeplabError(blocker)
    if compile_mode == "auto":
        long_enough = planned_steps >= COMPILE_MIN_STEPS and batch <= COMPILE_MAX_BATCH
        compile_mode = "step" if blocker is None and not config.fast_dev_run and long_enough else "off"

    convolutional = _has_convolutions(model)
    channels_last = config.channels_last
    if channels_last is None:
        channels_last = convolutional and batch >= 8 and not on_gpu

    steps_per_call = config.steps_per_call
    if steps_per_call is None:
        if needs_every_batch or config.fast_dev_run:
            steps_per_call = 1
        else:
            steps_per_call = max(1, min(MAX_STEPS_PER_CALL, 256 // batch))
    elif needs_every_batch and steps_per_call > 1:
        raise DeeplabError(f"--steps-per-call {steps_per_call}: a callback of this run needs every batch "
                           f"separately; drop --steps-per-call")

    unroll = 1
    if compile_mode == "step" and batch <= 2:
        unroll = SMALL_BATCH_UNROLL_CONV if convolutional else SMALL_BATCH_UNROLL

    fast_kernels = getattr(config, "fast_kernels", None)
    if fast_kernels is None:
        # Inductor writes its own kernels for compiled runs; the replaced kernels are CPU ones; and
        # the fused activations compile once per process (≈ 3 s, 0.5 s from Inductor's disk cache)
        fast_kernels = (compile_mode == "off" and not on_gpu and has_slow_kernels(model)
                        and planned_steps * batch >= FAST_KERNELS_MIN_IMAGES)
    return Engine(compile=compile_mode, channels_last=bool(channels_last), steps_per_call=int(steps_per_call),
                  unroll=unroll, fast_kernels=bool(fast_kernels))


def describe(engine: Engine) -> str:
    """One line for the console: what the run's steps are."""
    step = {"off": "eager steps", "model": "compiled model", "step": "compiled whole step"}[engine.compile]
    if engine.compile == "step" and engine.unroll > 1:
        step += f" ({engine.unroll} unrolled)"
    layout = ", channels-last" if engine.channels_last else ""
    kernels = ", fast CPU kernels" if engine.fast_kernels else ""
    return f"{step}{layout}{kernels}, {engine.steps_per_call} batch(es) per training_step"

