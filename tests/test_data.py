"""The DataModules on synthetic files in torchvision's real formats (and real MNIST when present):
shapes, uint8 storage, splits, normalization, CIFAR-10 crop + flip against torchvision's own ops,
the offline errors, and TensorBatches' DDP sharding and mid-epoch resume."""

from __future__ import annotations

import shutil
import struct
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torchvision.transforms.v2.functional as TF

from conftest import DATA_DIR_ENV, REAL_DATA_DIR, SYNTHETIC_TEST, SYNTHETIC_TRAIN
from deeplab.data import datamodules as data_module
from deeplab.data.datamodules import (
    CIFAR10DataModule,
    FashionMNISTDataModule,
    MNISTDataModule,
    TensorBatches,
    create_datamodule,
)
from deeplab.errors import DeeplabError

ALL = [MNISTDataModule, FashionMNISTDataModule, CIFAR10DataModule]
IDS = [cls.name for cls in ALL]

pytestmark = pytest.mark.usefixtures("single_thread")


def image_keys(images: torch.Tensor) -> list[bytes]:
    """One hashable key per image (the synthetic images' noise makes each unique)."""
    return [image.numpy().tobytes() for image in images]


# ------------------------------------------------------------------ loading
@pytest.mark.parametrize("cls", ALL, ids=IDS)
def test_batches_have_dataset_shape_and_uint8_storage(cls, synthetic_data_dir):
    datamodule = cls(synthetic_data_dir, batch_size=8, download=False)
    datamodule.prepare_data()
    datamodule.setup("fit")
    images, labels = datamodule.split("train")
    assert images.dtype == torch.uint8 and images.is_contiguous()
    assert tuple(images.shape) == (SYNTHETIC_TRAIN, *cls.dims)
    assert labels.dtype == torch.int64 and labels.shape == (SYNTHETIC_TRAIN,)
    assert sorted(labels.unique().tolist()) == list(range(10))
    assert len(datamodule.split("test")[1]) == SYNTHETIC_TEST
    # no val_split: per-epoch evaluation is on the test split
    assert datamodule.eval_split_name == "test"
    assert torch.equal(datamodule.split("val")[0], datamodule.split("test")[0])

    batch_images, batch_labels = next(iter(datamodule.train_dataloader()))
    assert tuple(batch_images.shape) == (8, *cls.dims) and batch_images.dtype == torch.uint8
    assert batch_labels.shape == (8,)
    assert len(datamodule.train_dataloader()) == SYNTHETIC_TRAIN // 8
    eval_images, _ = next(iter(datamodule.val_dataloader()))
    assert len(eval_images) == SYNTHETIC_TEST  # eval batch max(8, 1000) takes the whole split


def test_cifar_images_match_the_pickled_rows(synthetic_data_dir):
    """(N, 3072) channel-major rows → (N, 3, 32, 32): pixel (c, y, x) is row[c·1024 + 32·y + x]."""
    import pickle

    with open(synthetic_data_dir / "cifar-10-batches-py" / "test_batch", "rb") as file:
        entry = pickle.load(file, encoding="bytes")  # the CIFAR site's recipe reads the same file
    rows = torch.as_tensor(entry[b"data"])
    images, labels = CIFAR10DataModule(synthetic_data_dir, download=False).split("test")
    assert torch.equal(images.reshape(len(images), -1), rows)
    assert labels.tolist() == entry[b"labels"]


def test_create_datamodule_by_name(synthetic_data_dir):
    assert isinstance(create_datamodule("fashion_mnist", data_dir=synthetic_data_dir), FashionMNISTDataModule)
    with pytest.raises(DeeplabError, match="mnist, fashion_mnist, cifar10"):
        create_datamodule("imagenet")


