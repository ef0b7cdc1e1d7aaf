"""A tiny DARTS search under DDP on 2 CPU processes with GenotypeLogger and CollapseGuard attached.

Used by test_genotype_logger_ddp.py:  python ddp_genotype_run.py OUT_DIR
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import lightning.pytorch as pl  # noqa: E402
from lightning.pytorch.callbacks import ModelCheckpoint  # noqa: E402
from lightning.pytorch.loggers import CSVLogger  # noqa: E402

from lightning_nas.callbacks import CollapseGuard, GenotypeLogger  # noqa: E402
from lightning_nas.data import SyntheticDataModule  # noqa: E402
from lightning_nas.methods import DARTS  # noqa: E402
from tests.tiny import tiny_darts_space  # noqa: E402


def main() -> None:
    out = Path(sys.argv[1])
    pl.seed_everything(0)
    model = DARTS(tiny_darts_space(layers=2), order="first")
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
