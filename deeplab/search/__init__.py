"""The trainability (maximum depth) search of seed 002, "From Shallow to Deep Neural Networks".

Seed 002 asks for "the largest value for k such that the network achieves
less than 20% error (either train or test) in 3 epochs" and finds it by
bisection over k = 3, 6, …, upper. This package does the same, honestly and
resumably:

* :mod:`~deeplab.search.bisection` — the search itself, a pure function of a
  predicate ``is_trainable(k)`` (and where the seed's search goes wrong);
* :mod:`~deeplab.search.ledger` — the JSON Lines ledger that makes a search
  resumable (``kill -9`` loses one probe);
* :mod:`~deeplab.search.runner` — probes as ``fit`` runs, on 1 or N devices,
  several seeds, ``search.json``;
* :mod:`~deeplab.search.report` — the plot, ``report.md`` and the table;
* :mod:`~deeplab.search.table` — all seven seed 002 families in one table;
* :mod:`~deeplab.search.callback` — :class:`TrainabilitySearch`, the same search
  as a Lightning callback (run at ``on_fit_start``, then the chosen depth trains).

Each probe is judged by :class:`~deeplab.callbacks.trainability.TrainabilityJudge`
(a training callback like the others, so it lives in :mod:`deeplab.callbacks`),
which records its per-epoch errors and divergence; the verdict rule
(``judge_errors``) and the ``--metric``/``--threshold`` checks live beside it.
``scripts/search.py`` is the command line.
"""

from deeplab._lazy import lazy_names
from deeplab.search.metrics import METRICS

#: public name → the submodule that defines it, imported on first use (``search.py --help`` stays fast)
_PUBLIC = {
    "BisectionResult": ".bisection", "BoundarySearch": ".bisection", "PriorStartSearch": ".bisection",
    "bisect_trainability": ".bisection",
    "candidate_depths": ".bisection", "non_monotone_pairs": ".bisection",
    "LEDGER_FILE": ".ledger", "ProbeLedger": ".ledger", "probe_key": ".ledger", "probe_settings": ".ledger",
    "ProbeRequest": ".runner", "SearchPlan": ".runner", "prepare_search": ".runner", "run_probe": ".runner",
    "run_search": ".runner",
    "TrainabilitySearch": ".callback",
}

__all__ = ["METRICS", *_PUBLIC]

__getattr__, __dir__ = lazy_names(__name__, _PUBLIC)
