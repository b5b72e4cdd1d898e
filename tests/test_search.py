"""The maximum-depth search: bisection on synthetic predicates, the ledger, the judge, the script.

Most tests use fake predicates or a fake probe runner (no training); one real
probe checks that a NaN loss ends a probe, and one tiny real search runs
``scripts/search.py`` end to end on the synthetic MNIST of ``conftest.py``.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import pytest

from conftest import SCRIPTS_DIR
from deeplab.callbacks.trainability import TrainabilityJudge, judge_errors
from deeplab.config import FitConfig
from deeplab.errors import DeeplabError
from deeplab.search import (
    BoundarySearch,
    PriorStartSearch,
    ProbeLedger,
    ProbeRequest,
    SearchPlan,
    bisect_trainability,
    non_monotone_pairs,
    prepare_search,
    run_probe,
    run_search,
)
from deeplab.search.ledger import LEDGER_FILE
from deeplab.search.report import format_table
from deeplab.search.table import run_table


# ----------------------------------------------------------------------------- helpers
def counting(predicate: Callable[[int], bool]) -> tuple[Callable[[int], bool], list[int]]:
    calls: list[int] = []

    def wrapped(depth: int) -> bool:
        calls.append(depth)
        return predicate(depth)

    return wrapped, calls


def fake_runner(trainable: Callable[[int, int], bool], calls: list[tuple[int, int]]):
    """A probe runner that trains nothing: errors 5% / 90% from ``trainable(depth, seed)``."""

    def runner(requests):
        for request in requests:
            calls.append((request.depth, request.seed))
            error = 0.05 if trainable(request.depth, request.seed) else 0.9
            yield {
                "model": request.config["model"], "depth": request.depth, "seed": request.seed,
                "settings": request.settings, "train_error": error, "test_error": error,
                "epoch_errors": [{"epoch": 1, "train_error": error, "test_error": error}],
                "epochs": request.config["epochs"], "epochs_run": request.config["epochs"],
                "diverged": False, "diverged_at_step": None, "wall_time_s": 0.01,
            }

    return runner


def plan_for(out: Path, **overrides: Any) -> SearchPlan:
    values: dict[str, Any] = dict(model="cnn_tanh", upper=24, out=str(out))
    values.update(overrides)
    return SearchPlan(**values)


def quiet(_: str) -> None:
    pass


# -------------------------------------------------------------------------- bisection
@pytest.mark.parametrize("parallel", [1, 2, 3])
@pytest.mark.parametrize("lower, upper, step", [(3, 24, 3), (3, 120, 3), (6, 63, 3), (1, 10, 1), (3, 300, 3)])
def test_bisection_finds_every_boundary_exactly(lower: int, upper: int, step: int, parallel: int) -> None:
    depths = list(range(lower, upper + 1, step))
    n = len(depths)
    for boundary in [lower - step] + depths:  # lower - step: nothing trainable
        predicate, calls = counting(lambda k, b=boundary: k <= b)
        result = bisect_trainability(predicate, lower, upper, step, parallel=parallel)
        assert result.max_trainable == (boundary if boundary >= lower else None)
        assert result.min_untrainable == (boundary + step if boundary < upper else None)
        assert len(calls) == len(set(calls)) == result.probes  # no depth probed twice
        if parallel == 1:
            assert result.probes <= math.ceil(math.log2(n)) + 2
        # both boundary depths were actually evaluated, with the verdicts reported
        if result.max_trainable is not None:
            assert result.outcomes[result.max_trainable] is True
        if result.min_untrainable is not None:
            assert result.outcomes[result.min_untrainable] is False
        assert result.non_monotone == []


def test_sequential_bisection_probes_the_seeds_depths_in_the_seeds_order() -> None:
    # seed 002's logs: cnn_tanh (upper 24, max 3), cnn_tanh_newinit (120, 84), cnn_elu_bn (300, 156)
    for upper, boundary, seed_probes in [(24, 3, [12, 6, 3]), (120, 84, [60, 90, 75, 81, 84]),
                                         (300, 156, [150, 225, 186, 168, 159])]:
        predicate, calls = counting(lambda k, b=boundary: k <= b)
        result = bisect_trainability(predicate, 3, upper, 3)
        assert calls[: len(seed_probes)] == seed_probes
        assert result.max_trainable == boundary


def test_bisection_edge_cases() -> None:
    nothing = bisect_trainability(lambda k: False, 3, 24)
    assert (nothing.max_trainable, nothing.min_untrainable) == (None, 3)
    assert nothing.outcomes[3] is False
    everything = bisect_trainability(lambda k: True, 3, 24)
    assert (everything.max_trainable, everything.min_untrainable) == (24, None)
    assert everything.outcomes[24] is True
    for verdict, expected in [(True, (9, None)), (False, (None, 9))]:
        predicate, calls = counting(lambda k, v=verdict: v)
        single = bisect_trainability(predicate, 9, 9, 3)
        assert (single.max_trainable, single.min_untrainable) == expected
        assert calls == [9]


def test_boundary_search_state_machine_guards() -> None:
    search = BoundarySearch(3, 24, 3)
    first = search.next_round()
    assert first == [12]
    with pytest.raises(RuntimeError):
        search.next_round()  # verdict still missing
    with pytest.raises(RuntimeError):
        search.record(6, True)  # not asked for
    search.record(12, False)
    assert search.next_round() == [6]


@pytest.mark.parametrize("parallel", [2, 3, 4, 7])
def test_parallel_finds_the_sequential_boundary_in_fewer_rounds(parallel: int) -> None:
    for boundary in [3, 48, 150, 297, 300]:
        sequential = bisect_trainability(lambda k: k <= boundary, 3, 300, 3)
        rounds: list[list[int]] = []

        def evaluate_round(depths):
            rounds.append(list(depths))
            return [(depth, depth <= boundary) for depth in depths]

        parallel_result = bisect_trainability(lambda k: k <= boundary, 3, 300, 3, parallel=parallel,
                                              evaluate_round=evaluate_round)
        assert parallel_result.max_trainable == sequential.max_trainable == boundary
        assert parallel_result.min_untrainable == sequential.min_untrainable
        assert len(parallel_result.rounds) < len(sequential.rounds)
        assert all(len(r) <= parallel for r in rounds)


def test_non_monotone_pairs_are_recorded() -> None:
    # Trains up to 24, fails at 27..57, trains again at 60 (a "lucky" depth), fails beyond.
    def trainable(k: int) -> bool:
        return k <= 24 or k == 60

    result = bisect_trainability(trainable, 3, 120, 3, parallel=3)
    assert result.rounds[0] == [30, 60, 90]
    assert (30, 60) in result.non_monotone
    assert result.max_trainable == 24 and result.min_untrainable == 27  # bracket below the first failure
    assert non_monotone_pairs({3: True, 6: False, 9: True, 12: False}) == [(6, 9)]


# ----------------------------------------------------------------- prior start
def run_machine(search: Any, predicate: Callable[[int], bool]) -> Any:
    while depths := search.next_round():
        for depth in depths:
            search.record(depth, predicate(depth))
    return search.result()


@pytest.mark.parametrize("parallel", [1, 2, 3])
@pytest.mark.parametrize("lower, upper, step", [(3, 24, 3), (3, 450, 3), (1, 10, 1)])
def test_prior_start_finds_every_boundary_from_every_start(lower: int, upper: int, step: int, parallel: int) -> None:
    depths = list(range(lower, upper + 1, step))
    for boundary in [lower - step] + depths[:: max(1, len(depths) // 12)] + [upper]:
        for start in depths[:: max(1, len(depths) // 15)] + [upper]:
            predicate, calls = counting(lambda k, b=boundary: k <= b)
            result = run_machine(PriorStartSearch(lower, upper, step, start, parallel), predicate)
            assert result.max_trainable == (boundary if boundary >= lower else None)
            assert result.min_untrainable == (boundary + step if boundary < upper else None)
            assert calls[0] == start and len(calls) == len(set(calls)) == result.probes
            # the seed's criterion: a trainable k and an untrainable k + step, both probed
            if result.max_trainable is not None:
                assert result.outcomes[result.max_trainable] is True
            if result.min_untrainable is not None:
                assert result.outcomes[result.min_untrainable] is False
                if result.max_trainable is not None:
                    assert result.min_untrainable - result.max_trainable == step


def test_a_prior_near_the_boundary_beats_bisection() -> None:
    """Probe counts: at the boundary 2 probes, s steps away ≤ 2·log2(s + 1) + 2; bisection ~log2(range) + 1."""
    for boundary in (156, 447, 60, 300):
        bisection = bisect_trainability(lambda k: k <= boundary, 3, 450, 3).probes
        for distance in (0, 1, 3, 8, 20):
            for start in (boundary - 3 * distance, boundary + 3 * distance):
                if not 3 <= start <= 450:
                    continue
                result = run_machine(PriorStartSearch(3, 450, 3, start), lambda k: k <= boundary)
                assert result.max_trainable == boundary
                assert result.probes <= 2 * math.log2(distance + 1) + 2
                if distance <= 3:
                    assert result.probes < bisection, (boundary, start)
        # the notebook's 447 as prior for resnet_elu: 447 then 450
        exact = run_machine(PriorStartSearch(3, 450, 3, boundary if boundary < 450 else 447),
                            lambda k: k <= boundary)
        assert exact.probes <= 3


def test_prior_start_on_a_ragged_edge_finds_a_pair_near_the_prior() -> None:
    # trains up to 93, fails at 96, trains again at 99 and 102, fails from 105 (cnn_tanh_bn_oldinit's shape)
    def ragged(k: int) -> bool:
        return k <= 93 or k in (99, 102)

    from_above = run_machine(PriorStartSearch(3, 120, 3, 102), ragged)
    assert (from_above.max_trainable, from_above.min_untrainable) == (102, 105)
    at_93 = run_machine(PriorStartSearch(3, 120, 3, 93), ragged)
    assert (at_93.max_trainable, at_93.min_untrainable) == (93, 96)
    # from 90 the doubling stride steps over 96 (90, 93, 99, 111, then back: 105, 102)
    from_below = run_machine(PriorStartSearch(3, 120, 3, 90), ragged)
    assert (from_below.max_trainable, from_below.min_untrainable) == (102, 105)
    assert from_below.non_monotone == []  # nothing it probed shows the ragged part
    bisection = bisect_trainability(ragged, 3, 120, 3)
    assert bisection.min_untrainable - bisection.max_trainable == 3
    # both pairs meet the criterion; the walk that crossed the ragged part reports it
    long_walk = run_machine(PriorStartSearch(3, 120, 3, 60), ragged)
    assert long_walk.min_untrainable - long_walk.max_trainable == 3
    assert long_walk.outcomes[long_walk.max_trainable] and not long_walk.outcomes[long_walk.min_untrainable]
    # two at a time from 96 (96 and 99): 96 fails, so the walk goes down, and the pair (96, 99) is reported
    two = run_machine(PriorStartSearch(3, 120, 3, 96, parallel=2), ragged)
    assert (two.max_trainable, two.min_untrainable) == (93, 96) and (96, 99) in two.non_monotone


def test_known_verdicts_are_used_for_free() -> None:
    # seed 1 of cnn_tanh_newinit, bisected before: 39, 81, 51, 66, 69, 75, 78 probed
    known = {39: True, 81: False, 51: True, 66: True, 69: True, 75: True, 78: True}
    predicate, calls = counting(lambda k: k <= 78)
    result = run_machine(PriorStartSearch(3, 120, 3, 93, known=known), predicate)
    assert calls == [93] and (result.max_trainable, result.min_untrainable) == (78, 81)
    # a finished bisection's probes close a bisection's bracket at once: nothing to train
    predicate, calls = counting(lambda k: k <= 78)
    again = run_machine(BoundarySearch(3, 120, 3, known=known), predicate)
    assert calls == [] and (again.max_trainable, again.min_untrainable) == (78, 81)
    # a known verdict off the grid is ignored
    assert 80 not in BoundarySearch(3, 120, 3, known={80: True}).outcomes


def test_prior_start_refuses_a_start_off_the_grid() -> None:
    with pytest.raises(DeeplabError, match="--start 448 .* give --start 447 or 450"):
        PriorStartSearch(3, 450, 3, 448)
    with pytest.raises(DeeplabError, match="--start 999"):
        PriorStartSearch(3, 450, 3, 999)


def test_later_seeds_start_at_the_first_seeds_boundary(tmp_path: Path) -> None:
    boundaries = {0: 150, 1: 153, 2: 144}
    calls: list[tuple[int, int]] = []
    summary = run_search(plan_for(tmp_path, upper=300, seeds=(0, 1, 2), start=147),
                         runner=fake_runner(lambda k, s: k <= boundaries[s], calls), echo=quiet)
    assert [s["max_trainable"] for s in summary["per_seed"]] == [150, 153, 144]
    assert [(s["method"], s["start"]) for s in summary["per_seed"]] == [("prior", 147), ("prior", 150),
                                                                        ("prior", 150)]
    assert calls[0] == (147, 0) and (150, 1) in calls and (150, 2) in calls
    assert all(s["probes"] < s["bisection_probes"] for s in summary["per_seed"])
    report = (tmp_path / "report.md").read_text()
    assert "from k = 147" in report and "from k = 150" in report
    # the table: seed 0 by bisection, later seeds from its boundary
    calls.clear()
    run_table(tmp_path / "table", families=["cnn_elu_bn"], seeds=(0, 1), runner=fake_runner(
        lambda k, s: k <= boundaries[s], calls), echo=quiet)
    searched = json.loads((tmp_path / "table" / "cnn_elu_bn" / "seed" / "search.json").read_text())
    assert [(s["method"], s["start"]) for s in searched["per_seed"]] == [("bisection", None), ("prior", 150)]
    assert calls[:5] == [(150, 0), (225, 0), (186, 0), (168, 0), (159, 0)]  # the seed's own order
    # --start seed: the notebook's 156
    calls.clear()
    run_table(tmp_path / "prior", families=["cnn_elu_bn"], seeds=(0,), start="seed",
              runner=fake_runner(lambda k, s: k <= boundaries[s], calls), echo=quiet)
    assert calls[0] == (156, 0)


# ---------------------------------------------------------------------------- judge
def test_judge_metrics_and_divergence() -> None:
    assert judge_errors(0.5, 0.1, False, 0.2, "test_error") == (0.1, True)
    assert judge_errors(0.5, 0.1, False, 0.2, "train_error") == (0.5, False)
    assert judge_errors(0.5, 0.1, False, 0.2, "either") == (0.1, True)
    assert judge_errors(0.5, 0.3, False, 0.2, "either") == (0.3, False)
    assert judge_errors(0.1, 0.1, True, 0.2, "test_error")[1] is False  # NaN loss: never trainable
    assert judge_errors(None, float("nan"), True, 0.2, "test_error") == (None, False)
    assert judge_errors(0.1, 0.2, False, 0.2, "test_error")[1] is False  # the seed's `>=`: 0.2 fails


def test_a_probe_at_chance_runs_all_its_epochs(synthetic_data_dir: Path, tmp_path: Path) -> None:
    """Seed 000's plain net sat at chance for 17 epochs and learned in the 18th: nothing in a probe
    (judge, module, callbacks) may stop it early for slow progress — only a NaN/inf loss does."""
    config = FitConfig(model="cnn_tanh", depth=18, epochs=4, lr=1e-6, batch_size=16, limit_train_batches=2,
                       data_dir=str(synthetic_data_dir), log_dir=str(tmp_path), grad_norms=False,
                       progress_bar=False, run_name="slow")
    record = run_probe(ProbeRequest(config=config.to_dict(), settings={}))
    assert record["test_error"] > 0.5  # at chance: a stop for slow progress would have had its reason
    assert record["epochs_run"] == 4 and len(record["epoch_errors"]) == 4 and record["diverged"] is False


@pytest.mark.filterwarnings("ignore:Encountered `nan` values")
def test_a_nan_loss_ends_the_probe(synthetic_data_dir: Path, tmp_path: Path) -> None:
    config = FitConfig(model="cnn_elu", depth=3, epochs=3, lr=1e6, batch_size=16, limit_train_batches=4,
                       data_dir=str(synthetic_data_dir), log_dir=str(tmp_path), grad_norms=False,
                       progress_bar=False, run_name="diverging")
    record = run_probe(ProbeRequest(config=config.to_dict(), settings={}))
    assert record["diverged"] is True
    assert record["diverged_at_step"] is not None
    assert record["epochs_run"] < 3
    error, trainable = judge_errors(record["train_error"], record["test_error"], record["diverged"], 0.99)
    assert trainable is False
    results = json.loads((Path(record["run_dir"]) / "results.json").read_text())
    assert results["trainability"]["diverged"] is True
    # a NaN model is not evaluated (its "accuracy" would be argmax-of-NaN's class 0): no error, no accuracy
    assert record["test_error"] is None and results["history"][-1]["val_acc"] is None
    assert results["test_acc"] is None


def test_a_probe_stopped_part_way_continues_from_its_checkpoint(synthetic_data_dir: Path, tmp_path: Path) -> None:
    """A search killed mid-probe leaves last.ckpt and no results.json; the next search continues that
    probe, and the record equals the straight probe's (exact resume), epochs before the stop included."""
    import shutil

    from deeplab.search.probes import unfinished_probe_checkpoint
    from deeplab.training.fit import fit

    def probe_config(log_dir: Path, **overrides: Any) -> FitConfig:
        values: dict[str, Any] = dict(model="cnn_tanh", depth=3, epochs=3, batch_size=16, limit_train_batches=4,
                                      data_dir=str(synthetic_data_dir), log_dir=str(log_dir), grad_norms=False,
                                      progress_bar=False, run_name="cnn_tanh_k3_seed0")
        values.update(overrides)
        return FitConfig(**values)

    straight = run_probe(ProbeRequest(config=probe_config(tmp_path / "straight").to_dict(), settings={}))
    assert straight["resumed_from_step"] is None

    # the stopped attempt: 6 of its 12 steps (epoch 1 closed, epoch 2 half done), killed before results.json
    stopped = fit(probe_config(tmp_path / "stopped", max_steps=6), quiet=True)
    (Path(stopped["run_dir"]) / "results.json").unlink()
    config = probe_config(tmp_path / "stopped")
    found = unfinished_probe_checkpoint(config)
    assert found is not None and found[1] == 6
    resumed = run_probe(ProbeRequest(config=config.to_dict(), settings={}))
    assert resumed["resumed_from_step"] == 6 and resumed["run_dir"] == stopped["run_dir"]
    assert resumed["global_step"] == straight["global_step"] == 12
    for name in ("train_error", "test_error", "epoch_errors", "epochs_run", "diverged"):
        assert resumed[name] == straight[name], name
    assert len(resumed["epoch_errors"]) == 3  # epoch 1 came from the stopped attempt's checkpoint
    # finished now: a later search has nothing to continue, and another lr is another probe
    assert unfinished_probe_checkpoint(config) is None
    (Path(stopped["run_dir"]) / "results.json").unlink()
    assert unfinished_probe_checkpoint(probe_config(tmp_path / "stopped", lr=0.5)) is None
    shutil.rmtree(tmp_path / "stopped")


