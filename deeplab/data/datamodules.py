"""LightningDataModules for MNIST, Fashion-MNIST and CIFAR-10 with an in-memory uint8 data path.

The seeds feed every image through PIL → ``ToTensor`` → ``Normalize`` in a
``DataLoader``. Here torchvision parses the files once in ``setup``; each split
stays in memory as a uint8 tensor (N, C, H, W); batches are cut by indexing
that tensor (no per-sample collation, decisive at batch 1); normalization and
augmentation run batched on the device in ``on_after_batch_transfer``.

Defaults follow the seeds: MNIST mean/std (0.1307, 0.3081) (seed 002),
Fashion-MNIST (0.5, 0.5) (seed 000), CIFAR-10 (0.4914, 0.4822, 0.4465) /
(0.2023, 0.1994, 0.2010) with pad-4 random crop + horizontal flip on training
batches (seed 001); ``mean``/``std`` and ``crop_padding`` override them (seed 003's
CIFAR-10 std, seed 004's flip-only augmentation). Evaluation uses the official test split every epoch (the
seeds' per-epoch "test error"), unless ``val_split`` holds out part of the
training set (seed 003's 90/10 split); then the test split is evaluated once,
at the end.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Callable, Iterator

import lightning.pytorch as pl
import numpy as np
import torch
import torch.nn.functional as F
from torchvision import datasets

from deeplab.checks import check_channel_statistics
from deeplab.errors import DeeplabError

__all__ = [
    "DATA_DIR_ENV",
    "DEFAULT_DATA_DIR",
    "TensorBatches",
    "ImageDataModule",
    "MNISTDataModule",
    "FashionMNISTDataModule",
    "CIFAR10DataModule",
    "DATAMODULES",
    "create_datamodule",
    "resolve_data_dir",
]

DATA_DIR_ENV = "DEEPLAB_DATA_DIR"
DEFAULT_DATA_DIR = "./data"  # the seeds' root


def resolve_data_dir(data_dir: str | os.PathLike | None) -> Path:
    """``--data-dir`` if given, else ``$DEEPLAB_DATA_DIR``, else ``./data``; one line for a path that cannot be
    one (``~nosuchuser``)."""
    source = "--data-dir"
    if data_dir is None:
        source = f"${DATA_DIR_ENV}" if os.environ.get(DATA_DIR_ENV) else "the default data folder"
        data_dir = os.environ.get(DATA_DIR_ENV) or DEFAULT_DATA_DIR
    try:
        return Path(data_dir).expanduser()
    except (RuntimeError, OSError, ValueError) as error:  # e.g. ~nosuchuser, a NUL byte
        raise DeeplabError(f"{source} {str(data_dir)!r} is not a usable path ({error}); give an existing folder") from None


#: Lightning's "true" precisions: the network runs in this type, so the inputs are cast to it
_TRUE_PRECISION_DTYPES = {"64-true": torch.float64, "bf16-true": torch.bfloat16, "16-true": torch.float16}


class TensorBatches:
    """Batches of an in-memory (images, labels) pair, cut by indexing.

    Shuffling draws a permutation from ``seed`` and the epoch number, so the
    data order is a pure function of (seed, epoch) and survives a restart.
    Under DDP each rank takes every ``world_size``-th index of the same
    permutation (padded by wrapping, as ``DistributedSampler`` does), so the
    union of the ranks' i-th batches is the single-process i-th batch of size
    ``batch_size · world_size``.

    ``max_batches`` shortens every epoch to its first batches (``fit.py
    --limit-train-batches``): the loader, not Lightning, owns the epoch length,
    so it is counted in real batches whatever Lightning groups into one
    ``training_step``. ``max_samples`` keeps only the first samples (in file
    order) before sharding, so an evaluation limit means the same images on
    one process or many.

    Resuming: ``epoch_source`` (the trainer's epoch counter) picks the
    permutation, and :meth:`resume_at` makes the next pass over that epoch
    start after the batches a checkpoint had already trained on; ``len()``
    then counts only the items left.

    ``steps_per_call`` K > 1 yields *chunks*: up to K consecutive batches of
    the same size stacked as (images (K, B, C, H, W), labels (K, B)), one
    ``training_step`` each (``Classifier`` runs K complete updates on them, the
    same updates in the same order as K separate batches). One index gather
    per chunk instead of per batch; the epoch's last, shorter batch comes as a
    chunk of its own.
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        batch_size: int,
        shuffle: bool,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        epoch_source: Callable[[], int] | None = None,
        max_batches: int | None = None,
        max_samples: int | None = None,
        steps_per_call: int = 1,
    ):
        if batch_size < 1:
            raise DeeplabError(f"batch size must be a positive integer, got {batch_size}")
        if steps_per_call < 1:
            raise DeeplabError(f"--steps-per-call must be a positive integer, got {steps_per_call}")
        if max_samples is not None:
            images, labels = images[:max_samples], labels[:max_samples]
        self.images, self.labels = images, labels
        self.batch_size, self.shuffle, self.seed = batch_size, shuffle, seed
        self.rank, self.world_size = rank, world_size
        self.epoch_source = epoch_source
        self.max_batches = max_batches
        self.steps_per_call = steps_per_call
        self._passes = 0  # passes started, the epoch when there is no epoch_source
        self._resume = (-1, 0)  # (epoch, batches to skip) for the next pass of that epoch

    def resume_at(self, epoch: int, batches_done: int) -> None:
        """Make the next pass over ``epoch`` skip its first ``batches_done`` batches."""
        self._resume = (epoch, batches_done)

    def indices(self, epoch: int) -> torch.Tensor | None:
        """This rank's sample order for ``epoch`` (``None``: contiguous, in file order)."""
        n = len(self.labels)
        if not self.shuffle and self.world_size == 1:
            return None  # contiguous slices, no gather needed
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            order = torch.randperm(n, generator=generator)
        else:
            order = torch.arange(n)
        if self.world_size > 1:
            per_rank = math.ceil(n / self.world_size)
            padded = per_rank * self.world_size
            if padded > n:
                order = torch.cat([order, order[: padded - n]])
            order = order[self.rank :: self.world_size]
        return order

    def _num_samples(self) -> int:
        return math.ceil(len(self.labels) / self.world_size)

    @property
    def epoch_batches(self) -> int:
        """Batches in one whole epoch (after ``max_batches``)."""
        full = math.ceil(self._num_samples() / self.batch_size)
        return full if self.max_batches is None else min(full, self.max_batches)

    def _next_epoch(self) -> int:
        return self.epoch_source() if self.epoch_source is not None else self._passes

    def _skip_for(self, epoch: int) -> int:
        resume_epoch, skip = self._resume
        return skip if resume_epoch == epoch else 0

    def _chunks(self, first_batch: int) -> list[tuple[int, int]]:
        """(first batch, batches) of each item a pass from ``first_batch`` yields."""
        full_batches = self._num_samples() // self.batch_size  # batches of exactly batch_size
        chunks, batch = [], first_batch
        while batch < self.epoch_batches:
            size = 1 if batch >= full_batches else min(self.steps_per_call, self.epoch_batches - batch,
                                                        full_batches - batch)
            chunks.append((batch, size))
            batch += size
        return chunks

    def __len__(self) -> int:
        """Items (batches, or chunks of batches) the next pass yields; fewer than an epoch when it
        resumes mid-epoch."""
        first = self._skip_for(self._next_epoch())
        if self.steps_per_call == 1:
            return max(0, self.epoch_batches - first)
        return len(self._chunks(first))

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        epoch = self._next_epoch()
        self._passes += 1
        start_batch = self._skip_for(epoch)
        self._resume = (-1, 0)
        order = self.indices(epoch)
        total = min(self._num_samples(), self.epoch_batches * self.batch_size)
        if self.steps_per_call == 1:
            for start in range(start_batch * self.batch_size, total, self.batch_size):
                yield self._take(order, start, min(start + self.batch_size, total))
            return
        for first, size in self._chunks(start_batch):
            start = first * self.batch_size
            stop = min(start + size * self.batch_size, total)
            images, labels = self._take(order, start, stop)
            if size == 1 and stop - start != self.batch_size:  # the short last batch
                yield images.unsqueeze(0), labels.unsqueeze(0)
            else:
                yield images.view(size, self.batch_size, *images.shape[1:]), labels.view(size, self.batch_size)

    def _take(self, order: torch.Tensor | None, start: int, stop: int) -> tuple[torch.Tensor, torch.Tensor]:
        if order is None:
            return self.images[start:stop], self.labels[start:stop]
        index = order[start:stop]
        return self.images[index], self.labels[index]


