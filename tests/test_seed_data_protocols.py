"""Seed data protocols as options: seed 003's CIFAR-10 std, seed 004's flip-only augmentation and its
flipped test images (``--augment-eval``), through the DataModule, the config, resume and the ledger."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torchvision.transforms.v2.functional as TF

from deeplab.config import FitConfig

from deeplab.training.resolve import resolve_config
from deeplab.data.datamodules import CIFAR10DataModule, MNISTDataModule
from deeplab.errors import DeeplabError
from deeplab.training.resumable.resume import SavedRun, compare_settings
from deeplab.search.ledger import probe_key, probe_settings

pytestmark = pytest.mark.usefixtures("single_thread")

SEED003_MEAN = (0.4914, 0.4822, 0.4465)
SEED003_STD = (0.247, 0.243, 0.261)  # seed 003 part3.py line 23
REPO = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------ the DataModule
def test_normalization_override_divides_by_the_given_std(synthetic_data_dir):
    default = CIFAR10DataModule(synthetic_data_dir, download=False, augment=False)
    seed003 = CIFAR10DataModule(synthetic_data_dir, download=False, augment=False, mean=SEED003_MEAN, std=SEED003_STD)
    images = default.split("train")[0][:8]
    expected = (images.float() / 255 - torch.tensor(SEED003_MEAN).view(1, 3, 1, 1)) / torch.tensor(SEED003_STD).view(1, 3, 1, 1)
    torch.testing.assert_close(seed003.device_transform(images, training=False), expected)
    # seed 001's std (the default) gives other values: the override is not ignored
    assert not torch.allclose(default.device_transform(images, training=False), expected, atol=1e-3)


@pytest.mark.parametrize("kwargs", [dict(std=(0.2, 0.2)), dict(std=(0.2, 0.0, 0.2)), dict(mean=(float("nan"), 0, 0))])
def test_bad_statistics_are_refused_in_one_line(synthetic_data_dir, kwargs):
    with pytest.raises(DeeplabError, match="--normalize-(std|mean) must be 3"):
        CIFAR10DataModule(synthetic_data_dir, download=False, **kwargs)


def test_crop_padding_zero_flips_only(synthetic_data_dir):
    """Seed 004's ``RandomHorizontalFlip()`` alone: every image is itself or its mirror image."""
    datamodule = CIFAR10DataModule(synthetic_data_dir, download=False, crop_padding=0)
    images = datamodule.split("train")[0][:64]
    augmented = datamodule._random_crop_flip(images.clone())
    flipped = []
    for original, output in zip(images, augmented):
        same, mirrored = torch.equal(output, original), torch.equal(output, TF.horizontal_flip(original))
        assert same or mirrored
        flipped.append(mirrored)
    assert 0 < sum(flipped) < len(flipped)  # both outcomes drawn
    # the default padding 4 crops: some images are neither the original nor its mirror
    cropped = CIFAR10DataModule(synthetic_data_dir, download=False)._random_crop_flip(images.clone())
    assert any(not torch.equal(o, i) and not torch.equal(o, TF.horizontal_flip(i)) for o, i in zip(cropped, images))


def test_augment_eval_flips_evaluation_images_and_leaves_training_draws_alone(synthetic_data_dir):
    plain = CIFAR10DataModule(synthetic_data_dir, batch_size=16, download=False, crop_padding=0)
    quirk = CIFAR10DataModule(synthetic_data_dir, batch_size=16, download=False, crop_padding=0, augment_eval=True)
    images = plain.split("test")[0][:32]
    assert torch.equal(plain.device_transform(images, training=False), plain.device_transform(images, training=False))
    evaluated = quirk.device_transform(images, training=False)
    unflipped = plain.device_transform(images, training=False)
    mirrored = plain.device_transform(TF.horizontal_flip(images), training=False)
    per_image = [torch.equal(e, u) or torch.equal(e, m) for e, u, m in zip(evaluated, unflipped, mirrored)]
    assert all(per_image) and not torch.equal(evaluated, unflipped)
    # the evaluation flips come from their own generator: the next training batch is the one
    # the run without the quirk draws
    train = plain.split("train")[0][:16]
    torch.testing.assert_close(quirk.device_transform(train, training=True), plain.device_transform(train, training=True),
                               rtol=0, atol=0)
    # and the evaluation generator travels in the checkpoint state
    state = quirk.state_dict()
    again = CIFAR10DataModule(synthetic_data_dir, batch_size=16, download=False, crop_padding=0, augment_eval=True)
    again.load_state_dict(state)
    assert torch.equal(again.device_transform(images, training=False), quirk.device_transform(images, training=False))