@pytest.mark.parametrize("cls", ALL, ids=IDS)
def test_normalization_matches_hand_computation(cls, synthetic_data_dir):
    datamodule = cls(synthetic_data_dir, batch_size=64, download=False)
    images, _ = datamodule.split("test")
    x = datamodule.device_transform(images, training=False)
    assert x.dtype == torch.float32 and x.shape == images.shape
    mean = torch.tensor(cls.mean).view(1, -1, 1, 1)
    std = torch.tensor(cls.std).view(1, -1, 1, 1)
    torch.testing.assert_close(x, (images.float() / 255 - mean) / std)
    # per-channel batch statistics follow from the raw pixels' statistics
    raw = images.double() / 255
    for channel in range(cls.dims[0]):
        expected_mean = (raw[:, channel].mean() - cls.mean[channel]) / cls.std[channel]
        expected_std = raw[:, channel].std() / cls.std[channel]
        assert x[:, channel].double().mean().item() == pytest.approx(expected_mean.item(), abs=1e-5)
        assert x[:, channel].double().std().item() == pytest.approx(expected_std.item(), rel=1e-5)
    # normalize=False: just [0, 1]
    plain = cls(synthetic_data_dir, normalize=False, download=False).device_transform(images, training=False)
    torch.testing.assert_close(plain, images.float() / 255)


def test_seed_normalization_constants():
    assert (MNISTDataModule.mean, MNISTDataModule.std) == ((0.1307,), (0.3081,))
    assert (FashionMNISTDataModule.mean, FashionMNISTDataModule.std) == ((0.5,), (0.5,))
    assert CIFAR10DataModule.mean == (0.4914, 0.4822, 0.4465)
    assert CIFAR10DataModule.std == (0.2023, 0.1994, 0.2010)
    assert CIFAR10DataModule.augment_by_default and not MNISTDataModule.augment_by_default


@pytest.mark.skipif(not (REAL_DATA_DIR / "MNIST" / "raw").is_dir(), reason="real MNIST not on this machine")
def test_real_mnist_statistics():
    """The real MNIST loads through the same path; its train pixels have mean 0.1307, std 0.3081."""
    datamodule = MNISTDataModule(REAL_DATA_DIR, download=False)
    images, labels = datamodule.split("train")
    assert tuple(images.shape) == (60000, 1, 28, 28) and len(datamodule.split("test")[1]) == 10000
    pixels = images.double() / 255
    assert pixels.mean().item() == pytest.approx(0.1307, abs=5e-5)
    assert pixels.std().item() == pytest.approx(0.3081, abs=5e-5)
    x = datamodule.device_transform(images[:10000], training=False)
    assert abs(x.mean().item()) < 0.01 and abs(x.std().item() - 1) < 0.01


# ------------------------------------------------------------- augmentation
def torchvision_crop_flip_candidates(image: torch.Tensor) -> dict[tuple[int, int, bool], torch.Tensor]:
    """Every output torchvision's ``RandomCrop(32, padding=4)`` + ``RandomHorizontalFlip()`` can
    give for one uint8 (C, H, W) image: key (top, left, flipped), with torchvision's own ops."""
    height, width = image.shape[-2:]
    padded = TF.pad(image, [4])  # constant 0 fill, RandomCrop's default
    out = {}
    for top in range(9):
        for left in range(9):
            crop = TF.crop(padded, top, left, height, width)
            out[(top, left, False)] = crop
            out[(top, left, True)] = TF.horizontal_flip(crop)
    return out


def test_cifar_crop_flip_is_torchvisions_random_crop_and_flip(synthetic_data_dir):
    datamodule = CIFAR10DataModule(synthetic_data_dir, download=False)
    images = datamodule.split("train")[0][:32]
    augmented = datamodule._random_crop_flip(images.clone())
    assert augmented.shape == images.shape and augmented.dtype == torch.uint8
    drawn = []
    for original, output in zip(images, augmented):
        matches = [key for key, candidate in torchvision_crop_flip_candidates(original).items()
                   if torch.equal(candidate, output)]
        assert len(matches) == 1, f"augmented image matches {len(matches)} torchvision crops/flips"
        drawn.append(matches[0])
    # the draws vary: several offsets, both flip states
    assert len({(top, left) for top, left, _ in drawn}) > 5
    assert {flipped for _, _, flipped in drawn} == {True, False}