class ImageDataModule(pl.LightningDataModule):
    """Base class: subclasses set the class attributes below (lightning-bolts style).

    Args:
        data_dir: folder holding torchvision's layout (``None``: ``$DEEPLAB_DATA_DIR`` or ``./data``).
        batch_size: training batch size per device (≥ 1).
        eval_batch_size: evaluation batch size (default max(batch_size, 1000)).
        val_split: ``None`` (evaluate on the test split each epoch), a fraction
            in (0, 1) or a count ≥ 1 of training images to hold out (seeded).
        seed: seeds the validation split and the shuffling order.
        normalize: subtract ``mean`` and divide by ``std``.
        mean, std: per-channel statistics (``None``: the dataset's, the class
            attributes below; seed 003 divides CIFAR-10 by (0.247, 0.243, 0.261)).
        augment: ``None`` for the dataset's default; training batches only.
        crop_padding: the random crop's zero padding when augmenting (``None``:
            the dataset's, 4 on CIFAR-10; 0: horizontal flip only, seed 004).
        augment_eval: seed 004's quirk: its test loader shares the training
            transform, so evaluation images are flipped at random too (drawn
            from their own generator, leaving the training draws unchanged).
        input_noise_std: std of Gaussian noise added to normalized training
            inputs (seed 003's small input-noise augmentation); 0 disables.
        download: try torchvision's download when the files are absent.
        limit_train_batches: train on this many batches per epoch (a count
            ≥ 1) or this fraction of them (in (0, 1]); ``None``: all.
        limit_val_batches: evaluate each epoch on this many evaluation
            batches (or fraction), always the same first images of the split.
        steps_per_call: training batches per ``training_step`` (chunks, see
            :class:`TensorBatches`); evaluation batches are never chunked.
    """

    name: str = ""
    dataset_cls: type = datasets.VisionDataset
    dims: tuple[int, int, int] = (1, 28, 28)
    num_classes: int = 10
    mean: tuple[float, ...] = (0.5,)
    std: tuple[float, ...] = (0.5,)
    augment_by_default: bool = False
    crop_padding_by_default: int = 4
    expected_layout: str = ""  # what torchvision expects under data_dir, for the error message

    def __init__(
        self,
        data_dir: str | os.PathLike | None = None,
        batch_size: int = 32,
        eval_batch_size: int | None = None,
        val_split: float | int | None = None,
        seed: int = 0,
        normalize: bool = True,
        mean: tuple[float, ...] | list[float] | None = None,
        std: tuple[float, ...] | list[float] | None = None,
        augment: bool | None = None,
        crop_padding: int | None = None,
        augment_eval: bool = False,
        input_noise_std: float = 0.0,
        download: bool = True,
        limit_train_batches: int | float | None = None,
        limit_val_batches: int | float | None = None,
        steps_per_call: int = 1,
    ):
        super().__init__()
        if not isinstance(batch_size, int) or batch_size < 1:
            raise DeeplabError(f"--batch-size must be a positive integer, got {batch_size}")
        self.data_dir = resolve_data_dir(data_dir)
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or max(batch_size, 1000)
        self.val_split = _check_val_split(val_split)
        self.seed = seed
        self.normalize = normalize
        channels = self.dims[0]
        self.mean = check_channel_statistics("--normalize-mean", self.mean if mean is None else mean, channels,
                                             self.name, positive=False)
        self.std = check_channel_statistics("--normalize-std", self.std if std is None else std, channels,
                                            self.name, positive=True)
        self.augment = self.augment_by_default if augment is None else augment
        self.crop_padding = self.crop_padding_by_default if crop_padding is None else crop_padding
        if isinstance(self.crop_padding, bool) or not isinstance(self.crop_padding, int) or self.crop_padding < 0:
            raise DeeplabError(f"--crop-padding must be an integer ≥ 0 (0: flip only), got {self.crop_padding}")
        self.augment_eval = augment_eval
        self.input_noise_std = input_noise_std
        self.download = download
        self.limit_train_batches = limit_train_batches
        self.limit_val_batches = limit_val_batches
        self.steps_per_call = steps_per_call
        self._splits: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self._train_batches: TensorBatches | None = None
        self._resume_position: tuple[int, int] | None = None  # (epoch, batches done): see resume_at
        self._mean_std_cache: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}
        # Augmentation randomness has its own generator so a checkpoint can carry it.
        self.augment_generator = torch.Generator().manual_seed(seed + 7919)
        self.eval_augment_generator = torch.Generator().manual_seed(seed + 104729)

    # ------------------------------------------------------------------ files
    def _files_present(self) -> bool:
        try:
            self.dataset_cls(str(self.data_dir), train=False, download=False)
            self.dataset_cls(str(self.data_dir), train=True, download=False)
            return True
        except RuntimeError as error:
            if _is_not_found(error):
                return False
            raise self._corrupt_error(error) from None
        except Exception as error:  # noqa: BLE001  (a truncated or garbled file)
            raise self._corrupt_error(error) from None

    def files_present(self) -> bool:
        """Are both splits' files on disk and readable? (absent: False; truncated or corrupt: DeeplabError)"""
        return self._files_present()

    def _missing_error(self, why: str) -> DeeplabError:
        """``why``: how it came to be missing, e.g. "and the download failed (URLError: ...; no internet?)"."""
        return DeeplabError(
            f"{self.name} files not found under {self.data_dir} {why}. torchvision expects "
            f"{self.data_dir}/{self.expected_layout}; put them there or point --data-dir (or ${DATA_DIR_ENV}) "
            f"at the folder that holds them."
        )

    def _corrupt_error(self, error: Exception) -> DeeplabError:
        return DeeplabError(
            f"{self.name} files under {self.data_dir} are truncated or corrupt "
            f"({type(error).__name__}: {str(error).splitlines()[0] if str(error) else 'unreadable'}); "
            f"delete them and download again, or point --data-dir at a good copy."
        )

    def prepare_data(self) -> None:
        """Download only when the files are absent (Lightning calls this on one process)."""
        if self._files_present():
            return
        if not self.download:
            raise self._missing_error("and downloads are off")
        failure = self._download()
        if failure is None and self._files_present():
            return
        raise self._missing_error(f"and the download failed ({failure or 'its files do not load'}; no internet?)")

    def _download(self) -> str | None:
        """torchvision's download into a temporary folder, copied into ``data_dir`` only once both
        splits are complete: a failed download leaves ``data_dir`` as it was (no empty ``raw``
        folders in a shared data set). Returns None, or what went wrong."""
        import shutil
        import tempfile

        with tempfile.TemporaryDirectory(prefix="deeplab-download-") as staging:
            try:
                for train in (True, False):
                    self.dataset_cls(staging, train=train, download=True)
            except Exception as error:  # noqa: BLE001  (network errors come in many types)
                return f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else 'no details'}"
            self.data_dir.mkdir(parents=True, exist_ok=True)
            for entry in Path(staging).iterdir():
                target = self.data_dir / entry.name
                if entry.is_dir():
                    shutil.copytree(entry, target, dirs_exist_ok=True)
                else:
                    shutil.copy2(entry, target)
        return None

    def _load_split(self, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
        try:
            dataset = self.dataset_cls(str(self.data_dir), train=train, download=False)
        except RuntimeError as error:
            if _is_not_found(error):
                raise self._missing_error("(setup reads, prepare_data downloads)") from None
            raise self._corrupt_error(error) from None
        except Exception as error:  # noqa: BLE001
            raise self._corrupt_error(error) from None
        images = _as_uint8_nchw(dataset.data, self.dims)
        labels = torch.as_tensor(np.asarray(dataset.targets), dtype=torch.long)
        if len(images) != len(labels) or tuple(images.shape[1:]) != self.dims:
            raise self._corrupt_error(ValueError(f"images {tuple(images.shape)} vs {len(labels)} labels"))
        if len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= self.num_classes):
            bad = int(((labels < 0) | (labels >= self.num_classes)).nonzero()[0])
            raise self._corrupt_error(ValueError(
                f"the {'training' if train else 'test'} split's label {int(labels[bad])} (image {bad}) is outside "
                f"0…{self.num_classes - 1}"))
        return images, labels

    def setup(self, stage: str | None = None) -> None:
        """Parse the files once into uint8 tensors in memory; split off validation if asked."""
        if self._splits:
            return
        if not self._files_present():
            raise self._missing_error("(setup reads, prepare_data downloads)")
        train_images, train_labels = self._load_split(train=True)
        test_images, test_labels = self._load_split(train=False)
        if self.val_split is not None:
            n = len(train_labels)
            n_val = self.val_split if isinstance(self.val_split, int) else int(round(self.val_split * n))
            if not 1 <= n_val < n:
                raise DeeplabError(
                    f"--val-split {self.val_split} leaves {n - n_val} of {n} training images; "
                    f"give a fraction in (0, 1) or a count between 1 and {n - 1}"
                )
            order = torch.randperm(n, generator=torch.Generator().manual_seed(self.seed))
            val_index, train_index = order[:n_val], order[n_val:]
            self._splits["val"] = (train_images[val_index], train_labels[val_index])
            train_images, train_labels = train_images[train_index], train_labels[train_index]
        else:
            self._splits["val"] = (test_images, test_labels)
        self._splits["train"] = (train_images, train_labels)
        self._splits["test"] = (test_images, test_labels)

    @property
    def eval_split_name(self) -> str:
        """``"test"`` when each epoch is evaluated on the test split, else ``"validation"``."""
        return "test" if self.val_split is None else "validation"

    def split(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """The uint8 images (N, C, H, W) and int64 labels (N,) of ``train``, ``val`` or ``test``."""
        self.setup()
        return self._splits[name]

    # ------------------------------------------------------------ loaders
    def _rank_and_world(self) -> tuple[int, int]:
        trainer = self.trainer
        if trainer is None:
            return 0, 1
        return trainer.global_rank, trainer.world_size

    def resume_at(self, epoch: int, batches_done: int) -> None:
        """Make the training pass over ``epoch`` start after its first ``batches_done`` batches.

        ``fit`` calls this from the checkpoint's recorded position before training
        starts; the data order itself is a function of (seed, epoch), so nothing
        else about the loader needs restoring.
        """
        self._resume_position = (int(epoch), int(batches_done))

    def epoch_batches(self, world_size: int = 1) -> int:
        """Training batches per epoch on each of ``world_size`` processes, after ``limit_train_batches``."""
        images, labels = self.split("train")
        return TensorBatches(images, labels, self.batch_size, True, self.seed, 0, world_size,
                             max_batches=self._train_batch_limit(world_size)).epoch_batches

    def _train_batch_limit(self, world_size: int) -> int | None:
        limit = self.limit_train_batches
        if limit is None:
            return None
        if isinstance(limit, int):
            return limit
        full = math.ceil(math.ceil(len(self.split("train")[1]) / world_size) / self.batch_size)
        return max(1, int(full * limit))  # a fraction never rounds an epoch down to nothing

    def train_dataloader(self) -> TensorBatches:
        rank, world = self._rank_and_world()
        images, labels = self.split("train")
        epoch_source = (lambda: self.trainer.current_epoch) if self.trainer is not None else None
        self._train_batches = TensorBatches(
            images, labels, self.batch_size, True, self.seed, rank, world, epoch_source=epoch_source,
            max_batches=self._train_batch_limit(world), steps_per_call=self.steps_per_call,
        )
        if self._resume_position is not None:
            self._train_batches.resume_at(*self._resume_position)
        return self._train_batches

    def _eval_loader(self, name: str, limit: int | float | None = None) -> TensorBatches:
        rank, world = self._rank_and_world()
        images, labels = self.split(name)
        max_samples = None
        if isinstance(limit, int):
            max_samples = limit * self.eval_batch_size
        elif limit is not None:
            max_samples = max(1, int(len(labels) * limit))
        return TensorBatches(images, labels, self.eval_batch_size, False, self.seed, rank, world,
                             max_samples=max_samples)

    def val_dataloader(self) -> TensorBatches:
        return self._eval_loader("val", self.limit_val_batches)

    def test_dataloader(self) -> TensorBatches:
        return self._eval_loader("test")

    # -------------------------------------------------- on-device transforms
    def device_transform(self, images: torch.Tensor, training: bool) -> torch.Tensor:
        """uint8 (B, C, H, W) on any device → normalized float32, augmented when ``training``
        (and, with ``augment_eval``, evaluation images too)."""
        if self.augment and training:
            images = self._random_crop_flip(images, self.augment_generator)
        elif self.augment and self.augment_eval:
            images = self._random_crop_flip(images, self.eval_augment_generator)
        x = images.float().div_(255.0)
        if self.normalize:
            mean, std = self._mean_std_on(x.device)
            x = x.sub_(mean).div_(std)
        if training and self.input_noise_std > 0:
            noise = torch.randn(x.shape, generator=self.augment_generator).to(x.device)
            x = x.add_(noise, alpha=self.input_noise_std)
        return x

    def _mean_std_on(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """(1, C, 1, 1) mean and std tensors on ``device``, built once (not two tensors a step)."""
        if device not in self._mean_std_cache:
            self._mean_std_cache[device] = (torch.tensor(self.mean, device=device).view(1, -1, 1, 1),
                                            torch.tensor(self.std, device=device).view(1, -1, 1, 1))
        return self._mean_std_cache[device]

    def transfer_batch_to_device(self, batch: Any, device: torch.device, dataloader_idx: int) -> Any:
        """Move (images, labels) to ``device``; a batch already there (the CPU) is passed through.

        Lightning's default walks the batch with ``apply_to_collection``, ~0.1 ms
        a step even when there is nothing to move.
        """
        images, labels = batch
        if images.device == device and labels.device == device:
            return batch
        return images.to(device, non_blocking=True), labels.to(device, non_blocking=True)

    def _random_crop_flip(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Seed 001's ``RandomCrop(32, padding=4)`` + ``RandomHorizontalFlip()``, batched.

        Zero padding in uint8 space (torchvision pads the PIL image with black
        before ``Normalize``); one crop offset and one flip coin per image.
        ``crop_padding`` 0 leaves only the flip (seed 004's
        ``RandomHorizontalFlip()`` alone): the one possible offset is 0.
        """
        generator = self.augment_generator if generator is None else generator
        padding = self.crop_padding
        batch, channels, height, width = images.shape
        offsets = torch.randint(0, 2 * padding + 1, (2, batch), generator=generator)
        flips = torch.rand(batch, generator=generator) < 0.5
        device = images.device
        offsets, flips = offsets.to(device), flips.to(device)
        padded = F.pad(images, (padding, padding, padding, padding))  # (B, C, H+8, W+8)
        rows = offsets[0, :, None] + torch.arange(height, device=device)  # (B, H)
        cols = offsets[1, :, None] + torch.arange(width, device=device)  # (B, W)
        cols = torch.where(flips[:, None], cols.flip(1), cols)  # a flip reverses the column order
        batch_index = torch.arange(batch, device=device)[:, None, None, None]
        channel_index = torch.arange(channels, device=device)[None, :, None, None]
        return padded[batch_index, channel_index, rows[:, None, :, None], cols[:, None, None, :]]

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        images, labels = batch
        training = self.trainer is not None and self.trainer.training
        if labels.dim() == 2:  # a chunk of batches (K, B, C, H, W)
            images = self.chunk_transform(images, training)
        else:
            images = self.device_transform(images, training)
        # a "true" precision runs the whole network in that type (its weights were converted): so do the inputs
        dtype = _TRUE_PRECISION_DTYPES.get(str(getattr(self.trainer, "precision", None)))
        return (images if dtype is None else images.to(dtype)), labels

    def chunk_transform(self, images: torch.Tensor, training: bool) -> torch.Tensor:
        """:meth:`device_transform` of each batch of a chunk, as if they had come one by one.

        Without random augmentation that is one batched op over the whole chunk;
        with it, the batches draw from the augmentation generator in order, so a
        chunked run sees exactly the crops, flips and noise of an unchunked one.
        """
        if training and (self.augment or self.input_noise_std > 0):
            return torch.stack([self.device_transform(batch, training) for batch in images])
        steps, batch = images.shape[:2]
        return self.device_transform(images.flatten(0, 1), training).view(steps, batch, *images.shape[2:])

    # ------------------------------------------------------- checkpointing
    def state_dict(self) -> dict[str, Any]:
        """Saved in every checkpoint: the augmentation RNG (the data order needs no state).

        Where the epoch got is the run's position, recorded by the module
        (:attr:`deeplab.training.module.Classifier.position`) and handed back through
        :meth:`resume_at`.
        """
        return {"augment_generator": self.augment_generator.get_state(),
                "eval_augment_generator": self.eval_augment_generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.augment_generator.set_state(state["augment_generator"])
        if "eval_augment_generator" in state:  # checkpoints from before --augment-eval lack it
            self.eval_augment_generator.set_state(state["eval_augment_generator"])


def _is_not_found(error: RuntimeError) -> bool:
    """torchvision's "Dataset not found ..." (files absent), not e.g. a truncated IDX file's
    ``shape '[...]' is invalid for input of size ...``, which is a RuntimeError too."""
    return "not found" in str(error)


def _check_val_split(val_split: float | int | None) -> float | int | None:
    if val_split is None:
        return None
    if isinstance(val_split, float) and val_split.is_integer() and val_split >= 1:
        val_split = int(val_split)
    if isinstance(val_split, float):
        if not 0.0 < val_split < 1.0:
            raise DeeplabError(f"--val-split {val_split} is out of range; give a fraction in (0, 1) or a count ≥ 1")
    elif isinstance(val_split, int):
        if val_split < 1:
            raise DeeplabError(f"--val-split {val_split} is out of range; give a fraction in (0, 1) or a count ≥ 1")
    else:
        raise DeeplabError(f"--val-split must be a fraction or a count, got {val_split!r}")
    return val_split


def _as_uint8_nchw(data: Any, dims: tuple[int, int, int]) -> torch.Tensor:
    """torchvision's ``.data`` → uint8 (N, C, H, W): MNIST keeps (N, H, W) tensors, CIFAR (N, H, W, C) arrays."""
    tensor = torch.as_tensor(np.asarray(data), dtype=torch.uint8)
    if tensor.ndim == 3:  # (N, H, W) grayscale
        return tensor.unsqueeze(1).contiguous()
    if tensor.ndim == 4 and tensor.shape[-1] == dims[0]:  # (N, H, W, C)
        return tensor.permute(0, 3, 1, 2).contiguous()
    return tensor


class CheckedCIFAR10(datasets.CIFAR10):
    """torchvision's CIFAR10 whose md5 check warns instead of refusing.

    torchvision compares every batch with the official archive's md5 and calls a
    mismatch "not found or corrupted". deeplab checks the same sums (once per
    folder and process) and, where files differ from the official release — a
    re-packed copy, a subset, the tests' small batches in the real pickle format —
    says so in one warning naming them and loads them; a truncated or garbled
    file still fails, with its own message, when it is unpickled.
    """

    # ``_load_meta`` md5-checks batches.meta too; md5 None makes it a presence check (the sum is checked below).
    meta = {**datasets.CIFAR10.meta, "md5": None}
    _checked_folders: set[str] = set()

    def _check_integrity(self) -> bool:
        from torchvision.datasets.utils import check_md5

        folder = Path(self.root) / self.base_folder
        files = self.train_list + self.test_list + [[datasets.CIFAR10.meta["filename"], datasets.CIFAR10.meta["md5"]]]
        if not all((folder / name).is_file() for name, _ in files):
            return False
        if str(folder.resolve()) not in CheckedCIFAR10._checked_folders:
            CheckedCIFAR10._checked_folders.add(str(folder.resolve()))
            differing = [name for name, md5 in files if not check_md5(str(folder / name), md5)]
            if differing:
                import warnings

                warnings.warn(f"CIFAR-10 in {folder}: {', '.join(differing)} differ from the official archive "
                              f"(md5); using them as they are", stacklevel=2)
        return True


class MNISTDataModule(ImageDataModule):
    """MNIST, normalized with (0.1307, 0.3081) as seed 002 does."""

    name = "mnist"
    dataset_cls = datasets.MNIST
    dims = (1, 28, 28)
    mean, std = (0.1307,), (0.3081,)
    expected_layout = "MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte"


class FashionMNISTDataModule(ImageDataModule):
    """Fashion-MNIST, normalized to [-1, 1] with (0.5, 0.5) as seed 000 does."""

    name = "fashion_mnist"
    dataset_cls = datasets.FashionMNIST
    dims = (1, 28, 28)
    mean, std = (0.5,), (0.5,)
    expected_layout = "FashionMNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte"


class CIFAR10DataModule(ImageDataModule):
    """CIFAR-10 with seed 001's statistics and pad-4 crop + flip on training batches."""

    name = "cifar10"
    dataset_cls = CheckedCIFAR10
    dims = (3, 32, 32)
    mean, std = (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)
    augment_by_default = True
    expected_layout = "cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}"


DATAMODULES: dict[str, type[ImageDataModule]] = {
    module.name: module for module in (MNISTDataModule, FashionMNISTDataModule, CIFAR10DataModule)
}


def create_datamodule(name: str, **kwargs: Any) -> ImageDataModule:
    """The DataModule for dataset ``name`` (mnist, fashion_mnist, cifar10)."""
    try:
        cls = DATAMODULES[name]
    except KeyError:
        raise DeeplabError(f"unknown dataset {name!r}; choose one of {', '.join(DATAMODULES)}") from None
    return cls(**kwargs)
