"""``deeplab.diagnose``: a network's trainability at initialization, in seconds, from its own signals.

One call builds the model exactly as ``fit`` would (same settings, same seed, so the same weights),
takes the first ``examples`` training images of its data set, and measures (:mod:`.signals`): the
signal propagation and correlation map over depth, one backward pass's gradient growth, and the
Jacobian spectrum of the last stage. It writes ``diagnosis.json`` and four figures into ``out``; the prediction
rule is :mod:`.measure`'s.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

from deeplab.config import FitConfig
from deeplab.diagnosis.measure import diagnose_model
from deeplab.errors import DeeplabError

__all__ = ["diagnose", "default_depth", "write_diagnosis", "DEFAULT_EXAMPLES", "DIAGNOSIS_FILE"]

#: examples in the measured batch (pairs for the correlation: 64·63/2)
DEFAULT_EXAMPLES = 64
DIAGNOSIS_FILE = "diagnosis.json"


def default_depth(model: str, depth: int | None) -> int | None:
    """``depth``, or for a seed 002 family its search upper bound (the deepest the seed tried)."""
    from deeplab.models.depth_family import FAMILY_CONFIGS

    if depth is None and model in FAMILY_CONFIGS:
        return FAMILY_CONFIGS[model].search_upper
    return depth


def _config(model: str | FitConfig, depth: int | None, init: str | None, settings: dict[str, Any]) -> FitConfig:
    from deeplab.training.resolve import resolve_config

    if isinstance(model, FitConfig):
        if depth is not None or init is not None or settings:
            raise DeeplabError("diagnose(config): give the depth, init and settings inside the FitConfig")
        config = model
    else:
        if not isinstance(model, str):
            raise DeeplabError(f"diagnose: model must be a registered name or a FitConfig, got {model!r}")
        try:
            config = FitConfig(model=model, depth=default_depth(model, depth), init=init, **settings)
        except TypeError as error:
            raise DeeplabError(f"diagnose: {error}") from None
    return resolve_config(config)


def diagnose(model: str | FitConfig = "cnn_tanh", depth: int | None = None, *, init: str | None = None,
             out: str | Path | None = None, examples: int = DEFAULT_EXAMPLES, jacobian: bool = True,
             figures: bool = True, quiet: bool = True, **settings: Any) -> dict[str, Any]:
    """Diagnose ``model`` at ``depth`` (seed 002 families: default their search upper bound) and ``init``
    at initialization, on the first ``examples`` training images of its data set; ``settings`` are
    :class:`~deeplab.config.FitConfig` fields (``data_dir``, ``dataset``, ``seed``, ``sigma_w2``, …; or pass a
    whole FitConfig as ``model``). Writes ``diagnosis.json`` and the figures into ``out`` when given and
    returns the record (``prediction``, ``correlation``, ``gradient_growth``, ``jacobian``, ``layers``,
    ``mean_field``, …)."""
    from deeplab.models import count_parameters, create_model
    from deeplab.search.prediction import predict_for_model
    from deeplab.models.depth_family import FAMILY_CONFIGS
    from deeplab.training.fit import build_model_kwargs, datamodule_for

    if not isinstance(examples, int) or isinstance(examples, bool) or examples < 2:
        raise DeeplabError(f"diagnose: examples must be an integer ≥ 2 (pairs of inputs), got {examples!r}")
    started = time.perf_counter()
    config = _config(model, depth, init, settings)
    kwargs = build_model_kwargs(config)
    torch.manual_seed(config.seed)  # fit seeds every generator with the run's seed before building its model
    network = create_model(config.model, **kwargs)
    datamodule = datamodule_for(config)
    images, labels = datamodule.split("train")
    if len(images) < examples:
        raise DeeplabError(f"diagnose: the training split has {len(images)} images; give --examples ≤ {len(images)}")
    x = datamodule.device_transform(images[:examples].clone(), training=False)
    record = dict(model=config.model, depth=kwargs.get("depth"), init=config.init or "seed",
                  sigma_w2=config.sigma_w2, sigma_b2=config.sigma_b2, dataset=config.dataset, seed=config.seed,
                  examples=examples, parameters=count_parameters(network))
    record.update(diagnose_model(network, x, labels[:examples], jacobian=jacobian))
    if config.model in FAMILY_CONFIGS:
        record["mean_field"] = _mean_field(predict_for_model(config.model, config.init or "seed", kwargs.get("depth"),
                                                             config.sigma_w2, config.sigma_b2))
        record["seed_reported_max"] = FAMILY_CONFIGS[config.model].seed_max_depth
        record["search_upper"] = FAMILY_CONFIGS[config.model].search_upper
    record["seconds"] = round(time.perf_counter() - started, 3)
    if out is not None:
        write_diagnosis(record, Path(out), figures=figures)
    return record


def _mean_field(prediction: dict[str, Any]) -> dict[str, Any]:
    keep = ("q_star", "chi1", "depth_scale", "predicted_max_depth", "sigma_w2", "sigma_b2", "reason")
    return {key: prediction.get(key) for key in keep}


def write_diagnosis(record: dict[str, Any], out: Path, *, figures: bool = True) -> Path:
    """``out/diagnosis.json`` (infinities written as the string ``"inf"``) and, with ``figures``, the four
    figures of :mod:`.figures`."""
    from deeplab.io import atomic_write_json, finite_or_text

    out.mkdir(parents=True, exist_ok=True)
    path = out / DIAGNOSIS_FILE
    atomic_write_json(path, finite_or_text(record))
    if figures:
        from deeplab.diagnosis.figures import draw_all

        draw_all(record, out)
    return path