def test_augmentation_only_on_training_batches(synthetic_data_dir):
    datamodule = CIFAR10DataModule(synthetic_data_dir, batch_size=16, download=False)
    images, labels = next(iter(datamodule.train_dataloader()))
    unaugmented = datamodule.device_transform(images, training=False)

    datamodule.trainer = SimpleNamespace(training=False)  # validation / test
    for _ in range(3):
        x, y = datamodule.on_after_batch_transfer((images, labels), 0)
        assert torch.equal(x, unaugmented) and y is labels
    datamodule.trainer = None  # outside a Trainer (e.g. inference) is never training
    assert torch.equal(datamodule.on_after_batch_transfer((images, labels), 0)[0], unaugmented)

    datamodule.trainer = SimpleNamespace(training=True)
    x, _ = datamodule.on_after_batch_transfer((images, labels), 0)
    assert x.shape == unaugmented.shape and not torch.equal(x, unaugmented)
    # --no-augment and the grayscale datasets never augment
    datamodule.augment = False
    assert torch.equal(datamodule.on_after_batch_transfer((images, labels), 0)[0], unaugmented)


def test_input_noise_only_on_training(synthetic_data_dir):
    datamodule = MNISTDataModule(synthetic_data_dir, input_noise_std=0.1, download=False)
    images = datamodule.split("test")[0][:64]
    clean = datamodule.device_transform(images, training=False)
    noisy = datamodule.device_transform(images, training=True)
    assert (noisy - clean).std().item() == pytest.approx(0.1, rel=0.05)


def test_batch_size_one(synthetic_data_dir):
    for cls in (MNISTDataModule, CIFAR10DataModule):
        datamodule = cls(synthetic_data_dir, batch_size=1, download=False)
        loader = datamodule.train_dataloader()
        assert len(loader) == SYNTHETIC_TRAIN
        images, labels = next(iter(loader))
        assert tuple(images.shape) == (1, *cls.dims) and labels.shape == (1,)
        out = datamodule.device_transform(images, training=True)
        assert tuple(out.shape) == (1, *cls.dims) and torch.isfinite(out).all()
    with pytest.raises(DeeplabError, match="batch-size"):
        MNISTDataModule(synthetic_data_dir, batch_size=0)


# -------------------------------------------------------------- val split
@pytest.mark.parametrize("val_split, n_val", [(0.25, 64), (50, 50), (50.0, 50)])
def test_val_split_sizes_disjoint_seeded(synthetic_data_dir, val_split, n_val):
    def splits(seed):
        datamodule = MNISTDataModule(synthetic_data_dir, val_split=val_split, seed=seed, download=False)
        datamodule.setup()
        return datamodule, datamodule.split("train"), datamodule.split("val")

    datamodule, (train_x, train_y), (val_x, val_y) = splits(seed=0)
    assert datamodule.eval_split_name == "validation"
    assert len(val_x) == len(val_y) == n_val and len(train_x) == SYNTHETIC_TRAIN - n_val
    assert len(datamodule.split("test")[0]) == SYNTHETIC_TEST  # the test split is untouched
    full = image_keys(MNISTDataModule(synthetic_data_dir, download=False).split("train")[0])
    train_keys, val_keys = image_keys(train_x), image_keys(val_x)
    assert not set(train_keys) & set(val_keys)
    assert sorted(train_keys + val_keys) == sorted(full)

    _, _, (again_x, again_y) = splits(seed=0)
    assert torch.equal(again_x, val_x) and torch.equal(again_y, val_y)
    _, _, (other_x, _) = splits(seed=1)
    assert not torch.equal(other_x, val_x)


@pytest.mark.parametrize("val_split", [0.0, -0.1, 1.5, -3, "a tenth"])
def test_val_split_out_of_range_at_construction(synthetic_data_dir, val_split):
    with pytest.raises(DeeplabError, match="val-split"):
        MNISTDataModule(synthetic_data_dir, val_split=val_split)


@pytest.mark.parametrize("val_split", [SYNTHETIC_TRAIN, 10_000, 0.999])
def test_val_split_leaving_no_training_data(synthetic_data_dir, val_split):
    datamodule = MNISTDataModule(synthetic_data_dir, val_split=val_split, download=False)
    with pytest.raises(DeeplabError, match=r"--val-split .* between 1 and 255"):
        datamodule.setup()


