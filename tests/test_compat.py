"""The Lightning privates deeplab relies on (``deeplab/_compat.py``), checked against the installed Lightning.

When Lightning moves one of them, these fail first and say which, instead of a
resume silently training the wrong batches.
"""

from __future__ import annotations

import re
from pathlib import Path

import lightning.pytorch as pl
import torch

import deeplab.training.glue as _compat
REPO = Path(__file__).resolve().parents[1]


def test_the_installed_lightning_is_the_pinned_tested_minor():
    assert _compat.lightning_minor() == _compat.LIGHTNING_TESTED_MINOR
    pin = re.search(r'"lightning>=(\d+)\.(\d+),<(\d+)\.(\d+)"', (REPO / "pyproject.toml").read_text())
    assert pin, "pyproject.toml must pin lightning to one minor release"
    low, high = (int(pin[1]), int(pin[2])), (int(pin[3]), int(pin[4]))
    assert low == _compat.LIGHTNING_TESTED_MINOR and high == (low[0], low[1] + 1)


class _Tiny(pl.LightningModule):
    """Manual optimization, as deeplab's Classifier: ``global_step`` counts optimizer steps."""

    def __init__(self):
        super().__init__()
        self.automatic_optimization = False
        self.layer = torch.nn.Linear(2, 1)

    def training_step(self, batch, batch_idx):
        optimizer = self.optimizers()
        loss = self.layer(batch[0]).pow(2).mean()
        self.manual_backward(loss)
        optimizer.step()
        optimizer.zero_grad()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)

    def train_dataloader(self):
        return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(10, 2)), batch_size=2)


def _trainer(tmp_path: Path, **kwargs) -> pl.Trainer:
    return pl.Trainer(default_root_dir=tmp_path, logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False, accelerator="cpu", **kwargs)


def test_restart_at_epoch_start_resumes_lightning_at_that_epoch_and_step(tmp_path):
    """A checkpoint written mid-epoch with ``max_steps`` set (Lightning would resume mid-epoch,
    ``_iteration_based_training``) restarts at the start of the epoch deeplab names."""
    first = _trainer(tmp_path, max_epochs=5, max_steps=7)
    first.fit(_Tiny())
    path = tmp_path / "stopped.ckpt"
    first.save_checkpoint(path)
    checkpoint = torch.load(path, weights_only=False)
    _compat.restart_at_epoch_start(checkpoint["loops"], epoch=1, global_step=7)
    torch.save(checkpoint, path)

    seen: list[tuple[int, int, int]] = []  # (epoch, batch index, global step) of every batch trained

    class Record(pl.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            seen.append((trainer.current_epoch, batch_idx, trainer.global_step))

    resumed = _trainer(tmp_path, max_epochs=3, callbacks=[Record()])
    resumed.fit(_Tiny(), ckpt_path=path)
    # epochs 2 and 3 (0-based 1, 2), each from its first batch, counting on from step 7
    assert seen == [(epoch, index, 7 + 5 * (epoch - 1) + index) for epoch in (1, 2) for index in range(5)]
    assert resumed.global_step == 17 and resumed.current_epoch == 3
