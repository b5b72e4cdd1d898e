"""``fit(config)``: one training run, from a :class:`~deeplab.config.FitConfig` to ``results.json``.

Four steps, each reading only what the one before produced:

- :func:`plan_run` — settings resolved against the model's seed protocol, a resumed run's compared,
  the machine and memory checked, the data read, the engine chosen: an immutable :class:`RunPlan`;
  every refusal (one line, exit 2) happens here, before anything is written;
- :func:`build_run` — the :class:`~deeplab.training.module.Classifier` (manual optimization), the
  TensorBoard logger, deeplab's callbacks and the Trainer, placed where a resume continues;
- :func:`execute_run` — ``trainer.fit`` (SIGINT/SIGTERM stop at the next step boundary, checkpointed),
  and the final test where a validation split was held out;
- :func:`write_results` — :class:`~deeplab.training.results.RunResult` with each callback's
  contribution, written as ``results.json`` in the run's folder under ``log_dir`` beside its TensorBoard
  events, ``checkpoints/`` and ``config.json``.
"""

from __future__ import annotations

import dataclasses
import math
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import TensorBoardLogger

from deeplab.callbacks.base import ResultsContributor
from deeplab.callbacks.gradients import GradientNorms
from deeplab.callbacks.progress import BatchProgressBar, EpochLine
from deeplab.callbacks.signal_propagation import SignalPropagation
from deeplab.callbacks.throughput import Throughput
from deeplab.config import FitConfig, device_count, effective_lr, parse_devices, settings_of
from deeplab.data.datamodules import create_datamodule
from deeplab.errors import DeeplabError, OutputUnwritable, fit_command
from deeplab.io import atomic_write_json, make_writable_folder, no_empty_tree_on_failure, remove_if_empty, reserve_folder
from deeplab.models import DATASET_SHAPES, count_parameters, create_model, model_spec
from deeplab.reporting.figures import run_title
from deeplab.reporting.run_figures import write_run_figures
from deeplab.reporting.tensorboard import HPARAM_SETTINGS, RunRecords, log_run_end
from deeplab.training.engine import Engine, resolve_engine
from deeplab.training.engine import describe as describe_engine
from deeplab.training.engine.allocator import keep_freed_memory
from deeplab.training.glue import quiet_lightning
from deeplab.training.module import Classifier
from deeplab.training.preflight import check_hardware, check_memory
from deeplab.training.resolve import protocol_differences, resolve_config, run_folder_name
from deeplab.training.results import RunResult, device_description, peak_memory
from deeplab.training.resumable.checkpointing import AtomicCheckpointIO
from deeplab.training.resumable.lifecycle import RunCheckpoint, RunInterrupted, StopSignals, interrupt_at_once
from deeplab.training.resumable.resume import (
    LEGACY_SETTINGS,
    ResumePlan,
    compare_settings,
    plan_resume,
    read_checkpoint,
)
from deeplab.training.resumable.state import RunState

__all__ = ["fit", "plan_run", "build_run", "execute_run", "write_results", "RunPlan", "build_model_kwargs",
           "device_description", "RESULTS_FILE", "CONFIG_FILE"]

RESULTS_FILE = "results.json"
BEST_CHECKPOINT = "best"  # checkpoints/best.ckpt
RUN_VERSION_ENV = "DEEPLAB_RUN_VERSION"  # set by rank 0, inherited by the processes DDP launches
CONFIG_FILE = "config.json"
#: events TensorBoard's writer queues before add_scalar blocks on its thread (its default, 10, made each
#: of a batch-1 run's gradient-norm scalars wait ~80 µs for the writer thread)
TENSORBOARD_QUEUE = 1000


