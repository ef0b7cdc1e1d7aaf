"""Train SPOS under DDP on 2 CPU processes; each rank saves its path and weights after every step.

Used by test_spos_ddp.py:  python ddp_spos_run.py OUT_DIR
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch

from lightning_nas.data import SyntheticDataModule
from lightning_nas.methods import SPOS
from lightning_nas.spaces import DartsCellSpace


class RecordState(pl.Callback):
    def __init__(self) -> None:
        self.history: list[dict[str, Any]] = []

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: object) -> None:
        assert isinstance(pl_module, SPOS)
        weights = [p.detach().flatten() for n, p in pl_module.space.named_parameters() if not n.startswith("alpha")]
        self.history.append({"path": pl_module.current_arch(), "weights": torch.cat(weights)})


def main() -> None:
    out = Path(sys.argv[1])
    pl.seed_everything(0)
    space = DartsCellSpace(in_channels=1, num_classes=4, channels=4, layers=2, steps=2)
    model = SPOS(space, lr=0.05, seed=11)
    data = SyntheticDataModule(num_samples=256, num_classes=4, in_channels=1, image_size=8, batch_size=16)
    recorder = RecordState()
    trainer = pl.Trainer(
        strategy="ddp_find_unused_parameters_true",
        accelerator="cpu",
        devices=2,
        max_steps=4,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        callbacks=[recorder],
    )
    trainer.fit(model, datamodule=data)
    torch.save({"history": recorder.history}, out / f"rank{trainer.global_rank}.pt")


if __name__ == "__main__":
    main()