# ---------------------------------------------------------------------------- ledger
def test_ledger_drops_a_partial_last_line(tmp_path: Path) -> None:
    path = tmp_path / LEDGER_FILE
    good = {"settings": {"lr": 0.01}, "depth": 3, "seed": 0, "test_error": 0.1}
    path.write_text(json.dumps(good) + "\n" + '{"settings": {"lr": 0.01}, "depth": 6, "se')
    ledger = ProbeLedger(path)
    assert len(ledger) == 1 and ledger.skipped_lines == 1
    assert ledger.get({"lr": 0.01}, 3, 0)["test_error"] == 0.1
    assert ledger.get({"lr": 0.01}, 6, 0) is None
    ledger.add({"settings": {"lr": 0.01}, "depth": 6, "seed": 0, "test_error": 0.9})
    lines = path.read_text().splitlines()
    assert [json.loads(line)["depth"] for line in lines] == [3, 6]  # the new line was not glued on
    assert len(ProbeLedger(path)) == 2


def test_resume_after_a_crash_trains_only_the_missing_probes(tmp_path: Path) -> None:
    out = tmp_path / "search"
    plan = plan_for(out, upper=300, seeds=(0, 1))
    calls: list[tuple[int, int]] = []
    first = run_search(plan, runner=fake_runner(lambda k, s: k <= 156, calls), echo=quiet)
    total = len(calls)
    assert first["max_trainable"] == 156 and total == first["probes_trained"] == len(first["probes"])

    # kill -9 during the probe after the third: three full lines and half of the fourth
    ledger = out / LEDGER_FILE
    lines = ledger.read_text().splitlines(keepends=True)
    ledger.write_text("".join(lines[:3]) + lines[3][: len(lines[3]) // 2])
    calls.clear()
    again = run_search(plan, runner=fake_runner(lambda k, s: k <= 156, calls), echo=quiet)
    assert len(calls) == total - 3
    assert again["probes_reused"] == 3 and again["max_trainable"] == 156

    # everything is in the ledger now: nothing is trained
    calls.clear()
    third = run_search(plan, runner=fake_runner(lambda k, s: k <= 156, calls), echo=quiet)
    assert calls == [] and third["probes_reused"] == total
    assert [(p["depth"], p["seed"], p["trainable"]) for p in third["probes"]] == \
           [(p["depth"], p["seed"], p["trainable"]) for p in first["probes"]]

    # a changed learning rate must not reuse stale probes
    calls.clear()
    run_search(plan_for(out, upper=300, seeds=(0, 1), training=FitConfig(model="cnn_tanh", lr=0.1)),
               runner=fake_runner(lambda k, s: k <= 156, calls), echo=quiet)
    assert len(calls) == total

    # a changed threshold re-judges the recorded errors without training
    calls.clear()
    strict = run_search(plan_for(out, upper=300, seeds=(0, 1), threshold=0.01),
                        runner=fake_runner(lambda k, s: k <= 156, calls), echo=quiet)
    assert strict["max_trainable"] is None and strict["min_untrainable"] == 3


def test_seeds_report_median_and_spread(tmp_path: Path) -> None:
    boundaries = {0: 6, 1: 9, 2: 15}
    calls: list[tuple[int, int]] = []
    summary = run_search(plan_for(tmp_path, seeds=(0, 1, 2)),
                         runner=fake_runner(lambda k, s: k <= boundaries[s], calls), echo=quiet)
    assert [s["max_trainable"] for s in summary["per_seed"]] == [6, 9, 15]
    assert summary["max_trainable"] == 9 and summary["max_trainable_median"] == 9
    assert summary["max_trainable_spread"] == 9 and summary["max_trainable_range"] == [6, 15]
    assert "median over the 3 seed(s) that found a depth 9" in (tmp_path / "report.md").read_text()


def test_non_monotone_pairs_reach_search_json_and_the_report(tmp_path: Path) -> None:
    calls: list[tuple[int, int]] = []
    summary = run_search(plan_for(tmp_path, upper=120, parallel=3),
                         runner=fake_runner(lambda k, s: k <= 24 or k == 60, calls), echo=quiet)
    saved = json.loads((tmp_path / "search.json").read_text())
    assert {"seed": 0, "untrainable_depth": 30, "trainable_depth": 60} in saved["non_monotone"]
    assert saved["max_trainable"] == summary["max_trainable"] == 24
    assert "k = 30 untrainable, k = 60 trainable" in (tmp_path / "report.md").read_text()


def test_parallel_search_through_run_search_uses_fewer_rounds(tmp_path: Path) -> None:
    results = {}
    for parallel in (1, 3):
        calls: list[tuple[int, int]] = []
        results[parallel] = run_search(plan_for(tmp_path / str(parallel), upper=300, parallel=parallel),
                                       runner=fake_runner(lambda k, s: k <= 201, calls), echo=quiet)
    assert results[1]["max_trainable"] == results[3]["max_trainable"] == 201
    assert results[3]["rounds"] < results[1]["rounds"]


# ----------------------------------------------------------------------- validation
@pytest.mark.parametrize("overrides, message", [
    (dict(threshold=0.0), "--threshold"),
    (dict(threshold=1.0), "--threshold"),
    (dict(threshold=1.5), "--threshold"),
    (dict(lower=27), "above --upper"),
    (dict(step=0), "--step must be positive"),
    (dict(step=-3), "--step must be positive"),
    (dict(lower=4), "multiples of 3"),
    (dict(upper=25), "multiples of 3"),
    (dict(step=6, upper=24), "not --lower 3 plus a multiple of --step 6"),
    (dict(model="cnn_tahn"), "cnn_tanh"),
    (dict(model="cnn15_plain"), "fixed depth"),
    (dict(metric="loss"), "--metric"),
    (dict(seeds=(1, 1)), "repeats"),
    (dict(training=FitConfig(model="cnn_tanh", init="fixup")), "residual"),
    (dict(training=FitConfig(model="cnn_tanh", devices="2")), "--parallel"),
])
def test_user_errors_are_deeplab_errors(tmp_path: Path, overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(DeeplabError, match=message):
        prepare_search(plan_for(tmp_path, **overrides))


# ----------------------------------------------------------------------------- table
def test_table_writes_the_seed_column_and_marks_impossible_inits(tmp_path: Path) -> None:
    calls: list[tuple[int, int]] = []
    data = run_table(tmp_path, families=["cnn_tanh", "resnet_elu_nobn"], inits=["seed", "fixup"],
                     runner=fake_runner(lambda k, s: k <= 12, calls), echo=quiet)
    rows = table_rows(tmp_path)
    # family | upper | seed max | max (seed) | mean field (seed) | max (fixup) | mean field (fixup)
    assert rows["cnn_tanh"][:3] == ["24", "3", "12"]
    assert rows["cnn_tanh"][4] == "n/a"  # fixup needs residual branches
    # the mean field has no prediction for residual nets
    assert rows["resnet_elu_nobn"] == ["24", "12", "12", "—", "12", "—"]
    assert (tmp_path / "resnet_elu_nobn" / "fixup" / "search.json").is_file()
    assert data["rows"][0]["searches"]["fixup"] is None


def table_rows(out: Path) -> dict[str, list[str]]:
    """``<out>/table.md``'s rows: family → its other cells."""
    lines = [line for line in (out / "table.md").read_text().splitlines() if line.startswith("|")][2:]
    return {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]] for line in lines}


def test_the_table_accumulates_across_commands(tmp_path: Path) -> None:
    """Families searched by earlier commands keep their cells; unsearched ones say so; probes are reused."""
    calls: list[tuple[int, int]] = []
    run_table(tmp_path, families=["cnn_tanh"], runner=fake_runner(lambda k, s: k <= 12, calls), echo=quiet)
    first = len(calls)
    rows = table_rows(tmp_path)
    assert len(rows) == 7 and rows["cnn_tanh"][2] == "12"
    assert rows["cnn_elu"][2] == rows["resnet_elu_nobn"][2] == "not yet measured"

    run_table(tmp_path, families=["resnet_elu_nobn"], runner=fake_runner(lambda k, s: k <= 9, calls), echo=quiet)
    rows = table_rows(tmp_path)
    assert rows["cnn_tanh"][2] == "12" and rows["resnet_elu_nobn"][2] == "9"  # the earlier cell kept
    assert rows["cnn_elu"][2] == "not yet measured"
    # the same family again: every probe comes from its ledger
    before = len(calls)
    run_table(tmp_path, families=["cnn_tanh"], runner=fake_runner(lambda k, s: k <= 12, calls), echo=quiet)
    assert len(calls) == before and first > 0
    assert table_rows(tmp_path)["resnet_elu_nobn"][2] == "9"


def test_format_table_with_several_seeds() -> None:
    search = {"max_trainable": 9, "min_untrainable": 12, "lower": 3, "seeds": [0, 1, 2],
              "max_trainable_range": [6, 15], "max_trainable_median": 9.0}
    text = format_table([{"family": "cnn_elu", "upper": 150, "seed_reported_max": 93,
                          "searches": {"seed": search}, "mean_field": {"seed": None}}], ["seed"])
    assert "| cnn_elu | 150 | 93 | 9 (6–15) | — |" in text
    same = dict(search, max_trainable_range=[9, 9])
    text = format_table([{"family": "cnn_elu", "upper": 150, "seed_reported_max": 93,
                          "searches": {"seed": same}, "mean_field": {"seed": None}}], ["seed"])
    assert "| 9 (all 3 seeds) |" in text
    capped = dict(same, min_untrainable=None)  # every seed trained up to the upper bound
    text = format_table([{"family": "cnn_elu", "upper": 9, "seed_reported_max": 93,
                          "searches": {"seed": capped}, "mean_field": {"seed": None}}], ["seed"])
    assert "| ≥ 9 (all 3 seeds) |" in text
    jagged = dict(search, non_monotone=[{"untrainable_depth": 12, "trainable_depth": 18, "seed": 1}])
    text = format_table([{"family": "cnn_elu", "upper": 150, "seed_reported_max": 93,
                          "searches": {"seed": jagged}, "mean_field": {"seed": None}}], ["seed"])
    assert "| 9 (6–15) (yet k = 18 trained) |" in text


def test_nothing_trainable_is_one_state_everywhere(tmp_path: Path) -> None:
    from deeplab.search.runner import max_depth_line

    calls: list[tuple[int, int]] = []
    summary = run_search(plan_for(tmp_path / "none", seeds=(0, 1, 2)), runner=fake_runner(lambda k, s: False, calls),
                         echo=quiet)
    stored = json.loads((tmp_path / "none" / "search.json").read_text())
    for key in ("max_trainable", "max_trainable_median", "max_trainable_range", "max_trainable_spread",
                "max_trainable_stdev"):
        assert summary[key] is None and stored[key] is None, key
    assert summary["seeds_nothing_trainable"] == [0, 1, 2]
    assert max_depth_line(summary) == "max trainable depth: none (below 3)"
    report = (tmp_path / "none" / "report.md").read_text()
    assert "lower --lower" not in report and "3 is this family's shallowest network" in report
    assert "| cnn_tanh | 24 | 3 | < 3 (all 3 seeds) |" in format_table(
        [{"family": "cnn_tanh", "upper": 24, "seed_reported_max": 3, "searches": {"seed": summary},
          "mean_field": {"seed": None}}], ["seed"])
    # above the family's shallowest depth, lowering --lower is advice one can follow
    run_search(plan_for(tmp_path / "six", lower=6), runner=fake_runner(lambda k, s: False, calls), echo=quiet)
    assert "lower --lower (the family starts at 3)" in (tmp_path / "six" / "report.md").read_text()


def test_median_and_spread_cover_the_seeds_that_found_a_depth(tmp_path: Path) -> None:
    boundaries = {0: 0, 1: 9, 2: 15}  # seed 0: nothing trainable
    calls: list[tuple[int, int]] = []
    summary = run_search(plan_for(tmp_path, seeds=(0, 1, 2)),
                         runner=fake_runner(lambda k, s: k <= boundaries[s], calls), echo=quiet)
    assert summary["max_trainable"] == 9  # the lower median of (nothing, 9, 15)
    assert summary["max_trainable_median"] == 12 and summary["max_trainable_range"] == [9, 15]
    assert summary["max_trainable_spread"] == 6 and summary["seeds_nothing_trainable"] == [0]
    assert "nothing trainable with seed(s) 0" in (tmp_path / "report.md").read_text()
    assert "| 12 (9–15; seed 0: < 3) |" in format_table(
        [{"family": "cnn_tanh", "upper": 24, "seed_reported_max": 3, "searches": {"seed": summary},
          "mean_field": {"seed": None}}], ["seed"])


def test_search_plot_has_integer_depth_ticks_and_the_mean_field_line(tmp_path: Path) -> None:
    import matplotlib.pyplot as plt

    from deeplab.search.report import search_figure

    calls: list[tuple[int, int]] = []
    summary = run_search(plan_for(tmp_path, lower=3, upper=6), runner=fake_runner(lambda k, s: k <= 3, calls),
                         echo=quiet)
    for predicted, expected in [(4.6, "mean field 6 ξ_c ≈ 4.6"), (float("inf"), "mean field 6 ξ_c = ∞ (beyond the plot)")]:
        figure = search_figure(dict(summary, mean_field_predicted_max=predicted))
        axes = figure.axes[0]
        ticks = [t for t in axes.get_xticks() if axes.get_xlim()[0] <= t <= axes.get_xlim()[1]]
        assert ticks and all(float(t).is_integer() for t in ticks), ticks
        labels = [text.get_text() for text in axes.get_legend().get_texts()]
        assert expected in labels, labels
        plt.close(figure)


# ---------------------------------------------------------------------------- script
def run_script(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPTS_DIR / "search.py"), *args],
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def search_script() -> Any:
    """The search command (``scripts/search.py``'s code), to call ``main`` in this process (no start-up cost)."""
    import deeplab.commands.search as module

    return module


