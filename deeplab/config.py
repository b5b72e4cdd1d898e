"""``FitConfig``: every setting of one training run, and the options that set it.

``scripts/fit.py`` parses these options; ``scripts/search.py`` and
``scripts/experiment.py`` pass the same training options through. Unset
options (``None``) are filled from the model's registered spec (its seed
protocol), then from :data:`GENERAL_DEFAULTS`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
from dataclasses import dataclass, field
from typing import Any, Callable

from deeplab.errors import DeeplabError

# No torch at import time: the scripts build their --help from this module (deeplab.models, which
# imports torch, is imported where a config is resolved).

#: --compile's values (deeplab.training.engine resolves "auto")
COMPILE_CHOICES = ("off", "model", "step", "auto")
#: --compile auto compiles the step for runs planned this long (optimizer steps) ...
COMPILE_MIN_STEPS = 10_000
#: ... with batches up to this size (larger ones spend their time in convolutions already)
COMPILE_MAX_BATCH = 64
#: Lightning's short precision names
PRECISION_ALIASES = {"32": "32-true", "64": "64-true", "16": "16-mixed", "bf16": "bf16-mixed"}

__all__ = ["FitConfig", "ROLES", "KEPT_ON_RESUME", "CHANGEABLE_ON_RESUME", "setting", "settings_of", "key_settings",
           "legacy_values", "check_types", "option_name", "OPTIMIZER_CHOICES", "LOSS_CHOICES", "SCHEDULE_CHOICES", "LR_DEPTH_RULES", "BRANCH_SCALES", "LR_REFERENCE_DEPTH", "effective_lr", "parse_lr_depth_scaling", "MAX_SEED", "add_training_arguments", "check_batch_limit",
           "config_from_args", "int_or_fraction", "read_config_file", "parse_with_config",
           "parse_devices", "device_count", "read_settings_file"]


#: the roles a setting plays (each FitConfig field declares one, :func:`setting`):
#: ``run`` — what the run learns (model, data, optimizer, numerics): a resume must keep it; part of a probe's
#:   ledger key (but for the probe's coordinates, depth and seed);
#: ``engine`` — how the steps execute where that changes the rounding (compiled step, layout, kernels): a
#:   resume keeps it; not in the ledger key (a probe's verdict does not depend on it);
#: ``budget`` — how much it trains (epochs, step and batch limits): a resume may change it (applied and
#:   recorded); part of the ledger key;
#: ``hardware`` — where and how fast it trains (devices, chunks, activation recomputation): a resume may
#:   change it (applied and recorded); not in the key;
#: ``output`` — what is written and where (folders, logging, checkpoints' cadence, gradient records): changes
#:   freely, recorded nowhere but config.json;
#: ``invocation`` — how this command starts (``ckpt_path``): not a setting of the run, not rerun from a config.
ROLES = ("run", "engine", "budget", "hardware", "output", "invocation")
#: roles a resume must keep / may change
KEPT_ON_RESUME = ("run", "engine")
CHANGEABLE_ON_RESUME = ("budget", "hardware")
_NO_LEGACY = object()


def setting(default: Any = dataclasses.MISSING, *, role: str, legacy: Any = _NO_LEGACY, coordinate: bool = False,
            choices: tuple[str, ...] | None = None, factory: Callable[[], Any] | None = None) -> Any:
    """A FitConfig field and its classification.

    ``role``: one of :data:`ROLES`. ``legacy``: for a setting added after runs and ledgers were recorded
    without it, the value those runs had (a checkpoint or ledger line without the setting reads as this;
    a probe key leaves it out while it has this value, so committed ledgers keep matching). ``coordinate``:
    a probe's own coordinate (depth, seed), kept out of its settings key. ``choices``: the allowed names.
    """
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}")
    metadata = {"role": role, "legacy": legacy, "coordinate": coordinate, "choices": choices}
    if factory is not None:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


OPTIMIZER_CHOICES = ("momentum_sgd", "sgd", "adam")  # deeplab.training.optim binds each to its rule
LOSS_CHOICES = ("torch", "manual")
SCHEDULE_CHOICES = ("none", "cosine", "step")
#: residual branch multipliers of the residual depth families (deeplab.models.depth_family): "none" (the
#: seed's x + f(x)) | "sqrt_depth" (depth-µP, Yang, Yu, Zhu & Hayou 2023: x + f(x)/√L, L residual blocks)
BRANCH_SCALES = ("none", "sqrt_depth")


@dataclass
class FitConfig:
    """Every setting of one training run. Each field says what it is to the run (its role, :func:`setting`):
    the resume contract, a search probe's ledger key, ``--print-config`` and the type checks read that."""

    model: str = setting(role="run")  # registered model name
    dataset: str | None = setting(None, role="run")  # mnist | fashion_mnist | cifar10 (default: the model's)
    depth: int | None = setting(None, role="run", coordinate=True)  # for depth families (seed 002/004)
    init: str | None = setting(None, role="run")  # initialization scheme, for models that take one
    #: σ_w² / σ_b² of the orthogonal/gaussian inits (None: the activation's critical point / DEFAULT_SIGMA_B2)
    sigma_w2: float | None = setting(None, role="run", legacy=None)
    sigma_b2: float | None = setting(None, role="run", legacy=None)
    branch_scale: str = setting("none", role="run", legacy="none", choices=BRANCH_SCALES)  # residual branches × a/√L
    activation_checkpointing: bool = setting(False, role="hardware")  # recompute activations in backward
    epochs: int | None = setting(None, role="budget")
    batch_size: int | None = setting(None, role="run")  # per device
    lr: float | None = setting(None, role="run")
    #: η scaled with depth (issue 19): "none" | "inverse" | "inverse_sqrt" | "power:P", optionally "@K" (--lr is
    #: η at depth K, default LR_REFERENCE_DEPTH); the optimizer gets effective_lr(config)
    lr_depth_scaling: str | None = setting(None, role="run", legacy=None)
    momentum: float | None = setting(None, role="run")  # α of the SGD variants
    weight_decay: float | None = setting(None, role="run")
    optimizer: str | None = setting(None, role="run", choices=OPTIMIZER_CHOICES)
    loss: str | None = setting(None, role="run", choices=LOSS_CHOICES)  # F.cross_entropy | seed 000's
    schedule: str | None = setting(None, role="run", choices=SCHEDULE_CHOICES)
    #: gradient clipping before each update (deeplab.training.optim.gradient_stage): the total L2 norm to c,
    #: each entry to [−v, v]
    clip_grad_norm: float | None = setting(None, role="run", legacy=None)
    clip_grad_value: float | None = setting(None, role="run", legacy=None)
    #: hold-out fraction or count; "none": test each epoch; None: the seed's
    val_split: float | int | str | None = setting(None, role="run")
    augment: bool | None = setting(None, role="run")  # dataset's training augmentation (CIFAR-10: crop + flip)
    crop_padding: int | None = setting(None, role="run", legacy=None)  # None: the dataset's (4); 0: flip only
    #: seed 004's quirk: its test loader uses the training transform, so test images are flipped at random too
    augment_eval: bool = setting(False, role="run", legacy=False)
    normalize_mean: tuple[float, ...] | None = setting(None, role="run", legacy=None)  # None: the dataset's
    normalize_std: tuple[float, ...] | None = setting(None, role="run", legacy=None)  # seed 003: 0.247,...
    input_noise_std: float | None = setting(None, role="run")  # seed 003's Gaussian input noise
    #: seed 002's quirk: its train_epoch never calls model.train() and its test() calls model.eval(),
    #: so epochs 2+ train with batch norm's running statistics frozen (off: deeplab trains in train mode)
    eval_mode_after_first_epoch: bool = setting(False, role="run", legacy=False)
    seed: int = setting(0, role="run", coordinate=True)
    data_dir: str | None = setting(None, role="output")  # where the data is (moving it changes nothing)
    log_dir: str = setting("lightning_logs", role="output")
    run_name: str | None = setting(None, role="output")  # run folder <log_dir>/NAME (default <model>/<changes>-s<seed>)
    devices: str = setting("1", role="hardware")
    accelerator: str = setting("auto", role="hardware")
    strategy: str = setting("auto", role="hardware")
    num_nodes: int = setting(1, role="hardware")
    precision: str = setting("32-true", role="run")
    limit_train_batches: float | int | None = setting(None, role="budget")
    limit_val_batches: float | int | None = setting(None, role="budget")
    max_steps: int = setting(-1, role="budget")
    fast_dev_run: bool = setting(False, role="output")  # one batch each, nothing written
    ckpt_path: str | None = setting(None, role="invocation")  # resume from this checkpoint
    checkpoint_every_n_steps: int | None = setting(None, role="output")  # also every N optimizer steps
    checkpoint_every_minutes: float = setting(5.0, role="output")  # also after this much wall time (0: never)
    grad_norms: bool = setting(True, role="output")  # gradient-norm logging callback
    grad_every: int | None = setting(None, role="output")  # steps between records (None: every 320 images)
    grad_l1_epoch: int = setting(1, role="output")  # the epoch whose every step's total L1 is averaged
    grad_histograms_every: int = setting(0, role="output")  # steps between gradient histograms (0: off)
    signal_every: int = setting(0, role="output")  # steps between signal-propagation records (0: off)
    compile: str = setting("auto", role="engine", choices=COMPILE_CHOICES)  # deeplab.training.engine
    channels_last: bool | None = setting(None, role="engine")  # NHWC activations; None: auto
    fast_kernels: bool | None = setting(None, role="engine", legacy=False)  # cpu_kernels' ELU/tanh/BN; None: auto
    steps_per_call: int | None = setting(None, role="hardware")  # batches per training_step; None: auto
    progress_bar: bool = setting(True, role="output")
    log_every_n_steps: int = setting(50, role="output")  # optimizer steps between train/loss_step points
    #: learning_curves.png and grad_heatmap.png from the run's events (searches and recipes draw their own)
    run_figures: bool = setting(True, role="output")
    #: evaluate every N epochs (the last epoch always: a run's outcome is measured)
    check_val_every_n_epoch: int = setting(1, role="output")
    model_kwargs: dict[str, Any] = setting(role="run", factory=dict)  # extra factory keywords (e.g. activation)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def settings_of(*roles: str) -> tuple[str, ...]:
    """The FitConfig fields of these roles, in declaration order."""
    return tuple(f.name for f in dataclasses.fields(FitConfig) if f.metadata["role"] in roles)


