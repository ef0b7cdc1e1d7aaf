"""Search, save the genotype as JSON, and train its network from scratch, all from Python.

python examples/export_and_retrain.py --search-steps 20 --retrain-epochs 3 --out runs/example
"""

from __future__ import annotations

import argparse
from pathlib import Path

import lightning.pytorch as pl

from lightning_nas.arch import load_arch, save_arch
from lightning_nas.data import DigitsDataModule
from lightning_nas.methods import DARTS, Retrain
from lightning_nas.spaces import DartsCellSpace


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--search-steps", type=int, default=40)
    parser.add_argument("--retrain-epochs", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("runs/example"))
    args = parser.parse_args()
    pl.seed_everything(0)

    # 1. Search.
    search = DARTS(DartsCellSpace(in_channels=1, num_classes=10, channels=8, layers=3), order="first")
    trainer = pl.Trainer(
        max_steps=args.search_steps, logger=False, enable_checkpointing=False, enable_progress_bar=False
    )
    trainer.fit(search, datamodule=DigitsDataModule(search=True, batch_size=64))

    # 2. Export: JSON written atomically; nothing is pickled or evaluated.
    path = save_arch(search.genotype, args.out / "genotype.json")
    print(f"genotype {load_arch(path)} saved to {path}")

    # 3. Retrain the genotype's network from scratch on the full training split, evaluate on the test split.
    model = Retrain(str(path), in_channels=1, num_classes=10, channels=8, layers=4)
    trainer = pl.Trainer(
        max_epochs=args.retrain_epochs,
        gradient_clip_val=5.0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
    )
    data = DigitsDataModule(batch_size=64)
    trainer.fit(model, datamodule=data)
    print(trainer.test(model, datamodule=data, verbose=False)[0])


if __name__ == "__main__":
    main()