def build_model_kwargs(config: FitConfig) -> dict[str, Any]:
    """Factory keywords for the model on the config's dataset: shape, depth, init, extras."""
    if config.dataset not in DATASET_SHAPES:
        raise DeeplabError(f"unknown dataset {config.dataset!r}; choose one of {', '.join(DATASET_SHAPES)}")
    channels, height, _, classes = DATASET_SHAPES[config.dataset]
    kwargs: dict[str, Any] = dict(in_channels=channels, num_classes=classes, image_size=height)
    spec = model_spec(config.model)
    if config.depth is not None:
        if not spec.has_depth:
            raise DeeplabError(f"model {config.model!r} has a fixed depth; drop --depth")
        kwargs["depth"] = config.depth
    if config.init is not None and config.init != "seed":
        if not spec.takes_init:
            from deeplab.models import list_models

            takers = [name for name in list_models() if model_spec(name).takes_init]
            raise DeeplabError(f"model {config.model!r} has one initialization (its seed's); drop --init "
                               f"(models taking --init: {', '.join(takers)})")
        kwargs["init"] = config.init
    for name in ("sigma_w2", "sigma_b2"):
        if getattr(config, name) is not None:
            kwargs[name] = getattr(config, name)
    if config.branch_scale not in (None, "none"):
        if "branch_scale" not in spec.keywords:
            raise DeeplabError(f"--branch-scale {config.branch_scale}: model {config.model!r} has no residual branches "
                               "to scale; drop --branch-scale (residual depth families: resnet_elu, resnet_elu_nobn)")
        kwargs["branch_scale"] = config.branch_scale
    if config.activation_checkpointing:
        kwargs["activation_checkpointing"] = True
    unknown = sorted(set(config.model_kwargs) - set(spec.keywords))
    if unknown:
        raise DeeplabError(f"model_kwargs {', '.join(unknown)}: {config.model} takes no such keyword (it takes "
                           f"{', '.join(spec.keywords) or 'none'})")
    kwargs.update(config.model_kwargs)
    return kwargs


def _check_resume_folder(config: FitConfig, saved: RunState, resume_dir: Path) -> None:
    """A resume continues in its run's own folder: a different --out/--run-name would be ignored, so it is
    refused (one line) rather than silently dropped."""
    for name, option in (("log_dir", "--out"), ("run_name", "--run-name")):
        before, now = saved.config.get(name), getattr(config, name)
        if name in saved.config and before != now and not (name == "log_dir" and Path(str(before)).resolve() ==
                                                             Path(str(now)).resolve()):
            raise DeeplabError(f"{option} {now}: a resume continues in its run's own folder {resume_dir} (the run "
                               f"has {option} {before}); drop {option}")


def _resume_run_dir(ckpt_path: str | None) -> Path | None:
    """A checkpoint inside ``<run>/checkpoints/`` resumes into that same run directory."""
    if ckpt_path is None:
        return None
    run_dir = Path(ckpt_path).resolve().parent.parent
    return run_dir if (run_dir / CONFIG_FILE).is_file() else None


def datamodule_for(config: FitConfig) -> Any:
    """The DataModule a resolved config trains on: its data set, split, batches and data path."""
    return create_datamodule(
        config.dataset,
        data_dir=config.data_dir,
        batch_size=config.batch_size,
        val_split=config.val_split,
        seed=config.seed,
        augment=config.augment,
        crop_padding=config.crop_padding,
        augment_eval=config.augment_eval,
        mean=config.normalize_mean,
        std=config.normalize_std,
        input_noise_std=config.input_noise_std or 0.0,
        limit_train_batches=config.limit_train_batches,
        limit_val_batches=config.limit_val_batches,
    )


def _prepare_log_dir(log_dir: str) -> None:
    path = Path(log_dir)
    try:
        make_writable_folder(path)
    except OSError as error:
        raise DeeplabError(f"--log-dir {log_dir} is not writable ({error.strerror}); give a folder you can write to") from None


@dataclass(frozen=True)
class RunPlan:
    """Everything decided about a run before anything is written (:func:`plan_run`); the rest only reads it.

    ``config``: resolved, with the engine's ``auto`` choices recorded; ``saved`` and ``resume``: the
    checkpoint it continues and where (None for a fresh run); ``datamodule``: its data, parsed and split.
    """

    config: FitConfig
    model_kwargs: dict[str, Any]
    datamodule: Any
    engine: Engine
    world_size: int
    epoch_batches: int  # per process
    training_images: int
    saved: RunState | None = None
    resume: ResumePlan | None = None
    resume_dir: Path | None = None  # a resume continues in its run's own folder

    @property
    def resumes(self) -> list[dict[str, Any]]:
        """results.json's ``resumes``: the run's earlier ones and this one."""
        if self.saved is None or self.resume is None:
            return []
        return self.saved.resumes + [self.resume.record(self.saved.path)]


@dataclass
class BuiltRun:
    """The objects that train a planned run (:func:`build_run`)."""

    plan: RunPlan
    module: Classifier
    trainer: pl.Trainer
    logger: Any
    run_dir: Path
    checkpoint: RunCheckpoint
    stop: StopSignals
    throughput: Throughput
    callbacks: list[pl.Callback]