def key_settings() -> tuple[str, ...]:
    """What a search probe's ledger key holds besides its depth and seed: what it learns and how long."""
    return tuple(f.name for f in dataclasses.fields(FitConfig)
                 if f.metadata["role"] in ("run", "budget") and not f.metadata["coordinate"])


def legacy_values() -> dict[str, Any]:
    """``{setting: the value runs and ledgers recorded before it existed had}``."""
    return {f.name: f.metadata["legacy"] for f in dataclasses.fields(FitConfig) if f.metadata["legacy"] is not _NO_LEGACY}


#: --lr-depth-scaling rules: the power p of η(k) = η · (K / k)^p
LR_DEPTH_RULES: dict[str, float] = {"none": 0.0, "inverse_sqrt": 0.5, "inverse": 1.0,
                                    # depth-µP's rule for SGD (Yang et al. 2023): with branches × 1/√L
                                    # (--branch-scale sqrt_depth) the best η does not depend on depth
                                    "depth_mup": 0.0}
#: the depth K at which --lr is the rate, unless the rule says "@K"
LR_REFERENCE_DEPTH = 30


def parse_lr_depth_scaling(text: str | None) -> tuple[float, int]:
    """``"inverse_sqrt@30"`` → (0.5, 30), ``"power:1.4"`` → (1.4, 30): the rule's power p and reference
    depth K of η(k) = η · (K / k)^p. DeeplabError if malformed."""
    rule, at, reference = (text or "none").partition("@")
    if rule.startswith("power:"):
        try:
            power = float(rule[len("power:"):])
        except ValueError:
            power = math.nan
        if not (math.isfinite(power) and power >= 0):
            raise DeeplabError(f"--lr-depth-scaling {text!r}: power:P needs a number P ≥ 0, e.g. power:1.4")
    elif rule in LR_DEPTH_RULES:
        power = LR_DEPTH_RULES[rule]
    else:
        raise DeeplabError(f"--lr-depth-scaling {text!r}: give one of {', '.join(LR_DEPTH_RULES)} or power:P, "
                           f"optionally with @K for the depth at which --lr holds (default @{LR_REFERENCE_DEPTH})")
    if not at:
        return power, LR_REFERENCE_DEPTH
    if not reference.isdigit() or int(reference) < 1:
        raise DeeplabError(f"--lr-depth-scaling {text!r}: the reference depth after @ must be a positive integer")
    return power, int(reference)


