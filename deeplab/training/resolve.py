"""Resolving a run's settings: unset fields from the model's seed protocol, every value checked.

:func:`resolve_config` fills a :class:`~deeplab.config.FitConfig` from the model's registered spec (its
seed protocol, ``deeplab.models``), then :data:`GENERAL_DEFAULTS`, records what runs rather than
"unset", and validates every number and name in one line each, before anything is read or written.
It needs the model registry and the data sets; :mod:`deeplab.config` (the settings themselves and
their options) needs neither.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from deeplab.config import (
    MAX_SEED,
    PRECISION_ALIASES,
    FitConfig,
    _is_int,
    check_batch_limit,
    check_types,
    effective_lr,
    grad_every_for,
    option_name,
    parse_lr_depth_scaling,
)
from deeplab.errors import DeeplabError

__all__ = ["GENERAL_DEFAULTS", "resolve_config", "protocol_differences", "run_folder_name"]

#: defaults for what neither the user nor the model's spec sets
GENERAL_DEFAULTS: dict[str, Any] = dict(
    epochs=10,
    batch_size=32,
    lr=0.01,
    momentum=0.9,
    weight_decay=0.0,
    optimizer="momentum_sgd",
    loss="torch",
    schedule="none",
    augment=None,
    input_noise_std=0.0,
)


def resolve_config(config: FitConfig) -> FitConfig:
    """Fill unset fields from the model's seed protocol, then general defaults."""
    from deeplab.models import model_spec

    check_types(config)
    spec = model_spec(config.model)
    resolved = dataclasses.replace(config, model_kwargs=dict(config.model_kwargs))
    if resolved.dataset is None:
        resolved.dataset = spec.dataset
    for name, default in GENERAL_DEFAULTS.items():
        if getattr(resolved, name) is None:
            setattr(resolved, name, spec.protocol.get(name, default))
    for name in ("normalize_mean", "normalize_std", "crop_padding"):
        # dataset statistics and crops of the seed's own data set only: seed 003's CIFAR-10 std must
        # not divide MNIST when a seed 003 model is trained there
        if getattr(resolved, name) is None and resolved.dataset == spec.dataset and name in spec.protocol:
            setattr(resolved, name, spec.protocol[name])
    for name in ("normalize_mean", "normalize_std"):
        if getattr(resolved, name) is not None:
            setattr(resolved, name, tuple(float(v) for v in getattr(resolved, name)))
    if resolved.val_split == "none":  # explicitly off, even where the protocol holds out data
        resolved.val_split = None
    elif resolved.val_split is None:
        resolved.val_split = spec.protocol.get("val_split")
    if resolved.depth is None and spec.has_depth:
        resolved.depth = spec.default_depth
    if resolved.grad_every is None and isinstance(resolved.batch_size, int) and resolved.batch_size >= 1:
        resolved.grad_every = grad_every_for(resolved.batch_size)
    resolved.precision = PRECISION_ALIASES.get(str(resolved.precision), str(resolved.precision))
    if isinstance(resolved.compile, bool):  # the old on/off flag (FitConfig(compile=True))
        resolved.compile = "model" if resolved.compile else "off"
    # Record what runs, not "unset": results.json and a resume's comparison see the same values.
    if resolved.init is None:  # every model's own initialization is its seed's
        resolved.init = "seed"
    if resolved.lr_depth_scaling == "none":  # the same run as no rule: one ledger key, one resume setting
        resolved.lr_depth_scaling = None
    from deeplab.data.datamodules import DATAMODULES, resolve_data_dir

    # where the data was, absolute: a resume or an evaluation from another folder finds it again
    resolved.data_dir = str(resolve_data_dir(resolved.data_dir).absolute())

    if resolved.augment is None and resolved.dataset in DATAMODULES:
        resolved.augment = DATAMODULES[resolved.dataset].augment_by_default  # CIFAR-10: crop + flip
    if isinstance(resolved.limit_train_batches, float) and resolved.limit_train_batches == 1.0:
        resolved.limit_train_batches = None  # "all of it"
    _validate(resolved)
    return resolved


