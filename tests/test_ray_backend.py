"""``--backend ray`` against ``--backend local``: a synthetic predicate and a tiny real search on a local
Ray instance (``ray.init(num_cpus=2)``) give the same boundary and the same ledger."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from deeplab.config import FitConfig
from deeplab.search import SearchPlan, run_search
from deeplab.search.ledger import LEDGER_FILE, ProbeLedger

ray = pytest.importorskip("ray", reason="the Ray backend's tests need ray (pip install -e '.[dev]' installs it)")

BOUNDARY = {0: 15, 1: 9}  # the synthetic predicate: trainable up to these depths, per seed


def synthetic_probe(request: Any) -> dict[str, Any]:
    """A probe record without training: error 5 % up to the seed's boundary, 90 % beyond."""
    import os

    error = 0.05 if request.depth <= BOUNDARY[request.seed] else 0.9
    return {"model": request.config["model"], "depth": request.depth, "seed": request.seed,
            "settings": request.settings, "train_error": error, "test_error": error,
            "epoch_errors": [{"epoch": 1, "train_error": error, "test_error": error}],
            "epochs": request.config["epochs"], "epochs_run": request.config["epochs"], "diverged": False,
            "diverged_at_step": None, "wall_time_s": 0.0, "process": os.getpid()}


@pytest.fixture(scope="module")
def local_ray():
    # the workers cannot import this test file: ship synthetic_probe by value
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def quiet(_: str) -> None:
    pass


def ledger_keys(out: Path) -> set[str]:
    ledger = ProbeLedger(out / LEDGER_FILE)
    return set(ledger._records)


def test_ray_and_local_find_the_same_boundary_on_a_synthetic_predicate(local_ray, tmp_path: Path) -> None:
    from deeplab.search.ray_backend import RayRunner

    def in_process(requests):
        return (synthetic_probe(request) for request in requests)

    plan = dict(model="cnn_tanh", upper=24, seeds=(0, 1), parallel=2)
    local = run_search(SearchPlan(**plan, out=str(tmp_path / "local")), runner=in_process, echo=quiet)
    runner = RayRunner(synthetic_probe)
    try:
        remote = run_search(SearchPlan(**plan, out=str(tmp_path / "ray")), runner=runner, echo=quiet)
    finally:
        runner.close()
    assert [s["max_trainable"] for s in remote["per_seed"]] == [15, 9] == [s["max_trainable"] for s in local["per_seed"]]
    assert remote["max_trainable"] == local["max_trainable"]
    assert ledger_keys(tmp_path / "ray") == ledger_keys(tmp_path / "local")
    # the probes really ran in Ray's worker processes, not in this one
    processes = {json.loads(line)["process"] for line in (tmp_path / "ray" / LEDGER_FILE).read_text().splitlines()}
    assert processes and not processes & {__import__("os").getpid()}


def test_ray_and_local_agree_on_a_tiny_real_search(local_ray, synthetic_data_dir: Path, tmp_path: Path) -> None:
    training = FitConfig(model="cnn_tanh", epochs=1, batch_size=16, optimizer="sgd", lr=0.2, momentum=0.9,
                         data_dir=str(synthetic_data_dir))
    plan = dict(model="cnn_tanh", upper=9, threshold=0.85, parallel=2, training=training)
    local = run_search(SearchPlan(**plan, out=str(tmp_path / "local")), echo=quiet)
    lines: list[str] = []
    remote = run_search(SearchPlan(**plan, out=str(tmp_path / "ray"), backend="ray"), echo=lines.append)
    assert any(line.startswith("backend: Ray: 2 CPU(s)") for line in lines)
    assert remote["backend"] == "ray" and local["backend"] == "local"
    assert remote["max_trainable"] == local["max_trainable"] == 3
    assert ledger_keys(tmp_path / "ray") == ledger_keys(tmp_path / "local")
    errors = {p["depth"]: p["test_error"] for p in local["probes"]}
    assert {p["depth"]: p["test_error"] for p in remote["probes"]} == errors  # probes are deterministic
    # the ledger is the single source of truth: the local backend resumes the Ray search with no training
    again = run_search(SearchPlan(**plan, out=str(tmp_path / "ray")), echo=quiet)
    assert again["probes_trained"] == 0 and again["max_trainable"] == 3


def test_ray_address_needs_the_ray_backend(tmp_path: Path) -> None:
    from deeplab.errors import DeeplabError

    with pytest.raises(DeeplabError, match="--ray-address goes with --backend ray"):
        run_search(SearchPlan(model="cnn_tanh", upper=9, out=str(tmp_path), ray_address="auto"), echo=quiet)
    with pytest.raises(DeeplabError, match="--backend 'slurm' is not one of local, ray"):
        run_search(SearchPlan(model="cnn_tanh", upper=9, out=str(tmp_path), backend="slurm"), echo=quiet)