@dataclass
class Outcome:
    """How training went (:func:`execute_run`)."""

    fit_seconds: float
    test_acc: float | None = None
    test_loss: float | None = None
    interrupted: RunInterrupted | None = None
    partial_epoch: dict[str, Any] | None = None  # read before the final test, which resets the train loader


def fit(config: FitConfig, callbacks: Sequence[pl.Callback] = (), quiet: bool = False) -> RunResult:
    """Train one run and return what it wrote to ``results.json``: plan, build, execute, write.

    Raises :class:`~deeplab.errors.DeeplabError` for a mistake the user can
    fix (before anything is written), and :class:`~deeplab.training.resumable.lifecycle.RunInterrupted`
    after SIGINT/SIGTERM, once the checkpoint and ``results.json`` (with
    ``"interrupted": true``) are written.
    """
    if not isinstance(config, FitConfig):
        raise DeeplabError(f"fit() takes a deeplab.FitConfig (e.g. FitConfig(model='cnn15_skip2')), got a "
                           f"{type(config).__name__}")
    try:
        # a run that fails before writing anything leaves no empty lightning_logs/<model>/ behind
        with no_empty_tree_on_failure(config.log_dir):
            with interrupt_at_once():  # a signal while the data is read: a clean stop, not the default kill
                run = build_run(plan_run(config, callbacks), callbacks, quiet)
            try:
                outcome = execute_run(run)
            except BaseException:
                remove_if_empty(run.run_dir)
                raise
            results = write_results(run, outcome)
            if outcome.interrupted is not None:
                raise outcome.interrupted
            return results
    finally:
        # Also after a failure or Ctrl-C: the next fit() in this process starts a new run
        # directory instead of writing into this one.
        os.environ.pop(RUN_VERSION_ENV, None)


def plan_run(config: FitConfig, callbacks: Sequence[pl.Callback] = ()) -> RunPlan:
    """Resolve the settings, inherit and compare a resumed run's, check the machine, read the data and choose
    the engine: every refusal happens here, before a file is written."""
    config = resolve_config(config)
    quiet_lightning()
    check_hardware(config)
    saved = None
    if config.ckpt_path is not None:
        if config.fast_dev_run:
            raise DeeplabError("--fast-dev-run starts a throwaway run; drop it to resume --ckpt-path")
        saved, _ = read_checkpoint(config.ckpt_path)
        config = inherit_engine(config, saved.config)
        compare_settings(saved, config.to_dict())  # a contradicting command fails before any data is read
    resume_dir = _resume_run_dir(config.ckpt_path)
    if saved is not None and resume_dir is not None:
        _check_resume_folder(config, saved, resume_dir)
    if not config.fast_dev_run:  # a throwaway run creates nothing under --log-dir, not even the folder
        _prepare_log_dir(str(resume_dir) if resume_dir is not None else config.log_dir)
    pl.seed_everything(config.seed, workers=True, verbose=False)
    keep_freed_memory()  # no page faults for every step's activations (deeplab.training.engine.allocator)
    model_kwargs = build_model_kwargs(config)  # a bad --depth/--dataset fails before any data is read
    check_memory(config.model, model_kwargs, config.batch_size, config.accelerator)
    datamodule = datamodule_for(config)
    datamodule.prepare_data()  # fails fast, with one clear line, when the files are missing
    datamodule.setup("fit")  # parse once, and check --val-split against the data, before any run dir exists
    world_size = planned_world_size(config)
    epoch_batches = datamodule.epoch_batches(world_size)
    training_images = len(datamodule.split("train")[1])
    engine = _choose_engine(config, model_kwargs, epoch_batches, world_size, callbacks)
    config = dataclasses.replace(config, compile=engine.compile, channels_last=engine.channels_last,
                                 fast_kernels=engine.fast_kernels, steps_per_call=engine.steps_per_call)
    resume = None if saved is None else plan_resume(saved, config.to_dict(), epoch_batches, world_size,
                                                    training_images)
    return RunPlan(config=config, model_kwargs=model_kwargs, datamodule=datamodule, engine=engine,
                   world_size=world_size, epoch_batches=epoch_batches, training_images=training_images,
                   saved=saved, resume=resume, resume_dir=resume_dir)


