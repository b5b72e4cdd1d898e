"""Trainability diagnosed at initialization, in seconds: the network's own signal propagation, correlation
map and depth scale, gradient growth and Jacobian spectrum, and a predicted trainable depth.

* :mod:`~deeplab.diagnosis.signals` — the measurements (forward hooks on the network's layers);
* :mod:`~deeplab.diagnosis.measure` — one network on one batch: every measurement, the prediction rule;
* :mod:`~deeplab.diagnosis.diagnose` — :func:`diagnose` (a registered model, built as ``fit`` builds it, on
  its data set's first images; ``scripts/diagnose.py``);
* :mod:`~deeplab.diagnosis.table` — seed 002's seven families predicted and scored against the measured
  table (``diagnose.py --table``);
* :mod:`~deeplab.diagnosis.figures` — the figures, shared with the ``SignalPropagation`` callback.
"""

from deeplab._lazy import lazy_names

_PUBLIC = {
    "diagnose": ".diagnose",
    "diagnose_model": ".measure",
    "predict_depth": ".measure",
    "diagnose_table": ".table",
}

__all__ = sorted(_PUBLIC)

__getattr__, __dir__ = lazy_names(__name__, _PUBLIC)
