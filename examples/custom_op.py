"""Bring your own candidate op: register it by name and search a DARTS cell space that includes it.

python examples/custom_op.py --max-steps 20
"""

from __future__ import annotations

import argparse

import lightning.pytorch as pl
from torch import nn

from lightning_nas.data import DigitsDataModule
from lightning_nas.methods import DARTS
from lightning_nas.ops import register_op
from lightning_nas.spaces import DartsCellSpace


@register_op("conv_bn_3x3")
def conv_bn_3x3(channels: int, stride: int, affine: bool) -> nn.Module:
    """A plain (not separable) 3x3 convolution: ReLU, conv, BatchNorm."""
    return nn.Sequential(
        nn.ReLU(),
        nn.Conv2d(channels, channels, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(channels, affine=affine),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max-steps", type=int, default=40)
    args = parser.parse_args()
    pl.seed_everything(0)
    ops = ("none", "skip_connect", "max_pool_3x3", "conv_bn_3x3", "sep_conv_3x3")
    space = DartsCellSpace(in_channels=1, num_classes=10, channels=8, layers=3, steps=3, ops=ops)
    model = DARTS(space, order="second")
    trainer = pl.Trainer(max_steps=args.max_steps, logger=False, enable_checkpointing=False, enable_progress_bar=False)
    trainer.fit(model, datamodule=DigitsDataModule(search=True, batch_size=64))
    print("genotype:", model.genotype)


if __name__ == "__main__":
    main()