def _choose_engine(config: FitConfig, model_kwargs: dict[str, Any], epoch_batches: int, world_size: int,
                   callbacks: Sequence[pl.Callback]) -> Engine:
    """The engine's ``auto`` choices (:func:`~deeplab.training.engine.resolve_engine`), from the network's
    structure: built here with the random streams put back afterwards, so the run's own model is
    initialized exactly as if this one had never been built."""
    planned_steps = config.epochs * epoch_batches
    if config.max_steps >= 0:
        planned_steps = min(planned_steps, config.max_steps)
    with torch.random.fork_rng(devices=[]):
        network = create_model(config.model, **model_kwargs)
    run_callbacks = list(callbacks) + _observers(config, None)
    return resolve_engine(config, network, planned_steps, world_size, on_gpu=_on_gpu(config),
                          callbacks=run_callbacks)


def build_run(plan: RunPlan, callbacks: Sequence[pl.Callback] = (), quiet: bool = False) -> BuiltRun:
    """The module, the logger, deeplab's callbacks and the Trainer of a planned run, placed where the run
    continues (a resume: its epoch, its batches already trained, Lightning's loops)."""
    config = plan.config
    module = _classifier(plan)
    differences = protocol_differences(plan.config)  # the run folder's name and the HParams columns
    logger = _run_logger(plan, differences)
    run_dir = Path(logger.log_dir)  # reserved (a fresh run), or the resumed run's
    try:
        return _build_run(plan, module, logger, run_dir, differences, callbacks, quiet)
    except BaseException:
        remove_if_empty(run_dir)  # a reserved folder nothing was written into
        raise


def _build_run(plan: RunPlan, module: Classifier, logger: TensorBoardLogger, run_dir: Path,
               differences: dict[str, Any], callbacks: Sequence[pl.Callback], quiet: bool) -> BuiltRun:
    config = plan.config
    stop, throughput = StopSignals(), Throughput()
    checkpoint = RunCheckpoint(run_dir / "checkpoints", every_n_steps=config.checkpoint_every_n_steps,
                               every_minutes=config.checkpoint_every_minutes, stop=stop)
    eval_split = plan.datamodule.eval_split_name
    run_callbacks: list[pl.Callback] = [EpochLine(config.epochs, eval_split), throughput]
    if not config.fast_dev_run:  # a throwaway run: no files
        run_callbacks += [checkpoint, WriteRunConfig(run_dir / CONFIG_FILE, config.to_dict()),
                          RunRecords(config.to_dict(), eval_split, resumed=plan.saved is not None,
                                     columns=HPARAM_SETTINGS + tuple(differences))]
        if config.val_split is not None:  # the best epoch by validation accuracy; never selected on the test split
            run_callbacks.append(best_checkpoint(run_dir / "checkpoints"))
    if config.progress_bar and not quiet:
        run_callbacks.append(BatchProgressBar())
    run_callbacks += _observers(config, None if config.fast_dev_run else run_dir)
    run_callbacks.extend(callbacks)
    trainer = _trainer(config, logger, run_callbacks, quiet)
    if trainer.world_size != plan.world_size:  # pragma: no cover - planned_world_size must be Lightning's rule
        raise RuntimeError(f"planned {plan.world_size} process(es), the Trainer has {trainer.world_size}")
    if plan.resume is not None:
        plan.datamodule.resume_at(plan.resume.start_epoch, plan.resume.skip_batches)
        module.continue_epoch_at(plan.resume.start_epoch, plan.resume.skip_batches)
        checkpoint.restart_at = (plan.resume.start_epoch, plan.resume.global_step)
    module.run_record = {"config": config.to_dict(), "training_images": plan.training_images,
                         "world_size": plan.world_size, "resumes": plan.resumes}
    if not quiet and trainer.is_global_zero:
        print(f"engine: {describe_engine(plan.engine)}", flush=True)
    if not config.fast_dev_run:
        os.environ[RUN_VERSION_ENV] = str(logger.version)
    return BuiltRun(plan, module, trainer, logger, run_dir, checkpoint, stop, throughput, run_callbacks)


def best_checkpoint(dirpath: Path) -> ModelCheckpoint:
    """``checkpoints/best.ckpt``: the epoch with the highest validation accuracy (a held-out split only)."""
    return ModelCheckpoint(dirpath=dirpath, filename=BEST_CHECKPOINT, monitor="val/acc", mode="max", save_top_k=1,
                           save_last=False, enable_version_counter=False, auto_insert_metric_name=False)