# ------------------------------------------------------------- data dir
def test_data_dir_from_environment(synthetic_data_dir, monkeypatch, tmp_path):
    assert data_module.DATA_DIR_ENV == DATA_DIR_ENV
    monkeypatch.setenv(DATA_DIR_ENV, str(synthetic_data_dir))
    datamodule = FashionMNISTDataModule(download=False)
    assert datamodule.data_dir == synthetic_data_dir
    datamodule.prepare_data()
    assert len(datamodule.split("train")[0]) == SYNTHETIC_TRAIN
    # an explicit data_dir wins over the variable
    assert MNISTDataModule(tmp_path).data_dir == tmp_path
    monkeypatch.delenv(DATA_DIR_ENV)
    assert MNISTDataModule().data_dir == Path("./data")


@pytest.mark.parametrize(
    "cls, layout",
    [
        (MNISTDataModule, "MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte"),
        (FashionMNISTDataModule, "FashionMNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte"),
        (CIFAR10DataModule, "cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}"),
    ],
    ids=IDS,
)
def test_missing_files_offline_error(cls, layout, tmp_path):
    datamodule = cls(tmp_path, download=False)
    with pytest.raises(DeeplabError) as error:
        datamodule.prepare_data()
    message = str(error.value)
    assert f"{tmp_path}/{layout}" in message and "--data-dir" in message and DATA_DIR_ENV in message
    assert "\n" not in message
    with pytest.raises(DeeplabError, match="not found"):
        cls(tmp_path, download=False).setup()


def test_a_failed_download_leaves_the_data_folder_untouched(tmp_path, monkeypatch):
    """torchvision's real download code against an unreachable mirror (this machine has no internet
    anyway): one line with the cause, and no FashionMNIST/raw folders left in the user's data folder."""
    from torchvision import datasets

    monkeypatch.setattr(datasets.FashionMNIST, "mirrors", ["http://127.0.0.1:9/"])
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "README").write_text("a shared data set folder")
    with pytest.raises(DeeplabError, match=r"the download failed \((URLError|RuntimeError|ConnectionRefusedError)") as error:
        FashionMNISTDataModule(shared, download=True).prepare_data()
    assert "\n" not in str(error.value)
    assert sorted(p.name for p in shared.iterdir()) == ["README"]
    absent = tmp_path / "not-yet"
    with pytest.raises(DeeplabError, match="the download failed"):
        FashionMNISTDataModule(absent, download=True).prepare_data()
    assert not absent.exists()


def test_missing_test_split_only(synthetic_data_dir, tmp_path):
    shutil.copytree(synthetic_data_dir / "MNIST", tmp_path / "MNIST")
    (tmp_path / "MNIST" / "raw" / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DeeplabError, match="not found"):
        MNISTDataModule(tmp_path, download=False).prepare_data()