def effective_lr(config: FitConfig) -> float:
    """The optimizer's η: ``config.lr`` scaled by ``--lr-depth-scaling`` to ``config.depth``.

    Issue 19's measurement (``scripts/experiment.py lr_depth_scaling``; MNIST, 200 batches of 64, SGD
    momentum 0.9, seed 0; the largest η of a 1-2-5 grid, bisected twice, that reaches < 20 % test error):

    ===========================  =======  =======  ========  ==============
    network                      k = 30   k = 99   k = 300   η_max ≈ c·k^−p
    ===========================  =======  =======  ========  ==============
    cnn_tanh + delta_orthogonal  0.071    0.014    0.0025    10.3 · k^−1.45
    resnet_elu_nobn + skipinit   0.084    0.05     0.04      0.24 · k^−0.32
    ===========================  =======  =======  ========  ==============

    So a rate tuned at a shallow depth collapses (tanh) or diverges (SkipInit) at a deep one unless it
    is scaled down: ``power:1.45@300`` with ``--lr 0.002`` trained delta-orthogonal tanh at k = 999
    (12.13 %), ``inverse_sqrt@300`` with ``--lr 0.02`` the SkipInit ResNet (4.17 %).
    """
    power, reference = parse_lr_depth_scaling(config.lr_depth_scaling)
    if power == 0.0 or config.depth is None:
        return float(config.lr)
    return float(config.lr) * (reference / config.depth) ** power