def _best_checkpoint_record(callbacks: Sequence[pl.Callback]) -> dict[str, Any] | None:
    for callback in callbacks:
        if isinstance(callback, ModelCheckpoint) and callback.best_model_path:
            score = callback.best_model_score
            return {"checkpoint": str(Path(callback.best_model_path).resolve()), "monitor": callback.monitor,
                    "val_acc": None if score is None else float(score)}
    return None


def _classifier(plan: RunPlan) -> Classifier:
    config, engine = plan.config, plan.engine
    module = Classifier(
        config.model,
        plan.model_kwargs,
        optimizer=config.optimizer,
        lr=effective_lr(config),
        momentum=config.momentum,
        weight_decay=config.weight_decay,
        schedule=config.schedule,
        max_epochs=config.epochs,
        loss=config.loss,
        eval_mode_after_first_epoch=config.eval_mode_after_first_epoch,
        clip_grad_norm=config.clip_grad_norm,
        clip_grad_value=config.clip_grad_value,
        divergence_check_every=1 if not _on_gpu(config) else 25,
    )
    module.log_every_n_steps = config.log_every_n_steps
    module.configure_engine(engine.compile, engine.channels_last, engine.unroll, engine.fast_kernels)
    plan.datamodule.steps_per_call = engine.steps_per_call
    return module


def _run_logger(plan: RunPlan, differences: dict[str, Any]) -> TensorBoardLogger:
    """The TensorBoard logger: a resume writes into its run's folder; a fresh run reserves its own,
    ``<log dir>/<model>/<readable name>`` (:func:`~deeplab.training.resolve.run_folder_name`: ``lr0.02-s0``)
    or ``<log dir>/<--run-name>``, with ``-2``, ``-3``… when taken. The folder is created at once by
    ``mkdir`` (:func:`~deeplab.io.reserve_folder`), so two runs started together never share one."""
    if plan.resume_dir is not None:
        return TensorBoardLogger(save_dir=str(plan.resume_dir.parent.parent), name=plan.resume_dir.parent.name,
                                 version=plan.resume_dir.name, default_hp_metric=False, max_queue=TENSORBOARD_QUEUE)
    config = plan.config
    parent, leaf = ("", config.run_name) if config.run_name else (config.model, run_folder_name(config, differences))
    # DDP's launcher re-runs this script in every other process; they must all write
    # into the run directory rank 0 reserved, not reserve their own.
    version = os.environ.get(RUN_VERSION_ENV)
    if version is None:
        version = leaf if config.fast_dev_run else reserve_folder(Path(config.log_dir) / parent, leaf).name
    return TensorBoardLogger(save_dir=config.log_dir, name=parent, version=version, default_hp_metric=False,
                             max_queue=TENSORBOARD_QUEUE)


def _observers(config: FitConfig, run_dir: Path | None) -> list[pl.Callback]:
    """The observing callbacks the run's own settings add (``--grad-norms``, ``--signal-every``): built for
    the run and, before it, for the engine's choice (a callback that needs every batch means chunks of 1)."""
    observers: list[pl.Callback] = []
    if config.grad_norms:
        observers.append(_gradient_norms(config, run_dir))
    if config.signal_every:
        observers.append(SignalPropagation(every_n_steps=config.signal_every))
    return observers


def _gradient_norms(config: FitConfig, run_dir: Path | None) -> GradientNorms:
    return GradientNorms(every_n_steps=config.grad_every, histograms_every_n_steps=config.grad_histograms_every,
                         run_dir=run_dir, l1_epoch=config.grad_l1_epoch)


def _trainer(config: FitConfig, logger: Any, callbacks: list[pl.Callback], quiet: bool) -> pl.Trainer:
    return pl.Trainer(
        max_epochs=config.epochs,
        max_steps=config.max_steps,
        # The DataModule applies --limit-train/val-batches itself (counted in real batches, the same
        # images on one process or many); Lightning's limits stay at "all" unless evaluation is off.
        limit_val_batches=0 if config.limit_val_batches == 0 else None,
        reload_dataloaders_every_n_epochs=1,  # a resumed epoch's loader is shorter than the next one's
        fast_dev_run=config.fast_dev_run,
        devices=parse_devices(config.devices),
        accelerator=config.accelerator,
        strategy=config.strategy,
        num_nodes=config.num_nodes,
        precision=config.precision,
        logger=logger,
        callbacks=callbacks,
        enable_checkpointing=not config.fast_dev_run,
        enable_progress_bar=config.progress_bar and not quiet,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        log_every_n_steps=config.log_every_n_steps,
        check_val_every_n_epoch=config.check_val_every_n_epoch,
        deterministic=False,
        use_distributed_sampler=False,  # TensorBatches shards by rank itself
        plugins=[AtomicCheckpointIO()],
    )