def call_script(module: Any, *args: str) -> int:
    from deeplab.cli import run_main

    return run_main(lambda: module.main(list(args)))


def test_search_script_end_to_end(synthetic_data_dir: Path, tmp_path: Path, search_script: Any,
                                  capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "search"
    arguments = ["--model", "cnn_elu_bn", "--upper", "6", "--epochs", "1", "--limit-train-batches", "2",
                 "--batch-size", "16", "--data-dir", str(synthetic_data_dir), "--out", str(out)]
    completed = run_script(*arguments)
    assert completed.returncode == 0, completed.stderr
    lines = completed.stdout.strip().splitlines()
    summary = json.loads((out / "search.json").read_text())
    for key in ("model", "max_trainable", "min_untrainable", "per_seed", "probes"):
        assert key in summary
    assert summary["model"] == "cnn_elu_bn"
    from deeplab.search.runner import max_depth_line

    assert lines[-1] == max_depth_line(summary) and lines[-1].startswith("max trainable depth: ")
    # batch norm is outside the plain-network mean field: the line says so instead of a number
    assert any(line.startswith("mean-field prediction: none (") for line in lines)
    assert summary["probes"]
    for probe in summary["probes"]:
        assert {"depth", "seed", "error", "trainable", "epochs_run", "diverged", "wall_time_s"} <= set(probe)
        assert probe["epochs_run"] == 1
        assert (out / "runs" / f"cnn_elu_bn_k{probe['depth']}_seed0").is_dir()
        assert any(line.startswith(f"probe k={probe['depth']} ") for line in lines)
    assert (out / "search.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "report.md").is_file()

    # the same command again resumes: every probe comes from the ledger
    assert call_script(search_script, *arguments) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == lines[-1]
    assert json.loads((out / "search.json").read_text())["probes_trained"] == 0


@pytest.mark.parametrize("arguments, message", [
    (["--model", "cnn_tanh", "--upper", "24", "--threshold", "1.5"], "--threshold"),
    (["--model", "cnn_tanh", "--upper", "25"], "multiples of 3"),
    (["--model", "nope", "--upper", "24"], "unknown model"),
    (["--model", "cnn_tanh"], "--upper"),
    (["--table", "--upper", "24"], "drop --upper"),
    (["--model", "cnn_tanh", "--upper", "24", "--start", "13"], "give --start 12 or 15"),
    (["--model", "cnn_tanh", "--upper", "24", "--start", "deep"], "a depth K or 'seed'"),
    (["--model", "cnn5", "--upper", "24", "--start", "seed"], "no number in seed 002"),
    (["--table", "--start", "12"], "--start seed"),
])
def test_search_script_user_error_is_one_line_and_exit_2(tmp_path: Path, search_script: Any,
                                                         capsys: pytest.CaptureFixture,
                                                         arguments: list[str], message: str) -> None:
    assert call_script(search_script, *arguments, "--out", str(tmp_path)) == 2
    stderr = capsys.readouterr().err
    assert stderr.startswith("error: ") and stderr.count("\n") == 1 and message in stderr


@pytest.mark.slow
def test_parallel_probes_run_in_spawned_workers(synthetic_data_dir: Path, tmp_path: Path) -> None:
    training = FitConfig(model="cnn_elu_bn", epochs=1, limit_train_batches=2, batch_size=16,
                         data_dir=str(synthetic_data_dir))
    lines: list[str] = []
    summary = run_search(plan_for(tmp_path, model="cnn_elu_bn", upper=6, parallel=2, training=training),
                         echo=lines.append)
    assert lines[0].startswith("parallel: 2 ")
    assert summary["per_seed"][0]["rounds"] == 1  # both candidates in one round
    assert sorted(p["depth"] for p in summary["probes"]) == [3, 6]
    assert len(ProbeLedger(tmp_path / LEDGER_FILE)) == 2
    assert os.getpid() not in {p["process"] for p in summary["probes"]}  # trained by the workers


def test_mean_field_line_next_to_the_boundary(search_script: Any) -> None:
    """Seed 002's naive tanh init: χ₁ = σ_w² = 0.18 (geometric mean), ξ_c = −1/ln 0.18 ≈ 0.58, 6 ξ_c ≈ 3."""
    line = search_script._mean_field_line("cnn_tanh", "seed")
    assert "~3 layers" in line and "χ₁ = 0.18" in line
    assert "any depth" in search_script._mean_field_line("cnn_tanh", "delta_orthogonal")
    assert search_script._mean_field_line("cnn5", "seed").startswith("mean-field prediction: none")


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_stops_the_search_and_keeps_its_finished_probes(tmp_path: Path, signum: int) -> None:
    """SIGINT/SIGTERM between probes: the search stops at once, says how to resume, keeps the ledger;
    the same command then trains only the missing probes."""
    from deeplab.errors import RunInterrupted

    calls: list[tuple[int, int]] = []
    inner = fake_runner(lambda k, s: k <= 12, calls)

    def signalled_on_the_third_probe(requests):
        for record in inner(requests):
            yield record
            if len(calls) == 2:
                os.kill(os.getpid(), signum)  # delivered before the next probe starts

    plan = plan_for(tmp_path, upper=24)
    with pytest.raises(RunInterrupted) as stopped:
        run_search(plan, runner=signalled_on_the_third_probe, echo=quiet)
    assert stopped.value.exit_code == 128 + signum
    assert str(stopped.value) == (f"interrupted ({signal.Signals(signum).name}): 2 finished probe(s) are kept in "
                                  f"{tmp_path / LEDGER_FILE}; run the same command again to resume")
    assert signal.getsignal(signum) is not None and len(ProbeLedger(tmp_path / LEDGER_FILE)) == 2
    again = run_search(plan, runner=fake_runner(lambda k, s: k <= 12, calls := []), echo=quiet)
    assert again["probes_reused"] == 2 and again["max_trainable"] == 12


def test_ledger_lines_with_wrong_types_are_retrained_not_fatal(tmp_path: Path) -> None:
    path = tmp_path / LEDGER_FILE
    good = {"settings": {"lr": 0.01}, "depth": 3, "seed": 0, "test_error": 0.1, "train_error": 0.1}
    bad = [dict(good, depth=6, test_error="high"), dict(good, depth="nine"), dict(good, depth=12, diverged="no"),
           dict(good, depth=15, epoch_errors=[{"epoch": 1, "test_error": "x"}]), ["not", "a", "record"]]
    path.write_text("".join(json.dumps(record) + "\n" for record in [good, *bad]))
    ledger = ProbeLedger(path)
    assert len(ledger) == 1 and ledger.skipped_lines == len(bad)


def test_parallel_workers_find_what_one_process_finds_and_are_stopped_on_cancel(synthetic_data_dir: Path,
                                                                                 tmp_path: Path) -> None:
    """``--parallel 2``: two spawned workers give the in-process probes' errors; a cancelled pool leaves
    no worker training (found without concurrent.futures' private process table)."""
    import multiprocessing
    import time

    from deeplab.search.probes import ProcessPoolRunner

    training = FitConfig(model="cnn_tanh", epochs=1, batch_size=16, optimizer="sgd", lr=0.2, momentum=0.9,
                         data_dir=str(synthetic_data_dir))
    plan = dict(model="cnn_tanh", upper=9, threshold=0.85, training=training)
    alone = run_search(SearchPlan(**plan, out=str(tmp_path / "alone")), echo=quiet)
    pooled = run_search(SearchPlan(**plan, parallel=2, out=str(tmp_path / "pooled")), echo=quiet)
    assert pooled["max_trainable"] == alone["max_trainable"] == 3
    assert {p["depth"]: p["test_error"] for p in pooled["probes"]} == \
        {p["depth"]: p["test_error"] for p in alone["probes"]}

    before = {p.pid for p in multiprocessing.active_children()}
    pool = ProcessPoolRunner(1, use_gpus=False)
    long_probe = dataclasses.replace(training, depth=3, epochs=10_000, log_dir=str(tmp_path / "long"),
                                     run_name="long", grad_norms=False, progress_bar=False)
    iterator = pool([ProbeRequest(config=long_probe.to_dict(), settings={})])
    started = time.monotonic()
    workers: set[int] = set()
    while not workers and time.monotonic() - started < 60:  # the worker spawns on submit
        time.sleep(0.2)
        workers = {p.pid for p in multiprocessing.active_children()} - before
    assert workers, "the pool started no worker"
    pool.close(cancel=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and workers & {p.pid for p in multiprocessing.active_children()}:
        time.sleep(0.2)
    assert not workers & {p.pid for p in multiprocessing.active_children()}, "a cancelled worker is still alive"
    del iterator


def test_search_takes_training_settings_from_a_config_file(tmp_path: Path, search_script: Any,
                                                           synthetic_data_dir: Path) -> None:
    """``search.py --config run.yaml``: the file's settings train every probe; options beside it win."""
    config = tmp_path / "training.yaml"
    config.write_text(f"model: cnn_tanh\nepochs: 1\nbatch_size: 16\nlr: 0.2\noptimizer: sgd\nmomentum: 0.9\n"
                      f"data_dir: {synthetic_data_dir}\n")
    out = tmp_path / "search"
    assert call_script(search_script, "--config", str(config), "--upper", "6", "--threshold", "0.85",
                       "--lr", "0.1", "--out", str(out)) == 0
    summary = json.loads((out / "search.json").read_text())
    assert summary["model"] == "cnn_tanh" and summary["epochs"] == 1
    assert summary["training"]["batch_size"] == 16 and summary["training"]["optimizer"] == "sgd"
    assert summary["training"]["lr"] == 0.1  # the command line overrides the file


def test_a_probe_is_judged_by_the_searchs_own_threshold_and_metric(synthetic_data_dir: Path, tmp_path: Path) -> None:
    """A probe's results.json verdict (and its HParams hparams/trainable) use the search's --threshold and
    --metric, not the judge's defaults: at threshold 0.999 a barely trained probe is trainable everywhere."""
    training = FitConfig(model="cnn_elu_bn", epochs=1, limit_train_batches=2, batch_size=16,
                         data_dir=str(synthetic_data_dir))
    summary = run_search(plan_for(tmp_path, model="cnn_elu_bn", lower=3, upper=3, threshold=0.999,
                                  metric="either", training=training), echo=quiet)
    probe = summary["probes"][0]
    verdict = json.loads((Path(probe["run_dir"]) / "results.json").read_text())["trainability"]
    assert (verdict["threshold"], verdict["metric"]) == (0.999, "either")
    assert (verdict["trainable"], verdict["error"]) == (probe["trainable"], probe["error"]), (verdict, probe)
    assert probe["trainable"] is True, probe


def test_the_committed_seed002_table_is_what_its_ledgers_say(tmp_path: Path) -> None:
    """``search.py --table --render-only`` over a copy of reports/seed002 (ledgers and search.json only)
    reproduces the committed table.md byte for byte: every cell stands on committed probes."""
    import shutil

    committed = Path(__file__).resolve().parents[1] / "reports" / "seed002"
    copy = tmp_path / "seed002"
    for path in committed.rglob("*"):
        if path.name in (LEDGER_FILE, "search.json"):
            (copy / path.relative_to(committed)).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(path, copy / path.relative_to(committed))
    inits = json.loads((committed / "table.json").read_text())["inits"]
    run_table(copy, inits=inits, render_only=True, echo=quiet, runner=fake_runner(lambda k, s: 1 / 0, []))
    assert (copy / "table.md").read_text() == (committed / "table.md").read_text()


def test_render_only_trains_nothing_and_says_what_is_missing(tmp_path: Path) -> None:
    calls: list[tuple[int, int]] = []
    run_table(tmp_path, families=["cnn_tanh"], seeds=(0, 1), runner=fake_runner(lambda k, s: k <= 12, calls),
              echo=quiet)
    before = (tmp_path / "table.md").read_text()
    assert "seed 1: k = 12 trains, 15 does not; from k = 12" in before
    run_table(tmp_path, render_only=True, echo=quiet)  # no runner: a probe to train would be an error
    assert (tmp_path / "table.md").read_text() == before
    ledger = tmp_path / "cnn_tanh" / "seed" / LEDGER_FILE
    ledger.write_text("".join(ledger.read_text().splitlines(keepends=True)[:-1]))  # lose a probe
    with pytest.raises(DeeplabError, match="is not in its ledger; run the table without --render-only"):
        run_table(tmp_path, render_only=True, echo=quiet)


def test_a_table_search_still_running_shows_the_seeds_its_ledger_completes(tmp_path: Path) -> None:
    """No search.json yet (the table's search of this family is running): the cell says which seeds the
    ledger already settles, found as the table searches them, instead of only "not yet measured"."""
    from deeplab.search.table import replay_search

    folder = tmp_path / "cnn_tanh" / "seed"
    calls: list[tuple[int, int]] = []
    # seed 0 by bisection over 3…24 (trainable up to 9), seed 1 walked from seed 0's boundary; seed 2 not begun
    run_search(plan_for(folder, seeds=(0,)), runner=fake_runner(lambda k, s: k <= 9, calls), echo=quiet)
    run_search(plan_for(folder, seeds=(1,), starts={1: 9}), runner=fake_runner(lambda k, s: k <= 12, calls),
               echo=quiet)
    (folder / "search.json").unlink()
    cell = replay_search(folder, "cnn_tanh", 24)
    assert isinstance(cell, str) and cell.startswith("in progress: seed 0: 9, seed 1: 12 ("), cell
    assert f"({len(calls)} probes so far)" in cell
