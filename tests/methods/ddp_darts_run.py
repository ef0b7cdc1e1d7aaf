"""Run a tiny DARTS search under DDP on 2 CPU processes; each rank saves its alphas and weights after every step.

Used by test_darts_ddp.py:  python ddp_darts_run.py OUT_DIR ORDER
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch

from lightning_nas.data import SyntheticDataModule
from lightning_nas.methods import DARTS
from lightning_nas.spaces import DartsCellSpace


class RecordState(pl.Callback):
    def __init__(self) -> None:
        self.history: list[dict[str, Any]] = []

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: object) -> None:
        assert isinstance(pl_module, DARTS)
        self.history.append(
            {
                "alphas": [a.detach().clone() for a in pl_module.space.arch_parameters()],
                "weights": torch.cat([p.detach().flatten() for p in pl_module.space.weight_parameters()]),
            }
        )


def main() -> None:
    out, order = Path(sys.argv[1]), sys.argv[2]
    pl.seed_everything(0)
    space = DartsCellSpace(in_channels=1, num_classes=4, channels=4, layers=2, steps=2)
    model = DARTS(space, order=order, arch_lr=0.05)  # type: ignore[arg-type]
    data = SyntheticDataModule(num_samples=256, num_classes=4, in_channels=1, image_size=8, search=True, batch_size=16)
    recorder = RecordState()
    trainer = pl.Trainer(
        strategy="ddp",
        accelerator="cpu",
        devices=2,
        max_steps=3,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[recorder],
    )
    trainer.fit(model, datamodule=data)
    torch.save({"history": recorder.history, "genotype": str(model.genotype)}, out / f"rank{trainer.global_rank}.pt")


if __name__ == "__main__":
    main()