def execute_run(run: BuiltRun) -> Outcome:
    """Train (stopping cleanly on SIGINT/SIGTERM), then the final test where the run has a held-out
    validation split (else the last epoch's evaluation is the test)."""
    config, module, trainer = run.plan.config, run.module, run.trainer
    outcome = Outcome(fit_seconds=0.0)
    started = time.perf_counter()
    with run.stop:
        try:
            trainer.fit(module, datamodule=run.plan.datamodule, ckpt_path=config.ckpt_path)
        except RunInterrupted as error:
            outcome.interrupted = error
        outcome.fit_seconds = time.perf_counter() - started
        outcome.partial_epoch = module.partial_epoch()
        if outcome.interrupted is None and module.diverged_at_step is None and not config.fast_dev_run:
            last = module.history[-1] if module.history else {}
            unevaluated = config.limit_val_batches != 0 and not math.isfinite(last.get("val_acc", math.nan))
            if config.val_split is not None or unevaluated:
                # a held-out split: the test split once, at the end; or a last epoch --check-val-every-n-epoch skipped
                _final_test(run, outcome)
            else:
                # (no epoch closed and evaluation off: --max-steps inside the first epoch; nothing measured)
                outcome.test_acc, outcome.test_loss = last.get("val_acc"), last.get("val_loss")
    if outcome.interrupted is None and run.stop.requested is not None:
        # a signal that came as training ended (its last steps, or the final test, were let finish): the run
        # is complete, and still says it was interrupted (exit 130/143), so a caller stops too
        outcome.interrupted = RunInterrupted(
            run.stop.requested, run.checkpoint.last_saved_step, run.checkpoint.path,
            advice=f"interrupted ({signal.Signals(run.stop.requested).name}) as the run ended, which was let "
                   f"finish: the run is complete")
    checkpoint = run.checkpoint
    stopped = outcome.interrupted
    if stopped is not None and stopped.checkpoint is None and checkpoint.last_saved_step is not None:
        outcome.interrupted = RunInterrupted(stopped.signum, checkpoint.last_saved_step, checkpoint.path,
                                             immediate=True)
    return outcome


def _final_test(run: BuiltRun, outcome: Outcome) -> None:
    """The test split once, after training. A first SIGINT/SIGTERM here lets it finish (results.json then
    has the test accuracy and says it was interrupted, exit 130/143: :func:`execute_run`); a second stops
    it at once, and the hint says ``--evaluate`` measures what is missing (the training is in the last
    checkpoint)."""
    try:
        run.trainer.test(run.module, datamodule=run.plan.datamodule, verbose=False)
    except RunInterrupted as error:
        outcome.interrupted = RunInterrupted(error.signum, run.checkpoint.last_saved_step, run.checkpoint.path,
                                             immediate=True, advice=_evaluate_advice(run))
        return
    outcome.test_acc, outcome.test_loss = run.module.test_metrics["acc"], run.module.test_metrics["loss"]


def _evaluate_advice(run: BuiltRun) -> str:
    return (f"interrupted during the final test, after training (saved at step {run.checkpoint.last_saved_step}); "
            f"the test accuracy is missing: {fit_command()} --evaluate {run.run_dir} measures it")