#: a gradient-norm record every this many training images, unless --grad-every says otherwise
GRAD_RECORD_IMAGES = 320


def grad_every_for(batch_size: int) -> int:
    """Steps between gradient-norm records: 10 at batch 32 (seed 000's analyses), 1 at batch ≥ 320,
    320 at batch 1 — where a record every 10 steps cost more than the step (~6,000 an epoch)."""
    return max(1, round(GRAD_RECORD_IMAGES / batch_size))


#: seeds are 32-bit (torch, NumPy and Python's generators are all seeded from one)
MAX_SEED = 2**32 - 1


def float_list(text: str) -> tuple[float, ...]:
    """argparse type: ``0.247,0.243,0.261`` → (0.247, 0.243, 0.261)."""
    try:
        values = tuple(float(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers like 0.5 or 0.247,0.243,0.261, "
                                         f"got {text!r}") from None
    return values


def option_name(field_name: str) -> str:
    """The command-line option of a FitConfig field: ``batch_size`` → ``--batch-size``."""
    return "--" + field_name.replace("_", "-")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _matches(kind: str, value: Any) -> bool:
    if kind == "None":
        return value is None
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "int":
        return _is_int(value)
    if kind == "float":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind == "str":
        return isinstance(value, str)
    if kind.startswith("tuple["):
        return isinstance(value, (tuple, list)) and all(_matches("float", v) for v in value)
    if kind.startswith("dict["):
        return isinstance(value, dict) and all(isinstance(k, str) for k in value)
    raise TypeError(f"FitConfig: no check for the annotation {kind!r}")  # pragma: no cover - a new field's type


_KIND_WORDS = {"None": "none", "bool": "true/false", "int": "an integer", "float": "a number", "str": "a string"}


def check_types(config: FitConfig) -> None:
    """Each setting has a value of its declared type (the field annotations): one line naming the option,
    whatever the value came from (the command line, a --config file, the Python API)."""
    for item in dataclasses.fields(FitConfig):
        value = getattr(config, item.name)
        kinds = [part.strip() for part in str(item.type).split("|")]
        if any(_matches(kind, value) for kind in kinds):
            continue
        words = [_KIND_WORDS.get(kind, "a list of numbers" if kind.startswith("tuple[") else "a mapping of names")
                 for kind in kinds]
        raise DeeplabError(f"{option_name(item.name)} (setting {item.name}) must be {' or '.join(words)}, "
                           f"got {value!r}")


def check_batch_limit(option: str, value: Any, zero_allowed: bool) -> None:
    """A limit is a count ≥ 1 (or 0 for evaluation: off) or a fraction in (0, 1]."""
    if value is None:
        return
    if _is_int(value) and (value >= 1 or (zero_allowed and value == 0)):
        return
    if isinstance(value, float) and math.isfinite(value) and 0.0 < value <= 1.0:
        return
    if value == 0:
        raise DeeplabError(f"{option} 0 trains nothing; give a count of batches ≥ 1 or a fraction in (0, 1]")
    off = " (0: no evaluation)" if zero_allowed else ""
    raise DeeplabError(f"{option} {value}: give a count of batches ≥ 1{off} or a fraction in (0, 1]")


def int_or_fraction(text: str) -> float | int:
    """'0.1' → 0.1 (a fraction), '5000' → 5000 (a count), '1.0' → 1.0 (all of it), 'none' → no hold-out.

    Range checks come later (``_validate``), so a bad value gets the option's own message.
    """
    cleaned = text.strip().lower()
    if cleaned == "none":
        return "none"  # type: ignore[return-value]
    try:
        if cleaned.lstrip("+-").isdigit():
            return int(cleaned)
        value = float(cleaned)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a fraction or a count, got {text!r}") from None
    return int(value) if value.is_integer() and value > 1 else value


def add_training_arguments(parser: argparse.ArgumentParser, *, include_depth: bool = True) -> None:
    """The training options shared by fit.py, search.py and experiment.py."""
    group = parser.add_argument_group(
        "training", "Unset options come from the model's seed protocol (its notebook's epochs, batch size,\n"
                    "optimizer, lr, data options); `fit.py --model NAME --print-config` prints every\n"
                    "value a run would use.")
    group.add_argument("--dataset", metavar="{mnist,fashion_mnist,cifar10}", help="mnist | fashion_mnist | cifar10 (default: the model's seed dataset)")
    if include_depth:
        group.add_argument("--depth", type=int, help="depth k of a depth family (seed 002: a multiple of 3)")
    group.add_argument("--init", metavar="{seed,xavier,kaiming,orthogonal,delta_orthogonal,gaussian,fixup,skipinit,tat}",
                       help="initialization of seed 002 families and cnn15 models: seed (default), "
                            "xavier, kaiming, orthogonal, delta_orthogonal, gaussian (N(0, σ_w²/fan_in)); "
                            "residual families also fixup, skipinit; vanilla families (no skips, no batch norm) "
                            "also tat (Tailored Activation Transformation; needs pip install -e \".[frontier]\")")
    group.add_argument("--branch-scale", choices=BRANCH_SCALES, default="none",
                       help="residual families: multiply each residual branch by 1/√L, L the number of residual "
                            "blocks (sqrt_depth: depth-µP, Yang et al. 2023; pair with --lr-depth-scaling depth_mup)")
    group.add_argument("--sigma-w2", type=float, metavar="W",
                       help="σ_w² of --init orthogonal, delta_orthogonal and gaussian: weight variance × fan-in "
                            "(default: the activation's critical point, tanh 1.086 at σ_b² 1e-4, 1.761 at 0.05)")
    group.add_argument("--sigma-b2", type=float, metavar="B",
                       help="σ_b² of those inits: bias variance (default 1e-4 for tanh/elu, 0 for relu)")
    group.add_argument("--epochs", type=int, help="training epochs")
    group.add_argument("--batch-size", type=int, help="training batch size per device")
    group.add_argument("--lr", type=float, help="learning rate η")
    group.add_argument("--lr-depth-scaling", metavar="{none,inverse,inverse_sqrt,power:P}[@K]",
                       help="scale η with the depth k of a depth family: η·(K/k)^P — inverse P = 1, "
                            f"inverse_sqrt P = 0.5 — --lr being the rate at depth K (default {LR_REFERENCE_DEPTH}); "
                            "measured P: docs/results.md's η-scaling table (default none)")
    group.add_argument("--momentum", type=float, help="momentum α in [0, 1) for momentum_sgd/sgd")
    group.add_argument("--weight-decay", type=float, help="L2 weight decay")
    group.add_argument("--optimizer", metavar="{" + ",".join(OPTIMIZER_CHOICES) + "}",
                       help="momentum_sgd (seed 000's hand-written) | sgd (torch.optim.SGD) | adam (torch.optim.Adam)")
    group.add_argument("--loss", metavar="{" + ",".join(LOSS_CHOICES) + "}",
                       help="torch (F.cross_entropy) | manual (seed 000's hand-written)")
    group.add_argument("--schedule", metavar="{" + ",".join(SCHEDULE_CHOICES) + "}",
                       help="none | cosine (seed 001) | step (seed 004: ×0.1 every 5 epochs)")
    group.add_argument("--clip-grad-norm", type=float, metavar="C",
                       help="before each update, scale the gradients so their total L2 norm is at most C "
                            "(torch.nn.utils.clip_grad_norm_'s rule); norms are recorded before the clip (default: off)")
    group.add_argument("--clip-grad-value", type=float, metavar="V",
                       help="before each update, clamp every gradient entry to [−V, V] (default: off)")
    group.add_argument("--val-split", type=int_or_fraction,
                       help="hold out this fraction (0.1) or count (5000) of the training set for "
                            "per-epoch validation; the test split is then evaluated once at the end; "
                            "'none' evaluates the test split every epoch (default: the seed's choice)")
    group.add_argument("--augment", dest="augment", action="store_true", default=None,
                       help="turn training augmentation on (CIFAR-10's crop + flip is on by default)")
    group.add_argument("--no-augment", dest="augment", action="store_false", help="turn it off")
    group.add_argument("--crop-padding", type=int,
                       help="zero padding of the augmentation's random crop (default 4, seed 001; "
                            "0: horizontal flip only, as seed 004's models default to)")
    group.add_argument("--augment-eval", action="store_true", default=False,
                       help="seed 004's quirk: flip evaluation images at random too (its test loader shares "
                            "the training transform); off by default")
    group.add_argument("--normalize-mean", type=float_list, metavar="M[,M,M]",
                       help="per-channel normalization mean (default: the data set's standard one; "
                            "MNIST 0.1307, Fashion-MNIST 0.5, CIFAR-10 0.4914,0.4822,0.4465)")
    group.add_argument("--normalize-std", type=float_list, metavar="S[,S,S]",
                       help="per-channel normalization std (default: the data set's; CIFAR-10 "
                            "0.2023,0.1994,0.2010 as seed 001, seed 003's models 0.247,0.243,0.261)")
    group.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    group.add_argument("--activation-checkpointing", action="store_true", default=False,
                       help="depth families: recompute activations in the backward pass (√ of each stage's "
                            "layers stored) — memory for ~1 more forward pass of time; same gradients")
    group.add_argument("--eval-mode-after-first-epoch", action="store_true", default=False,
                       help="seed 002's quirk: train epochs 2+ in eval mode (batch norm's running statistics "
                            "frozen), as its train_epoch never calls model.train() after test() called "
                            "model.eval(); off by default (deeplab trains in train mode)")
    group.add_argument("--data-dir", help="dataset folder (default $DEEPLAB_DATA_DIR or ./data)")
    group.add_argument("--limit-train-batches", type=int_or_fraction, help="train on this many batches (or fraction) per epoch")
    group.add_argument("--limit-val-batches", type=int_or_fraction, help="evaluate this many batches (or fraction)")
    group.add_argument("--max-steps", type=int, default=-1, help="stop after this many optimizer steps (default: no "
                                                                   "limit, the epochs decide)")
    hardware = parser.add_argument_group("hardware")
    hardware.add_argument("--devices", default="1", help="devices per node: a count, a list '0,1' or 'auto' (default 1)")
    hardware.add_argument("--accelerator", default="auto", help="cpu | gpu | auto (default auto)")
    hardware.add_argument("--strategy", default="auto", help="auto | ddp | ddp_spawn ... (Lightning strategies)")
    hardware.add_argument("--num-nodes", type=int, default=1, help="machines (under SLURM or torchrun)")
    hardware.add_argument("--precision", default="32-true", help="32-true | bf16-mixed | 16-mixed")
    hardware.add_argument("--compile", nargs="?", const="model", default="auto", choices=COMPILE_CHOICES,
                          help="step: forward, backward and update as one compiled graph (fastest for small "
                               "batches); model: torch.compile the model only; off: eager; auto (default): step "
                               f"for runs of ≥ {COMPILE_MIN_STEPS:,} steps at batch ≤ {COMPILE_MAX_BATCH}, else off "
                               "(a bare --compile means model)")
    hardware.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None,
                          help="NHWC activations (default: on for convolutional models at batch ≥ 8 on the CPU, "
                               "where oneDNN runs them 1.4-2.3× faster)")
    hardware.add_argument("--fast-kernels", action=argparse.BooleanOptionalAction, default=None,
                          help="ELU and tanh as fused Inductor loops and a channels-last batch norm for ≤ 8 "
                               "channels in place of PyTorch's slow CPU kernels, equal to a few float ulps "
                               "(default: on for eager CPU runs of ≥ 100,000 images; cnn_elu_bn k=30: 1.32× a step)")
    hardware.add_argument("--steps-per-call", type=int,
                          help="batches per training_step: the module runs them as consecutive updates, Lightning's "
                               "per-batch work runs once (default: 256 / batch size)")


