"""Train BigNAS under DDP on 2 CPU processes; each rank saves, per step, its subnets, its weights after the step and
how many gradient all-reduce calls each subnet's backward pass made.

Used by test_bignas_ddp.py:  python ddp_bignas_run.py OUT_DIR
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import lightning.pytorch as pl  # noqa: E402
import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402
from lightning.pytorch.strategies import DDPStrategy  # noqa: E402
from torch import Tensor  # noqa: E402

from lightning_nas.data import SyntheticDataModule  # noqa: E402
from lightning_nas.methods import BigNAS  # noqa: E402
from tests.tiny import tiny_elastic_space  # noqa: E402


class CountingBigNAS(BigNAS):
    """BigNAS counting the DDP bucket all-reduces each ``manual_backward`` call triggers."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.allreduces = 0
        self.per_backward: list[int] = []

    def manual_backward(self, loss: Tensor, *args: Any, **kwargs: Any) -> None:
        before = self.allreduces
        super().manual_backward(loss, *args, **kwargs)
        self.per_backward.append(self.allreduces - before)


class Record(pl.Callback):
    def __init__(self) -> None:
        self.history: list[dict[str, Any]] = []

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        assert isinstance(pl_module, CountingBigNAS)

        def counting_allreduce(state: object, bucket: dist.GradBucket) -> torch.futures.Future[Tensor]:
            pl_module.allreduces += 1
            tensor = bucket.buffer().div_(dist.get_world_size())
            return dist.all_reduce(tensor, async_op=True).get_future().then(lambda fut: fut.value()[0])

        # DDP checks the hook's annotations as objects; `from __future__ import annotations` made them strings
        counting_allreduce.__annotations__.update({"bucket": dist.GradBucket, "return": torch.futures.Future[Tensor]})
        trainer.strategy.model.register_comm_hook(None, counting_allreduce)  # type: ignore[union-attr]

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: object) -> None:
        assert isinstance(pl_module, CountingBigNAS)
        weights = torch.cat([p.detach().flatten() for p in pl_module.space.parameters()])
        self.history.append(
            {"subnets": pl_module.sampled_archs(), "weights": weights.clone(), "allreduces": pl_module.per_backward}
        )
        pl_module.per_backward = []


def main() -> None:
    out = Path(sys.argv[1])
    pl.seed_everything(0)
    space = tiny_elastic_space(dropout=0.2)
    model = CountingBigNAS(space, num_random_subnets=2, seed=7, calibration_images=0, warmup_epochs=0, lr=0.1)
    data = SyntheticDataModule(num_samples=256, num_classes=4, in_channels=1, image_size=16, batch_size=16)
    recorder = Record()
    trainer = pl.Trainer(
        strategy=DDPStrategy(find_unused_parameters=True),
        accelerator="cpu",
        devices=2,
        max_steps=3,
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