def protocol_differences(config: FitConfig) -> dict[str, Any]:
    """The run's and budget's settings of a resolved ``config`` that differ from its model's seed protocol
    (what ``fit.py --model M --print-config`` shows), in FitConfig's order; the model, depth and seed
    (which every run names anyway) and the data folder are not differences. What HParams shows beside
    its core columns, and what a run folder's name says."""
    from deeplab.config import settings_of

    protocol = resolve_config(FitConfig(model=config.model, depth=config.depth, seed=config.seed,
                                        data_dir=config.data_dir))
    return {name: getattr(config, name) for name in settings_of("run", "budget")
            if name not in ("model", "depth", "seed") and getattr(config, name) != getattr(protocol, name)}


#: how a run folder's name writes a setting: a prefix before the value ("" = the value alone)
_FOLDER_PREFIXES = {"lr": "lr", "batch_size": "bs", "epochs": "ep", "momentum": "mom", "weight_decay": "wd",
                    "max_steps": "steps", "limit_train_batches": "tb", "limit_val_batches": "vb",
                    "clip_grad_norm": "clip", "clip_grad_value": "clipv", "val_split": "val",
                    "input_noise_std": "noise", "sigma_w2": "sw", "sigma_b2": "sb",
                    "loss": "loss-", "optimizer": "", "init": "", "dataset": "", "schedule": "", "precision": ""}
_FOLDER_NAME_LIMIT = 60


def _folder_part(name: str, value: Any) -> str:
    if isinstance(value, bool):
        return name if value else f"no_{name}"
    if isinstance(value, float):
        value = f"{value:g}"
    elif isinstance(value, (tuple, list)):
        value = ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value)
    elif isinstance(value, dict):
        value = ",".join(f"{k}={v}" for k, v in sorted(value.items()))
    prefix = _FOLDER_PREFIXES.get(name, name.replace("_", "") + "=")
    return f"{prefix}{value}".replace("/", "_").replace(" ", "")


def run_folder_name(config: FitConfig, differences: dict[str, Any] | None = None) -> str:
    """A run folder's readable name: the depth, the settings that differ from the seed protocol
    (``differences``, when the caller has them: :func:`protocol_differences`), the seed — ``s0`` for the
    protocol itself, ``lr0.02-s0``, ``k30-delta_orthogonal-lr0.005-s1``; past 60 characters the
    remaining differences are counted (``+2``): ``config.json`` holds them all."""
    from deeplab.models import model_spec

    parts = [f"k{config.depth}"] if model_spec(config.model).has_depth and config.depth is not None else []
    if differences is None:
        differences = protocol_differences(config)
    differences = [_folder_part(name, value) for name, value in differences.items()]
    seed = f"s{config.seed}"
    kept = []
    for index, part in enumerate(differences):
        left = len(differences) - index - 1
        if len("-".join(parts + kept + [part, seed])) + (len(f"-+{left}") if left else 0) > _FOLDER_NAME_LIMIT:
            kept.append(f"+{len(differences) - index}")
            break
        kept.append(part)
    return "-".join(parts + kept + [seed])