@pytest.mark.parametrize("keep", ["nothing", "half the header", "half the body"])
@pytest.mark.parametrize("file_name", ["train-images-idx3-ubyte", "t10k-labels-idx1-ubyte"])
def test_truncated_idx_file_is_a_clear_error(synthetic_data_dir, tmp_path, keep, file_name):
    shutil.copytree(synthetic_data_dir / "MNIST", tmp_path / "MNIST")
    path = tmp_path / "MNIST" / "raw" / file_name
    content = path.read_bytes()
    header = 16 if "images" in file_name else 8
    keep_bytes = {"nothing": 0, "half the header": header // 2, "half the body": (header + len(content)) // 2}[keep]
    path.write_bytes(content[:keep_bytes])
    for attempt in ("prepare_data", "setup"):
        datamodule = MNISTDataModule(tmp_path, download=False)
        with pytest.raises(DeeplabError, match="truncated or corrupt") as error:
            getattr(datamodule, attempt)()
        assert "--data-dir" in str(error.value) and "\n" not in str(error.value)


def test_wrong_magic_number_is_a_clear_error(synthetic_data_dir, tmp_path):
    shutil.copytree(synthetic_data_dir / "MNIST", tmp_path / "MNIST")
    path = tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte"
    content = path.read_bytes()
    path.write_bytes(struct.pack(">I", 0x00000D03) + content[4:])  # float32 images: not MNIST's uint8
    with pytest.raises(DeeplabError, match="truncated or corrupt"):
        MNISTDataModule(tmp_path, download=False).setup()


def test_truncated_cifar_batch_is_a_clear_error(synthetic_data_dir, tmp_path):
    shutil.copytree(synthetic_data_dir / "cifar-10-batches-py", tmp_path / "cifar-10-batches-py")
    path = tmp_path / "cifar-10-batches-py" / "data_batch_3"
    path.write_bytes(path.read_bytes()[:500])
    with pytest.raises(DeeplabError, match="truncated or corrupt"):
        CIFAR10DataModule(tmp_path, download=False).prepare_data()


def test_cifar_files_that_differ_from_the_official_archive_are_named_in_one_warning(synthetic_data_dir, tmp_path):
    """md5 sums are checked, not switched off: a copy that differs from the official release loads with one
    warning naming its files (once per folder), and files that match are not named."""
    import hashlib

    from torchvision import datasets

    from deeplab.data.datamodules import CheckedCIFAR10

    folder = tmp_path / "cifar-10-batches-py"
    shutil.copytree(synthetic_data_dir / "cifar-10-batches-py", folder)
    # make batch 2 "official" by pinning its sum in a subclass: only the others must be named
    digest = hashlib.md5((folder / "data_batch_2").read_bytes()).hexdigest()

    class Pinned(CheckedCIFAR10):
        train_list = [[name, digest if name == "data_batch_2" else md5] for name, md5 in datasets.CIFAR10.train_list]

    with pytest.warns(UserWarning, match="differ from the official archive") as caught:
        Pinned(str(tmp_path), train=False, download=False)
    message = str(caught[0].message)
    assert "data_batch_1" in message and "test_batch" in message and "batches.meta" in message
    assert "data_batch_2" not in message
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the same folder again in this process: checked once, no warning
        Pinned(str(tmp_path), train=True, download=False)


# ----------------------------------------------------------- TensorBatches
def index_batches(n: int, batch_size: int, shuffle=True, seed=3, rank=0, world_size=1, epoch=0):
    """The batches of epoch ``epoch`` of a TensorBatches over images = labels = arange(n), as index lists."""
    batches = TensorBatches(torch.arange(n), torch.arange(n), batch_size, shuffle, seed, rank, world_size,
                            epoch_source=lambda: epoch)
    return [labels.tolist() for _, labels in batches]


def test_tensor_batches_cover_the_data_once_per_epoch():
    epoch0, epoch1 = index_batches(50, 8, epoch=0), index_batches(50, 8, epoch=1)
    assert [len(b) for b in epoch0] == [8] * 6 + [2]
    assert sorted(sum(epoch0, [])) == list(range(50))
    assert epoch0 != epoch1 and sorted(sum(epoch1, [])) == list(range(50))
    assert index_batches(50, 8, epoch=1) == epoch1  # order = f(seed, epoch)
    assert index_batches(50, 8, seed=4, epoch=1) != epoch1
    assert index_batches(50, 8, shuffle=False) == [list(range(s, min(s + 8, 50))) for s in range(0, 50, 8)]
    assert len(TensorBatches(torch.arange(50), torch.arange(50), 8, True)) == 7


def test_tensor_batches_without_epoch_source_count_passes():
    batches = TensorBatches(torch.arange(20), torch.arange(20), 5, True, seed=1)
    first = [y.tolist() for _, y in batches]
    second = [y.tolist() for _, y in batches]
    assert first == index_batches(20, 5, seed=1, epoch=0)
    assert second == index_batches(20, 5, seed=1, epoch=1)
    with pytest.raises(DeeplabError):
        TensorBatches(torch.arange(20), torch.arange(20), 0, True)


@pytest.mark.parametrize("shuffle", [True, False])
@pytest.mark.parametrize("epoch", [0, 1])
def test_ddp_shards_union_to_the_single_process_batch(shuffle, epoch):
    n, per_rank = 64, 4
    single = index_batches(n, 2 * per_rank, shuffle=shuffle, epoch=epoch)
    rank0 = index_batches(n, per_rank, shuffle=shuffle, rank=0, world_size=2, epoch=epoch)
    rank1 = index_batches(n, per_rank, shuffle=shuffle, rank=1, world_size=2, epoch=epoch)
    assert len(rank0) == len(rank1) == len(single) == n // (2 * per_rank)
    for i, batch in enumerate(single):
        assert not set(rank0[i]) & set(rank1[i])
        assert sorted(rank0[i] + rank1[i]) == sorted(batch)


def test_ddp_shards_pad_by_wrapping_like_distributed_sampler():
    n = 21  # odd: one index is repeated, as DistributedSampler(drop_last=False) does
    rank0 = sum(index_batches(n, 4, rank=0, world_size=2), [])
    rank1 = sum(index_batches(n, 4, rank=1, world_size=2), [])
    assert len(rank0) == len(rank1) == 11
    assert set(rank0) | set(rank1) == set(range(n))
    assert len(TensorBatches(torch.arange(n), torch.arange(n), 4, True, 0, 1, 2)) == 3


def test_tensor_batches_resume_at_the_next_unseen_batch():
    images = torch.arange(40)
    epoch = {"now": 1}
    uninterrupted = index_batches(40, 4, seed=5, epoch=1)

    resumed = TensorBatches(images, images, 4, True, seed=5, epoch_source=lambda: epoch["now"])
    resumed.resume_at(1, 3)  # the checkpoint had trained on 3 batches of epoch 1
    assert [y.tolist() for _, y in resumed] == uninterrupted[3:]
    # the skip applies to that one pass only
    assert [y.tolist() for _, y in resumed] == uninterrupted
    # a position recorded for another epoch is ignored
    resumed.resume_at(0, 3)
    assert [y.tolist() for _, y in resumed] == uninterrupted


def fake_trainer(epoch: int) -> SimpleNamespace:
    """What ImageDataModule reads from a Trainer: rank, world size, epoch."""
    return SimpleNamespace(training=True, current_epoch=epoch, global_rank=0, world_size=1)


def test_datamodule_resume_at_skips_trained_batches_and_state_carries_augmentation(synthetic_data_dir):
    datamodule = CIFAR10DataModule(synthetic_data_dir, batch_size=32, seed=4, download=False)
    datamodule.trainer = fake_trainer(epoch=1)
    expected = [y for _, y in datamodule.train_dataloader()]
    datamodule._random_crop_flip(datamodule.split("train")[0][:4])  # advance the augmentation generator
    state = datamodule.state_dict()
    # the data order is a function of (seed, epoch): only the augmentation generators are state
    assert set(state) == {"augment_generator", "eval_augment_generator"}
    expected_draw = torch.rand(3, generator=datamodule.augment_generator)

    restored = CIFAR10DataModule(synthetic_data_dir, batch_size=32, seed=4, download=False)
    restored.load_state_dict(state)
    restored.resume_at(1, 2)  # fit() passes the checkpoint's position
    restored.trainer = fake_trainer(epoch=1)
    loader = restored.train_dataloader()
    assert len(loader) == len(expected) - 2 and loader.epoch_batches == len(expected)
    resumed = [y for _, y in loader]
    assert all(torch.equal(a, b) for a, b in zip(resumed, expected[2:], strict=True))
    assert torch.equal(torch.rand(3, generator=restored.augment_generator), expected_draw)
    # another epoch's loader is whole
    restored.trainer = fake_trainer(epoch=2)
    assert len(restored.train_dataloader()) == len(expected)


def test_limits_count_real_batches_and_the_same_evaluation_images(synthetic_data_dir):
    datamodule = MNISTDataModule(synthetic_data_dir, batch_size=16, download=False, limit_train_batches=5,
                                 limit_val_batches=1)
    datamodule.trainer = fake_trainer(epoch=0)
    assert datamodule.epoch_batches() == 5 and len(list(datamodule.train_dataloader())) == 5
    half = MNISTDataModule(synthetic_data_dir, batch_size=16, download=False, limit_train_batches=0.5)
    assert half.epoch_batches() == 8  # 256 images / 16 = 16 batches, half of them
    assert half.epoch_batches(world_size=2) == 4
    (images, labels), = list(datamodule.val_dataloader())
    assert len(labels) == min(1000, len(datamodule.split("val")[1]))
    # under DDP the evaluation limit keeps the same images, split between the processes
    shards = []
    for rank in (0, 1):
        datamodule.trainer = SimpleNamespace(training=False, current_epoch=0, global_rank=rank, world_size=2)
        shards += [y for _, y in datamodule.val_dataloader()]
    assert sorted(torch.cat(shards).tolist()) == sorted(labels.tolist())
