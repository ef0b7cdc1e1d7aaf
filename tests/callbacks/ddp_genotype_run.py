"""A tiny DARTS search under DDP on 2 CPU processes with GenotypeLogger and CollapseGuard attached.

Used by test_genotype_logger_ddp.py:  python ddp_genotype_run.py OUT_DIR
"""

from __future__ import annotations

import sys
from pathlib import Path

import lightning.pytorch as pl
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger

from lightning_nas.callbacks import CollapseGuard, GenotypeLogger
from lightning_nas.data import SyntheticDataModule
from lightning_nas.methods import DARTS
from lightning_nas.spaces import DartsCellSpace


def main() -> None:
    out = Path(sys.argv[1])
    pl.seed_everything(0)
    model = DARTS(DartsCellSpace(in_channels=1, num_classes=4, channels=4, layers=2, steps=2), order="first")
    data = SyntheticDataModule(num_samples=128, num_classes=4, in_channels=1, image_size=8, search=True, batch_size=16)
    trainer = pl.Trainer(
        strategy="ddp",
        accelerator="cpu",
        devices=2,
        max_epochs=2,
        limit_val_batches=1,
        logger=CSVLogger(out, name="run"),
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[
            GenotypeLogger(cell_renderer="matplotlib"),
            CollapseGuard(max_count=5),
            ModelCheckpoint(save_last=True),
        ],
    )
    trainer.fit(model, datamodule=data)
    if trainer.is_global_zero:
        (out / "genotype.txt").write_text(str(model.genotype))


if __name__ == "__main__":
    main()
