"""``fit(config)``: one training run, from a :class:`~deeplab.config.FitConfig` to ``results.json``.

Data flow (DESIGN.md): the DataModule parses the files into uint8 tensors
once; the :class:`~deeplab.training.module.Classifier` trains with manual optimization;
callbacks print the seeds' epoch line, measure throughput and log gradient
norms; everything lands in one run directory under ``log_dir``:
TensorBoard events, ``checkpoints/``, ``config.json`` and ``results.json``.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Sequence

import lightning.pytorch as pl
import torch
from lightning.pytorch.loggers import TensorBoardLogger

from deeplab.training.engine.allocator import keep_freed_memory
from deeplab.callbacks.base import ResultsContributor
from deeplab.callbacks.gradients import GradientNorms
from deeplab.callbacks.progress import BatchProgressBar, EpochLine
from deeplab.callbacks.throughput import Throughput
from deeplab.training.resumable.checkpointing import AtomicCheckpointIO
from deeplab.training.resumable.lifecycle import RunCheckpoint, RunInterrupted, StopSignals
from deeplab.training.preflight import check_hardware, check_memory
from deeplab.training.resumable.resume import LEGACY_SETTINGS, compare_settings, plan_resume, read_checkpoint
from deeplab.config import FitConfig, effective_lr
from deeplab.training.resolve import resolve_config
from deeplab.data.datamodules import create_datamodule
from deeplab.training.engine import describe as describe_engine
from deeplab.training.engine import resolve_engine
from deeplab.errors import DeeplabError
from deeplab.io import atomic_write_json, make_writable_folder, no_empty_tree_on_failure
from deeplab.reporting.tensorboard import RunLogger, RunRecords, log_run_end
from deeplab.models import DATASET_SHAPES, count_parameters, model_spec
from deeplab.training.module import Classifier

__all__ = ["fit", "build_model_kwargs", "device_description", "RESULTS_FILE", "CONFIG_FILE"]

RESULTS_FILE = "results.json"
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
    if config.activation_checkpointing:
        kwargs["activation_checkpointing"] = True
    kwargs.update(config.model_kwargs)
    return kwargs


def peak_memory(trainer: pl.Trainer) -> dict[str, float | None]:
    """The process's peak resident memory (``getrusage``; the whole process, data set included) and, on a
    GPU, the peak memory torch allocated there, in MiB (issue 19: the frontier runs report both)."""
    import resource

    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    peak_rss_mib = peak_rss / (1024 * 1024) if sys.platform == "darwin" else peak_rss / 1024
    root = trainer.strategy.root_device
    gpu = torch.cuda.max_memory_allocated(root) / 2**20 if root.type == "cuda" else None
    return {"peak_rss_mib": round(peak_rss_mib, 1), "peak_gpu_allocated_mib": None if gpu is None else round(gpu, 1)}


def device_description(trainer: pl.Trainer) -> str:
    root = trainer.strategy.root_device
    if root.type == "cuda":
        name = torch.cuda.get_device_name(root)
    else:
        name = f"cpu ({os.cpu_count()} cores, {torch.get_num_threads()} threads)"
    return f"{name} ×{trainer.world_size}" if trainer.world_size > 1 else name


def _quiet_lightning() -> None:
    # Lightning's banners ("GPU available: False...") and advice drown the seeds' epoch lines.
    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
    warnings.filterwarnings("ignore", message=".*predefined.*`log_every_n_steps`.*")
    warnings.filterwarnings("ignore", message=".*smaller than the logging interval.*")
    # A diverged epoch's NaN losses: the run already says it diverged, in one line.
    warnings.filterwarnings("ignore", message=".*Encountered `nan` values in tensor.*")
    # A resumed run steps its per-epoch schedule up to the current epoch before its first step.
    warnings.filterwarnings("ignore", message=".*lr_scheduler.step\\(\\)` before `optimizer.step\\(\\)`.*")
    # ImageDataModule resumes mid-epoch through its own checkpoint state (trainer progress
    # counters), which Lightning's check for a stateful dataloader cannot see.
    warnings.filterwarnings("ignore", message=".*your dataloader is not resumable.*")
    warnings.filterwarnings("ignore", message=".*callbacks used to create the checkpoint need to be provided.*")
    # Epoch metrics come from torchmetrics, which already reduce across processes.
    warnings.filterwarnings("ignore", message=".*when logging on epoch level in distributed setting.*")


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


def fit(config: FitConfig, callbacks: Sequence[pl.Callback] = (), quiet: bool = False) -> dict[str, Any]:
    """Train one run and return what it wrote to ``results.json``.

    Raises :class:`~deeplab.errors.DeeplabError` for a mistake the user can
    fix (before anything is written), and :class:`~deeplab.training.resumable.lifecycle.RunInterrupted`
    after SIGINT/SIGTERM, once the checkpoint and ``results.json`` (with
    ``"interrupted": true``) are written.
    """
    try:
        # a run that fails before writing anything leaves no empty lightning_logs/<model>/ behind
        with no_empty_tree_on_failure(config.log_dir):
            return _fit(config, callbacks, quiet)
    finally:
        # Also after a failure or Ctrl-C: the next fit() in this process starts a new run
        # directory instead of writing into this one.
        os.environ.pop(RUN_VERSION_ENV, None)


def _fit(config: FitConfig, callbacks: Sequence[pl.Callback], quiet: bool) -> dict[str, Any]:
    config = resolve_config(config)
    _quiet_lightning()
    check_hardware(config)
    saved = None
    if config.ckpt_path is not None:
        if config.fast_dev_run:
            raise DeeplabError("--fast-dev-run starts a throwaway run; drop it to resume --ckpt-path")
        saved, _ = read_checkpoint(config.ckpt_path)
        config = inherit_engine(config, saved.config)
        compare_settings(saved, config.to_dict())  # a contradicting command fails before any data is read
    resume_dir = _resume_run_dir(config.ckpt_path)
    if not config.fast_dev_run:  # a throwaway run creates nothing under --log-dir, not even the folder
        _prepare_log_dir(str(resume_dir) if resume_dir is not None else config.log_dir)
    pl.seed_everything(config.seed, workers=True, verbose=False)
    keep_freed_memory()  # no page faults for every step's activations (deeplab.training.engine.allocator)

    model_kwargs = build_model_kwargs(config)  # a bad --depth/--dataset fails before any data is read
    check_memory(config.model, model_kwargs, config.batch_size, config.accelerator)
    datamodule = datamodule_for(config)
    datamodule.prepare_data()  # fails fast, with one clear line, when the files are missing
    datamodule.setup("fit")  # parse once, and check --val-split against the data, before any run dir exists

    module = Classifier(
        config.model,
        model_kwargs,
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
        divergence_check_every=1 if config.accelerator == "cpu" or not torch.cuda.is_available() else 25,
    )

    run_name = config.run_name or config.model
    if resume_dir is not None:
        logger = RunLogger(save_dir=str(resume_dir.parent.parent), name=resume_dir.parent.name,
                                   version=resume_dir.name, default_hp_metric=False, max_queue=TENSORBOARD_QUEUE)
    else:
        # DDP's launcher re-runs this script in every other process; they must all write
        # into the run directory rank 0 chose, not pick the next free version themselves.
        version = os.environ.get(RUN_VERSION_ENV)
        logger = RunLogger(save_dir=config.log_dir, name=run_name, default_hp_metric=False,
                                   version=int(version) if version is not None else None, max_queue=TENSORBOARD_QUEUE)
    run_dir = Path(logger.log_dir)  # (a path only: the logger creates it when training starts)

    log_every_n_steps = 50  # train/loss_step points; gradient norms keep their own --grad-every
    module.log_every_n_steps = log_every_n_steps
    stop = StopSignals()
    throughput = Throughput()
    training_images = len(datamodule.split("train")[1])
    checkpoint = RunCheckpoint(run_dir / "checkpoints", every_n_steps=config.checkpoint_every_n_steps,
                               every_minutes=config.checkpoint_every_minutes, stop=stop)
    write_config = WriteRunConfig(run_dir / CONFIG_FILE, config.to_dict())
    all_callbacks: list[pl.Callback] = [EpochLine(config.epochs, datamodule.eval_split_name), throughput]
    records = RunRecords(config.to_dict(), datamodule.eval_split_name, resumed=saved is not None)
    if not config.fast_dev_run:  # a throwaway run: no files
        all_callbacks += [checkpoint, write_config, records]
    if config.progress_bar and not quiet:
        all_callbacks.append(BatchProgressBar())
    if config.grad_norms:
        all_callbacks.append(GradientNorms(every_n_steps=config.grad_every,
                                           histograms_every_n_steps=config.grad_histograms_every,
                                           run_dir=None if config.fast_dev_run else run_dir,
                                           l1_epoch=config.grad_l1_epoch))
    all_callbacks.extend(callbacks)

    trainer = pl.Trainer(
        max_epochs=config.epochs,
        max_steps=config.max_steps,
        # The DataModule applies --limit-train/val-batches itself (counted in real batches, the same
        # images on one process or many); Lightning's limits stay at "all" unless evaluation is off.
        limit_val_batches=0 if config.limit_val_batches == 0 else None,
        reload_dataloaders_every_n_epochs=1,  # a resumed epoch's loader is shorter than the next one's
        fast_dev_run=config.fast_dev_run,
        devices=_devices_argument(config.devices),
        accelerator=config.accelerator,
        strategy=config.strategy,
        num_nodes=config.num_nodes,
        precision=config.precision,
        logger=logger,
        callbacks=all_callbacks,
        enable_checkpointing=not config.fast_dev_run,
        enable_progress_bar=config.progress_bar and not quiet,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        log_every_n_steps=log_every_n_steps,
        deterministic=False,
        use_distributed_sampler=False,  # TensorBatches shards by rank itself
        plugins=[AtomicCheckpointIO()],
    )
    epoch_batches = datamodule.epoch_batches(trainer.world_size)
    planned_steps = config.epochs * epoch_batches
    if config.max_steps >= 0:
        planned_steps = min(planned_steps, config.max_steps)
    engine = resolve_engine(config, module.model, planned_steps, trainer.world_size,
                            on_gpu=trainer.strategy.root_device.type == "cuda", callbacks=all_callbacks)
    module.configure_engine(engine.compile, engine.channels_last, engine.unroll, engine.fast_kernels)
    datamodule.steps_per_call = engine.steps_per_call
    config = dataclasses.replace(config, compile=engine.compile, channels_last=engine.channels_last,
                                 fast_kernels=engine.fast_kernels,
                                 steps_per_call=engine.steps_per_call)  # recorded as resolved
    if not quiet and trainer.is_global_zero:
        print(f"engine: {describe_engine(engine)}", flush=True)
    resumes: list[dict[str, Any]] = []
    if saved is not None:
        plan = plan_resume(saved, config.to_dict(), epoch_batches, trainer.world_size, training_images)
        datamodule.resume_at(plan.start_epoch, plan.skip_batches)
        module.continue_epoch_at(plan.start_epoch, plan.skip_batches)
        checkpoint.restart_at = (plan.start_epoch, plan.global_step)
        resumes = saved.resumes + [plan.record(saved.path)]
    write_config.config = records.config = config.to_dict()
    module.run_record = {"config": config.to_dict(), "training_images": training_images,
                         "world_size": trainer.world_size, "resumes": resumes}
    if not config.fast_dev_run:
        os.environ[RUN_VERSION_ENV] = str(logger.version)

    interrupted: RunInterrupted | None = None
    started = time.perf_counter()
    with stop:
        try:
            trainer.fit(module, datamodule=datamodule, ckpt_path=config.ckpt_path)
        except RunInterrupted as error:
            interrupted = error
        fit_seconds = time.perf_counter() - started

        test_acc = test_loss = None
        if interrupted is None and module.diverged_at_step is None and not config.fast_dev_run:
            if config.val_split is not None:
                metrics = trainer.test(module, datamodule=datamodule, verbose=False)[0]
                test_acc, test_loss = metrics["test/acc"], metrics["test/loss"]
            elif module.history:
                test_acc, test_loss = module.history[-1]["val_acc"], module.history[-1]["val_loss"]

    if interrupted is not None and interrupted.checkpoint is None and checkpoint.last_saved_step is not None:
        interrupted = RunInterrupted(interrupted.signum, checkpoint.last_saved_step, checkpoint.path, immediate=True)
    results: dict[str, Any] = {
        "model": config.model,
        "dataset": config.dataset,
        "depth": config.depth,
        "parameters": count_parameters(module.model),
        "hparams": {k: v for k, v in config.to_dict().items() if k not in ("ckpt_path",)},
        "eval_split": datamodule.eval_split_name,
        # what the data path did, with the data set's defaults filled in (hparams keep None = "the data set's")
        "data": {"normalize_mean": list(datamodule.mean), "normalize_std": list(datamodule.std),
                 "augment": datamodule.augment, "crop_padding": datamodule.crop_padding if datamodule.augment else None,
                 "augment_eval": datamodule.augment_eval, "input_noise_std": datamodule.input_noise_std},
        "history": module.history,
        "partial_epoch": module.partial_epoch(),
        "test_acc": test_acc,
        "test_loss": test_loss,
        "global_step": int(trainer.global_step),
        "epochs_run": len(module.history),
        "diverged": module.diverged_at_step is not None,
        "diverged_at_step": module.diverged_at_step,
        "interrupted": interrupted is not None,
        "interrupted_by": interrupted.signal_name if interrupted is not None else None,
        "resumes": resumes,
        "engine": {"compile": engine.compile, "channels_last": engine.channels_last,
                   "fast_kernels": engine.fast_kernels,
                   "steps_per_call": engine.steps_per_call, "unroll": engine.unroll},
        "compile_time_s": (round(module.compiled_step.compile_seconds, 3)
                           if module.compiled_step is not None else None),
        "wall_time_s": round(fit_seconds, 3),
        "train_time_s": round(throughput.train_seconds, 3),
        "images_per_s": round(throughput.images_per_second, 1),
        "device": device_description(trainer),
        "lr_effective": effective_lr(config),
        "memory": peak_memory(trainer),
        "run_dir": str(run_dir.resolve()),
        "checkpoint": str(checkpoint.path.resolve()) if checkpoint.last_saved_step is not None else None,
    }
    for callback in all_callbacks:
        if isinstance(callback, ResultsContributor):  # e.g. GradientNorms: results["grad"]
            callback.contribute_results(results)
    results_path = (run_dir / RESULTS_FILE).resolve()
    if trainer.is_global_zero and not config.fast_dev_run:
        log_run_end(logger, results)  # the HParams tab's metrics: the run's outcome
        logger.experiment.close()
        atomic_write_json(results_path, results)
    results["results_path"] = None if config.fast_dev_run else str(results_path)  # a throwaway run: no file
    results["is_global_zero"] = trainer.is_global_zero
    if interrupted is not None:
        raise interrupted
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


def _devices_argument(devices: str) -> Any:
    from deeplab.config import parse_devices

    return parse_devices(devices)