def _validate(config: FitConfig) -> None:
    """Every number and name of a run, checked before anything is read or written (one line each)."""
    from deeplab.checks import optimizer_setting_problem

    if not _is_int(config.epochs) or config.epochs < 1:
        raise DeeplabError(f"--epochs must be a positive integer, got {config.epochs}")
    if not _is_int(config.batch_size) or config.batch_size < 1:
        raise DeeplabError(f"--batch-size must be a positive integer, got {config.batch_size}")
    problem = optimizer_setting_problem(config.lr, config.momentum, config.weight_decay)
    if problem is not None:
        raise DeeplabError(f"--{problem[0].replace('_', '-')} {problem[1]}")
    if parse_lr_depth_scaling(config.lr_depth_scaling)[0] and config.depth is None:
        raise DeeplabError(f"--lr-depth-scaling scales η with depth, and {config.model} has a fixed depth; "
                           "drop it or pick a depth family (fit.py --list-models)")
    if config.lr_depth_scaling is not None:
        try:
            scaled = effective_lr(config)
        except (OverflowError, ZeroDivisionError):
            scaled = math.inf
        if not (math.isfinite(scaled) and scaled > 0):
            raise DeeplabError(f"--lr-depth-scaling {config.lr_depth_scaling} with --lr {config.lr} gives η = {scaled:g} "
                               f"at depth {config.depth}; give a smaller power or a reference depth nearer it")
    _check_init_options(config)
    for name in ("clip_grad_norm", "clip_grad_value"):
        value = getattr(config, name)
        if value is not None and not (math.isfinite(value) and value > 0):
            raise DeeplabError(f"{option_name(name)} must be a positive, finite number, got {value}")
    if not _is_int(config.grad_every) or config.grad_every < 1:
        raise DeeplabError(f"--grad-every must be ≥ 1, got {config.grad_every}")
    if not _is_int(config.grad_l1_epoch) or config.grad_l1_epoch < 1:
        raise DeeplabError(f"--grad-l1-epoch must be an epoch number ≥ 1, got {config.grad_l1_epoch}")
    for name in ("log_every_n_steps", "check_val_every_n_epoch"):
        if getattr(config, name) < 1:
            raise DeeplabError(f"{option_name(name)} must be a positive integer, got {getattr(config, name)}")
    if not _is_int(config.grad_histograms_every) or config.grad_histograms_every < 0:
        raise DeeplabError(f"--grad-histograms-every must be ≥ 0 (0: off), got {config.grad_histograms_every}")
    if not _is_int(config.signal_every) or config.signal_every < 0:
        raise DeeplabError(f"--signal-every must be ≥ 0 (0: off), got {config.signal_every}")
    for item in dataclasses.fields(FitConfig):
        choices = item.metadata["choices"]
        if choices is not None and getattr(config, item.name) not in choices:
            raise DeeplabError(f"{option_name(item.name)} {getattr(config, item.name)!r} is not one of "
                               f"{', '.join(choices)}")
    if not _is_int(config.num_nodes) or config.num_nodes < 1:
        raise DeeplabError(f"--num-nodes must be ≥ 1, got {config.num_nodes}")
    if config.input_noise_std is not None and not (math.isfinite(config.input_noise_std) and config.input_noise_std >= 0):
        raise DeeplabError(f"input noise std must be a finite number ≥ 0, got {config.input_noise_std}")
    if config.crop_padding is not None and (not _is_int(config.crop_padding) or config.crop_padding < 0):
        raise DeeplabError(f"--crop-padding must be an integer ≥ 0 (0: flip only), got {config.crop_padding}")
    side = _image_side(config.dataset)
    if config.crop_padding is not None and side is not None and config.crop_padding > side:
        raise DeeplabError(f"--crop-padding {config.crop_padding} pads more than the {side}-pixel images themselves; "
                           f"give at most {side} (the seeds use 4)")
    if config.augment_eval and not config.augment:
        raise DeeplabError("--augment-eval flips evaluation images like training ones; it needs --augment")
    _check_statistics(config)
    if not _is_int(config.seed) or not 0 <= config.seed <= MAX_SEED:
        raise DeeplabError(f"--seed must be an integer in [0, {MAX_SEED}], got {config.seed}")
    check_batch_limit("--limit-train-batches", config.limit_train_batches, zero_allowed=False)
    check_batch_limit("--limit-val-batches", config.limit_val_batches, zero_allowed=True)
    if not _is_int(config.max_steps) or not (config.max_steps == -1 or config.max_steps >= 1):
        hint = " (0 trains nothing)" if config.max_steps == 0 else ""
        raise DeeplabError(f"--max-steps must be a positive integer{hint}, got {config.max_steps}")
    if config.checkpoint_every_n_steps is not None and (
            not _is_int(config.checkpoint_every_n_steps) or config.checkpoint_every_n_steps < 1):
        raise DeeplabError(f"--checkpoint-every-n-steps must be a positive integer, got {config.checkpoint_every_n_steps}")
    minutes = config.checkpoint_every_minutes
    if not (isinstance(minutes, (int, float)) and math.isfinite(minutes) and minutes >= 0):
        raise DeeplabError(f"--checkpoint-every-minutes must be a number ≥ 0 (0: only at epoch ends), got {minutes}")
    if config.steps_per_call is not None and (not _is_int(config.steps_per_call) or config.steps_per_call < 1):
        raise DeeplabError(f"--steps-per-call must be a positive integer, got {config.steps_per_call}")
    if config.run_name is not None:
        name = config.run_name
        if len(name.encode()) > 200:
            raise DeeplabError(f"--run-name is {len(name.encode())} bytes long; a folder name must be shorter "
                               f"(at most 200 bytes here, leaving room for the run's own files)")
        if not name.strip() or name in (".", "..") or "/" in name or "\\" in name or name != name.strip():
            raise DeeplabError(f"--run-name {name!r} must be a plain folder name (no '/', no '..'); "
                               f"a run goes to --log-dir/<run name>")


