"""The trainability (maximum depth) search of seed 002, "From Shallow to Deep Neural Networks".

Seed 002 asks for "the largest value for k such that the network achieves
less than 20% error (either train or test) in 3 epochs" and finds it by
bisection over k = 3, 6, …, upper. This package does the same, honestly and
resumably:

* :mod:`~deeplab.search.driver` — the probe loop any strategy plugs into (:class:`Strategy`,
  :func:`drive`): ledger first, then this process, ``--parallel N`` workers or Ray;
* :mod:`~deeplab.search.bisection` — the depth strategies, pure state machines: the seed's bisection
  (:class:`BoundarySearch`, and where the seed's search goes wrong) and the walk from a prior depth
  (:class:`PriorStartSearch`);
* :mod:`~deeplab.search.lr_sweep` — the largest trainable η at one depth, a strategy over η;
* :mod:`~deeplab.search.ledger` — the JSON Lines ledger that makes a search
  resumable (``kill -9`` loses one probe) and every probe shared between searches;
* :mod:`~deeplab.search.runner` — probes as ``fit`` runs, several seeds, ``search.json``;
* :mod:`~deeplab.search.report` — the plot, ``report.md`` and the table;
* :mod:`~deeplab.search.table` — all seven seed 002 families in one table;
* :mod:`~deeplab.search.callback` — :class:`TrainabilitySearch`, the same search
  as a Lightning callback (run at ``on_fit_start``, then the chosen depth trains).

Each probe is judged by the search's :class:`~deeplab.callbacks.verdict.ThresholdJudge` (the rule
``judge_errors`` and the ``--metric``/``--threshold`` checks live there, without torch), and its own
:class:`~deeplab.callbacks.trainability.TrainabilityJudge` (a training callback) records its per-epoch
errors and divergence with the same threshold and metric. ``scripts/search.py`` is the command line.
"""

from deeplab._lazy import lazy_names
from deeplab.callbacks.verdict import METRICS

#: public name → the submodule that defines it, imported on first use (``search.py --help`` stays fast)
_PUBLIC = {
    "Strategy": ".driver", "drive": ".driver", "LearningRateSweep": ".lr_sweep",
    "BisectionResult": ".bisection", "BoundarySearch": ".bisection", "PriorStartSearch": ".bisection",
    "bisect_trainability": ".bisection",
    "candidate_depths": ".bisection", "non_monotone_pairs": ".bisection",
    "LEDGER_FILE": ".ledger", "ProbeLedger": ".ledger", "probe_key": ".ledger", "probe_settings": ".ledger",
    "ProbeRequest": ".probes", "SearchPlan": ".runner", "prepare_search": ".runner", "run_probe": ".probes",
    "run_search": ".runner",
    "TrainabilitySearch": ".callback",
}

__all__ = ["METRICS", *_PUBLIC]

__getattr__, __dir__ = lazy_names(__name__, _PUBLIC)
