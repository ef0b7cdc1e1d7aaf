"""Run a tiny ENAS search under DDP on 2 CPU processes; each rank saves what it drew, its rewards and its policy.

Used by test_enas_ddp.py:  python ddp_enas_run.py OUT_DIR
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from torch import Tensor

from lightning_nas.controllers import PolicySample
from lightning_nas.data import SyntheticDataModule
from lightning_nas.methods import ENAS
from lightning_nas.ops import ENAS_MICRO_OPS
from lightning_nas.spaces import DartsCellSpace


class RecordingENAS(ENAS):
    """ENAS that keeps every draw and every (local, averaged) reward vector."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.draws: list[tuple[int, str, dict[str, Any]]] = []
        self.rewards: list[tuple[Tensor, Tensor]] = []
        self.initial_policy: list[Tensor] = []

    def on_fit_start(self) -> None:
        super().on_fit_start()
        self.initial_policy = [p.detach().clone() for p in self.policy.parameters()]

    def sample(self, step: int, k: int | str = 0) -> PolicySample:
        drawn = super().sample(step, k)
        self.draws.append((step, str(k), drawn.arch))
        return drawn

    def _reduce(self, values: Tensor) -> Tensor:
        local = values.detach().clone()  # all-reduce may work in place
        averaged = super()._reduce(values)
        self.rewards.append((local, averaged.detach().clone()))
        return averaged


def main() -> None:
    out = Path(sys.argv[1])
    pl.seed_everything(0)
    space = DartsCellSpace(in_channels=1, num_classes=4, channels=4, layers=2, steps=2, ops=ENAS_MICRO_OPS)
    model = RecordingENAS(
        space, weight_steps=2, controller_steps=2, controller_samples=3, derive_samples=2, controller_lr=0.05
    )
    data = SyntheticDataModule(num_samples=256, num_classes=4, in_channels=1, image_size=8, search=True, batch_size=8)
    trainer = pl.Trainer(
        strategy="ddp_find_unused_parameters_true",
        accelerator="cpu",
        devices=2,
        max_steps=4,
        limit_val_batches=1,
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(model, datamodule=data)
    torch.save(
        {
            "draws": model.draws,
            "rewards": model.rewards,
            "policy": [p.detach().clone() for p in model.policy.parameters()],
            "initial_policy": model.initial_policy,
            "weights": torch.cat([p.detach().flatten() for p in model.space.parameters()]),
            "baseline": model.baseline.clone(),
        },
        out / f"rank{trainer.global_rank}.pt",
    )


if __name__ == "__main__":
    main()