def write_results(run: BuiltRun, outcome: Outcome) -> RunResult:
    """The run's :class:`RunResult`, with what each callback contributes, written as ``results.json``
    (and the HParams tab's outcome) by rank 0."""
    config, module, trainer, datamodule = run.plan.config, run.module, run.trainer, run.plan.datamodule
    engine = run.plan.engine
    results = RunResult(
        model=config.model, dataset=config.dataset, depth=config.depth,
        parameters=count_parameters(module.model),
        hparams={k: v for k, v in config.to_dict().items() if k not in settings_of("invocation")},
        eval_split=datamodule.eval_split_name,
        # what the data path did, with the data set's defaults filled in (hparams keep None = "the data set's")
        data={"normalize_mean": list(datamodule.mean), "normalize_std": list(datamodule.std),
              "augment": datamodule.augment, "crop_padding": datamodule.crop_padding if datamodule.augment else None,
              "augment_eval": datamodule.augment_eval, "input_noise_std": datamodule.input_noise_std},
        history=module.history, partial_epoch=outcome.partial_epoch,
        test_acc=outcome.test_acc, test_loss=outcome.test_loss,
        global_step=int(trainer.global_step), epochs_run=len(module.history),
        diverged=module.diverged_at_step is not None, diverged_at_step=module.diverged_at_step,
        interrupted=outcome.interrupted is not None,
        interrupted_by=outcome.interrupted.signal_name if outcome.interrupted is not None else None,
        resumes=run.plan.resumes,
        engine={"compile": engine.compile, "channels_last": engine.channels_last, "fast_kernels": engine.fast_kernels,
                "steps_per_call": engine.steps_per_call, "unroll": engine.unroll},
        compile_time_s=(round(module.compiled_step.compile_seconds, 3) if module.compiled_step is not None else None),
        wall_time_s=round(outcome.fit_seconds, 3), train_time_s=round(run.throughput.train_seconds, 3),
        images_per_s=round(run.throughput.images_per_second, 1), device=device_description(trainer),
        lr_effective=effective_lr(config), memory=peak_memory(trainer), run_dir=str(run.run_dir.resolve()),
        checkpoint=str(run.checkpoint.path.resolve()) if run.checkpoint.last_saved_step is not None else None,
        best=_best_checkpoint_record(run.callbacks),
        is_global_zero=trainer.is_global_zero,
    )
    for callback in run.callbacks:
        if isinstance(callback, ResultsContributor):  # e.g. GradientNorms: results["grad"]
            callback.contribute_results(results)
    results_path = (run.run_dir / RESULTS_FILE).resolve()
    if trainer.is_global_zero and not config.fast_dev_run:
        try:
            log_run_end(run.logger, results)  # the HParams tab's metrics: the run's outcome
            run.logger.experiment.close()
            if config.run_figures:
                results.figures = write_run_figures(run.run_dir, run_title(config.model, config.dataset,
                                                                            run.run_dir.name))
            atomic_write_json(results_path, results.to_json())
        except OSError as error:  # a full disk at the very end: the training is in the last checkpoint
            saved = run.checkpoint.last_saved_step
            raise OutputUnwritable(
                f"could not write the run's results into {run.run_dir} ({error.strerror or error})"
                + (f"; its checkpoint (step {saved}) is intact" if saved is not None else ""),
                f"free space, then {fit_command()} --evaluate {run.run_dir} measures the test split"
                if saved is not None else "free space and start the run again") from None
    results.results_path = None if config.fast_dev_run else str(results_path)  # a throwaway run: no file
    return results


def inherit_engine(config: FitConfig, saved: dict[str, Any]) -> FitConfig:
    """A resume left at ``auto`` keeps the engine its run chose (the step kind is part of the
    numerics; the chunk size is not, but keeping it keeps the run as it was)."""
    changes: dict[str, Any] = {}
    if config.compile == "auto" and saved.get("compile") is not None:
        changes["compile"] = saved["compile"]
    if config.channels_last is None and saved.get("channels_last") is not None:
        changes["channels_last"] = saved["channels_last"]
    if config.fast_kernels is None:
        changes["fast_kernels"] = saved.get("fast_kernels", LEGACY_SETTINGS["fast_kernels"])
    if config.steps_per_call is None and saved.get("steps_per_call") is not None:
        changes["steps_per_call"] = saved["steps_per_call"]
    return dataclasses.replace(config, **changes)


class WriteRunConfig(pl.Callback):
    """Writes ``config.json`` when training starts: after a resume's checkpoint has loaded, so a
    failed resume leaves the run's files as they were."""

    def __init__(self, path: Path, config: dict[str, Any]):
        self.path, self.config = path, config

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.is_global_zero:
            atomic_write_json(self.path, self.config)


def planned_world_size(config: FitConfig) -> int:
    """How many processes Lightning will train this config on (``Trainer.world_size``): devices × nodes,
    ``--devices auto`` being every GPU where one is used, else one process."""
    count = device_count(parse_devices(config.devices))
    if count is None:  # auto
        count = torch.cuda.device_count() if _on_gpu(config) else 1
    return count * config.num_nodes


def _on_gpu(config: FitConfig) -> bool:
    return config.accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available()
