"""The seeds' quirks as explicit switches (issue 15), off by default.

``--eval-mode-after-first-epoch`` (seed 002's ``train_epoch`` never calls
``model.train()``, and its ``test()`` calls ``model.eval()``): with the switch,
batch norm's running statistics stay exactly where epoch 1 left them while the
weights keep training; without it they keep moving.
"""

from __future__ import annotations

import contextlib
import io
from types import SimpleNamespace

import pytest
import torch

from deeplab.config import FitConfig
from deeplab.training.engine import resolve_engine
from deeplab.errors import DeeplabError
from deeplab.models import create_model
from deeplab.search.ledger import probe_settings
from deeplab.training.fit import fit


def _fit(config: FitConfig) -> dict:
    with contextlib.redirect_stdout(io.StringIO()):
        return fit(config)


def _state(results: dict) -> dict[str, torch.Tensor]:
    return torch.load(results["checkpoint"], map_location="cpu", weights_only=True)["state_dict"]


@pytest.fixture(scope="module")
def quirk_runs(synthetic_data_dir, tmp_path_factory):
    base = dict(model="cnn_elu_bn", depth=3, dataset="mnist", data_dir=str(synthetic_data_dir), batch_size=16,
                limit_val_batches=1, optimizer="sgd", lr=0.01, momentum=0.9, seed=2, progress_bar=False,
                grad_norms=False)
    root = tmp_path_factory.mktemp("quirk")
    return {
        "one_epoch": _fit(FitConfig(**base, epochs=1, log_dir=str(root / "one"))),
        "two_epochs": _fit(FitConfig(**base, epochs=2, log_dir=str(root / "two"))),
        "two_epochs_quirk": _fit(FitConfig(**base, epochs=2, eval_mode_after_first_epoch=True,
                                           log_dir=str(root / "quirk"))),
    }


def test_with_the_switch_running_statistics_stay_where_epoch_one_left_them(quirk_runs):
    after_one, quirk = _state(quirk_runs["one_epoch"]), _state(quirk_runs["two_epochs_quirk"])
    stats = [k for k in after_one if k.endswith(("running_mean", "running_var", "num_batches_tracked"))]
    assert len(stats) == 3 * 3  # three batch norms
    for key in stats:
        assert torch.equal(after_one[key], quirk[key]), key
    # ... while the weights kept training in epoch 2
    weights = [k for k in after_one if k.endswith("weight") and "fully_connected" in k]
    assert weights and all(not torch.equal(after_one[k], quirk[k]) for k in weights)
    assert quirk_runs["two_epochs_quirk"]["hparams"]["eval_mode_after_first_epoch"] is True


def test_without_it_running_statistics_keep_moving(quirk_runs):
    after_one, plain = _state(quirk_runs["one_epoch"]), _state(quirk_runs["two_epochs"])
    for key in [k for k in after_one if k.endswith(("running_mean", "running_var"))]:
        assert not torch.equal(after_one[key], plain[key]), key
    assert quirk_runs["two_epochs"]["hparams"]["eval_mode_after_first_epoch"] is False
    # the first epoch is the same run either way
    assert quirk_runs["two_epochs"]["history"][0] == quirk_runs["two_epochs_quirk"]["history"][0]
    assert quirk_runs["two_epochs"]["history"][1] != quirk_runs["two_epochs_quirk"]["history"][1]


def test_the_switch_is_part_of_a_probes_ledger_key_and_keeps_the_step_eager():
    plain, quirk = FitConfig(model="cnn_elu_bn"), FitConfig(model="cnn_elu_bn", eval_mode_after_first_epoch=True)
    assert probe_settings(plain) != probe_settings(quirk)
    model = create_model("cnn5", in_channels=1, num_classes=10, image_size=28)
    config = SimpleNamespace(model="cnn5", batch_size=32, compile="auto", channels_last=None, steps_per_call=None,
                             precision="32-true", fast_dev_run=False, fast_kernels=None,
                             eval_mode_after_first_epoch=True)
    assert resolve_engine(config, model, 10**6, 1, False).compile == "off"
    config.compile = "step"
    with pytest.raises(DeeplabError, match="eval-mode-after-first-epoch"):
        resolve_engine(config, model, 10**6, 1, False)


# ------------------------------------------------------------ seed 000 Part 3
def test_the_l1_of_a_continued_epoch_is_the_straight_runs(synthetic_data_dir, tmp_path, single_thread):
    """Seed 000's 10.62 is epoch 11 of a continued run: ``--ckpt-path <run> --epochs 2N --grad-l1-epoch N+1``
    gives the mean over that epoch, equal to a straight 2N-epoch run's, and not epoch 1's."""
    base = dict(model="cnn15_plain", dataset="mnist", data_dir=str(synthetic_data_dir), batch_size=16,
                limit_val_batches=1, limit_train_batches=6, seed=1, progress_bar=False, grad_every=3)
    first = _fit(FitConfig(**base, epochs=1, log_dir=str(tmp_path / "continued")))
    continued = _fit(FitConfig(**base, epochs=2, grad_l1_epoch=2, ckpt_path=first["checkpoint"],
                               log_dir=str(tmp_path / "continued")))
    straight = _fit(FitConfig(**base, epochs=2, grad_l1_epoch=2, log_dir=str(tmp_path / "straight")))
    assert first["grad"]["l1_epoch"] == 1 and first["grad"]["epoch_mean_l1"] == first["grad"]["first_epoch_mean_l1"]
    assert continued["grad"]["l1_epoch"] == 2 and continued["grad"]["first_epoch_mean_l1"] is None
    assert continued["grad"]["epoch_mean_l1"] == straight["grad"]["epoch_mean_l1"]
    assert continued["grad"]["epoch_mean_l1"] != first["grad"]["epoch_mean_l1"]
    with pytest.raises(DeeplabError, match="--grad-l1-epoch"):
        _fit(FitConfig(**base, grad_l1_epoch=0, log_dir=str(tmp_path / "bad")))


def test_skip_connections_seed_protocol_continues_the_plain_net(synthetic_data_dir, tmp_path, single_thread, capsys):
    import json

    from deeplab.experiments.runner import ExperimentOptions, run_experiment

    out = tmp_path / "skip"
    run_experiment("skip_connections", ExperimentOptions(quick=True, data_dir=str(synthetic_data_dir), out=str(out),
                                                         seed_protocol=True))
    report = (out / "report.md").read_text()
    assert "Seed protocol: the plain net continued" in report and "10.62" in report
    results = json.loads((out / "results.json").read_text())
    continued = results["results"]["plain_continued"]
    assert continued["epoch_mean_l1"][0] is not None
    labels = [t["label"] for t in results["trainings"]]
    assert labels[-1] == "cnn15_plain-continued"
    run = results["trainings"][-1]["per_seed"][0]
    assert run["epochs_run"] == 2 and run["resumes"] and run["grad_l1_epoch"] == 2  # the quick budget's 1 epoch, continued for 1 more