# ------------------------------------------------------------------ the config
def test_seed003_models_take_seed003_std_on_cifar_only():
    on_cifar = resolve_config(FitConfig(model="cnn_5"))
    assert on_cifar.dataset == "cifar10"
    assert on_cifar.normalize_std == SEED003_STD and on_cifar.normalize_mean == SEED003_MEAN
    on_mnist = resolve_config(FitConfig(model="cnn_5", dataset="mnist"))
    assert on_mnist.normalize_std is None and on_mnist.normalize_mean is None  # MNIST's own statistics
    # seed 001's models keep seed 001's statistics (the dataset's default)
    assert resolve_config(FitConfig(model="resnet18")).normalize_std is None
    # the user's value wins over the protocol
    assert resolve_config(FitConfig(model="cnn_5", normalize_std=(0.2, 0.2, 0.2))).normalize_std == (0.2, 0.2, 0.2)


def test_seed004_models_flip_without_cropping():
    config = resolve_config(FitConfig(model="resnet_deep"))
    assert config.augment is True and config.crop_padding == 0
    assert resolve_config(FitConfig(model="resnet18")).crop_padding is None  # seed 001: the pad-4 crop


@pytest.mark.parametrize("overrides, message", [
    (dict(model="cnn_5", normalize_std=(0.2, 0.2)), "--normalize-std must be 3"),
    (dict(model="two_layer_mlp", dataset="mnist", normalize_std=(0.3, 0.3, 0.3)), "--normalize-std must be 1"),
    (dict(model="resnet18", crop_padding=-1), "--crop-padding must be an integer ≥ 0"),
    (dict(model="two_layer_mlp", augment_eval=True), "--augment-eval .* needs --augment"),
])
def test_bad_protocol_options_are_refused(overrides, message):
    with pytest.raises(DeeplabError, match=message):
        resolve_config(FitConfig(**overrides))


def test_fit_cli_rejects_a_malformed_std_in_one_line(tmp_path):
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "fit.py"), "--model", "cnn_5",
                           "--normalize-std", "0.2,x"], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert proc.returncode == 2
    assert "--normalize-std" in proc.stderr and "comma-separated numbers" in proc.stderr
    assert "Traceback" not in proc.stderr


# ------------------------------------------------------------------ resume and the ledger
def _saved(config: dict) -> SavedRun:
    return SavedRun(path=Path("last.ckpt"), config=config, position={"global_step": 0}, world_size=1,
                    training_images=None, diverged_at_step=None, resumes=[])


def test_resume_refuses_another_std_and_accepts_runs_recorded_before_the_option():
    config = resolve_config(FitConfig(model="cnn_5")).to_dict()
    as_json = {**config, "normalize_std": list(config["normalize_std"]), "normalize_mean": list(config["normalize_mean"])}
    assert compare_settings(_saved(as_json), config) == {}  # a list read back from JSON is the same setting
    with pytest.raises(DeeplabError, match=r"--normalize-std 0.2,0.2,0.2 \(the run has 0.247,0.243,0.261\)"):
        compare_settings(_saved(config), {**config, "normalize_std": (0.2, 0.2, 0.2)})
    older = resolve_config(FitConfig(model="resnet18")).to_dict()
    recorded_before = {k: v for k, v in older.items() if k not in ("crop_padding", "augment_eval", "normalize_mean",
                                                                   "normalize_std")}
    assert compare_settings(_saved(recorded_before), older) == {}
    with pytest.raises(DeeplabError, match="--crop-padding 0"):
        compare_settings(_saved(recorded_before), {**older, "crop_padding": 0})


def test_ledger_keys_of_probes_written_before_the_options_still_match():
    settings = probe_settings(resolve_config(FitConfig(model="cnn_tanh", depth=6)))
    assert settings["normalize_std"] is None and settings["augment_eval"] is False
    older = {k: v for k, v in settings.items() if k not in ("crop_padding", "augment_eval", "normalize_mean",
                                                             "normalize_std")}
    assert probe_key(older, 6, 0) == probe_key(settings, 6, 0)
    other_std = probe_settings(resolve_config(FitConfig(model="cnn_tanh", depth=6, normalize_std=(0.5,))))
    assert probe_key(other_std, 6, 0) != probe_key(settings, 6, 0)


def test_results_record_the_statistics_and_augmentation_that_ran(fit_runs):
    """results.json's ``data`` names what the data path used (hparams keep None = the data set's)."""
    mnist = fit_runs("mnist").results
    assert mnist["hparams"]["normalize_std"] is None
    assert mnist["data"]["normalize_mean"] == pytest.approx([0.1307])
    assert mnist["data"]["normalize_std"] == pytest.approx([0.3081])
    assert mnist["data"]["augment"] is False and mnist["data"]["crop_padding"] is None
    cifar = fit_runs("cifar10").results  # cnn15_skip2: seed 001's statistics and pad-4 crop
    assert cifar["data"]["normalize_std"] == pytest.approx([0.2023, 0.1994, 0.2010])
    assert cifar["data"]["augment"] is True and cifar["data"]["crop_padding"] == 4
