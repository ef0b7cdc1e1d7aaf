"""Speed of an ENAS shared-weight step against the same child trained as a static network, and of the controller.

A shared-weight step (phase 1) trains one child of the supernet: the ENAS module's own ``training_step`` with
its child fixed, so that both sides run the same architecture every step. The static side is the standalone network
of that child (``DartsNetwork`` of the genotype without auxiliary head or drop-path, or ``EnasMacroNetwork``) in a
minimal LightningModule with the same optimizer (SGD + Nesterov, gradient clipping at 5). The ratio is
``shared step time / static step time`` (the issue's aim: at most 1.2x).

Controller sampling is timed separately: one architecture per call, without gradients (phase 1 draws) and with
them (phase 2 draws, which keep the graph for REINFORCE).

    python benchmarks/enas_step.py                          # micro: CIFAR-sized, C=16, 8 cells, 5 nodes, batch 64
    python benchmarks/enas_step.py --space macro --batch 32
    python benchmarks/enas_step.py --batch 8 --image-size 16 --channels 8 --layers 3 --steps 2   # a quick check
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Any

import lightning.pytorch as pl
import torch
from torch import Tensor, nn

from lightning_nas.arch import Arch, Genotype
from lightning_nas.controllers import PolicySample
from lightning_nas.methods import ENAS
from lightning_nas.ops import ENAS_MICRO_OPS
from lightning_nas.sampling import step_generator
from lightning_nas.spaces import DartsCellSpace, DartsNetwork, EnasMacroNetwork, EnasMacroSpace, SearchSpace


class FixedChildENAS(ENAS):
    """ENAS whose phase-1 draws always return one architecture (the controller is timed on its own)."""

    def __init__(self, space: SearchSpace, arch: Arch, **kwargs: Any) -> None:
        super().__init__(space, **kwargs)
        self.fixed_arch = arch

    def sample(self, step: int, k: int | str = 0) -> PolicySample:
        zero = torch.zeros(())
        return PolicySample(self.fixed_arch, zero, zero, zero)


class StaticNetwork(pl.LightningModule):
    """A standalone network trained with the optimizer ENAS uses for the shared weights."""

    def __init__(self, network: nn.Module, lr: float = 0.05) -> None:
        super().__init__()
        self.network, self.lr = network, lr

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        x, y = batch
        out = self.network(x)
        logits = out[0] if isinstance(out, tuple) else out
        return nn.functional.cross_entropy(logits, y)

    def configure_optimizers(self) -> Any:
        return torch.optim.SGD(self.parameters(), lr=self.lr, momentum=0.9, nesterov=True, weight_decay=1e-4)


def _time_fit(module: pl.LightningModule, batches: list[Any], warmup: int, clip: float | None) -> float:
    times: list[float] = []

    class Timer(pl.Callback):
        start = 0.0

        def on_train_batch_start(self, *args: object) -> None:
            self.start = time.perf_counter()

        def on_train_batch_end(self, *args: object) -> None:
            times.append(time.perf_counter() - self.start)

    trainer = pl.Trainer(
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="auto",
        devices=1,
        callbacks=[Timer()],
        gradient_clip_val=clip,
        limit_val_batches=0,
    )
    trainer.fit(module, train_dataloaders=torch.utils.data.DataLoader(batches, batch_size=None))
    timed = sorted(times[warmup:])
    return timed[len(timed) // 2]


def _spaces(args: argparse.Namespace) -> tuple[SearchSpace, Any]:
    if args.space == "micro":
        cell = DartsCellSpace(channels=args.channels, layers=args.layers, steps=args.steps, ops=ENAS_MICRO_OPS)
        return cell, lambda arch: DartsNetwork(
            Genotype.from_arch(arch, args.steps), channels=args.channels, layers=args.layers, auxiliary=False
        )
    macro = EnasMacroSpace(channels=args.channels, layers=args.layers)
    return macro, lambda arch: EnasMacroNetwork(arch, channels=args.channels)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--space", choices=["micro", "macro"], default="micro")
    parser.add_argument("--batch", type=int, default=64, help="training batch size (default 64)")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--channels", type=int, default=None, help="default: 16 micro, 36 macro")
    parser.add_argument("--layers", type=int, default=None, help="default: 8 cells micro, 12 layers macro")
    parser.add_argument("--steps", type=int, default=5, help="nodes per cell (micro)")
    parser.add_argument("--timed", type=int, default=5, help="timed steps (median reported)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    parser.add_argument("--samples", type=int, default=50, help="controller draws timed")
    parser.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "2")))
    args = parser.parse_args()
    args.channels = args.channels or (16 if args.space == "micro" else 36)
    args.layers = args.layers or (8 if args.space == "micro" else 12)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    space, build_static = _spaces(args)
    model = ENAS(space, hidden_size=100)
    arch = model.policy.sample(step_generator(0, 0)).arch
    gen = torch.Generator().manual_seed(0)
    steps = args.warmup + args.timed
    shape = (args.batch, 3, args.image_size, args.image_size)
    plain = [
        (torch.randn(shape, generator=gen), torch.randint(0, 10, (args.batch,), generator=gen)) for _ in range(steps)
    ]
    paired = [{"train": b, "val": b} for b in plain]

    enas = FixedChildENAS(space, arch, weight_steps=10**6, controller_steps=0)
    shared = _time_fit(enas, paired, args.warmup, clip=None)
    static = _time_fit(StaticNetwork(build_static(arch)), plain, args.warmup, clip=5.0)

    policy = model.policy
    with torch.no_grad():
        start = time.perf_counter()
        for k in range(args.samples):
            policy.sample(step_generator(1, k))
        no_grad = (time.perf_counter() - start) / args.samples
    start = time.perf_counter()
    for k in range(args.samples):
        policy.sample(step_generator(2, k))
    with_grad = (time.perf_counter() - start) / args.samples

    device = "cuda" if torch.cuda.is_available() else "cpu"
    print(
        f"ENAS {args.space} search, C={args.channels}, {args.layers} layers, batch {args.batch}x3x"
        f"{args.image_size}x{args.image_size}, {args.threads} threads, device {device}"
    )
    print(f"child: {arch}")
    print(f"{'shared-weight step (supernet, one child)':<44}{shared * 1e3:>10.1f} ms")
    print(f"{'same child as a static network':<44}{static * 1e3:>10.1f} ms")
    print(f"{'ratio shared / static (aim <= 1.2)':<44}{shared / static:>10.2f} x")
    print(f"{'controller: sample one arch, no grad':<44}{no_grad * 1e3:>10.2f} ms  ({len(policy.choices)} choices)")
    print(f"{'controller: sample one arch, with grad':<44}{with_grad * 1e3:>10.2f} ms")


if __name__ == "__main__":
    main()
