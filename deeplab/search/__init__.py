"""The trainability (maximum depth) search of seed 002, "From Shallow to Deep Neural Networks".

Seed 002 asks for "the largest value for k such that the network achieves
less than 20% error (either train or test) in 3 epochs" and finds it by
bisection over k = 3, 6, …, upper. This package does the same, honestly and
resumably:

* :mod:`~deeplab.search.bisection` — the search itself, a pure function of a
  predicate ``is_trainable(k)`` (and where the seed's search goes wrong);
* :mod:`~deeplab.search.judge` — the :class:`TrainabilityJudge` callback that
  records each probe's per-epoch errors and divergence, and the verdict rule;
* :mod:`~deeplab.search.ledger` — the JSON Lines ledger that makes a search
  resumable (``kill -9`` loses one probe);
* :mod:`~deeplab.search.runner` — probes as ``fit`` runs, on 1 or N devices,
  several seeds, ``search.json``;
* :mod:`~deeplab.search.report` — the plot, ``report.md`` and the table;
* :mod:`~deeplab.search.table` — all seven seed 002 families in one table;
* :mod:`~deeplab.search.callback` — :class:`TrainabilitySearch`, the same search
  as a Lightning callback (run at ``on_fit_start``, then the chosen depth trains).

``scripts/search.py`` is the command line.
"""

from deeplab.search.bisection import (
    BisectionResult,
    BoundarySearch,
    bisect_trainability,
    candidate_depths,
    non_monotone_pairs,
)
from deeplab.search.judge import METRICS, TrainabilityJudge, judge_errors
from deeplab.search.ledger import LEDGER_FILE, ProbeLedger, probe_key, probe_settings
from deeplab.search.runner import ProbeRequest, SearchPlan, prepare_search, run_probe, run_search
from deeplab.search.callback import TrainabilitySearch

__all__ = [
    "BisectionResult",
    "BoundarySearch",
    "bisect_trainability",
    "candidate_depths",
    "non_monotone_pairs",
    "METRICS",
    "TrainabilityJudge",
    "judge_errors",
    "LEDGER_FILE",
    "ProbeLedger",
    "probe_key",
    "probe_settings",
    "ProbeRequest",
    "SearchPlan",
    "prepare_search",
    "run_probe",
    "run_search",
    "TrainabilitySearch",
]