def _check_init_options(config: FitConfig) -> None:
    """--sigma-w2/--sigma-b2 only with an init that takes them; --activation-checkpointing only where built in."""
    from deeplab.models.inits import check_variances
    from deeplab.models import model_spec

    spec = model_spec(config.model)
    if config.sigma_w2 is not None or config.sigma_b2 is not None:
        check_variances(config.init, config.sigma_w2, config.sigma_b2)
        if "sigma_w2" not in spec.keywords:
            raise DeeplabError(f"model {config.model!r} has no --sigma-w2/--sigma-b2 (they set the variances of "
                               "the seed 002 depth families' and cnn15's --init)")
    if config.activation_checkpointing:
        if "activation_checkpointing" not in spec.keywords:
            raise DeeplabError(f"--activation-checkpointing is built into the seed 002 depth families, not "
                               f"{config.model!r}; drop it")
        from deeplab.models.depth_family import FAMILY_CONFIGS, check_checkpointing

        check_checkpointing(config.model, FAMILY_CONFIGS[config.model].batch_norm)


def _image_side(dataset: str | None) -> int | None:
    from deeplab.models import DATASET_SHAPES

    return max(DATASET_SHAPES[dataset][1:]) if dataset in DATASET_SHAPES else None


#: the smallest --normalize-std: below it, images divided by it overflow float32 (1e-320 made every input inf)
MIN_NORMALIZE_STD = 1e-6


def _check_statistics(config: FitConfig) -> None:
    """--normalize-mean/--normalize-std: one finite number per channel of the data set (std > 0)."""
    from deeplab.checks import check_channel_statistics
    from deeplab.models import DATASET_SHAPES

    channels = DATASET_SHAPES[config.dataset][0] if config.dataset in DATASET_SHAPES else None
    for option, values, positive in (("--normalize-mean", config.normalize_mean, False),
                                     ("--normalize-std", config.normalize_std, True)):
        if values is not None:
            check_channel_statistics(option, values, channels, config.dataset, positive)
    if config.normalize_std is not None and min(config.normalize_std) < MIN_NORMALIZE_STD:
        raise DeeplabError(f"--normalize-std {min(config.normalize_std):g} would divide the images to infinity; "
                           f"give a std of at least {MIN_NORMALIZE_STD:g} (MNIST's is 0.3081)")