def config_from_args(args: argparse.Namespace, **overrides: Any) -> FitConfig:
    """A :class:`FitConfig` from parsed arguments (names match the fields)."""
    names = {f.name for f in dataclasses.fields(FitConfig)}
    values = {name: getattr(args, name) for name in names if hasattr(args, name)}
    values.update(overrides)
    return FitConfig(**values)


def config_to_json(config: FitConfig) -> str:
    return json.dumps(config.to_dict(), indent=2, sort_keys=True)




def read_settings_file(path: str, names: set[str], what: str, printer: str) -> dict[str, Any]:
    """The settings a ``--config`` file (JSON, or YAML for ``.yaml``/``.yml``) holds, each one of ``names``;
    DeeplabError (one line) for a missing file, bad syntax, a non-mapping or an unknown name. ``what``
    says what the file is ("a run's config.json"), ``printer`` the command that prints the names."""
    from pathlib import Path

    file = Path(path)
    if not file.is_file():
        exists = file.exists()
        state = ("a folder" if file.is_dir() else "not a regular file") if exists else "no such file"
        raise DeeplabError(f"--config {file}: {state}; give {what} (or a YAML file of settings)")
    try:
        text = file.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise DeeplabError(f"--config {file} is not UTF-8 text (byte {error.start}); give {what} "
                           f"(or a YAML file of settings)") from None
    except OSError as error:
        raise DeeplabError(f"--config {file} cannot be read ({error.strerror}); give {what}") from None
    try:
        if file.suffix in (".yaml", ".yml"):
            import yaml  # Lightning's dependency: always installed with deeplab

            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except Exception as error:  # noqa: BLE001  (json and yaml raise their own error types)
        first = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise DeeplabError(f"--config {file} is not valid {'YAML' if file.suffix in ('.yaml', '.yml') else 'JSON'} "
                           f"({first})") from None
    if not isinstance(data, dict):
        raise DeeplabError(f"--config {file} must hold settings by name (a JSON object / YAML mapping)")
    unknown = sorted(set(data) - names)
    if unknown:
        raise DeeplabError(f"--config {file}: unknown setting(s) {', '.join(unknown)}; settings are named as "
                           f"`{printer}` prints them")
    return data


