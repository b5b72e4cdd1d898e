"""``Classifier``: the LightningModule that wraps any registered model.

Manual optimization (``automatic_optimization = False``) so every step is
visibly the seeds' loop: forward, loss, ``manual_backward``, optimizer step,
zero-grad, scheduler step. Optimizers: ``momentum_sgd`` (the seeds'
hand-written one, :class:`deeplab.training.optim.MomentumSGD`), ``sgd``
(``torch.optim.SGD``, seeds 001/002/004) and ``adam`` (seed 003). Schedules:
``none``, ``cosine`` (seed 001, per epoch over the run) and ``step`` (seed 004,
×0.1 every 5 epochs). Losses: ``torch`` (``F.cross_entropy``) or ``manual``
(seed 000's hand-written one-hot cross-entropy).
"""

from __future__ import annotations

import math
from typing import Any, Callable

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassAccuracy

import deeplab.training.glue as glue
import deeplab.models.functional as HF
from deeplab.callbacks.base import GradientObserver, notify_epoch_closed
from deeplab.training.resumable.checkpointing import capture_rng_state, restore_rng_state
from deeplab.training.resumable.state import RunState, read_run_state, write_run_state
from deeplab.checks import optimizer_setting_problem
from deeplab.errors import DeeplabError
from deeplab.config import LOSS_CHOICES as LOSSES
from deeplab.config import SCHEDULE_CHOICES as SCHEDULES
from deeplab.models import create_model
from deeplab.reporting.tensorboard import eval_tag
from deeplab.training.optim import OPTIMIZERS, create_optimizer, gradient_stage, norm_mode

__all__ = ["Classifier", "OPTIMIZERS", "SCHEDULES", "LOSSES", "COMPILE_MODES"]

#: how training steps run: eager; the model compiled (forward/backward); the whole step compiled
COMPILE_MODES = ("off", "model", "step")
STEP_SCHEDULE_EVERY_EPOCHS = 5  # seed 004: StepLR(step_size=5, gamma=0.1)
STEP_SCHEDULE_GAMMA = 0.1


