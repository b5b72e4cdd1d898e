"""What TensorBoard reads from a run: hparams (config at the start, outcome at the end), the
custom-scalars layout, the config text, and no flat ``epoch`` chart — read back from the event files
with tensorboard's own EventAccumulator and plugin protos."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.custom_scalar import layout_pb2
from tensorboard.plugins.hparams import api_pb2, plugin_data_pb2

from deeplab.reporting.tensorboard import final_metrics


def accumulate(run_dir: Path) -> EventAccumulator:
    accumulator = EventAccumulator(str(run_dir), size_guidance={"scalars": 0, "tensors": 0})
    accumulator.Reload()
    return accumulator


def hparams_records(accumulator: EventAccumulator) -> dict[str, plugin_data_pb2.HParamsPluginData]:
    return {tag: plugin_data_pb2.HParamsPluginData.FromString(content)
            for tag, content in accumulator.PluginTagToContent("hparams").items()}


def test_a_run_records_its_config_and_outcome_for_the_hparams_tab(fit_runs) -> None:
    run = fit_runs("mnist")
    results = run.results
    accumulator = accumulate(run.run_dir)
    records = hparams_records(accumulator)
    experiment = records["_hparams_/experiment"].experiment
    # only the metrics this run writes: it evaluates the test split (no val_acc) and is no probe (no verdict)
    assert [info.name.tag for info in experiment.metric_infos] == [
        "hparams/test_acc", "hparams/train_acc", "hparams/diverged"]
    # the settings people compare, then what this run changed from cnn5's protocol (a fixed network: no depth)
    columns = [info.name for info in experiment.hparam_infos]
    assert columns[:6] == ["model", "init", "lr", "batch_size", "optimizer", "seed"], columns
    assert {"dataset", "epochs", "limit_train_batches"} <= set(columns[6:]), columns
    assert "compile" not in columns and "devices" not in columns and "depth" not in columns
    # TensorBoard shows the five columns first by "differs", then by name: lr among them before any tick
    shown = sorted(experiment.hparam_infos, key=lambda info: (not info.differs, info.name))[:5]
    assert "lr" in [info.name for info in shown] and {info.name for info in experiment.hparam_infos
                                                      if info.differs} == {"init", "lr", "batch_size", "seed"}
    start = records["_hparams_/session_start_info"].session_start_info.hparams
    assert start["model"].string_value == "cnn5" and start["optimizer"].string_value == "momentum_sgd"
    # integers as text (the table would print 16.000), floats as numbers
    assert start["batch_size"].string_value == "16" and start["epochs"].string_value == "2"
    assert start["lr"].number_value == results["hparams"]["lr"]
    # the outcome, at the run's last step
    scalars = set(accumulator.Tags()["scalars"])
    test_acc = accumulator.Scalars("hparams/test_acc")
    assert [(e.step, round(e.value, 6)) for e in test_acc] == [(results["global_step"], round(results["test_acc"], 6))]
    assert accumulator.Scalars("hparams/diverged")[0].value == 0.0
    assert "hparams/trainable" not in scalars  # only search probes have a verdict
    assert "hparams/val_acc" not in scalars  # the test split is not a validation split
    # Lightning's automatic "epoch" scalar is gone; the metrics are there
    # (the evaluation's tags name its split: this run evaluates the test split every epoch)
    assert results["eval_split"] == "test"
    assert "epoch" not in scalars and {"train/loss", "train/acc", "test/loss", "test/acc"} <= scalars


def test_hparams_type_booleans_as_booleans_and_a_held_out_split_declares_val_acc(fit_runs) -> None:
    run = fit_runs("cifar10")  # CIFAR-10's crop + flip: augment differs from cnn15_skip2's MNIST protocol
    records = hparams_records(accumulate(run.run_dir))
    infos = {info.name: info.type for info in records["_hparams_/experiment"].experiment.hparam_infos}
    assert infos["augment"] == api_pb2.DATA_TYPE_BOOL and infos["lr"] == api_pb2.DATA_TYPE_FLOAT64
    assert infos["batch_size"] == api_pb2.DATA_TYPE_STRING
    start = records["_hparams_/session_start_info"].session_start_info.hparams
    assert start["augment"].WhichOneof("kind") == "bool_value" and start["augment"].bool_value is True
    held_out = fit_runs("fashion_mnist")
    metrics = [info.name.tag for info in hparams_records(accumulate(held_out.run_dir))[
        "_hparams_/experiment"].experiment.metric_infos]
    assert metrics == ["hparams/test_acc", "hparams/train_acc", "hparams/diverged", "hparams/val_acc"]


def test_a_run_folder_is_named_for_what_it_changed(fit_runs) -> None:
    run = fit_runs("fashion_mnist")
    assert run.run_dir.parent.name == "cnn5"
    assert run.run_dir.name.endswith("-s0") and "lr0.05" in run.run_dir.name and "cosine" in run.run_dir.name, \
        run.run_dir.name


def test_the_custom_scalars_layout_overlays_every_layer_and_the_config_is_text(fit_runs) -> None:
    run = fit_runs("mnist")
    accumulator = accumulate(run.run_dir)
    content = accumulator.PluginTagToContent("custom_scalars")
    assert content, "no custom-scalars layout"
    tensor = accumulator.Tensors("custom_scalars__config__")[0].tensor_proto
    layout = layout_pb2.Layout.FromString(tensor.string_val[0])
    titles = [category.title for category in layout.category]
    assert titles == ["1 training", "2 gradients"]  # loss and accuracy first
    charts = {chart.title: list(chart.multiline.tag) for category in layout.category for chart in category.chart}
    assert charts["per-layer L2 norm (all layers)"] == [r"grad/l2/.*"]
    layer_tags = [tag for tag in accumulator.Tags()["scalars"] if tag.startswith("grad/l2/")]
    assert len(layer_tags) == 5  # cnn5: conv1..conv3, fc1, fc2 — all matched by the one chart's regex
    text = accumulator.Tensors("config/text_summary")[0].tensor_proto.string_val[0].decode()
    config = json.loads("\n".join(line[4:] for line in text.splitlines()))
    assert config == json.loads((run.run_dir / "config.json").read_text())


def test_final_metrics_leave_out_what_was_not_measured() -> None:
    results = {"history": [{"val_acc": 0.9, "train_acc": float("nan")}], "test_acc": None, "diverged": True,
               "trainability": {"trainable": False}, "eval_split": "val"}
    assert final_metrics(results) == {"hparams/val_acc": 0.9, "hparams/diverged": 1.0, "hparams/trainable": 0.0}
    # the seeds' protocol evaluates the test split each epoch: its accuracy is test_acc, never a val_acc
    assert "hparams/val_acc" not in final_metrics(dict(results, eval_split="test"))
    with pytest.raises(KeyError):
        final_metrics({"history": []})["hparams/val_acc"]


def test_every_scalar_is_on_the_optimizer_step_axis(synthetic_data_dir, tmp_path) -> None:
    """A chunked run (4 batches per training_step, 10 per epoch): each epoch's metrics sit at the step that
    closed it, on the axis of train/loss_step and grad/*, not at Lightning's count of training_step calls."""
    import contextlib
    import io

    from deeplab.config import FitConfig
    from deeplab.training.fit import fit

    with contextlib.redirect_stdout(io.StringIO()):
        results = fit(FitConfig(model="cnn5", dataset="mnist", data_dir=str(synthetic_data_dir), batch_size=16,
                                epochs=2, limit_train_batches=10, limit_val_batches=2, steps_per_call=4,
                                grad_every=5, progress_bar=False, log_dir=str(tmp_path)))
    assert results["engine"]["steps_per_call"] == 4 and results["global_step"] == 20
    accumulator = accumulate(Path(results["run_dir"]))
    for tag in ("train/loss", "train/acc", "test/loss", "test/acc"):
        assert [event.step for event in accumulator.Scalars(tag)] == [10, 20], tag  # steps at each epoch's end
    assert [event.step for event in accumulator.Scalars("grad/l2_total")] == [0, 5, 10, 15]
