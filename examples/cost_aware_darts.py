"""Subclass DARTS and override one hook: an architecture loss that also pays for parameters.

The expected parameter count of the supernet's choice, ``sum_edges sum_ops softmax(alpha)_op * params(op)``, is
differentiable in the alphas; adding it to ``L_val`` steers the search toward cheaper cells. Everything else
(optimisers, second-order gradient, logging, export) is inherited.

    python examples/cost_aware_darts.py --max-steps 30
"""

from __future__ import annotations

import argparse

import lightning.pytorch as pl
import torch
from torch import Tensor

from lightning_nas.data import DigitsDataModule
from lightning_nas.methods import DARTS
from lightning_nas.spaces import DartsCellSpace


class CostAwareDARTS(DARTS):
    """DARTS whose architecture loss adds ``cost_weight`` x the expected parameter count (in millions)."""

    def __init__(self, space: DartsCellSpace, *, cost_weight: float = 1.0, order: str = "first") -> None:
        super().__init__(space, order=order)  # type: ignore[arg-type]
        self.cost_weight = cost_weight
        # Parameters of each op on each edge of the first normal and first reduction cell, in millions.
        normal = next(cell for cell in space.cells if not cell.reduction)
        reduce = next(cell for cell in space.cells if cell.reduction)
        self.register_buffer("op_cost_normal", _op_costs(normal))
        self.register_buffer("op_cost_reduce", _op_costs(reduce))

    def architecture_loss(self, logits: Tensor, targets: Tensor) -> Tensor:
        expected_cost = (self.space.alpha_normal.softmax(-1) * self.op_cost_normal).sum() + (
            self.space.alpha_reduce.softmax(-1) * self.op_cost_reduce
        ).sum()
        self.log("search/expected_mparams", expected_cost)
        return super().architecture_loss(logits, targets) + self.cost_weight * expected_cost


def _op_costs(cell: torch.nn.Module) -> Tensor:
    return torch.tensor(
        [[sum(p.numel() for p in op.parameters()) / 1e6 for op in edge.ops] for edge in cell.edges]  # type: ignore[attr-defined]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max-steps", type=int, default=60)
    parser.add_argument("--cost-weight", type=float, default=50.0)
    args = parser.parse_args()
    pl.seed_everything(0)
    space = DartsCellSpace(in_channels=1, num_classes=10, channels=8, layers=3, steps=3)
    model = CostAwareDARTS(space, cost_weight=args.cost_weight)
    trainer = pl.Trainer(max_steps=args.max_steps, logger=False, enable_checkpointing=False, enable_progress_bar=False)
    trainer.fit(model, datamodule=DigitsDataModule(search=True, batch_size=64))
    print("genotype:", model.genotype)


if __name__ == "__main__":
    main()