class Classifier(pl.LightningModule):
    """Trains ``create_model(model_name, **model_kwargs)`` — or any ``nn.Module`` — on image classification.

    ``Classifier("cnn_tanh", model_kwargs={"depth": 6}, datamodule=dm)`` takes
    the input shape and class count from ``dm``; ``Classifier(my_net)`` trains
    one's own network with the same loop (its checkpoint then reloads with
    ``Classifier.load_from_checkpoint(path, model_name=my_net)``).

    Args:
        model_name: a registered model name, or an ``nn.Module`` instance.
        model_kwargs: keyword arguments for the model factory (``in_channels``,
            ``num_classes``, ``image_size``, ``depth``, ``init``...); with a
            ``datamodule``, the first three default to its data.
        optimizer: ``momentum_sgd`` | ``sgd`` | ``adam``.
        lr: learning rate η.
        momentum: α for the SGD variants (ignored by Adam).
        weight_decay: L2 coefficient.
        schedule: ``none`` | ``cosine`` | ``step``; stepped once per epoch.
        max_epochs: the cosine schedule's period.
        loss: ``torch`` | ``manual``.
        divergence_check_every: steps between host checks of a non-finite loss
            (each check is a device→host sync; 1 on the CPU costs nothing).
        clip_grad_norm, clip_grad_value: clip the gradients before each update
            (:func:`deeplab.training.optim.gradient_stage`; norms are recorded before the clip).
    """

    #: this module hands every step's gradient norms to the GradientObserver callbacks itself (eager and
    #: compiled steps alike), so they do not measure them in on_before_optimizer_step
    reports_gradient_norms = True

    def __init__(
        self,
        model_name: str,
        model_kwargs: dict[str, Any] | None = None,
        optimizer: str = "momentum_sgd",
        lr: float = 0.005,
        momentum: float = 0.9,
        weight_decay: float = 0.0,
        schedule: str = "none",
        max_epochs: int = 10,
        loss: str = "torch",
        divergence_check_every: int = 1,
        eval_mode_after_first_epoch: bool = False,
        datamodule: Any = None,
        clip_grad_norm: float | None = None,
        clip_grad_value: float | None = None,
    ):
        super().__init__()
        _check_choice("--optimizer", optimizer, OPTIMIZERS)
        _check_choice("--schedule", schedule, SCHEDULES)
        _check_choice("--loss", loss, LOSSES)
        problem = optimizer_setting_problem(lr, momentum, weight_decay)
        if problem is not None:  # the config's rule and words (deeplab.checks)
            raise DeeplabError(f"--{problem[0].replace('_', '-')} {problem[1]}")
        for option, value in (("--clip-grad-norm", clip_grad_norm), ("--clip-grad-value", clip_grad_value)):
            if value is not None and not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise DeeplabError(f"{option} must be a positive, finite number, got {value}")
        if not isinstance(max_epochs, int) or isinstance(max_epochs, bool) or max_epochs < 1:
            raise DeeplabError(f"Classifier(max_epochs=…) must be a positive integer (the schedule's length), "
                               f"got {max_epochs!r}")
        model_kwargs = dict(model_kwargs or {})
        if datamodule is not None and not (hasattr(datamodule, "dims") and hasattr(datamodule, "num_classes")):
            raise DeeplabError(f"Classifier(datamodule=…) takes a deeplab DataModule (its dims and num_classes), "
                               f"got a {type(datamodule).__name__}")
        if datamodule is not None:  # the data's shape and classes, unless model_kwargs says otherwise
            channels, height, _ = datamodule.dims
            model_kwargs = {"in_channels": channels, "image_size": height, "num_classes": datamodule.num_classes,
                            **model_kwargs}
        own_module = isinstance(model_name, torch.nn.Module)
        # an nn.Module is saved with the weights, not as a hyperparameter; the data module never is
        self.save_hyperparameters(ignore=["datamodule", "model_name"] if own_module else ["datamodule"])
        self.hparams["model_kwargs"] = model_kwargs  # what built the model, so a checkpoint rebuilds it alone
        self.automatic_optimization = False
        if own_module:
            self.model = model_name
        elif isinstance(model_name, str):
            self.model = create_model(model_name, **model_kwargs)
        else:
            raise DeeplabError(f"model_name must be a registered model name or an nn.Module, "
                               f"got {type(model_name).__name__}")
        num_classes = model_kwargs.get("num_classes", 10)
        self.val_accuracy = MulticlassAccuracy(num_classes=num_classes, average="micro")
        self.test_accuracy = MulticlassAccuracy(num_classes=num_classes, average="micro")
        self.val_loss_mean = MeanMetric()
        self.test_loss_mean = MeanMetric()
        # The epoch's running train sums: three tensors updated on the device each step
        # (torchmetrics' per-step input checks cost more than a batch-1 MLP step). They are
        # persistent buffers, so a mid-epoch resume reports the same epoch metrics as an
        # uninterrupted run; under DDP they are summed across processes when the epoch closes.
        self.register_buffer("train_loss_sum", torch.zeros((), dtype=torch.float64))
        self.register_buffer("train_correct", torch.zeros((), dtype=torch.long))
        self.register_buffer("train_seen", torch.zeros((), dtype=torch.long))
        #: one dict per closed epoch: epoch, train_loss, train_acc, val_loss, val_acc
        self.history: list[dict[str, float]] = []
        self._last_val: dict[str, float] = {}
        #: the last test's loss and accuracy (trainer.test); the last validation's (trainer.validate or an epoch)
        self.test_metrics: dict[str, float] = {}
        self.last_validation: dict[str, float] = {}
        #: the optimizer steps of the checkpoint this module was loaded from (None: not loaded from one)
        self.run_state_step: int | None = None
        #: global step at which the loss first turned NaN/inf, else None
        self.diverged_at_step: int | None = None
        self._divergence_check_every = max(1, divergence_check_every)
        #: where the run is: the epoch in progress (0-based), how many of its batches are
        #: trained, and whether it has been evaluated and recorded (see :attr:`position`)
        self.epoch_in_progress = 0
        self.epoch_batches_done = 0
        self.epoch_closed = False
        self._continue_at: tuple[int, int] | None = None  # (epoch, batches done) to continue, from a resume
        #: steps between ``train/loss_step`` points (the Trainer's ``log_every_n_steps``)
        self.log_every_n_steps = 50
        self._step_losses: list[tuple[int, torch.Tensor]] = []  # (global step, loss) to log after this call
        #: the training loss at the last ``train/loss_step`` point (the progress bar shows it)
        self.last_step_loss: float | None = None
        # The training engine (configure_engine): eager or compiled steps, memory format.
        self.compile_mode = "off"
        self.channels_last = False
        self.unroll = 1
        self.compiled_step: Any = None  # deeplab.training.engine.compiled_step.CompiledStep, built when training starts
        self._gradient_observers: list[GradientObserver] = []
        # Between each gradient and its update (on_train_start): the parameters trained, the position of each
        # layer's weight among them (for per-layer norms), and this epoch's norm records (on_train_epoch_start).
        self._trained: list[torch.nn.Parameter] = []
        self._layer_index: list[int] = []
        self._norm_plan: tuple[int, bool] = (0, False)  # (steps between full records, every-step L1 this epoch)
        #: steps of the epoch in progress whose gradients --clip-grad-norm scaled down (on the device)
        self.clipped_steps = torch.zeros((), dtype=torch.long)
        #: what the run state of this module's checkpoints says about the run besides its position: config,
        #: world_size, training_images, resumes (``fit`` sets it; RunState's fields)
        self.run_record: dict[str, Any] = {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def compute_loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if self.hparams.loss == "manual":
            return HF.cross_entropy(logits, labels)
        return F.cross_entropy(logits, labels)

    # ------------------------------------------------------------ position
    @property
    def position(self) -> dict[str, Any]:
        """Where the run stands, as checkpoints record it (the resume contract, ``deeplab.training.resumable.resume``).

        ``epoch``: the epoch in progress or last closed (0-based); ``batches_done``:
        its batches trained; ``epoch_closed``: evaluated and in :attr:`history`;
        ``global_step``: optimizer steps so far.
        """
        return {"epoch": self.epoch_in_progress, "batches_done": self.epoch_batches_done,
                "epoch_closed": self.epoch_closed, "global_step": int(self.global_step)}

    def continue_epoch_at(self, epoch: int, batches_done: int) -> None:
        """Resume: epoch ``epoch`` already has ``batches_done`` batches trained (its running
        sums come from the checkpoint), so its start must not reset them."""
        self._continue_at = (int(epoch), int(batches_done))

    @property
    def continuing_epoch(self) -> bool:
        """True during an epoch that a resume picked up part-way (callbacks keep their sums)."""
        return self._continue_at is not None and self._continue_at[0] == self.current_epoch and self._continue_at[1] > 0

    def epoch_length(self) -> int | None:
        """Training batches in a whole epoch, when the loader says (``TensorBatches.epoch_batches``),
        shortened by a plain ``Trainer(limit_train_batches=N)`` (counted in loader items: chunks)."""
        loader = self.trainer.train_dataloader if self._trainer is not None else None
        length = getattr(loader, "epoch_batches", None)
        items = self.trainer.num_training_batches if self._trainer is not None else None
        limit = self.trainer.limit_train_batches if self._trainer is not None else None
        # (only Lightning's own limit shortens it: a resumed epoch's loader yields fewer items, the
        # batches already trained, but its epoch is as long as ever)
        limited = isinstance(limit, int) or (isinstance(limit, float) and limit < 1.0)  # (1.0, a float: "all")
        if length is not None and isinstance(items, int) and limited and items < len(loader):
            length = min(length, items * getattr(loader, "steps_per_call", 1))
        return length

    def epoch_complete(self) -> bool:
        """Has every batch of the epoch in progress been trained?"""
        length = self.epoch_length()
        if length is None:  # a loader without a known length: complete unless max_steps cut it short
            max_steps = self.trainer.max_steps
            return not (max_steps is not None and max_steps >= 0 and self.global_step >= max_steps)
        return self.epoch_batches_done >= length

    # --------------------------------------------------------------- train
    def on_train_epoch_start(self) -> None:
        self.epoch_in_progress = self.current_epoch
        self.epoch_closed = False
        if self.continuing_epoch:
            # The running sums restored from the checkpoint already hold this epoch's first batches.
            self.epoch_batches_done = self._continue_at[1]
        else:
            self.epoch_batches_done = 0
            self._reset_train_sums()
        observers = self._gradient_observers
        self._norm_plan = (max((o.every_n_steps for o in observers), default=0),
                           any(o.first_epoch_l1 and self.current_epoch == o.l1_epoch for o in observers))
        self._sync_schedulers()

    def _sync_schedulers(self) -> None:
        """Step each per-epoch scheduler until it has stepped once per finished epoch.

        Stepping at the *start* of an epoch (not at the end, Lightning's habit)
        leaves a closed epoch's state untouched, so a run stopped by
        ``--limit-train-batches`` can reopen its last epoch on resume; the rate
        each epoch trains at is the same either way.
        """
        for scheduler in _as_list(self.lr_schedulers()):
            while scheduler.last_epoch < self.current_epoch:
                scheduler.step()

    def _reset_train_sums(self) -> None:
        for buffer in (self.train_loss_sum, self.train_correct, self.train_seen):
            buffer.zero_()
        self.clipped_steps = torch.zeros((), dtype=torch.long, device=self.train_seen.device)

    @property
    def clipping(self) -> bool:
        return self.hparams.get("clip_grad_norm") is not None or self.hparams.get("clip_grad_value") is not None

    # -------------------------------------------------------------- engine
    def configure_engine(self, compile: str = "off", channels_last: bool = False, unroll: int = 1,
                         fast_kernels: bool = False) -> None:
        """How training steps run (issue 14); ``fit`` resolves ``--compile``/``--channels-last`` to these.

        ``compile``: ``off`` (eager), ``model`` (``torch.compile`` of the model:
        forward and backward graphs, the optimizer eager) or ``step`` (the whole
        step, :class:`deeplab.training.engine.compiled_step.CompiledStep`). ``channels_last``:
        NHWC activations (oneDNN's fast layout on CPUs, tensor cores on GPUs).
        ``unroll``: consecutive steps per compiled graph. ``fast_kernels``: swap in
        :mod:`deeplab.training.engine.cpu_kernels`' ELU and batch norm (same parameters and buffers).
        """
        _check_choice("--compile", compile, COMPILE_MODES)
        self.compile_mode, self.channels_last, self.unroll = compile, channels_last, max(1, int(unroll))
        if channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        if fast_kernels:
            from deeplab.training.engine.cpu_kernels import swap_in_fast_kernels

            swap_in_fast_kernels(self.model)
        if compile == "model":
            self.model.compile()  # in place: checkpoint keys stay model.*, so load_from_checkpoint works

    def on_train_start(self) -> None:
        from deeplab.models.layers import parameterized_layers

        self._gradient_observers = [c for c in self.trainer.callbacks if isinstance(c, GradientObserver)]
        self._trained = [p for p in self.model.parameters() if p.requires_grad]
        positions = {id(p): i for i, p in enumerate(self._trained)}
        layers = [weight for _, _, weight in parameterized_layers(self.model)]
        self._layer_index = [positions.get(id(weight), -1) for weight in layers]
        if self.compile_mode == "step" and self.compiled_step is None:
            # Built now, after a resume has restored the optimizer's state tensors it updates.
            from deeplab.training.engine.compiled_step import CompiledStep

            self.compiled_step = CompiledStep(self.model, _torch_optimizer(self.optimizers()), self.hparams.optimizer,
                                              self.compute_loss, layers if self._gradient_observers else None,
                                              unroll=self.unroll, channels_last=self.channels_last,
                                              clip_norm=self.hparams.get("clip_grad_norm"),
                                              clip_value=self.hparams.get("clip_grad_value"))

    def _as_input(self, images: torch.Tensor) -> torch.Tensor:
        if self.channels_last and images.dim() == 4:
            return images.contiguous(memory_format=torch.channels_last)
        return images

    # --------------------------------------------------------------- steps
    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor | None:
        """One batch, or a chunk of K batches (``TensorBatches(steps_per_call=K)``): K complete updates.

        Manual optimization is what makes a chunk possible: each of its batches
        gets its own forward, loss, ``manual_backward``, optimizer step and
        zero-grad, in order, so the run is exactly the batch-by-batch run (same
        updates, same ``global_step`` count, same gradient-norm records) while
        Lightning's per-batch machinery runs once per chunk.
        """
        images, labels = batch
        if labels.dim() == 1:  # one batch
            images, labels = images.unsqueeze(0), labels.unsqueeze(0)
        count = len(labels)
        max_steps = self.trainer.max_steps
        if max_steps is not None and max_steps >= 0:
            count = min(count, max_steps - int(self.global_step))  # --max-steps may end a chunk early
        if count <= 0:
            return None
        if self.hparams.get("eval_mode_after_first_epoch") and self.current_epoch >= 1 and self.model.training:
            # seed 002's quirk (--eval-mode-after-first-epoch): after its first test() the model stays
            # in eval mode, so batch norm normalizes with, and no longer updates, its running statistics
            self.model.eval()
        if self.compiled_step is not None:
            return self._compiled_steps(images[:count], labels[:count])
        loss = None
        for index in range(count):
            loss = self._eager_step(images[index], labels[index])
            if self.diverged_at_step is not None:
                break
        return loss

    def _eager_step(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        optimizer = self.optimizers()
        logits = self.model(self._as_input(images))
        loss = self.compute_loss(logits, labels)
        self.manual_backward(loss)
        self._before_update()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        self.epoch_batches_done += 1

        loss = loss.detach()
        with torch.no_grad():  # no host sync: the sums stay on the device until the epoch closes
            self.train_loss_sum.add_(loss * labels.numel())
            self.train_correct.add_((logits.detach().argmax(dim=1) == labels).sum())
            self.train_seen.add_(labels.numel())
        if self.global_step % self.log_every_n_steps == 0:
            self._step_losses.append((int(self.global_step), loss))
        self._watch_divergence(loss)
        return loss

    def _before_update(self) -> None:
        """Between an eager step's gradient and its update: the gradient stage the compiled graph runs
        too (:func:`deeplab.training.optim.gradient_stage`: norms measured, then clipped), the norms handed
        to the gradient observers, a clipped step counted."""
        every, l1 = self._norm_plan
        step = int(self.global_step)  # optimizer steps before this one
        mode = norm_mode(full=bool(every) and step % every == 0, l1=l1)
        if mode == "none" and not self.clipping:
            return
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in self._trained]
        clipped, norms, factor = gradient_stage(grads, self._layer_index, mode, self.hparams.get("clip_grad_norm"),
                                                self.hparams.get("clip_grad_value"))
        if self.clipping:
            for p, grad in zip(self._trained, clipped):
                if p.grad is not None:
                    p.grad = grad
        if factor is not None:
            self.clipped_steps = self.clipped_steps.to(factor.device) + (factor < 1).long()
        if norms is not None:
            for observer in self._gradient_observers:
                observer.on_gradient_norms(self.trainer, self, [step], self.current_epoch, norms.unsqueeze(0),
                                           [mode == "full"])

    def _compiled_steps(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """``len(labels)`` steps through the compiled graph; bookkeeping once for all of them."""
        first_step, first_position = int(self.global_step), self.epoch_batches_done
        epoch = self.current_epoch
        observers = self._gradient_observers
        unroll = self.compiled_step.unroll
        every, l1 = self._norm_plan
        record_groups = max(1, math.ceil(every / unroll)) if every else 0

        def stats_of(position: int) -> str:
            # A group's first step is recorded in full every `every` steps: by global step when
            # each group is one step (as the eager path does), else every ⌈every/U⌉-th group of
            # the epoch (groups are aligned to the epoch, see deeplab.training.engine.compiled_step).
            if not observers:
                return "none"
            if unroll == 1:
                record = (first_step + position - first_position) % every == 0
            else:
                record = (position // unroll) % record_groups == 0
            return ("l1+first" if l1 else "first") if record else ("l1" if l1 else "none")

        out = self.compiled_step(images, labels, first_position=first_position, stats=stats_of)
        count = len(labels)
        glue.count_optimizer_steps(self.trainer, count)
        self.epoch_batches_done += count
        batch = labels.shape[1]
        with torch.no_grad():
            self.train_loss_sum.add_(out.losses.double().sum() * batch)
            self.train_correct.add_(out.correct.sum())
            self.train_seen.add_(count * batch)
        steps = list(range(first_step + 1, first_step + count + 1))  # global step after each update
        self._step_losses += [(step, out.losses[index]) for index, step in enumerate(steps)
                              if step % self.log_every_n_steps == 0]
        if out.clip_factors is not None:
            self.clipped_steps = self.clipped_steps.to(out.clip_factors.device) + (out.clip_factors < 1).sum()
        if out.norms is not None:
            for observer in observers:
                observer.on_gradient_norms(self.trainer, self, [s - 1 for s in steps], epoch, out.norms)
        finite = torch.isfinite(out.losses)
        if self.diverged_at_step is None and not bool(finite.all()):
            self.diverged_at_step = first_step + int((~finite).nonzero()[0]) + 1
            self.trainer.should_stop = True
        return out.losses[-1]

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        self._flush_step_losses()

    def _flush_step_losses(self) -> None:
        """Write the ``train/loss_step`` points of this training_step: one host read for all of them,
        straight to the logger. Not through ``self.log``, which costs ~0.6 ms a call (ten batch-1 MLP
        steps); the progress bar reads :attr:`last_step_loss`."""
        if not self._step_losses:
            return
        steps = [step for step, _ in self._step_losses]
        values = torch.stack([loss for _, loss in self._step_losses]).tolist()
        self._step_losses.clear()
        if self.logger is not None:
            for step, value in zip(steps, values):
                self.logger.log_metrics({"train/loss_step": value}, step=step)
        self.last_step_loss = values[-1]

    def _watch_divergence(self, loss: torch.Tensor) -> None:
        """Stop the run when the loss turns NaN/inf, with at most one sync every few steps.

        A NaN or inf loss makes the epoch's running loss sum non-finite for good
        (inf − inf is NaN, NaN stays NaN), so checking that sum every
        ``divergence_check_every`` steps sees every divergence without a
        per-step flag; 1 on the CPU, where reading a tensor costs no sync.

        Not Lightning's ``EarlyStopping(check_finite=True)``, which does not give
        what ``results.json`` and the search need: it checks a logged metric
        only at an epoch's end or after validation, so a diverged run (a search
        probe of a very deep net) would train the rest of its epoch on NaN,
        where this stops within ``divergence_check_every`` steps, mid-chunk; it
        keeps the epoch it stopped in, not the step, where ``results.json``,
        the ledger and ``TrainabilityJudge`` record :attr:`diverged_at_step`
        (which also lets the diverged epoch close and skips the final test);
        and its patience would stop a run that stops improving, which a probe
        must not do (seed 000's plain net learned only from its 18th epoch).
        """
        if self.global_step % self._divergence_check_every == 0 and not bool(torch.isfinite(self.train_loss_sum)):
            if self.diverged_at_step is None:
                self.diverged_at_step = int(self.global_step)
            self.trainer.should_stop = True

    def on_train_epoch_end(self) -> None:
        if not self.epoch_closed and (self.epoch_complete() or self.diverged_at_step is not None):
            self._close_epoch()  # no validation ran this epoch
        self._continue_at = None

    def partial_epoch(self) -> dict[str, Any] | None:
        """The running metrics of an epoch stopped part-way (``--max-steps``, a signal), else None."""
        if self.epoch_closed or self.epoch_batches_done == 0:
            return None
        loss_sum, correct, seen = (float(t) for t in (self.train_loss_sum, self.train_correct, self.train_seen))
        return {"epoch": self.epoch_in_progress + 1, "batches_done": self.epoch_batches_done,
                "batches_in_epoch": self.epoch_length(),
                "train_loss": loss_sum / seen if seen else None, "train_acc": correct / seen if seen else None}

    def _close_epoch(self) -> None:
        """Record the epoch's metrics and tell every :class:`~deeplab.callbacks.base.EpochObserver` callback.

        Called right after the epoch's evaluation (or at the epoch's end when
        there is none), so observers see train and evaluation metrics together;
        the module is the one place that knows the epoch closed, hence the call
        from here (:func:`~deeplab.callbacks.base.notify_epoch_closed` says why).
        The running sums are not reset here but when the next epoch starts: a
        checkpoint written now still holds them, so a resume with a longer
        ``--limit-train-batches`` can reopen this epoch and replace its row.
        """
        self.epoch_closed = True
        sums = torch.stack([self.train_loss_sum, self.train_correct.double(), self.train_seen.double()])
        loss_sum, correct, seen = self.trainer.strategy.reduce(sums, reduce_op="sum").tolist()  # DDP: all ranks
        train_loss = loss_sum / seen if seen else float("nan")
        train_acc = correct / seen if seen else float("nan")
        self._log_epoch_metrics({"train/loss": train_loss, "train/acc": train_acc})
        entry = {
            "epoch": self.current_epoch + 1,
            "train_loss": train_loss,
            "train_acc": train_acc,
            "val_loss": self._last_val.get("loss", float("nan")),
            "val_acc": self._last_val.get("acc", float("nan")),
        }
        if self.hparams.get("clip_grad_norm") is not None:  # the share of this epoch's steps the clip scaled
            clipped = float(self.trainer.strategy.reduce(self.clipped_steps.double().to(sums.device), reduce_op="sum"))
            entry["clipped_fraction"] = clipped / self.epoch_batches_done / self.trainer.world_size \
                if self.epoch_batches_done else 0.0
            self._log_epoch_metrics({"train/clipped_fraction": entry["clipped_fraction"]})
        del self.history[self.current_epoch:]  # a reopened epoch replaces its earlier row
        self.history.append(entry)
        self._last_val = {}
        notify_epoch_closed(self.trainer, self, entry)

    # ---------------------------------------------------------- evaluate
    def _evaluate(self, batch: tuple[torch.Tensor, torch.Tensor], loss_mean: MeanMetric, accuracy: Any) -> None:
        images, labels = batch
        logits = self.model(self._as_input(images))
        loss_mean.update(self.compute_loss(logits, labels), weight=labels.numel())
        accuracy.update(logits, labels)

    def _diverged_in_fit(self) -> bool:
        return self.diverged_at_step is not None and self.trainer.state.fn == "fit"

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        # A diverged model's logits are NaN/inf: evaluating it measures nothing (argmax of NaN is class 0),
        # and for a search probe of a deep net it took minutes (k = 999: 7 of its 7.6 minutes).
        if not self._diverged_in_fit():
            self._evaluate(batch, self.val_loss_mean, self.val_accuracy)

    def on_validation_epoch_end(self) -> None:
        if self._diverged_in_fit():  # nothing was evaluated: the epoch closes with no evaluation metrics
            self.val_loss_mean.reset()
            self.val_accuracy.reset()
            self._last_val = {}
            if not self.epoch_closed:
                self._close_epoch()
            return
        loss, acc = float(self.val_loss_mean.compute()), float(self.val_accuracy.compute())
        self.val_loss_mean.reset()
        self.val_accuracy.reset()
        if self.trainer.sanity_checking:
            return
        split = self.eval_split
        self._log_epoch_metrics({f"{split}/loss": loss, f"{split}/acc": acc}, prog_bar=True)
        self._last_val = {"loss": loss, "acc": acc}
        self.last_validation = dict(self._last_val)
        if self.trainer.state.fn == "fit" and (self.epoch_complete() or self.diverged_at_step is not None):
            self._close_epoch()

    @property
    def eval_split(self) -> str:
        """The tag prefix of each epoch's evaluation: ``test`` (the seeds' protocol) or ``val`` (a held-out
        part of the training set, ``--val-split``), from the DataModule's ``eval_split_name``."""
        datamodule = getattr(self._trainer, "datamodule", None) if self._trainer is not None else None
        return eval_tag(getattr(datamodule, "eval_split_name", "validation"))

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._evaluate(batch, self.test_loss_mean, self.test_accuracy)

    def on_test_epoch_end(self) -> None:
        loss, acc = float(self.test_loss_mean.compute()), float(self.test_accuracy.compute())
        self.test_loss_mean.reset()
        self.test_accuracy.reset()
        self.test_metrics = {"loss": loss, "acc": acc}
        self._log_epoch_metrics({"test/loss": loss, "test/acc": acc})

    def _log_epoch_metrics(self, metrics: dict[str, float], prog_bar: bool = False) -> None:
        """To callbacks and the progress bar through ``self.log``; to TensorBoard at the optimizer step, the
        axis of ``train/loss_step`` and ``grad/*`` (``deeplab.training.glue``, override 3)."""
        self.log_dict(metrics, prog_bar=prog_bar, logger=False)
        glue.log_at_step(self, metrics)

    # -------------------------------------------------------- optimizers
    def configure_optimizers(self) -> Any:
        hp = self.hparams
        optimizer = create_optimizer(hp.optimizer, self.model.parameters(), hp.lr, hp.momentum, hp.weight_decay)
        if hp.schedule == "none":
            return optimizer
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule_factor(hp.schedule, hp.max_epochs))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}

    # ------------------------------------------------------ checkpoints
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """The run state (:mod:`deeplab.training.resumable.state`): the run record ``fit`` gave this module
        (settings, world size, images, resumes) and where the run stands."""
        write_run_state(checkpoint, RunState(
            **self.run_record, position=self.position, history=self.history, diverged_at_step=self.diverged_at_step,
            rng=capture_rng_state(),  # dropout masks etc. continue exactly after a resume
            clipped_steps=int(self.clipped_steps)))

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = read_run_state(checkpoint) or RunState()
        self.history = list(state.history)
        self.diverged_at_step = state.diverged_at_step
        self.clipped_steps = torch.tensor(state.clipped_steps)
        self.run_state_step = state.position.get("global_step")
        if state.rng is not None:
            restore_rng_state(state.rng)


def schedule_factor(schedule: str, max_epochs: int) -> Callable[[int], float]:
    """The learning-rate multiplier of epoch ``e`` (0-based), a pure function of ``e``.

    ``cosine``: seed 001's ``CosineAnnealingLR(T_max=epochs)``, in closed form
    (1 + cos(π e / T)) / 2; ``step``: seed 004's ``StepLR(5, 0.1)``, 0.1^⌊e/5⌋.
    Closed forms rather than torch's recursive schedulers so the rate of an
    epoch does not depend on the run's history: a resumed run with a longer
    ``--epochs`` trains its remaining epochs at the rates the longer run has
    (the period of ``cosine`` follows the current ``--epochs``). They agree with
    torch's schedulers to ~1e-16 relative.
    """
    if schedule == "cosine":
        period = max(1, max_epochs)
        return lambda epoch: (1.0 + math.cos(math.pi * epoch / period)) / 2.0
    if schedule == "step":
        return lambda epoch: STEP_SCHEDULE_GAMMA ** (epoch // STEP_SCHEDULE_EVERY_EPOCHS)
    raise DeeplabError(f"--schedule {schedule!r} is not one of {', '.join(SCHEDULES)}")


def _torch_optimizer(optimizer: Any) -> torch.optim.Optimizer:
    """The torch optimizer inside Lightning's ``LightningOptimizer`` wrapper (its public ``optimizer``)."""
    return getattr(optimizer, "optimizer", optimizer)


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _check_choice(option: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise DeeplabError(f"{option} {value!r} is not one of {', '.join(choices)}")