def read_config_file(path: str) -> dict[str, Any]:
    """The FitConfig fields a ``--config`` file sets: a run's ``config.json``, or YAML (``.yaml``/``.yml``)."""
    data = read_settings_file(path, {f.name for f in dataclasses.fields(FitConfig)}, "a run's config.json",
                              "fit.py --print-config")
    # a rerun is a new run, not a resume: how the saved run was started (its --ckpt-path) is not taken over
    values = {name: value for name, value in data.items() if name not in settings_of("invocation")}
    if "val_split" in values and values["val_split"] is None:
        values["val_split"] = "none"  # a saved (resolved) config's None is "no hold-out", not "the seed's choice"
    return values


def parse_with_config(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """``parser.parse_args(argv)``, where the settings of ``--config FILE`` are the defaults and the command
    line overrides them (``fit.py --config <run>/config.json`` reruns that run; ``--lr 0.1`` beside it
    changes one setting). Settings without an option (``model_kwargs``) pass through as attributes."""
    import sys

    first = argparse.ArgumentParser(add_help=False)
    first.add_argument("--config")
    known, _ = first.parse_known_args(sys.argv[1:] if argv is None else argv)
    if known.config:
        parser.set_defaults(**read_config_file(known.config))
    return parser.parse_args(argv)


def parse_devices(text: str | int) -> int | list[int] | str:
    """``--devices`` as Lightning takes it, parsed in this one place: ``"auto"`` (also ``-1``), a count
    ≥ 1, or a list of distinct GPU indices (``"0,1"``). DeeplabError (one line) for anything else;
    whether the machine has them is :mod:`deeplab.training.preflight`'s check."""
    text = str(text).strip()
    if text in ("auto", "-1"):
        return "auto"
    if "," in text:
        try:
            indices = [int(part) for part in text.split(",") if part.strip()]
        except ValueError:
            raise DeeplabError(f"--devices {text!r}: give a count, a list of GPU indices like 0,1, or auto") from None
        if len(set(indices)) != len(indices):
            raise DeeplabError(f"--devices {text}: a device is listed twice; list each GPU index once")
        if not indices or min(indices) < 0:
            raise DeeplabError(f"--devices {text}: GPU indices are 0, 1, …")
        return indices
    try:
        count = int(text)
    except ValueError:
        raise DeeplabError(f"--devices {text!r}: give a count, a list like 0,1, or auto") from None
    if count < 1:
        raise DeeplabError(f"--devices must be ≥ 1, got {text}")
    return count


def device_count(devices: int | list[int] | str) -> int | None:
    """How many devices a parsed ``--devices`` asks for (None for ``auto``: the machine decides)."""
    if devices == "auto":
        return None
    return len(devices) if isinstance(devices, list) else int(devices)
